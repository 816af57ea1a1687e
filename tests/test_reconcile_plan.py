"""Reconcile through the plan: drift reasons (pure), and against a real OpenLDAP server the CLI's
report, the repair through the executor with changelog rows, a held repair approved, and the
daemon's nightly drift repair with its gauge (tests/slapd_server.py)."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa
from ldap3 import MODIFY_REPLACE

from provisioner.core.drift import (
    ENABLED,
    FORGOTTEN,
    RESTORED,
    DriftKind,
    LiveView,
    Note,
    Recorded,
    diff_drift,
    drift_kind,
)
from provisioner.core.lifecycle import Policy
from provisioner.core.plan import Op
from provisioner.run import runner
from provisioner.state import schema as t
from provisioner.state.nins import nin_seal
from tests.sisbuilder import nin_pair, small_sis
from tests.test_cli import bas
from tests.test_feide_ldap import LiveEnv, ok

AD_LIKE = Policy(disable_first=True, delete_after_days=90)
SOFT = Policy(disable_first=True, delete_after_days=0, soft_delete=True, restore_within_days=30)
DAY = "2025-10-05"


def _rec(key: str, status: str = "active", kind: str = "person", **attrs: object) -> Recorded:
    members = (("p1", ""), ("p2", "")) if kind == "group" else None
    return Recorded(kind, key, f"id-{key}", status, attrs, members, key if kind == "person" else None)


def _drift(recorded: list[Recorded], live: LiveView, policy: Policy = AD_LIKE) -> list[tuple[str, str, str]]:
    changes = diff_drift("t", recorded, live, policy=policy, placement=frozenset({"ou"}), as_of=DAY)
    assert all(c.target == "t" for c in changes)
    return [(c.op.value, c.key, c.reason) for c in changes]


def test_every_kind_of_drift_is_a_change_with_its_reason() -> None:
    recs = [
        _rec("p1", title="student", ou="OU=A"),
        _rec("p2", title="student", ou="OU=A"),
        _rec("p3", title="student"),
        _rec("p4", "disabled", title="student"),
        _rec("p5", title="student"),
        _rec("g1", kind="group", name="G"),
        _rec("p6", "deleted"),
    ]
    live = LiveView()
    live.found(recs[0], "active", {"title": "rektor", "ou": "OU=A"})
    live.found(recs[1], "disabled", {"title": "student", "ou": "OU=B"})
    live.found(recs[2], "active", {"title": "student"})
    live.found(recs[3], "active", {"title": "student"})
    live.found(recs[5], "active", {"name": "G"}, [("p1", ""), ("p9", "")])
    live.gone.add("p5")
    got = _drift(recs, live)
    assert got == [
        ("update", "p1", "drift: changed outside BAS (title)"),
        ("enable", "p2", "drift: disabled outside BAS"),
        ("move", "p2", "drift: moved outside BAS (ou)"),
        ("add_members", "g1", "drift: members removed outside BAS"),
        ("remove_members", "g1", "drift: members added outside BAS"),
        ("disable", "p4", ENABLED),
        ("forget", "p5", FORGOTTEN),
    ]


def test_a_member_deleted_by_hand_is_forgotten_once_not_added_back_in_every_group() -> None:
    recs = [_rec("p1"), _rec("p2"), _rec("g1", kind="group")]
    live = LiveView()
    live.found(recs[0], "active", {})
    live.found(recs[2], "active", {}, [("p1", "")])
    live.gone.add("p2")
    assert _drift(recs, live) == [("forget", "p2", FORGOTTEN)]


def test_soft_deleted_is_restored_unread_is_taken_as_recorded_and_outside_is_only_a_note() -> None:
    recs = [_rec("p1", title="x"), _rec("p2", title="x"), _rec("p3", title="x")]
    live = LiveView(unread={"p2"})
    live.found(recs[0], "deleted", {"title": "x"})
    live.notes.append(Note(DriftKind.MISSING, "person", "p3", "CN=p3,OU=Elsewhere", "outside base_dn"))
    changes = diff_drift("t", recs, live, policy=SOFT, placement=frozenset(), as_of=DAY)
    assert [(c.op, c.key, c.reason) for c in changes] == [
        (Op.RESTORE, "p1", RESTORED),
        (Op.ENABLE, "p1", RESTORED),
    ]
    assert {drift_kind(c) for c in changes} == {DriftKind.MISSING}
    assert changes[0].attrs == {"title": "x"}  # a purged user can be created again from them


def _changelog(env: LiveEnv, run_id: str) -> list[dict]:
    with env.store.engine.connect() as c:
        rows = c.execute(sa.select(t.changelog).where(t.changelog.c.run_id == run_id))
        return [dict(r) for r in rows.mappings()]


def _persons(env: LiveEnv) -> list[dict]:
    return sorted((o for o in env.stored().values() if o["kind"] == "person"), key=lambda o: o["key"])


def test_cli_drift_reported_repaired_with_changelog_rows_then_clean(tmp_path: Path, slapd) -> None:
    env = LiveEnv(tmp_path, slapd, small_sis())
    ok(env.sync())
    config = tmp_path / "bas.toml"
    persons = _persons(env)
    edited = next(p for p in persons if p["attrs"].get("norEduPersonNIN"))
    deleted = next(p for p in reversed(persons) if p["key"] != edited["key"])
    nin = env.sis.get_person(edited["key"]).nin  # the store holds it sealed, the directory whole
    assert nin and edited["attrs"]["norEduPersonNIN"] == nin_seal(env.store)(nin)
    other = nin_pair("2011-01-01")[1]
    conn = slapd.connect()
    assert conn.modify(edited["attrs"]["dn"], {"displayName": [(MODIFY_REPLACE, ["Rektor"])]})
    assert conn.modify(edited["attrs"]["dn"], {"norEduPersonNIN": [(MODIFY_REPLACE, [other])]})
    assert conn.delete(deleted["attrs"]["dn"])
    conn.unbind()

    p = bas("feide", "reconcile", config=config, check=runner.EXIT_ERRORS)
    assert f"person {edited['key']}: drift: changed outside BAS (displayName, norEduPersonNIN)" in p.stdout
    assert f"person {deleted['key']}: {FORGOTTEN}" in p.stdout
    assert nin not in p.stdout and other not in p.stdout  # NINs are masked in the report

    p = bas("feide", "reconcile", "--repair", "--json", config=config)
    items = json.loads(p.stdout)
    assert {(d["kind"], d["op"], d["key"], d["repaired"]) for d in items} == {
        ("changed", "update", edited["key"], True),
        ("missing", "forget", deleted["key"], True),
    }
    run_id = env.store.runs.newest(1)[0]["run_id"]
    rows = {(r["op"], r["key"]): r for r in _changelog(env, run_id)}
    assert set(rows) == {("update", edited["key"]), ("forget", deleted["key"])}
    changed = "drift: changed outside BAS (displayName, norEduPersonNIN)"
    assert rows[("update", edited["key"])]["reason"] == changed
    assert rows[("forget", deleted["key"])]["reason"] == FORGOTTEN
    assert all(r["result"] == "ok" for r in rows.values())
    logged = json.dumps(list(rows.values()), default=str)
    assert nin not in logged and other not in logged and "Rektor" in logged
    assert env.store.runs.get(run_id)["status"] == "done"
    entry = slapd.connect()
    assert entry.search(
        edited["attrs"]["dn"], "(objectClass=*)", "BASE", attributes=["displayName", "norEduPersonNIN"]
    )
    got = entry.entries[0]
    assert got.displayName.value == edited["attrs"]["displayName"] and got.norEduPersonNIN.value == nin
    entry.unbind()

    p = bas("feide", "reconcile", config=config)
    assert "0 difference(s)" in p.stdout
    ok(env.sync("2025-10-02"))  # the forgotten entry is created again
    assert deleted["key"] in env.stored()
    assert "0 difference(s)" in bas("feide", "reconcile", config=config).stdout


def test_a_repair_over_the_limits_is_held_and_approve_applies_it(tmp_path: Path, slapd) -> None:
    env = LiveEnv(tmp_path, slapd, small_sis(), max_deletes=1)
    ok(env.sync())
    config = tmp_path / "bas.toml"
    gone = _persons(env)[:2]
    conn = slapd.connect()
    for person in gone:
        assert conn.delete(person["attrs"]["dn"])
    conn.unbind()

    p = bas("feide", "reconcile", "--repair", config=config, check=runner.EXIT_HELD)
    run_id = env.store.runs.newest(1)[0]["run_id"]
    assert env.store.runs.get(run_id)["status"] == "held"
    assert f"bas approve {run_id}" in p.stderr and "the limit is 1" in p.stderr
    assert all(person["key"] in env.stored() for person in gone)  # nothing repaired
    assert not _changelog(env, run_id)

    p = bas("approve", run_id, config=config)
    assert all(person["key"] not in env.stored() for person in gone)
    assert {(r["op"], r["key"]) for r in _changelog(env, run_id)} == {("forget", x["key"]) for x in gone}
    assert "0 difference(s)" in bas("feide", "reconcile", config=config).stdout


def test_the_daemons_full_run_repairs_drift_and_sets_the_gauge(tmp_path: Path, slapd) -> None:
    from provisioner.service.daemon import Daemon

    env = LiveEnv(tmp_path, slapd, small_sis())
    ok(env.sync())
    person = _persons(env)[0]
    conn = slapd.connect()
    assert conn.modify(person["attrs"]["dn"], {"displayName": [(MODIFY_REPLACE, ["Rektor"])]})
    conn.unbind()
    d = Daemon(str(tmp_path / "bas.toml"))
    d.store = env.store
    d._job(True)
    runs = env.store.runs.newest(2)
    assert [r["kind"] for r in runs] == ["reconcile", "sync"]
    assert runs[0]["status"] == "done"
    assert d.metrics.registry.get_sample_value("bas_drift_objects", {"target": "feide"}) == 1
    reasons = [r["reason"] for r in _changelog(env, runs[0]["run_id"])]
    assert reasons == ["drift: changed outside BAS (displayName)"]
    d._job(True)
    assert d.metrics.registry.get_sample_value("bas_drift_objects", {"target": "feide"}) == 0
