"""The state store on SQLite and PostgreSQL: full sync and no-op rerun, run lock, reserved names."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.base import Applied, Connector
from demo.data import DEMO, generate
from provisioner.apply.executor import apply_plan
from provisioner.config import UsernameConfig
from provisioner.core.derive import derive
from provisioner.core.diff import compared, diff_target
from provisioner.core.lifecycle import Policy
from provisioner.core.model import TargetObject
from provisioner.core.plan import CORE, Change, Op, Plan, TargetPlan
from provisioner.core.states import ObjectStatus
from provisioner.run import runner
from provisioner.state import schema as t
from provisioner.state import writer
from provisioner.state.common import now_iso
from provisioner.state.runs import LockHeld
from provisioner.state.store import StateStore
from tests.sisbuilder import Sis, desired_student, make_config

AS_OF = "2025-10-01"


# -- a full sync of the demo, then nothing to do --------------------------------------------------------


def test_full_sync_then_second_sync_plans_nothing(db_url: str, tmp_path: Path) -> None:
    # On PostgreSQL the source and the state store share the fresh database (their tables differ).
    src = db_url if db_url.startswith("postgresql") else f"sqlite:///{tmp_path / 'sis.db'}"
    rows = generate(src, DEMO, seed=2, as_of=dt.date.fromisoformat(AS_OF))
    cfg = make_config(tmp_path, src, db_url)
    store = StateStore(cfg.state.url)
    try:
        first = runner.sync(cfg, store, as_of=AS_OF)
        assert (first.exit_code, first.status) == (runner.EXIT_OK, "done"), first.message
        plan = first.plan
        assert plan is not None and plan.errors == ()
        summary = plan.summary()
        n_core = summary[CORE]["create"]
        assert n_core == plan.active_persons and 0 < n_core <= rows["person"]
        assert first.results["itslearning"].ok == len(plan.target("itslearning").changes)
        assert first.results["feide"].ok == len(plan.target("feide").changes)
        assert first.results["ad"].status == first.results["m365"].status == "planned"

        second = runner.sync(cfg, store, as_of=AS_OF)
        assert second.exit_code == runner.EXIT_OK, second.message
        for target in (CORE, "itslearning", "feide"):
            assert second.plan.target(target).changes == (), target
        assert second.results["itslearning"].status == "unchanged"
        assert second.results[CORE].status == "unchanged"
        # Plan-only targets are never recorded as applied.
        assert list(store.objects.iterate("ad")) == [] and "ad" not in store.versions.current()

        ident = store.identities.view()
        assert len(ident.username_by_person) == n_core
        assert len(set(ident.username_by_person.values())) == n_core
        assert ident.taken >= set(ident.username_by_person.values())
        runs = store.runs.newest()
        assert [r["status"] for r in runs] == ["done", "done"]
        assert store.runs.gate_baseline().active_persons == plan.active_persons
    finally:
        store.close()


def test_reads_by_key_take_more_keys_than_one_statement_binds(store: StateStore) -> None:
    """A wide patch reads the stored rows of tens of thousands of keys (1 % churn at Oslo
    size: ~26,000 objects a target): more in one IN list than a statement binds. 66,000
    keys (half of them stored) are more than PostgreSQL binds (65,535) and than SQLite
    does as it is built by default (32,766; Debian's binds 250,000, so it is set here)."""
    import sqlite3

    from provisioner.state.common import bulk_insert

    if store.engine.dialect.name == "sqlite":

        @sa.event.listens_for(store.engine, "connect")
        def _default_limit(dbapi_conn, _record) -> None:  # noqa: ANN001
            dbapi_conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 32_766)

        store.engine.dispose()
    n = 33_000
    rows = [
        {
            "target": "t",
            "key": f"k{i:05d}",
            "kind": "person",
            "anchor": f"a{i}",
            "status": "active",
            "status_since": None,
            "person_id": f"p{i}",
            "username": f"u{i}",
            "digest": f"d{i}",
            "attrs": json.dumps({"n": i}),
            "members": None,
            "updated_at": "2026-12-05T00:00:00.000000+00:00",
        }
        for i in range(n)
    ]
    with store.engine.begin() as conn:
        bulk_insert(conn, t.objects, rows)
    wanted = [r["key"] for r in rows] + [f"missing{i}" for i in range(n)]
    index = store.objects.index("t", wanted)
    assert len(index) == n and index["k32999"].anchor == "a32999" and index["k00000"].digest == "d0"
    details = store.objects.details("t", wanted)
    assert len(details) == n and details["k32999"] == ({"n": 32999}, None)


def test_store_reads_back_what_apply_wrote(store: StateStore, tmp_path: Path) -> None:
    src = f"sqlite:///{tmp_path / 'sis.db'}"
    sis = Sis().school("NORD", "974000001")
    for i in range(520):  # more than one chunk of keys
        sis.student(f"S{i:03d}", "NORD", "Ola", "Nordmann")
    sis.group("G1", "NORD", "basis", "1A", members=[("S000", "student"), ("S001", "student")])
    sis.write(src)
    cfg = make_config(tmp_path, src, store.url, targets=("itslearning",))
    out = runner.sync(cfg, store, as_of=AS_OF)
    assert out.exit_code == 0, out.message
    index = store.objects.index("itslearning")
    assert sum(1 for r in index.values() if r.kind == "person") == 520
    # Asked for by key: more keys than one statement takes (a wide patch asks for thousands).
    wanted = [f"S{i:03d}" for i in range(510)] + ["G1", "no-such-key"]
    assert store.objects.index("itslearning", wanted) == {k: index[k] for k in wanted if k in index}
    details = store.objects.details("itslearning", sorted(index))
    assert set(details) == set(index)
    attrs, members = details["S000"]
    assert attrs["userid"] == "olanor" and members is None
    _, school_members = details["school:NORD:students"]
    assert len(school_members) == 520 and all(isinstance(m, tuple) for m in school_members)
    # A member listed by several groups is read as one tuple (a pupil is in five or six).
    listed = [m for _, ms in details.values() if ms for m in ms if m[0] == "S000"]
    assert len(listed) >= 2 and all(m is listed[0] for m in listed)
    # The index shares repeated text (kinds, days) and holds the values stored.
    kinds = [r.kind for r in index.values() if r.kind == "person"]
    assert all(k is kinds[0] for k in kinds)
    assert {r.status for r in index.values()} == {ObjectStatus.ACTIVE}
    usernames = {store.identities.all()[f"S{i:03d}"].username for i in range(520)}
    assert len(usernames) == 520 and all(len(u) <= 20 for u in usernames)
    assert store.versions.current() == {CORE: 1, "itslearning": 1}


# -- the run lock ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["mysql+pymysql://root@127.0.0.1:3306/test", "mssql+pyodbc://bas@sql/bas"])
def test_a_store_on_another_database_is_refused_before_it_connects(url: str) -> None:
    # The config names the key ([state] url); a store opened by hand is stopped as well,
    # before a table is made whose TEXT would cut a big group's members at 64 kB.
    with pytest.raises(ValueError, match="the state store runs on SQLite or PostgreSQL, not"):
        StateStore(url)


def test_second_lock_is_refused_and_released_after(store: StateStore) -> None:
    with store.runs.lock("run-a"), pytest.raises(LockHeld, match=r"run run-a holds the lock"):
        _acquire(store, "run-b")
    _acquire(store, "run-b")  # free again


def _acquire(store: StateStore, holder: str) -> None:
    with store.runs.lock(holder):
        pass


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _plant_lock(store: StateStore, host: str, pid: int) -> None:
    with store.engine.begin() as c:
        c.execute(
            t.locks.insert().values(name="run", holder="crashed", host=host, pid=pid, acquired_at=now_iso())
        )


def test_stale_lock_of_a_dead_process_on_this_host_is_taken_over(store: StateStore) -> None:
    _plant_lock(store, socket.gethostname(), _dead_pid())
    with store.runs.lock("run-new"):
        with store.engine.connect() as c:
            row = c.execute(sa.select(t.locks)).mappings().one()
        assert row["holder"] == "run-new" and row["pid"] == os.getpid()
    with store.engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(t.locks)).scalar() == 0


def test_lock_of_a_live_process_or_another_host_is_respected(store: StateStore) -> None:
    _plant_lock(store, socket.gethostname(), os.getppid())  # alive
    with pytest.raises(LockHeld), store.runs.lock("x"):
        pass
    with store.engine.begin() as c:
        c.execute(t.locks.update().values(host="some-other-host", pid=_dead_pid()))  # cannot be checked
    if store.engine.dialect.name == "postgresql":
        # The advisory lock is free, so the other host's holder is gone: its row is taken over.
        _acquire(store, "x")
        return
    with pytest.raises(LockHeld, match="some-other-host"), store.runs.lock("x"):
        pass


def test_sync_reports_locked(store: StateStore, tmp_path: Path) -> None:
    src = f"sqlite:///{tmp_path / 'sis.db'}"
    Sis().school("NORD", "974000001").student("S1", "NORD").write(src)
    cfg = make_config(tmp_path, src, store.url)
    with store.runs.lock("other"):
        out = runner.sync(cfg, store, as_of=AS_OF)
    assert (out.exit_code, out.status) == (runner.EXIT_LOCKED, "locked")
    assert store.identities.all() == {}


# -- reserved usernames ------------------------------------------------------------------------------------


def test_reserve_usernames(store: StateStore) -> None:
    assert store.identities.reserve_usernames(["olanor", "karhan", "olanor"], "in AD before BAS") == (2, 0)
    assert store.identities.reserve_usernames(["olanor", "perols"], "again") == (1, 1)
    rec = store.identities.username_record("OLANOR")
    assert rec is not None and rec["origin"] == "reserved" and rec["person_id"] is None
    assert rec["note"] == "in AD before BAS"
    ident = store.identities.view()
    assert ident.taken == {"olanor", "karhan", "perols"} and ident.username_by_person == {}
    # Derivation skips reserved names.
    snap = Sis().school("NORD", "974000001").student("S1", "NORD", "Ola", "Nordmann").snapshot()
    d = derive(snap, AS_OF, ident, UsernameConfig())
    assert d.state.persons["S1"].username == "olanor1"


def test_taken_usernames_asked_one_at_a_time_are_the_set_a_full_view_holds(store: StateStore) -> None:
    """A patch asks the store whether a candidate is taken instead of loading every username:
    the same answers as ``view().taken``, compared exactly (not by the database's collation)."""
    store.identities.reserve_usernames(["olanor", "karhan", "øyvind"], "in AD before BAS")
    lookup = store.identities.taken_lookup()
    names = [
        "olanor",
        "OLANOR",
        "Olanor",
        "karhan",
        "karhan ",
        "oyvind",
        "øyvind",
        "perols",
        "",
        "%",
        "olan_r",
    ]
    assert [n in lookup for n in names] == [n in store.identities.view().taken for n in names]
    assert [n in lookup for n in names] == [
        True,
        False,
        False,
        True,
        False,
        False,
        True,
        False,
        False,
        False,
        False,
    ]
    assert None not in lookup and 7 not in lookup
    store.identities.reserve_usernames(["perols"], "later")
    assert "perols" in store.identities.taken_lookup()


def test_reserved_name_is_never_issued_through_a_sync(store: StateStore, tmp_path: Path) -> None:
    src = f"sqlite:///{tmp_path / 'sis.db'}"
    Sis().school("NORD", "974000001").student("S1", "NORD", "Ola", "Nordmann").write(src)
    store.identities.reserve_usernames(["olanor"], "test")
    out = runner.sync(cfg := make_config(tmp_path, src, store.url), store, as_of=AS_OF)
    assert out.exit_code == 0, out.message
    assert store.identities.all()["S1"].username == "olanor1"
    assert store.identities.username_record("olanor")["origin"] == "reserved"
    assert store.identities.username_record("olanor1")["person_id"] == "S1"
    assert runner.sync(cfg, store, as_of=AS_OF).plan.target(CORE).changes == ()


def test_run_records(store: StateStore) -> None:
    store.runs.start("r1", "sync", AS_OF)
    store.runs.finish("r1", "done", summary={"plan": {"core": {"create": 1}}}, active_persons=5)
    run = store.runs.get("r1")
    assert run["status"] == "done" and run["active_persons"] == 5 and run["finished_at"]
    assert json.loads(run["summary"]) == {"plan": {"core": {"create": 1}}}
    assert store.runs.get("nope") is None
    assert [r["run_id"] for r in store.runs.newest()] == ["r1"] and "plan" not in store.runs.newest()[0]


# -- lifecycle status in the store, through the differ and the executor -----------------------------------


class FakeConnector(Connector):
    """Accepts every change; new objects get an anchor of their own."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.applied: list[tuple[str, str]] = []

    def begin(self, run_id: str, resolve) -> None:  # noqa: ANN001
        self.resolve = resolve

    def apply(self, change):  # noqa: ANN001, ANN201
        self.applied.append((change.op.value, change.key))
        if change.op == Op.CREATE:
            return Applied(anchor=f"guid-{change.key}-{uuid.uuid4().hex[:8]}")
        return Applied(anchor=change.anchor or self.resolve(change.kind, change.key))

    def finish(self, current) -> None:  # noqa: ANN001
        self.current = list(current)

    def close(self) -> None:
        pass


def _lifecycle_run(
    store: StateStore, target: str, policy: Policy, present: bool, as_of: str
) -> list[tuple[str, str]]:
    person = desired_student("S1")
    objs = [TargetObject("person", "S1", {"upn": "s1@x"}, username="us1", person_id="S1")] if present else []
    index = store.objects.index(target)
    got = compared(objs, index)
    changes = diff_target(
        target,
        got.desired,
        got.digests,
        index,
        store.objects.details(target, got.stored),
        unchanged=got.unchanged,
        policy=policy,
        placement=frozenset(),
        persons={"S1": person} if present else {},
        identities={},
        frozen=frozenset(),
        school_names={},
        as_of=as_of,
    )
    plan = Plan(
        f"r-{as_of}", now_iso(), as_of, store.versions.current(), (TargetPlan(target, tuple(changes)),)
    )
    conn = FakeConnector(target)
    res = apply_plan(plan, store, {target: conn}, soft_delete={target: policy.soft_delete})
    assert res[target].failed == res[target].rejected == 0
    return conn.applied


def _status(store: StateStore, target: str) -> tuple[str, str | None, str | None] | None:
    row = store.objects.index(target).get("S1")
    return None if row is None else (row.status, row.status_since, row.anchor)


def test_m365_soft_delete_restore_and_recreate_in_the_store(store: StateStore) -> None:
    m365 = Policy(disable_first=True, delete_after_days=0, soft_delete=True, restore_within_days=30)
    assert _lifecycle_run(store, "m365", m365, True, "2025-09-01") == [("create", "S1")]
    anchor = _status(store, "m365")[2]
    assert _lifecycle_run(store, "m365", m365, False, "2025-09-10") == [("disable", "S1"), ("delete", "S1")]
    assert _status(store, "m365") == ("deleted", "2025-09-10", anchor)
    assert _lifecycle_run(store, "m365", m365, False, "2025-09-11") == []
    assert _lifecycle_run(store, "m365", m365, True, "2025-10-09") == [("restore", "S1"), ("enable", "S1")]
    assert _status(store, "m365") == ("active", "2025-10-09", anchor)
    assert _lifecycle_run(store, "m365", m365, True, "2025-10-10") == []
    _lifecycle_run(store, "m365", m365, False, "2025-10-11")
    assert _lifecycle_run(store, "m365", m365, True, "2025-11-10") == [("create", "S1")]  # 30 days: purged
    status = _status(store, "m365")
    assert status[0] == "active" and status[2] != anchor


def test_ad_disable_then_delete_after_90_days_in_the_store(store: StateStore) -> None:
    ad = Policy(disable_first=True, delete_after_days=90)
    _lifecycle_run(store, "ad", ad, True, "2025-09-01")
    assert _lifecycle_run(store, "ad", ad, False, "2025-09-10") == [("disable", "S1")]
    assert _status(store, "ad")[:2] == ("disabled", "2025-09-10")
    assert _lifecycle_run(store, "ad", ad, True, "2025-10-01") == [("enable", "S1")]
    assert _lifecycle_run(store, "ad", ad, False, "2025-10-02") == [("disable", "S1")]
    assert _lifecycle_run(store, "ad", ad, False, "2025-12-30") == []  # 89 days
    assert _lifecycle_run(store, "ad", ad, False, "2025-12-31") == [("delete", "S1")]
    assert _status(store, "ad") is None


def test_many_creates_replace_a_deleted_row_and_insert_the_new_ones(tmp_path: Path) -> None:
    """A first-run-sized batch inserts new keys without a delete, yet replaces a stored (deleted) one."""
    from provisioner.core.plan import Change, Op
    from provisioner.state.writer import TargetWriter

    store = StateStore(f"sqlite:///{tmp_path / 'state.sqlite'}")

    def create(key: str, name: str) -> Change:
        return Change("t", Op.CREATE, "person", key, "test", person_id=key, attrs={"name": name})

    def run(changes: list[Change]) -> None:
        w = TargetWriter(store, "t", "r", "2025-01-01", soft_delete=True)
        w.preload(changes)
        for c in changes:
            w.ok(c, f"anchor-{c.key}-{c.attrs.get('name', '')}", None)
        w.finish()

    run([create("p0", "old")])
    run([Change("t", Op.DELETE, "person", "p0", "left", anchor="anchor-p0-old", person_id="p0")])
    assert [o["status"] for o in store.objects.iterate("t")] == ["deleted"]
    run([create(f"p{i}", "new") for i in range(60)])
    objs = {o["key"]: o for o in store.objects.iterate("t")}
    assert len(objs) == 60
    assert objs["p0"]["status"] == "active" and objs["p0"]["attrs"] == {"name": "new"}
    store.close()


@pytest.mark.parametrize("creates", [3, writer._READ_ALL + 1], ids=["a few", "more than one query each"])
def test_apply_core_adds_to_the_historic_base_only_what_it_lacks(store: StateStore, creates: int) -> None:
    """Usernames and NINs the base holds already are not inserted again (a first run
    issues ~250,000 at once: then the base is read in one go, not 500 at a time)."""
    with store.engine.begin() as conn:
        conn.execute(
            t.usernames.insert().values(
                username="u00001", person_id=None, nin=None, origin="reserved", created_at=now_iso()
            )
        )
    changes = [
        Change(
            target=CORE,
            op=Op.CREATE,
            kind="person",
            key=f"P{i:06d}",
            person_id=f"P{i:06d}",
            reason="active in SIS",
            attrs={"username": f"u{i:05d}", "display_name": f"Person {i}"},
        )
        for i in range(creates)
    ]
    assert writer.apply_core(store, changes, "run-1", "2026-12-01") == creates
    with store.engine.connect() as conn:
        rows = dict(conn.execute(sa.select(t.usernames.c.username, t.usernames.c.person_id)).all())
        idents = conn.execute(sa.select(sa.func.count()).select_from(t.identities)).scalar()
    assert len(rows) == creates
    assert rows["u00001"] is None  # still the reservation, not issued a second time
    assert rows["u00000"] == "P000000" and rows[f"u{creates - 1:05d}"] == f"P{creates - 1:06d}"
    assert idents == creates


def test_live_persons_are_those_an_enabled_target_holds_not_deleted(store: StateStore) -> None:
    """Whom a purge waits for (provisioner.core.diff): an object not deleted, in a target enabled now."""
    row = {"kind": "person", "digest": "d", "attrs": "{}", "updated_at": "t"}
    with store.engine.begin() as c:
        c.execute(
            t.objects.insert(),
            [
                {**row, "target": "m365", "key": "a", "person_id": "A", "status": "deleted"},  # soft-deleted
                {**row, "target": "ad", "key": "b", "person_id": "B", "status": "disabled"},
                {**row, "target": "gone", "key": "c", "person_id": "C", "status": "active"},  # not enabled
                {**row, "target": "m365", "key": "d", "person_id": "D", "status": "active"},
                {**row, "target": "ad", "key": "d", "person_id": "D", "status": "deleted"},
            ],
        )
    assert store.objects.live(["A", "B", "C", "D", "E"], ["m365", "ad"]) == {"B", "D"}
    assert store.objects.live([], ["m365"]) == set()
