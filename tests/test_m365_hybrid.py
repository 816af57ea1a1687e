"""Microsoft 365 in hybrid mode against the local Graph: users synced from AD by Entra Connect.

The AD target is applied by tests.m365test.RecordingAD (it records objectGUIDs as the AD
connector does); ``sync_from_ad`` plays Entra Connect's sync cycle.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.m365.synced import immutable_id
from tests.fake_graph_directory import ON_PREMISES_MASTERED
from tests.m365test import PLAN_OFF, SKU_STUDENT, SKU_TEACHER, M365Env
from tests.sisbuilder import small_sis

DAY1, DAY2, DAY3, DAY4 = "2025-10-01", "2025-10-02", "2025-10-03", "2025-10-04"
PERSONS = ("S1", "S2", "S3", "S4", "S5", "S6", "T1", "T2", "A1")


@pytest.fixture()
def hybrid(tmp_path: Path) -> Iterator[M365Env]:
    e = M365Env(tmp_path, small_sis(), ad=True, m365={"mode": "hybrid"})
    e.graph.record()
    try:
        yield e
    finally:
        e.close()


def refused_writes(e: M365Env) -> list[tuple[str, str, object]]:
    """Requests the connector sent that Graph refuses on synced users (or that make users)."""
    assert e.graph.requests  # recorded, outer and inside $batch
    bad = []
    for method, path, body in e.graph.requests:
        if not path.startswith("/users"):
            continue
        user_write = method == "PATCH" and isinstance(body, dict) and ON_PREMISES_MASTERED & set(body)
        if user_write or (method == "POST" and path.split("?")[0] == "/users") or method == "DELETE":
            bad.append((method, path, body))
    return bad


def results(e: M365Env, run_id: str) -> dict[tuple[str, str], str]:
    return {(r["op"], r["key"]): r["result"] for r in e.changelog() if r["run_id"] == run_id}


def test_waits_for_synced_users_then_claims_licenses_and_groups_them(hybrid: M365Env) -> None:
    e, d = hybrid, hybrid.graph.directory
    out = e.sync(DAY1)
    # Nobody is synced yet: every user is pending (no error), and no user was created.
    assert out.exit_code == 0, out.results["m365"].errors
    assert out.results["m365"].pending >= len(PERSONS) and out.results["m365"].rejected == 0
    first = results(e, out.run_id)
    assert all(first[("create", p)] == "pending" for p in PERSONS)
    assert [r["error"] for r in e.changelog("pending") if r["key"] == "S1"] == [
        f"M365: person S1 ({e.store.objects.index('ad')['S1'].username}): no user with onPremisesImmutableId"
        f" {immutable_id(e.ad.guids['S1'])} or employeeId S1 yet (waiting for Entra Connect)"
    ]
    assert [u for u in d.users.values() if u.get("employeeId")] == []
    # Groups are made already, owned by the fallback owner until their teacher is synced;
    # their member adds wait (pending) and none is recorded as a member.
    objs = e.objects()
    assert not any(o["kind"] == "person" for o in objs.values())
    g = objs["NORD-6A"]
    assert d.owners[g["anchor"]] == {e.owner_id} and d.members[g["anchor"]] == set()
    assert first[("add_members", "NORD-6A")] == "pending"
    # Entra Connect syncs everyone but T2; S3 carries an immutable id of another AD account.
    ids = e.sync_from_ad("S1", "S2", "S4", "S5", "S6", "T1", "A1")
    ids |= e.sync_from_ad("S3", immutable=False)
    out = e.sync(DAY2)
    assert out.exit_code == 1  # S3 is refused, clearly
    second = results(e, out.run_id)
    for pid in ("S1", "S2", "S4", "S5", "S6", "T1", "A1"):
        assert second[("create", pid)] == "ok"
        assert e.objects()[pid]["anchor"] == ids[pid]
        assert d.users[ids[pid]]["usageLocation"] == "NO"
    assert second[("create", "T2")] == "pending" and second[("create", "S3")] == "rejected"
    (s3,) = [r["error"] for r in e.changelog("rejected") if r["key"] == "S3"]
    assert "synced from another AD account" in s3
    notes = {r["key"]: r["error"] for r in e.changelog("ok") if r["run_id"] == out.run_id}
    assert "matched by onPremisesImmutableId" in notes["S1"]
    # Licences per role; AD's attributes untouched.
    assert d.users[ids["S1"]]["assignedLicenses"] == [{"skuId": SKU_STUDENT, "disabledPlans": [PLAN_OFF]}]
    assert d.users[ids["T1"]]["assignedLicenses"] == [{"skuId": SKU_TEACHER, "disabledPlans": []}]
    assert d.users[ids["A1"]]["assignedLicenses"] == []
    assert d.users[ids["S1"]]["jobTitle"] == "AD" and d.users[ids["S1"]]["department"] == "AD"
    # The synced teacher owns the class now, its synced members are in; T2 still pending.
    g = e.objects()["NORD-6A"]["anchor"]
    assert ids["T1"] in d.owners[g]
    assert d.members[g] == {ids["S1"], ids["S2"], ids["T1"]}
    sor = e.objects()["SOR-6A"]["anchor"]
    assert d.members[sor] == {ids["S4"], ids["S5"]}
    # T2 arrives: claimed, owner and member of its class, nothing else left.
    ids |= e.sync_from_ad("T2")
    out = e.sync(DAY3)
    third = results(e, out.run_id)
    assert third[("create", "T2")] == "ok"
    assert ids["T2"] in d.owners[sor] and ids["T2"] in d.members[sor]
    assert "pending" not in third.values()
    # Not a single write Graph refuses on a synced user, no user created or deleted.
    assert refused_writes(e) == []


def test_a_stop_revokes_sessions_the_same_day_and_never_deletes(hybrid: M365Env) -> None:
    e, d = hybrid, hybrid.graph.directory
    e.sync(DAY1)
    ids = e.sync_from_ad(*PERSONS)
    e.sync(DAY2)
    assert d.users[ids["S1"]]["assignedLicenses"]
    e.sis.end_enrollments("S1", DAY2)
    out = e.sync(DAY3)
    assert out.exit_code == 0, out.results["m365"].errors
    ops = {op: res for (op, key), res in results(e, out.run_id).items() if key == "S1"}
    assert ops == {"disable": "ok", "delete": "ok"}
    assert d.revoked.get(ids["S1"]) == 1
    # The user stays (AD's to delete); BAS released its licences and forgot it.
    assert ids["S1"] in d.users and d.users[ids["S1"]]["accountEnabled"] is True
    assert d.users[ids["S1"]]["assignedLicenses"] == []
    assert "S1" not in e.objects()
    assert "S1" in e.ad.disabled  # the block itself comes from AD, through the sync
    assert refused_writes(e) == []


def test_without_an_ad_target_users_are_matched_by_employee_id(tmp_path: Path) -> None:
    e = M365Env(tmp_path, small_sis(), m365={"mode": "hybrid"})
    e.graph.record()
    try:
        d = e.graph.directory
        ids = {
            pid: d.add_synced_user(immutable_id(str(uuid.uuid4())), pid, f"{pid.lower()}@skole.eksempel.no")
            for pid in ("S1", "T1")
        }
        # A cloud-only account with S2's employeeId: waited for (Entra Connect may match it), never taken.
        cloud = d.add_user(userPrincipalName="s2@skole.eksempel.no", displayName="S2", employeeId="S2")
        out = e.sync(DAY1)
        assert out.exit_code == 0, out.results["m365"].errors
        res = results(e, out.run_id)
        assert res[("create", "S1")] == res[("create", "T1")] == "ok"
        assert e.objects()["S1"]["anchor"] == ids["S1"]
        note = next(r["error"] for r in e.changelog("ok") if r["key"] == "S1")
        assert "matched by employeeId" in note
        assert res[("create", "S2")] == "pending"
        (s2,) = [r["error"] for r in e.changelog("pending") if r["key"] == "S2"]
        assert "cloud-only" in s2 and "s2@skole.eksempel.no" in s2
        assert d.users[cloud].get("onPremisesSyncEnabled") is None
        # The lookups were $filter requests with quoted OData strings.
        filters = [p for m, p, _ in e.graph.requests or [] if m == "GET" and "$filter=" in p]
        assert "/users?$filter=employeeId eq 'S1'&$select=" in "\n".join(filters)
        assert refused_writes(e) == []
    finally:
        e.close()


def test_the_local_graph_refuses_writes_to_what_ad_masters(tmp_path: Path) -> None:
    e = M365Env(tmp_path, small_sis())
    try:
        d = e.graph.directory
        iid = immutable_id("0b4c2a63-7f3e-4b8a-9d2e-3c1f00a1b2c3")
        uid = d.add_synced_user(iid, "S1", "s1@skole.eksempel.no")
        for prop in sorted(ON_PREMISES_MASTERED):
            status, body, _ = d.handle("PATCH", f"/users/{uid}", {}, {prop: "x"})
            assert status == 400 and body["error"]["code"] == "Request_BadRequest", prop
            assert body["error"]["message"].startswith(
                "Unable to update the specified properties for on-premises mastered Directory Sync objects"
            )
        assert d.handle("DELETE", f"/users/{uid}", {}, None)[0] == 400
        assert d.handle("PATCH", f"/users/{uid}", {}, {"usageLocation": "SE"})[0] == 204
        status, body, _ = d.handle("GET", "/users", {"$filter": f"onPremisesImmutableId eq '{iid}'"}, None)
        assert status == 200 and [u["id"] for u in body["value"]] == [uid]
        assert d.handle("POST", f"/users/{uid}/revokeSignInSessions", {}, {})[0] == 200
        assert d.revoked[uid] == 1
    finally:
        e.close()


@pytest.mark.parametrize(
    ("guid", "le_bytes"),
    [
        # AD stores an objectGUID's first three fields little-endian (.NET Guid.ToByteArray()).
        ("00112233-4455-6677-8899-aabbccddeeff", "33221100554477668899aabbccddeeff"),
        ("0b4c2a63-7f3e-4b8a-9d2e-3c1f00a1b2c3", "632a4c0b3e7f8a4b9d2e3c1f00a1b2c3"),
    ],
)
def test_immutable_id_is_the_base64_of_the_objectguid_bytes(guid: str, le_bytes: str) -> None:
    assert immutable_id(guid) == base64.b64encode(bytes.fromhex(le_bytes)).decode()


def test_the_refused_write_check_sees_what_a_cloud_target_sends(m365_env: M365Env) -> None:
    m365_env.graph.record()
    m365_env.sync(DAY1)
    assert ("POST", "/users", None) in {(m, p, None) for m, p, _ in refused_writes(m365_env)}


def test_hybrid_through_the_cli_pending_in_status_then_claimed(tmp_path: Path) -> None:
    """What an admin does: switch the target to hybrid, check, sync, see who waits, sync again."""
    from tests.test_cli import bas

    e = M365Env(tmp_path, small_sis(), m365={"mode": "hybrid"})
    try:
        e.graph.record()
        d = e.graph.directory
        e.sis.write(e.src)
        p = bas("config", "check", config=e.config_path)
        assert "mode apply, users synced from AD (hybrid; matched by employeeId)" in p.stdout
        ids = {
            p: d.add_synced_user(immutable_id(str(uuid.uuid4())), p, f"{p.lower()}@skole.eksempel.no")
            for p in ("S1", "T1")
        }
        p = bas("sync", "--as-of", DAY1, config=e.config_path)  # pending is no error: exit 0
        line = next(x for x in p.stdout.splitlines() if x.strip().startswith("m365") and " ok " in x)
        assert line.split() == ["m365", "applied", "ok", "16,", "pending", "11", "(retried", "next", "run)"]
        st = bas("status", config=e.config_path)
        assert "pending ones are no error" in st.stdout
        assert "pending: M365: person S2" in st.stdout and "waiting for Entra Connect" in st.stdout
        log = json.loads(bas("changelog", "--result", "pending", "--json", config=e.config_path).stdout)
        assert {r["key"] for r in log if r["op"] == "create"} == set(PERSONS) - {"S1", "T1"}
        assert d.users[ids["S1"]]["assignedLicenses"][0]["skuId"] == SKU_STUDENT
        # Entra Connect has synced the rest: the next sync claims them, nothing waits.
        for pid in set(PERSONS) - {"S1", "T1"}:
            ids[pid] = d.add_synced_user(
                immutable_id(str(uuid.uuid4())), pid, f"{pid.lower()}@skole.eksempel.no"
            )
        p = bas("sync", "--as-of", DAY2, config=e.config_path)
        assert "pending" not in next(
            x for x in p.stdout.splitlines() if x.strip().startswith("m365") and " ok " in x
        )
        assert {k: o["anchor"] for k, o in e.objects().items() if o["kind"] == "person"} == ids
        assert "failed objects none" in bas("status", config=e.config_path).stdout
        # A reconcile finds no drift, even where AD blocked a user: sign-in is AD's, not drift here.
        d.users[ids["S2"]]["accountEnabled"] = False
        assert "0 difference(s)" in bas("m365", "reconcile", "--full", config=e.config_path).stdout
        assert refused_writes(e) == []
    finally:
        e.close()


def test_many_users_are_claimed_from_one_directory_read(tmp_path: Path) -> None:
    from tests.sisbuilder import Sis

    sis = Sis().school("NORD", "974000001", "NORDBY")
    pids = [f"S{i:02d}" for i in range(60)]
    for pid in pids:
        sis.student(pid, "NORD", "Elev", f"Nummer{pid}")
    e = M365Env(tmp_path, sis, ad=True, m365={"mode": "hybrid"})
    try:
        first = e.sync(DAY1)
        assert (
            sorted(k for (op, k), r in results(e, first.run_id).items() if op == "create" and r == "pending")
            == pids
        )
        ids = e.sync_from_ad(*pids)
        e.graph.record()
        out = e.sync(DAY2)
        assert out.exit_code == 0, out.results["m365"].errors
        assert {k: o["anchor"] for k, o in e.objects().items() if o["kind"] == "person"} == ids
        gets = [p for m, p, _ in e.graph.requests or [] if m == "GET" and p.startswith("/users?")]
        assert gets and all("$filter" not in p for p in gets)  # one paged read, no lookup per user
        assert refused_writes(e) == []
    finally:
        e.close()


def test_a_cloud_target_refuses_to_take_over_a_synced_user(m365_env: M365Env) -> None:
    d = m365_env.graph.directory
    uid = d.add_synced_user(immutable_id(str(uuid.uuid4())), "S1", "olanor@skole.eksempel.no")
    m365_env.graph.record()
    out = m365_env.sync(DAY1)
    assert out.exit_code == 1
    (err,) = [r["error"] for r in m365_env.changelog("rejected") if r["key"] == "S1"]
    assert "synced from AD by Entra Connect" in err and 'set mode = "hybrid" for targets.m365' in err
    assert not [r for r in m365_env.graph.requests or [] if uid in r[1] and r[0] != "GET"]
