"""The AD connector against a real Samba AD DC (tests/samba_dc.py), through the runner and directly."""

from __future__ import annotations

import csv
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ldap3
import pytest

from connectors.errors import FatalError, RejectedError, TransientError
from connectors.ldap.link import guid_text, text
from provisioner.core.dn import parent as parent_dn
from provisioner.core.dn import rdn as first_rdn
from provisioner.core.plan import Change, Op
from provisioner.kinds import kind_of
from provisioner.run.runner import EXIT_TARGET_FAILED
from provisioner.run.targets import build_connector
from tests.adtest import ADEnv, can_bind, uac
from tests.prediction import a_leaver_applied_then_predicted
from tests.sisbuilder import small_sis

DAY1, DAY2 = "2025-10-01", "2025-10-02"


@pytest.fixture()
def env(tmp_path: Path, samba_dc) -> Iterator[ADEnv]:
    e = ADEnv(tmp_path, samba_dc, small_sis())
    try:
        yield e
    finally:
        e.close()


def read_passwords(env: ADEnv) -> dict[str, str]:
    out = {}
    for f in env.password_dir.glob("*.csv"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
        rows = list(csv.reader(f.read_text(encoding="utf-8-sig").splitlines(), delimiter=";"))
        assert rows[0] == ["username", "display name", "password"]
        out.update({r[0]: r[2] for r in rows[1:]})
    return out


def test_first_sync_creates_ous_users_groups_then_nothing(env: ADEnv) -> None:
    out = env.sync(DAY1)
    assert out.exit_code == 0, out.results["ad"].errors
    ad = out.results["ad"]
    objs = env.objects()
    persons = {k: o for k, o in objs.items() if o["kind"] == "person"}
    assert set(persons) == {"S1", "S2", "S3", "S4", "S5", "S6", "T1", "T2", "A1"}  # no guardians
    ous = env.ous()
    for ou in ("OU=NORDBY", "OU=SORBY", "OU=Grupper", "OU=Deaktiverte"):
        assert f"{ou},{env.base}".lower() in ous
    # Users: enabled, in their school's OU, the anchor is their objectGUID.
    for pid, o in persons.items():
        e = env.user(pid, ("objectGUID", "userAccountControl", "employeeID", "sAMAccountName", "department"))
        assert e is not None
        assert guid_text(e[1]["objectGUID"][0]) == o["anchor"]
        assert not uac(e) & 2
        assert text(e, "employeeID") == pid
        assert text(e, "sAMAccountName") == o["username"]
        assert parent_dn(e[0]).lower() == o["attrs"]["ou"].lower()
    # The password file is the school office's, 0600 in a 0700 folder; the passwords work.
    assert stat.S_IMODE(env.password_dir.stat().st_mode) == 0o700
    pws = read_passwords(env)
    assert set(pws) == {o["username"] for o in persons.values()}
    assert len(list(env.password_dir.glob("*.csv"))) == 2  # one per school
    s1 = env.user("S1", ("cn",))
    assert can_bind(env.dc, s1[0], pws[persons["S1"]["username"]])
    assert not can_bind(env.dc, s1[0], pws[persons["S1"]["username"]] + "x")
    # Passwords are nowhere in the state store or the changelog.
    with env.store.engine.connect() as c:
        dump = "\n".join(
            str(r) for t in ("objects", "changelog") for r in c.exec_driver_sql(f"SELECT * FROM {t}")
        )
    assert not any(p in dump for p in pws.values())
    # Groups with their members.
    members = env.members("NORD-6A")
    assert members == {env.user(p, ("cn",))[0].lower() for p in ("S1", "S2", "T1")}
    assert ad.ok == len(out.plan.target("ad").changes)
    # A second run plans nothing for AD.
    again = env.sync(DAY2)
    assert again.exit_code == 0
    assert again.plan.target("ad").changes == ()


def test_the_run_after_a_leaver_applied_in_ad_is_certified_and_equals_a_full_plan(env: ADEnv) -> None:
    """What a live AD apply leaves after a leaver (disabled, moved to the disabled OU, out of
    the class group) is what the next plan predicts: certified, and the same changes as
    that plan made in full (provisioner.core.certificate.predict_after_apply)."""
    planned = a_leaver_applied_then_predicted(env, (DAY1, DAY2), "ad")
    assert ("disable", "S2") in [(c.op.value, c.key) for c in planned.changes]


def test_rename_move_leave_return_delete(env: ADEnv) -> None:
    assert env.sync(DAY1).exit_code == 0
    guid = {pid: env.objects()[pid]["anchor"] for pid in ("S1", "S2", "S3")}
    user_s1 = env.objects()["S1"]["username"]
    nord, sor = (f"OU={s},{env.base}".lower() for s in ("NORDBY", "SORBY"))
    disabled = f"OU=Deaktiverte,{env.base}".lower()

    # A new family name: the CN is renamed in place (modify_dn), same object, same login.
    env.sis.update_person("S1", family_name="Nordmann-Berg")
    out = env.sync("2025-10-02")
    assert out.exit_code == 0, out.results["ad"].errors
    assert ("move", "S1") in [(c.op.value, c.key) for c in out.plan.target("ad").changes]
    e = env.user("S1", ("sn", "sAMAccountName", "objectGUID"))
    assert e[0].startswith("CN=Ola Nordmann-Berg (")
    assert parent_dn(e[0]).lower() == nord
    assert guid_text(e[1]["objectGUID"][0]) == guid["S1"]
    assert text(e, "sn") == "Nordmann-Berg" and text(e, "sAMAccountName") == user_s1

    # A change of school moves the user to the other school's OU.
    env.sis.enrollments = [
        e._replace(school_id="SOR") if e.person_id == "S3" else e for e in env.sis.enrollments
    ]
    out = env.sync("2025-10-03")
    assert out.exit_code == 0, out.results["ad"].errors
    e = env.user("S3", ("objectGUID", "department"))
    assert parent_dn(e[0]).lower() == sor
    assert guid_text(e[1]["objectGUID"][0]) == guid["S3"]
    assert text(e, "department") == "Sor skole"

    # A leaver: disabled at once, moved to the disabled OU, out of the class group.
    s2_dn_before = env.user("S2", ("cn",))[0].lower()
    assert s2_dn_before in env.members("NORD-6A")
    env.sis.end_enrollments("S2", "2025-10-03")
    out = env.sync("2025-10-05")
    assert out.exit_code == 0, out.results["ad"].errors
    e = env.user("S2", ("userAccountControl", "adminDescription"))
    assert uac(e) & 2
    assert parent_dn(e[0]).lower() == disabled
    assert env.objects()["S2"]["status"] == "disabled"
    assert not any(m.startswith("cn=kari hansen") for m in env.members("NORD-6A"))

    # Back again within 90 days: enabled and moved home, and back in the group.
    env.sis.enrollments = [
        e._replace(end_date=None) if e.person_id == "S2" else e for e in env.sis.enrollments
    ]
    out = env.sync("2025-10-20")
    assert out.exit_code == 0, out.results["ad"].errors
    e = env.user("S2", ("userAccountControl", "adminDescription", "objectGUID"))
    assert not uac(e) & 2
    assert e[0].lower() == s2_dn_before
    assert guid_text(e[1]["objectGUID"][0]) == guid["S2"]
    assert text(e, "adminDescription") is None
    assert s2_dn_before in env.members("NORD-6A")

    # Gone for good: disabled, and deleted once 90 days have passed since the SIS end date,
    # even though BAS noticed the (backdated) end 11 days late.
    env.sis.end_enrollments("S2", "2025-10-11")
    assert env.sync("2025-10-22").exit_code == 0
    assert env.objects()["S2"]["status"] == "disabled"
    out = env.sync("2026-01-08")  # 89 days after the SIS end date: still there
    assert "S2" in env.objects() and env.by_employee_id("S2")
    out = env.sync("2026-01-09")
    assert out.exit_code == 0, out.results["ad"].errors
    delete = [c for c in out.plan.target("ad").changes if (c.op.value, c.key) == ("delete", "S2")]
    assert len(delete) == 1 and "since 2025-10-11 (SIS end date)" in delete[0].reason
    assert "S2" not in env.objects()
    assert env.by_employee_id("S2") == []
    assert env.sync("2026-01-21").plan.target("ad").changes == ()


def test_a_returner_goes_where_they_belong_now(env: ADEnv) -> None:
    """The enable carries the desired OU: a move of school while away, and nothing kept in AD is needed."""
    assert env.sync(DAY1).exit_code == 0
    sor = f"OU=SORBY,{env.base}".lower()
    env.sis.end_enrollments("S1", "2025-10-01")
    env.sis.end_enrollments("S3", "2025-10-01")
    assert env.sync("2025-10-02").exit_code == 0
    # An admin clears adminDescription on S3 while it is parked: BAS keeps nothing there.
    env.admin.modify(
        env.user("S3", ("cn",))[0], {"adminDescription": [(ldap3.MODIFY_REPLACE, [])]}, "clear home"
    )
    env.sis.enroll("S1", "SOR", start="2025-10-05")  # back, at the other school
    env.sis.enroll("S3", "NORD", start="2025-10-05")
    out = env.sync("2025-10-06")
    assert out.exit_code == 0, out.results["ad"].errors
    s1 = env.user("S1", ("userAccountControl",))
    assert not uac(s1) & 2 and parent_dn(s1[0]).lower() == sor
    s3 = env.user("S3", ("userAccountControl",))
    assert not uac(s3) & 2 and parent_dn(s3[0]).lower() == f"OU=NORDBY,{env.base}".lower()
    assert env.sync("2025-10-07").plan.target("ad").changes == ()


# -- the connector driven directly ------------------------------------------------------


def connector(env: ADEnv, **ad):
    env.configure(**ad)
    return build_connector(env.cfg, "ad")


def person_change(env: ADEnv, op: Op, pid: str, username: str, **kw) -> Change:
    attrs = {
        "sAMAccountName": username,
        "userPrincipalName": f"{username}@skole.eksempel.no",
        "givenName": "Test",
        "sn": pid,
        "displayName": f"Test {pid}",
        "mail": f"{username}@skole.eksempel.no",
        "employeeID": pid,
        "department": "Nord skole",
        "company": "Eksempel kommune",
        "title": "student",
    }
    place = {"cn": f"Test {pid} ({username})", "ou": f"OU=NORDBY,{env.base}"}
    return Change(
        target="ad",
        op=op,
        kind="person",
        key=pid,
        reason="test",
        username=username,
        person_id=pid,
        attrs=attrs,
        place=place,
        **kw,
    )


def group_change(env: ADEnv, op: Op, key: str, **kw) -> Change:
    attrs = {"sAMAccountName": f"NORDBY-{key}", "description": key}
    place = {"cn": f"NORDBY-{key}", "ou": f"OU=Grupper,{env.base}"}
    return Change(target="ad", op=op, kind="group", key=key, reason="test", attrs=attrs, place=place, **kw)


def test_idempotent_create_delete_and_incremental_members(env: ADEnv) -> None:
    conn = connector(env)
    anchors: dict[tuple[str, str], str] = {}
    conn.begin("run1", lambda kind, key: anchors.get((kind, key)))
    try:
        a = conn.apply(person_change(env, Op.CREATE, "P1", "ptest1"))
        again = conn.apply(person_change(env, Op.CREATE, "P1", "ptest1"))  # finds its own object
        assert again.anchor == a.anchor and again.note and "already existed" in again.note
        assert len(env.by_employee_id("P1")) == 1
        anchors[("person", "P1")] = a.anchor
        b = conn.apply(person_change(env, Op.CREATE, "P2", "ptest2"))
        anchors[("person", "P2")] = b.anchor
        g = conn.apply(group_change(env, Op.CREATE, "g1"))
        assert conn.apply(group_change(env, Op.CREATE, "g1")).anchor == g.anchor
        anchors[("group", "g1")] = g.anchor
        add = group_change(env, Op.ADD_MEMBERS, "g1", members=(("P1", ""),))
        conn.apply(add)
        conn.apply(add)  # already a member: success
        conn.apply(
            group_change(env, Op.ADD_MEMBERS, "g1", members=(("P1", ""), ("P2", "")))
        )  # a batch with one present
        dn1, dn2 = (conn.link.read(f"<GUID={x}>", ["cn"])[0].lower() for x in (a.anchor, b.anchor))
        gm = {v.decode().lower() for v in env.admin.read(f"<GUID={g.anchor}>", ["member"])[1]["member"]}
        assert gm == {dn1, dn2}
        # A member an admin added by hand is kept: changes are incremental, never a rewrite.
        import ldap3

        env.admin.modify(f"<GUID={g.anchor}>", {"member": [(ldap3.MODIFY_ADD, [env.dc.admin_dn])]}, "hand")
        rem = group_change(env, Op.REMOVE_MEMBERS, "g1", members=(("P1", ""),))
        conn.apply(rem)
        conn.apply(rem)  # not a member any more: success
        gm = {v.decode().lower() for v in env.admin.read(f"<GUID={g.anchor}>", ["member"])[1]["member"]}
        assert gm == {dn2, env.dc.admin_dn.lower()}
        # A member without an anchor (its create failed) is not recorded as added.
        with pytest.raises(RejectedError, match="not in AD yet: P9"):
            conn.apply(group_change(env, Op.ADD_MEMBERS, "g1", members=(("P1", ""), ("P9", ""))))
        gm = {v.decode().lower() for v in env.admin.read(f"<GUID={g.anchor}>", ["member"])[1]["member"]}
        assert dn1 in gm
        # Deletes: the second finds nothing, which is success.
        d = conn.apply(person_change(env, Op.DELETE, "P1", "ptest1", anchor=a.anchor))
        assert d.note is None
        assert (
            conn.apply(person_change(env, Op.DELETE, "P1", "ptest1", anchor=a.anchor)).note == "already gone"
        )
        assert env.by_employee_id("P1") == []
        # Disable twice, enable; the disabled OU and back.
        p2 = person_change(env, Op.DISABLE, "P2", "ptest2", anchor=b.anchor)
        conn.apply(p2)
        assert conn.apply(p2).note == "already disabled"
        e = env.admin.read(f"<GUID={b.anchor}>", ["userAccountControl"])
        assert uac(e) & 2 and parent_dn(e[0]).lower() == f"OU=Deaktiverte,{env.base}".lower()
        conn.apply(person_change(env, Op.ENABLE, "P2", "ptest2", anchor=b.anchor))
        e = env.admin.read(f"<GUID={b.anchor}>", ["userAccountControl"])
        assert not uac(e) & 2 and parent_dn(e[0]).lower() == f"OU=NORDBY,{env.base}".lower()
        # An object outside base_dn is never deleted.
        with pytest.raises(RejectedError, match="outside base_dn"):
            conn.apply(person_change(env, Op.DELETE, "X", "x", anchor=admin_guid(env)))
    finally:
        conn.close()


def admin_guid(env: ADEnv) -> str:
    e = env.admin.read(env.dc.admin_dn, ["objectGUID"])
    return guid_text(e[1]["objectGUID"][0])


def test_adoption_by_employee_id_and_fallback_and_conflicts(env: ADEnv) -> None:
    planned = env.sync(DAY1, dry_run=True)
    names = {c.key: c.username for c in planned.plan.target("ad").changes if c.kind == "person"}
    old = f"OU=Gamle,{env.base}"
    env.admin.add(old, ("top", "organizationalUnit"), {})

    def precreate(cn: str, **attrs) -> str:
        dn = f"CN={cn},{old}"
        env.admin.add(
            dn, ("top", "person", "organizationalPerson", "user"), {"userAccountControl": 514, **attrs}
        )
        env.admin.set_password(dn, "Old-Passw0rd-123", "precreate")
        env.admin.modify(dn, {"userAccountControl": [(ldap3.MODIFY_REPLACE, [512])]}, "enable")
        return guid_text(env.admin.read(dn, ["objectGUID"])[1]["objectGUID"][0])

    s1 = precreate("s1 old", sAMAccountName=names["S1"], employeeID="S1", department="gammel")
    s2 = precreate("s2 old", sAMAccountName=names["S2"])  # no employeeID: adopted by sAMAccountName
    s3 = precreate("s3 old", sAMAccountName=names["S3"], employeeID="SOMEONE-ELSE")
    s4 = precreate("s4 old", sAMAccountName="ase.gammel", employeeID="S4")  # another login name
    out = env.sync(DAY1)
    assert out.exit_code == 1  # done, with rejected objects
    objs = env.objects()
    # Adopted, not duplicated: the same objects, moved into place, attributes set; passwords kept.
    assert objs["S1"]["anchor"] == s1 and objs["S2"]["anchor"] == s2
    for pid in ("S1", "S2"):
        e = env.user(pid, ("employeeID", "department", "userAccountControl"))
        assert text(e, "employeeID") == pid and text(e, "department") == "Nord skole"
        assert parent_dn(e[0]).lower() == f"OU=NORDBY,{env.base}".lower()
        assert can_bind(env.dc, e[0], "Old-Passw0rd-123")
        assert len(env.by_employee_id(pid)) == 1
    log = {(r["key"], r["op"]): r for r in changelog(env, out.run_id)}
    assert "adopted existing account (matched by sAMAccountName)" in log[("S2", "create")]["error"]
    # Conflicts are reported, not guessed: nothing created, the old accounts untouched.
    errors = "\n".join(out.results["ad"].errors)
    assert "SOMEONE-ELSE" in errors and "ase.gammel" in errors
    assert "S3" not in objs and "S4" not in objs
    assert text(env.admin.read(f"<GUID={s3}>", ["employeeID"]), "employeeID") == "SOMEONE-ELSE"
    assert parent_dn(env.admin.read(f"<GUID={s4}>", ["cn"])[0]).lower() == old.lower()
    assert env.by_employee_id("S3") == []  # no duplicate was created for S3


def test_bound_logins_are_adopted_on_the_first_run(env: ADEnv) -> None:
    """`bas usernames bind` before the first run: accounts whose login BAS would not issue are adopted."""
    old = f"OU=Gamle,{env.base}"
    env.admin.add(old, ("top", "organizationalUnit"), {})
    guids = {}
    for pid, login, extra in (("S4", "ase.gammel", {"employeeID": "S4"}), ("S5", "nils.gml", {})):
        dn = f"CN={login},{old}"
        env.admin.add(
            dn, ("top", "person", "organizationalPerson", "user"), {"sAMAccountName": login, **extra}
        )
        guids[pid] = guid_text(env.admin.read(dn, ["objectGUID"])[1]["objectGUID"][0])
    assert (
        env.store.identities.bind_usernames([("S4", "ase.gammel"), ("S5", "nils.gml")], note="AD export")[0]
        == 2
    )
    out = env.sync(DAY1)
    assert out.exit_code == 0, out.results["ad"].errors
    objs = env.objects()
    for pid, login in (("S4", "ase.gammel"), ("S5", "nils.gml")):
        assert objs[pid]["anchor"] == guids[pid] and objs[pid]["username"] == login
        e = env.user(pid, ("employeeID", "sAMAccountName"))
        assert text(e, "employeeID") == pid and text(e, "sAMAccountName") == login
        assert len(env.by_employee_id(pid)) == 1


def changelog(env: ADEnv, run_id: str) -> list[dict]:
    import sqlalchemy as sa

    from provisioner.state import schema as t

    with env.store.engine.connect() as c:
        rows = c.execute(sa.select(t.changelog).where(t.changelog.c.run_id == run_id))
        return [dict(r) for r in rows.mappings()]


def test_reconcile_reports_and_repairs_drift(env: ADEnv) -> None:
    from provisioner.run.reconcile import reconcile

    def drift(repair: bool = False) -> list:
        return reconcile(env.cfg, env.store, "ad", repair=repair).drift()

    assert env.sync(DAY1).exit_code == 0
    assert drift() == []
    s1 = env.user("S1", ("cn",))[0]
    env.admin.modify(s1, {"department": [(ldap3.MODIFY_REPLACE, ["Endret for hånd"])]}, "hand")
    env.admin.delete(env.user("S5", ("cn",))[0], "hand")
    t1 = env.user("T1", ("userAccountControl",))
    env.admin.modify(t1[0], {"userAccountControl": [(ldap3.MODIFY_REPLACE, [uac(t1) | 2])]}, "hand")
    g = f"<GUID={env.objects()['NORD-6A']['anchor']}>"
    env.admin.modify(g, {"member": [(ldap3.MODIFY_DELETE, [s1])]}, "hand")
    stray = f"CN=Ukjent Bruker,OU=NORDBY,{env.base}"
    env.admin.add(stray, ("top", "person", "organizationalPerson", "user"), {"sAMAccountName": "ukjent1"})
    s2 = env.user("S2", ("cn",))[0]
    env.admin.move(s2, "CN=Flyttet", f"OU=SORBY,{env.base}", "hand")

    found = drift()
    assert {(d.kind, d.key or d.where) for d in found} == {
        ("changed", "S1"),
        ("missing", "S5"),
        ("state", "T1"),
        ("members", "NORD-6A"),
        ("unmanaged", stray),
        ("moved", "S2"),
    }
    changed = next(d for d in found if d.kind == "changed")
    assert changed.attrs == {"department": {"expected": "Nord skole", "actual": "Endret for hånd"}}
    assert changed.detail == "person S1: drift: changed outside BAS (department)"
    members = next(d for d in found if d.kind == "members")
    assert members.attrs["member"]["expected_missing"] == ["S1"]
    assert next(d for d in found if d.kind == "state").detail == "person T1: drift: disabled outside BAS"

    repaired = drift(repair=True)
    assert {d.kind for d in repaired if d.repaired} == {"changed", "state", "members", "moved", "missing"}
    # The account deleted by hand was forgotten (the next sync creates it again): only the
    # unmanaged account is left, and it is never touched.
    assert {(d.kind, d.key or d.where) for d in drift()} == {("unmanaged", stray)}
    assert "S5" not in env.objects()
    assert env.admin.read(stray, ["cn"]) is not None
    assert text(env.user("S1", ("department",)), "department") == "Nord skole"
    assert not uac(env.user("T1", ("userAccountControl",))) & 2
    assert env.user("S1", ("cn",))[0].lower() in env.members("NORD-6A")


def test_reconcile_keeps_a_disabled_account_parked_and_disabled(env: ADEnv) -> None:
    from provisioner.run.reconcile import reconcile

    assert env.sync(DAY1).exit_code == 0
    env.sis.end_enrollments("S2", "2025-10-01")
    assert env.sync(DAY2).exit_code == 0
    disabled = f"OU=Deaktiverte,{env.base}".lower()
    # Disabled and parked by BAS: no drift (its recorded OU is where an enable puts it back).
    assert reconcile(env.cfg, env.store, "ad", repair=False).drift() == []
    s2 = env.user("S2", ("userAccountControl",))
    env.admin.modify(s2[0], {"userAccountControl": [(ldap3.MODIFY_REPLACE, [uac(s2) & ~2])]}, "hand")
    found = reconcile(env.cfg, env.store, "ad", repair=True).drift()
    assert [(d.kind, d.op, d.key, d.detail, d.repaired) for d in found] == [
        ("state", "disable", "S2", "person S2: drift: enabled outside BAS", True)
    ]
    e = env.user("S2", ("userAccountControl",))
    assert uac(e) & 2 and parent_dn(e[0]).lower() == disabled
    # Moved out of the disabled OU by hand (still disabled): put back where BAS parks it.
    env.admin.move(e[0], first_rdn(e[0]), f"OU=NORDBY,{env.base}", "hand")
    found = reconcile(env.cfg, env.store, "ad", repair=True).drift()
    assert [(d.kind, d.op, d.key) for d in found] == [("state", "disable", "S2")]
    assert parent_dn(env.user("S2", ("cn",))[0]).lower() == disabled
    assert reconcile(env.cfg, env.store, "ad", repair=False).drift() == []


def test_repair_forgets_a_hand_deleted_account_and_the_next_sync_recreates_it(env: ADEnv) -> None:
    from provisioner.run.reconcile import reconcile

    def reconcile_ad(cfg: Any, store: Any, name: str, *, repair: bool) -> tuple[str, list]:
        r = reconcile(cfg, store, name, repair=repair)
        return r.run_id, r.drift()

    assert env.sync(DAY1).exit_code == 0
    old_guid, user = env.objects()["S1"]["anchor"], env.objects()["S1"]["username"]
    env.admin.delete(env.user("S1", ("cn",))[0], "deleted by hand")
    run_id, drift = reconcile_ad(env.cfg, env.store, "ad", repair=True)
    assert [(d.kind, d.key, d.repaired) for d in drift] == [("missing", "S1", True)]
    assert drift[0].detail == (
        "person S1: drift: deleted outside BAS; forgotten, so the next sync creates it again"
    )
    assert "S1" not in env.objects()
    assert all("S1" not in {m[0] for m in o["members"] or ()} for o in env.objects().values())
    assert [(r["op"], r["key"]) for r in changelog(env, run_id)] == [("forget", "S1")]
    assert env.store.runs.get(run_id)["status"] == "done"
    out = env.sync(DAY2)
    assert out.exit_code == 0, out.results["ad"].errors
    ops = {(c.op.value, c.key) for c in out.plan.target("ad").changes}
    assert ("create", "S1") in ops and ("add_members", "NORD-6A") in ops
    e = env.user("S1", ("sAMAccountName",))
    assert text(e, "sAMAccountName") == user and env.objects()["S1"]["anchor"] != old_guid
    assert env.user("S1", ("cn",))[0].lower() in env.members("NORD-6A")
    assert reconcile_ad(env.cfg, env.store, "ad", repair=False)[1] == []


def test_an_account_deleted_by_hand_between_plan_and_apply(env: ADEnv) -> None:
    """The saved plan renames S1 and S2; S1 vanishes before apply: S1 is rejected, S2 goes on."""
    from provisioner.run import runner

    assert env.sync(DAY1).exit_code == 0
    env.sis.update_person("S1", family_name="Nordmann-Berg")
    env.sis.update_person("S2", family_name="Hansen-Lie")
    planned = env.sync(DAY2, dry_run=True).plan
    env.admin.delete(env.user("S1", ("cn",))[0], "deleted by hand")
    out = runner.apply_saved(env.cfg, env.store, planned)
    assert out.exit_code == runner.EXIT_ERRORS, out.message
    r = out.results["ad"]
    assert r.rejected >= 1 and all("S1" in e for e in r.errors)
    assert text(env.user("S2", ("sn",)), "sn") == "Hansen-Lie"
    rows = {(x["key"], x["result"]) for x in changelog(env, out.run_id) if x["target"] == "ad"}
    assert ("S1", "rejected") in rows and ("S2", "ok") in rows


def test_names_with_dn_and_filter_specials_and_emoji(env: ADEnv) -> None:
    odd_given = ' #Jean-Luc, "JL" <Æ>; =*()+ '
    odd_family = "O\\Brien 😀 "
    env.sis.student("P*(1)\\", "NORD", odd_given, odd_family)
    env.sis.group(
        "NORD-ODD",
        "NORD",
        "basis",
        " #6A, (spesial) *=+;<>\\ 😀 ",
        members=[("P*(1)\\", "student"), ("S1", "student")],
    )
    out = env.sync(DAY1)
    assert out.exit_code == 0, (out.results["ad"].errors, out.plan.errors)
    o = env.objects()["P*(1)\\"]
    e = env.user("P*(1)\\", ("givenName", "sn", "cn", "employeeID", "displayName"))
    assert text(e, "employeeID") == "P*(1)\\"
    assert text(e, "cn") == o["attrs"]["cn"] and "😀" in text(e, "cn")
    assert text(e, "givenName") == o["attrs"]["givenName"]
    assert e[0].lower() in env.members("NORD-ODD")
    assert len(env.by_employee_id("P*(1)\\")) == 1  # the filter value is escaped
    pws = read_passwords(env)
    assert can_bind(env.dc, e[0], pws[o["username"]])
    # Idempotent: nothing to do next time, and a create of the same person finds it.
    assert env.sync(DAY2).plan.target("ad").changes == ()
    conn = connector(env)
    conn.begin("again", lambda kind, key: None)
    try:
        from provisioner.core.plan import Change as C

        # The stored record holds attributes and placement together; the kind names the placement.
        placement = kind_of("ad").placement
        attrs = {k: v for k, v in o["attrs"].items() if k not in placement}
        place = {k: o["attrs"][k] for k in placement}
        again = conn.apply(
            C(target="ad", op=Op.CREATE, kind="person", key=o["key"], reason="t", attrs=attrs, place=place)
        )
        assert again.anchor == o["anchor"]
    finally:
        conn.close()


# -- connection, TLS and typed errors ---------------------------------------------------


def test_server_down_is_transient_and_nothing_is_lost(env: ADEnv) -> None:
    env.configure(url="ldaps://127.0.0.1:1")  # nothing listens there
    conn = connector(env, url="ldaps://127.0.0.1:1")
    with pytest.raises(TransientError):
        conn.begin("r", lambda k, key: None)
    out = env.sync(DAY1)
    assert out.results["ad"].status == "failed" and out.exit_code == EXIT_TARGET_FAILED
    assert env.objects() == {}  # nothing recorded as done
    env.configure()
    out = env.sync(DAY2)
    assert out.exit_code == 0, out.results["ad"].errors
    assert {k for k, o in env.objects().items() if o["kind"] == "person"} >= {"S1", "T1"}


def test_connection_lost_midway_is_transient_then_reconnects(env: ADEnv) -> None:
    conn = connector(env)
    conn.begin("r", lambda k, key: None)
    try:
        conn.link._conn.socket.close()  # the DC drops us
        with pytest.raises(TransientError):
            conn.apply(person_change(env, Op.CREATE, "P1", "ptest1"))
        a = conn.apply(person_change(env, Op.CREATE, "P1", "ptest1"))  # the executor's retry
        assert a.anchor and len(env.by_employee_id("P1")) == 1
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("settings", "match"),
    [
        ({"password_file": "wrong.pw"}, "invalidCredentials"),
        ({"ca_file": "/etc/ssl/certs/ca-certificates.crt"}, "TLS"),
        ({"tls_server_name": "not-the-dc.example"}, "TLS"),
        ({"base_dn": "OU=Finnes-ikke,DC=bas,DC=test"}, "does not exist"),
    ],
)
def test_fatal_errors(env: ADEnv, settings: dict, match: str) -> None:
    (env.tmp / "wrong.pw").write_text("not-the-password\n", encoding="utf-8")
    if settings.get("password_file"):
        settings = {**settings, "password_file": str(env.tmp / settings["password_file"])}
    conn = connector(env, **settings)
    try:
        with pytest.raises(FatalError, match=match):
            conn.begin("r", lambda k, key: None)
    finally:
        conn.close()


def test_starttls_works_and_plain_ldap_is_refused(env: ADEnv) -> None:
    from connectors.ldap.link import LdapLink
    from provisioner.config import ConfigError

    conn = connector(env, url="ldap://127.0.0.1:389", start_tls=True)
    conn.begin("r", lambda k, key: None)
    try:
        assert conn.link.encrypted
        a = conn.apply(person_change(env, Op.CREATE, "P1", "ptest1"))
        assert a.anchor
    finally:
        conn.close()
    with pytest.raises(ConfigError, match="start_tls"):
        env.configure(url="ldap://127.0.0.1:389")
    plain = LdapLink("ldap://127.0.0.1:389", bind_dn="x", password="y", ca_file=str(env.dc.ca_file))
    with pytest.raises(FatalError, match="refusing"):
        plain.open()
    # Even an open link that is somehow not encrypted never sends a password (the fake has
    # no modify(): sending would fail differently).
    from types import SimpleNamespace

    plain._conn = SimpleNamespace(server=SimpleNamespace(ssl=False), tls_started=False)
    with pytest.raises(FatalError, match="without TLS"):
        plain.set_password("CN=x", "Secret-123456789", "t")
    plain._conn = None


def test_range_retrieval_reads_every_member(env: ADEnv) -> None:
    """Samba honours the range a client asks for, so a small step exercises the same loop as 1500."""
    dn = f"CN=stor,{env.base}"
    env.admin.add(dn, ("top", "group"), {"sAMAccountName": f"stor-{env.base[3:11]}"})
    users = []
    for i in range(7):
        u = f"CN=m{i},{env.base}"
        env.admin.add(
            u, ("top", "person", "organizationalPerson", "user"), {"sAMAccountName": f"m{i}-{env.base[3:11]}"}
        )
        users.append(u.lower())
    env.admin.modify(dn, {"member": [(ldap3.MODIFY_ADD, users)]}, "t")
    for step in (1, 2, 3, 7, 1500):
        got = [v.decode().lower() for v in env.admin.read_values(dn, "member", step)]
        assert sorted(got) == sorted(users), step
    assert env.admin.read_values(f"CN=m0,{env.base}", "member", 2) == []


def test_cli_sync_and_reconcile_end_to_end(env: ADEnv) -> None:
    import json

    from tests.test_cli import bas

    env.sis.write(env.src)
    cfg_path = env.tmp / "bas.toml"
    p = bas("sync", "--as-of", DAY1, config=cfg_path)
    assert "ad" in p.stdout
    persons = {k for k, o in env.objects().items() if o["kind"] == "person"}
    assert persons == {"S1", "S2", "S3", "S4", "S5", "S6", "T1", "T2", "A1"}
    assert env.user("S1", ("cn",)) is not None
    p = bas("ad", "reconcile", config=cfg_path)
    assert "0 difference(s)" in p.stdout
    s1 = env.user("S1", ("cn",))[0]
    env.admin.modify(s1, {"title": [(ldap3.MODIFY_REPLACE, ["rektor"])]}, "hand")
    p = bas("ad", "reconcile", "--json", config=cfg_path, check=1)
    drift = json.loads(p.stdout)
    assert [(d["kind"], d["key"], d["attrs"]) for d in drift] == [
        ("changed", "S1", {"title": {"expected": "student", "actual": "rektor"}})
    ]
    p = bas("ad", "reconcile", config=cfg_path, check=1)
    assert "changed    person S1: drift: changed outside BAS (title)" in p.stdout
    bas("ad", "reconcile", "--repair", config=cfg_path)
    assert text(env.user("S1", ("title",)), "title") == "student"
    run_id = env.store.runs.newest(1)[0]["run_id"]
    assert [(r["op"], r["key"], r["reason"], r["result"]) for r in changelog(env, run_id)] == [
        ("update", "S1", "drift: changed outside BAS (title)", "ok")
    ]
    assert "0 difference(s)" in bas("ad", "reconcile", config=cfg_path).stdout
    p = bas("sync", "--as-of", DAY2, config=cfg_path)
    assert env.objects()["S1"]["anchor"]
    assert all(stat.S_IMODE(f.stat().st_mode) == 0o600 for f in env.password_dir.glob("*.csv"))
