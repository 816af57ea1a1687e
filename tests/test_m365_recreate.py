"""A returning person whose soft-deleted user was purged meanwhile: created again, through the runner.

Against the local Graph (tests/fake_graph.py): a person stops (blocked and soft-deleted
the same day), an admin purges the user from deleted items by hand, the person comes
back within restore_within_days. The restore finds nothing, so the user is created
again (new id as the anchor, password file, licences, groups), the changelog says so,
and the next runs plan nothing.
"""

from __future__ import annotations

import csv
import json
from typing import Any

import pytest
from structlog.testing import capture_logs

from connectors.errors import RejectedError
from provisioner.core.plan import Change, Op
from provisioner.kinds import m365_connector
from tests.m365test import PLAN_OFF, SKU_STUDENT, SKU_TEACHER, M365Env

DAY1, DAY2, BACK = "2025-10-01", "2025-10-02", "2025-10-20"  # back after 18 days: restorable


def stop(m365_env: M365Env, *pids: str) -> None:
    """End every enrollment and employment of these persons on DAY1."""
    for pid in pids:
        m365_env.sis.end_enrollments(pid, DAY1)
    m365_env.sis.employments = [
        e._replace(end_date=DAY1) if e.person_id in pids else e for e in m365_env.sis.employments
    ]


def come_back(m365_env: M365Env, *pids: str) -> None:
    """Open every enrollment and employment of these persons again."""
    m365_env.sis.enrollments = [
        e._replace(end_date=None) if e.person_id in pids else e for e in m365_env.sis.enrollments
    ]
    m365_env.sis.employments = [
        e._replace(end_date=None) if e.person_id in pids else e for e in m365_env.sis.employments
    ]


def purge(m365_env: M365Env, anchor: str) -> None:
    """An admin purges a deleted user from deleted items (DELETE /directory/deletedItems/{id})."""
    status, _, _ = m365_env.graph.directory.handle("DELETE", f"/directory/deletedItems/{anchor}", {}, None)
    assert status == 204 and anchor not in m365_env.graph.directory.deleted


def stopped_and_purged(m365_env: M365Env, pid: str) -> tuple[str, str]:
    """Create ``pid``, let it stop (soft-deleted), purge it by hand; its old (anchor, UPN)."""
    assert m365_env.sync(DAY1).exit_code == 0
    old = m365_env.objects()[pid]["anchor"]
    upn = m365_env.user(pid)["userPrincipalName"]
    stop(m365_env, pid)
    assert m365_env.sync(DAY2).exit_code == 0
    purge(m365_env, old)
    return old, upn


def run_passwords(m365_env: M365Env, run_id: str) -> dict[str, str]:
    """username -> password from the school office files of one run."""
    out = {}
    for f in m365_env.password_dir.glob(f"*{run_id}*.csv"):
        rows = list(csv.reader(f.read_text(encoding="utf-8-sig").splitlines(), delimiter=";"))
        out.update({r[0]: r[2] for r in rows[1:]})
    return out


def rows_of(m365_env: M365Env, run_id: str, key: str) -> dict[str, dict[str, Any]]:
    """This run's changelog rows of one object, by operation."""
    return {r["op"]: r for r in m365_env.changelog() if r["run_id"] == run_id and r["key"] == key}


def test_purged_leaver_who_returns_is_created_again_and_runs_converge(m365_env: M365Env) -> None:
    assert m365_env.sync(DAY1).exit_code == 0
    objs = m365_env.objects()
    old = {pid: objs[pid]["anchor"] for pid in ("S2", "T1")}
    g6a, gmat = objs["NORD-6A"]["anchor"], objs["NORD-MAT"]["anchor"]
    d = m365_env.graph.directory
    stop(m365_env, "S2", "T1")
    out = m365_env.sync(DAY2)
    assert out.exit_code == 0, out.results["m365"].errors
    assert all(a in d.deleted for a in old.values())
    assert m365_env.objects()["S2"]["status"] == m365_env.objects()["T1"]["status"] == "deleted"
    # Their memberships left the groups (and the store) as they stopped: so the return run
    # plans the adds again, which resolve to whatever id the user has by then.
    assert not {"S2", "T1"} & {m[0] for m in m365_env.objects()["NORD-6A"]["members"]}
    for anchor in old.values():
        purge(m365_env, anchor)
    # Back within 30 days, with a new family name: restored -> nothing there -> created again.
    come_back(m365_env, "S2", "T1")
    m365_env.sis.update_person("S2", family_name="Hansen-Berg")
    with capture_logs() as logs:
        out = m365_env.sync(BACK)
    assert out.exit_code == 0, out.results["m365"].errors
    planned = {(c.op.value, c.key): c for c in out.plan.target("m365").changes}
    assert {("restore", "S2"), ("enable", "S2"), ("update", "S2"), ("restore", "T1")} <= set(planned)
    assert planned["restore", "S2"].anchor == old["S2"]
    assert planned["restore", "S2"].attrs["surname"] == "Hansen-Berg"  # the desired attributes go along
    new = {pid: m365_env.objects()[pid]["anchor"] for pid in ("S2", "T1")}
    for pid in ("S2", "T1"):
        row = m365_env.objects()[pid]
        assert new[pid] != old[pid] and row["status"] == "active"
        u = d.users[new[pid]]
        assert u["employeeId"] == pid and u["accountEnabled"] is True and u["usageLocation"] == "NO"
        assert sum(1 for x in d.users.values() if x.get("employeeId") == pid) == 1
        assert old[pid] not in d.users and old[pid] not in d.deleted
        assert row["attrs"]["userPrincipalName"] == u["userPrincipalName"]
    assert d.users[new["S2"]]["surname"] == "Hansen-Berg"
    assert m365_env.objects()["S2"]["attrs"]["surname"] == "Hansen-Berg"
    # Licences as for a create.
    assert d.users[new["S2"]]["assignedLicenses"] == [{"skuId": SKU_STUDENT, "disabledPlans": [PLAN_OFF]}]
    assert d.users[new["T1"]]["assignedLicenses"] == [{"skuId": SKU_TEACHER, "disabledPlans": []}]
    # Groups: members again under the new ids, and the teacher owns the class again.
    assert new["S2"] in d.members[g6a] and new["T1"] in d.members[g6a] and new["T1"] in d.members[gmat]
    assert new["T1"] in d.owners[g6a] and new["T1"] in d.owners[gmat]
    stored_6a = {m[0] for m in m365_env.objects()["NORD-6A"]["members"]}
    assert {"S2", "T1"} <= stored_6a
    # The changelog says what happened; the enable and update had nothing left to write.
    s2 = rows_of(m365_env, out.run_id, "S2")
    assert s2["restore"]["result"] == "ok"
    assert s2["restore"]["error"] == f"deleted object {old['S2']} was purged; created again"
    assert json.loads(s2["restore"]["after"])["userPrincipalName"] == d.users[new["S2"]]["userPrincipalName"]
    assert s2["enable"]["result"] == s2["update"]["result"] == "ok"
    assert "created again this run" in s2["enable"]["error"]
    assert "created again this run" in s2["update"]["error"]
    # The initial password: in this run's school office file, in the tenant, nowhere else.
    pws = run_passwords(m365_env, out.run_id)
    assert set(pws) == {m365_env.objects()[p]["username"] for p in ("S2", "T1")}
    for pid in ("S2", "T1"):
        assert d.passwords[new[pid]] == pws[m365_env.objects()[pid]["username"]]
    with m365_env.store.engine.connect() as c:
        dump = "\n".join(
            str(r) for t in ("objects", "changelog") for r in c.exec_driver_sql(f"SELECT * FROM {t}")
        )
    told = [e for e in logs if e["event"] == "deleted user was purged; created again"]
    assert {(e["key"], e["purged_id"], e["new_id"]) for e in told} == {(p, old[p], new[p]) for p in old}
    assert not any(p in dump or p in str(logs) for p in pws.values())
    # Next runs: the certified plan and the full plan are both empty, and nothing is written.
    m365_env.graph.reset_counts()
    again = m365_env.sync(BACK)
    assert again.plan.basis == "certified" and again.plan.target("m365").changes == ()
    full = m365_env.sync(BACK, full=True)
    assert full.plan.basis == "full" and full.plan.target("m365").changes == ()
    later = m365_env.sync("2025-10-21")
    assert later.exit_code == 0 and later.plan.target("m365").changes == ()
    assert m365_env.graph.writes == 0
    assert new["S2"] in d.members[g6a] and m365_env.objects()["S2"]["anchor"] == new["S2"]


def test_purged_user_whose_upn_was_taken_by_hand_is_adopted(m365_env: M365Env) -> None:
    old, upn = stopped_and_purged(m365_env, "S2")
    d = m365_env.graph.directory
    # Meanwhile an admin made an account with that UPN by hand (no employeeId): adopted, not doubled.
    mine = d.add_user(userPrincipalName=upn, displayName="Kari H", mailNickname="kh", accountEnabled=False)
    come_back(m365_env, "S2")
    out = m365_env.sync(BACK)
    assert out.exit_code == 0, out.results["m365"].errors
    assert m365_env.objects()["S2"]["anchor"] == mine and m365_env.objects()["S2"]["status"] == "active"
    u = d.users[mine]
    assert u["employeeId"] == "S2" and u["accountEnabled"] is True and u["displayName"] != "Kari H"
    assert u["assignedLicenses"][0]["skuId"] == SKU_STUDENT
    assert sum(1 for x in d.users.values() if str(x.get("userPrincipalName")).lower() == upn.lower()) == 1
    note = rows_of(m365_env, out.run_id, "S2")["restore"]["error"]
    adopted = "adopted existing user (matched by userPrincipalName)"
    reset = "was disabled: new password (in the school's password file), enabled"
    assert note == f"deleted object {old} was purged; created again: {adopted}; {reset}"
    # It was disabled, so nobody knew its password: it got a new one, in the password file.
    pws = run_passwords(m365_env, out.run_id)
    assert d.passwords[mine] == pws[m365_env.objects()["S2"]["username"]]
    assert mine in d.members[m365_env.objects()["NORD-6A"]["anchor"]]
    assert m365_env.sync("2025-10-21", full=True).plan.target("m365").changes == ()


def test_recreate_refused_when_upn_belongs_to_someone_else_then_done_when_freed(m365_env: M365Env) -> None:
    old, upn = stopped_and_purged(m365_env, "S2")
    d = m365_env.graph.directory
    other = d.add_user(userPrincipalName=upn, displayName="Other", mailNickname="o", employeeId="X-77")
    come_back(m365_env, "S2")
    out = m365_env.sync(BACK)
    assert out.exit_code == 1
    rejected = rows_of(m365_env, out.run_id, "S2")
    assert rejected["restore"]["result"] == "rejected"
    error = rejected["restore"]["error"]
    assert "not in deleted items (purged)" in error and "X-77" in error and upn in error
    # Nothing taken over, nothing doubled; still recorded as deleted under the old id.
    assert d.users[other]["employeeId"] == "X-77" and d.users[other]["displayName"] == "Other"
    assert not any(u.get("employeeId") == "S2" for u in d.users.values())
    assert m365_env.objects()["S2"]["status"] == "deleted" and m365_env.objects()["S2"]["anchor"] == old
    # The admin frees the name: the next run (still within 30 days) creates the user again.
    d.users.pop(other)
    out = m365_env.sync("2025-10-21")
    assert out.exit_code == 0, out.results["m365"].errors
    new = m365_env.objects()["S2"]["anchor"]
    assert new != old and d.users[new]["employeeId"] == "S2"
    assert m365_env.objects()["S2"]["status"] == "active"
    assert new in d.members[m365_env.objects()["NORD-6A"]["anchor"]]
    assert m365_env.sync("2025-10-22", full=True).plan.target("m365").changes == ()


def test_restore_from_a_plan_saved_without_attributes_is_refused_clearly(m365_env: M365Env) -> None:
    old, _ = stopped_and_purged(m365_env, "S2")
    conn = m365_connector(m365_env.cfg, "m365")
    conn.begin("saved-plan", lambda kind, key: None)
    bare = Change(target="m365", op=Op.RESTORE, kind="person", key="S2", reason="active again", anchor=old)
    with pytest.raises(RejectedError, match="carries no attributes to create it from"):
        conn.apply(bare)
    conn.close()
    assert not any(u.get("employeeId") == "S2" for u in m365_env.graph.directory.users.values())
