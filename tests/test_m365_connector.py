"""The Microsoft 365 connector against the local Graph (tests/fake_graph.py), through the runner."""

from __future__ import annotations

from pathlib import Path

from tests.m365test import PLAN_OFF, SKU_STUDENT, SKU_TEACHER, M365Env
from tests.prediction import a_leaver_applied_then_predicted
from tests.sisbuilder import small_sis

DAY1, DAY2, DAY3 = "2025-10-01", "2025-10-02", "2025-10-03"


def test_first_sync_creates_users_groups_licences_then_sends_nothing(m365_env: M365Env) -> None:
    out = m365_env.sync(DAY1)
    assert out.exit_code == 0, out.results["m365"].errors
    objs = m365_env.objects()
    persons = {k: o for k, o in objs.items() if o["kind"] == "person"}
    assert set(persons) == {"S1", "S2", "S3", "S4", "S5", "S6", "T1", "T2", "A1"}  # no guardians
    d = m365_env.graph.directory
    for pid, o in persons.items():
        u = d.users[o["anchor"]]
        assert u["employeeId"] == pid and u["accountEnabled"] is True
        assert u["userPrincipalName"] == f"{o['username']}@skole.eksempel.no"
        assert u["usageLocation"] == "NO"
    # Licences per role: students with the plan switched off, teachers theirs, staff none.
    assert m365_env.user("S1")["assignedLicenses"] == [{"skuId": SKU_STUDENT, "disabledPlans": [PLAN_OFF]}]
    assert m365_env.user("T1")["assignedLicenses"] == [{"skuId": SKU_TEACHER, "disabledPlans": []}]
    assert m365_env.user("A1")["assignedLicenses"] == []
    # Passwords: the school office's 0600 files hold exactly the passwords the tenant has.
    pws = m365_env.passwords()
    assert set(pws) == {o["username"] for o in persons.values()}
    for o in persons.values():
        assert d.passwords[o["anchor"]] == pws[o["username"]]
    with m365_env.store.engine.connect() as c:
        dump = "\n".join(
            str(r) for t in ("objects", "changelog") for r in c.exec_driver_sql(f"SELECT * FROM {t}")
        )
    assert not any(p in dump for p in pws.values())
    # Groups: security groups, the teacher owns the class, the fallback owner the school-wide ones.
    g = objs["NORD-6A"]
    assert d.groups[g["anchor"]]["securityEnabled"] is True
    assert d.members[g["anchor"]] == {persons[p]["anchor"] for p in ("S1", "S2", "T1")}
    assert d.owners[g["anchor"]] == {persons["T1"]["anchor"]}
    wide = [o for o in objs.values() if o["kind"] == "group" and not o["attrs"]["owners"]]
    assert wide and all(d.owners[o["anchor"]] == {m365_env.owner_id} for o in wide)
    assert all(d.owners[o["anchor"]] for o in objs.values() if o["kind"] == "group")
    # Batched: far fewer HTTP requests than writes.
    assert m365_env.graph.counts["batch"] * 4 <= m365_env.graph.writes
    # A second run plans nothing and sends no write at all.
    m365_env.graph.reset_counts()
    again = m365_env.sync(DAY2)
    assert again.exit_code == 0 and again.plan.target("m365").changes == ()
    assert m365_env.graph.writes == 0


def test_leaver_blocked_revoked_deleted_same_day_then_restored(m365_env: M365Env) -> None:
    assert m365_env.sync(DAY1).exit_code == 0
    anchor = m365_env.objects()["S2"]["anchor"]
    m365_env.sis.end_enrollments("S2", DAY1)
    out = m365_env.sync(DAY2)
    assert out.exit_code == 0, out.results["m365"].errors
    ops = [(c.op.value, c.key) for c in out.plan.target("m365").changes if c.key == "S2"]
    assert ops == [("disable", "S2"), ("delete", "S2")]
    d = m365_env.graph.directory
    assert anchor in d.deleted and anchor not in d.users
    assert d.deleted[anchor]["accountEnabled"] is False and d.revoked[anchor] == 1
    assert anchor not in d.members[m365_env.objects()["NORD-6A"]["anchor"]]
    # Back within 30 days: restored with the same id and licences, not re-created.
    m365_env.sis.end_enrollments("S2", "2026-06-20")
    m365_env.sis.enrollments = [
        e._replace(end_date=None) if e.person_id == "S2" else e for e in m365_env.sis.enrollments
    ]
    out = m365_env.sync("2025-10-20")
    assert out.exit_code == 0, out.results["m365"].errors
    assert ("restore", "S2") in [(c.op.value, c.key) for c in out.plan.target("m365").changes]
    u = d.users[anchor]
    assert u["accountEnabled"] is True and u["assignedLicenses"][0]["skuId"] == SKU_STUDENT
    assert m365_env.objects()["S2"]["anchor"] == anchor and m365_env.objects()["S2"]["status"] == "active"
    assert anchor in d.members[m365_env.objects()["NORD-6A"]["anchor"]]
    assert sum(1 for x in d.users.values() if x.get("employeeId") == "S2") == 1


def test_the_run_after_a_leaver_applied_live_is_certified_and_equals_a_full_plan(m365_env: M365Env) -> None:
    """What a live Microsoft 365 apply leaves after a leaver (blocked and deleted, removed
    from their groups) is what the next plan predicts: certified, and the same changes as
    that plan made in full (provisioner.core.certificate.predict_after_apply)."""
    planned = a_leaver_applied_then_predicted(m365_env, (DAY1, DAY2), "m365")
    assert [c.op.value for c in planned.changes if c.key == "S2"] == ["disable", "delete"]


def test_restore_refused_when_the_upn_was_taken_meanwhile(m365_env: M365Env) -> None:
    assert m365_env.sync(DAY1).exit_code == 0
    upn = m365_env.user("S3")["userPrincipalName"]
    m365_env.sis.end_enrollments("S3", DAY1)
    assert m365_env.sync(DAY2).exit_code == 0
    m365_env.graph.directory.add_user(userPrincipalName=upn, displayName="Someone else", mailNickname="x")
    m365_env.sis.enrollments = [
        e._replace(end_date=None) if e.person_id == "S3" else e for e in m365_env.sis.enrollments
    ]
    m365_env.sis.update_person("S1", family_name="Nordmann-Berg")
    out = m365_env.sync(DAY3)
    assert out.exit_code == 1
    rejected = m365_env.changelog("rejected")
    restore = [r for r in rejected if r["op"] == "restore"]
    assert len(restore) == 1 and restore[0]["key"] == "S3"
    assert "userPrincipalName is taken" in restore[0]["error"]
    # Nothing lost: still recorded as deleted, still in deleted items; the rest went on.
    assert m365_env.objects()["S3"]["status"] == "deleted"
    assert m365_env.objects()["S3"]["anchor"] in m365_env.graph.directory.deleted
    assert m365_env.user("S1")["surname"] == "Nordmann-Berg"


def test_upn_conflict_with_unmanaged_user_and_adoption(m365_env: M365Env) -> None:
    m365_env.sis.write(m365_env.src)
    plan = m365_env.sync(DAY1, dry_run=True).plan
    upn = {c.key: c.attrs["userPrincipalName"] for c in plan.target("m365").changes if c.kind == "person"}
    d = m365_env.graph.directory
    taken = d.add_user(userPrincipalName=upn["S1"], displayName="Other", mailNickname="o", employeeId="X-99")
    mine = d.add_user(
        userPrincipalName=upn["S2"], displayName="Kari H", mailNickname="kh", accountEnabled=True
    )
    out = m365_env.sync(DAY1)
    assert out.exit_code == 1
    rej = m365_env.changelog("rejected")
    s1 = [r for r in rej if r["key"] == "S1" and r["op"] == "create"]
    assert len(s1) == 1 and upn["S1"] in s1[0]["error"] and "X-99" in s1[0]["error"]
    assert d.users[taken]["employeeId"] == "X-99" and d.users[taken]["displayName"] == "Other"
    # The unmanaged account with no employeeId is adopted: same id, brought in line.
    assert m365_env.objects()["S2"]["anchor"] == mine
    assert d.users[mine]["employeeId"] == "S2" and d.users[mine]["displayName"] != "Kari H"
    notes = [r["error"] for r in m365_env.changelog("ok") if r["key"] == "S2" and r["op"] == "create"]
    assert notes == ["adopted existing user (matched by userPrincipalName)"]
    # The rest of the run went on; S1's group memberships wait for it.
    assert m365_env.objects()["S3"]["anchor"] in d.users


def test_user_deleted_by_hand(m365_env: M365Env) -> None:
    assert m365_env.sync(DAY1).exit_code == 0
    anchor = m365_env.objects()["S4"]["anchor"]
    d = m365_env.graph.directory
    d.users.pop(anchor)  # hard-deleted by hand
    m365_env.sis.update_person("S4", family_name="Ødegård-Li")
    m365_env.sis.update_person("S5", family_name="Berg-Ås")
    out = m365_env.sync(DAY2)
    assert out.exit_code == 1
    rej = m365_env.changelog("rejected")
    assert [(r["op"], r["key"]) for r in rej] == [("update", "S4")]
    assert "deleted by hand" in rej[0]["error"]
    assert m365_env.user("S5")["surname"] == "Berg-Ås"
    # A leaver who is already gone: disable and delete are no-ops, recorded as such.
    m365_env.sis.end_enrollments("S4", DAY2)
    out = m365_env.sync(DAY3)
    assert out.exit_code == 0, out.results["m365"].errors
    rows = m365_env.changelog("ok")
    notes = {r["op"]: r["error"] for r in rows if r["key"] == "S4" and r["run_id"] == out.run_id}
    assert notes == {"disable": "not in the tenant: nothing to disable", "delete": "already gone"}


def test_unknown_licence_sku_is_rejected_user_kept(tmp_path: Path) -> None:
    e = M365Env(tmp_path, small_sis(), skus=(SKU_STUDENT,))  # the teacher SKU is not in the tenant
    try:
        out = e.sync(DAY1)
        assert out.exit_code == 1
        rej = e.changelog("rejected")
        assert {r["key"] for r in rej} == {"T1", "T2"}
        assert all(SKU_TEACHER in r["error"] and "created" in r["error"] for r in rej)
        teachers = [u for u in e.graph.directory.users.values() if u.get("employeeId") in ("T1", "T2")]
        assert len(teachers) == 2 and all(u["assignedLicenses"] == [] for u in teachers)
        assert e.user("S1")["assignedLicenses"][0]["skuId"] == SKU_STUDENT
        # The teachers are still owners/members of their groups (their ids were known).
        g = e.objects()["NORD-6A"]["anchor"]
        t1 = next(u["id"] for u in teachers if u["employeeId"] == "T1")
        assert t1 in e.graph.directory.owners[g]
        # Next run: the same teachers are found (not duplicated) and refused again, clearly.
        out = e.sync(DAY2)
        again = [r for r in e.changelog("rejected") if r["run_id"] == out.run_id]
        assert {r["key"] for r in again} == {"T1", "T2"}
        assert sum(1 for u in e.graph.directory.users.values() if u.get("employeeId") == "T1") == 1
    finally:
        e.close()
