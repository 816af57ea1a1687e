"""Local persons and locks in the state store and through runs: migration 0006 on SQLite and
PostgreSQL, the audit, the merge after the source gate, the certificate, the lifecycle of a
local person, locks planned and applied against the local Microsoft Graph."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from provisioner.core.plan import CORE, Op
from provisioner.core.states import ObjectStatus
from provisioner.run import local_edit
from provisioner.run.local import LOCAL_DIGEST
from provisioner.state import migrate
from provisioner.state import schema as t
from provisioner.state.store import StateStore
from tests.m365test import M365Env
from tests.sisbuilder import small_sis, synthetic_nin
from tests.test_pipeline import Env

DAY1, DAY2 = "2026-01-05", "2026-01-06"
VIKAR = {
    "given_name": "Vera",
    "family_name": "Vikar",
    "school_id": "NORD",
    "role": "teacher",
    "end_date": "2026-03-31",
    "ref": "vik-1",
}


# -- the migration and the store ------------------------------------------------------------


def test_migration_0006_up_and_down_keeps_the_rest(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    try:
        migrate.upgrade(engine, "0005")
        assert "local_persons" not in sa.inspect(engine).get_table_names()
        with engine.begin() as conn:
            conn.execute(
                t.usernames.insert().values(
                    username="olanor", person_id="p1", nin=None, origin="issued", created_at="2026-01-01"
                )
            )
        assert migrate.upgrade(engine, "0006") == ("0005", "0006")
        with engine.connect() as conn:
            assert (
                conn.execute(sa.select(t.meta.c.value).where(t.meta.c.key == "schema_version")).scalar()
                == "6"
            )
        assert migrate.upgrade(engine) == ("0006", migrate.head())
        with engine.connect() as conn:
            assert compare_metadata(MigrationContext.configure(conn), t.metadata) == []
        store = StateStore(db_url)
        try:
            assert (
                store.local.add({**VIKAR, "protected": False, "start_date": DAY1}, "ola").person_id
                == "local:1"
            )
            assert store.identities.username_record("olanor")["person_id"] == "p1"
        finally:
            store.close()
        with engine.begin() as conn:
            command.downgrade(migrate.alembic_config(conn), "0005")
        assert {"local_persons", "person_locks", "local_audit"}.isdisjoint(
            sa.inspect(engine).get_table_names()
        )
    finally:
        engine.dispose()


def test_every_change_is_audited_with_nins_masked(store: StateStore) -> None:
    nin = synthetic_nin("1980-05-06")
    lp = local_edit.add(store, {**VIKAR, "nin": nin, "protected": True}, DAY1, "ola")
    local_edit.change(store, lp, {"role": "staff"}, DAY1, "kari")
    local_edit.end(store, store.local.get(1), "2026-02-01", DAY1, "kari")
    store.local.lock("P9", ["*"], "misuse", "2026-02-01", "ola")
    store.local.unlock("P9", "ad", "kari", others=["ad", "m365"])  # keeps the lock on m365
    rows = store.local.audit()
    assert [(r["action"], r["by"], r["subject"]) for r in rows] == [
        ("add", "ola", "local:1"),
        ("set", "kari", "local:1"),
        ("end", "kari", "local:1"),
        ("lock", "ola", "P9"),
        ("unlock", "kari", "P9"),
        ("lock", "kari", "P9"),
    ]
    assert nin not in json.dumps(rows) and nin[:6] + "*****" in rows[0]["after"]
    assert json.loads(rows[1]["before"]) == {"role": "teacher"} and json.loads(rows[1]["after"]) == {
        "role": "staff"
    }
    assert json.loads(rows[2]["after"]) == {"end_date": "2026-02-01"}
    open_locks = [x for x in store.local.locks(["P9"]) if x.released_at is None]
    assert [(x.target, x.reason, x.until, x.by) for x in open_locks] == [
        ("m365", "misuse", "2026-02-01", "ola")
    ]
    assert store.local.get(1).nin == nin  # kept for the admin, never sent anywhere


def test_local_ids_are_never_given_again_and_refs_are_unique(store: StateStore) -> None:
    first = local_edit.add(store, VIKAR, DAY1, "ola")
    with pytest.raises(local_edit.EditError, match="ref 'vik-1' is taken"):
        local_edit.add(store, VIKAR, DAY1, "ola")
    second = local_edit.add(store, {**VIKAR, "ref": "vik-2"}, DAY1, "ola")
    assert (first.person_id, second.person_id) == ("local:1", "local:2")
    assert local_edit.find_local(store, "vik-2") == second == local_edit.find_local(store, "2")


# -- runs ---------------------------------------------------------------------------------


@pytest.fixture()
def env(tmp_path: Path) -> Env:
    return Env(tmp_path, small_sis())


def test_local_person_gets_a_username_and_accounts_after_the_gate(env: Env) -> None:
    env.sync(DAY1)
    local_edit.add(env.store, VIKAR, DAY1, "ola")
    out = env.sync(DAY1)
    assert out.exit_code == 0, out.message
    assert out.plan.source_counts["persons"] == len(env.sis.persons)  # the gate counted the SIS only
    assert out.plan.source_digests[LOCAL_DIGEST]
    username = env.username("local:1")
    assert username == "vervik" and env.store.identities.username_record(username)["person_id"] == "local:1"
    assert "local:1" in env.persons("itslearning") and "local:1" in env.persons("feide")
    core = [c for c in out.plan.target(CORE).changes if c.key == "local:1"]
    assert core[0].reason == "active by local record local:1: teacher at NORDBY; username issued"
    reasons = {r["reason"] for r in env.changelog(out.run_id) if r["person_id"] == "local:1"}
    assert "active by local record local:1: teacher at NORDBY" in reasons


def test_local_rows_do_not_mask_an_empty_sis_table(env: Env) -> None:
    env.sync(DAY1)
    local_edit.add(env.store, VIKAR, DAY1, "ola")
    env.sis.employments.clear()
    out = env.sync(DAY2)
    assert out.status == "refused" and "employments" in out.message
    summary = json.loads(env.store.runs.get(out.run_id)["summary"])
    assert summary["gate"]["empty"] == ["employments"]  # empty, however many local persons there are
    assert "never approved" in out.message


def test_a_local_change_is_not_hidden_by_a_certified_quiet_run(env: Env) -> None:
    local_edit.add(env.store, VIKAR, DAY1, "ola")
    env.sync(DAY1)
    quiet = env.sync(DAY1)
    assert quiet.plan.basis in ("certified", "full") and not quiet.plan.target("itslearning").changes
    assert env.sync(DAY1).plan.basis == "certified"
    local_edit.change(env.store, env.store.local.get(1), {"family_name": "Vikarsen"}, DAY1, "kari")
    out = env.sync(DAY1)
    assert out.plan.basis == "full"
    assert [c.op for c in out.plan.target("itslearning").changes if c.key == "local:1"] == [Op.UPDATE]
    # a lock is an input too
    env.sync(DAY1)
    env.store.local.lock("local:1", ["*"], "misuse", None, "ola")
    assert env.sync(DAY1).plan.basis == "full"


def test_local_person_leaves_after_the_end_date(env: Env) -> None:
    local_edit.add(env.store, VIKAR, DAY1, "ola")
    env.sync(DAY1)
    local_edit.end(env.store, env.store.local.get(1), DAY2, DAY1, "kari")
    assert env.sync(DAY2).exit_code == 0 and "local:1" in env.persons("itslearning")  # the last day
    out = env.sync("2026-01-07")
    gone = {(c.target, c.op) for tp in out.plan.targets for c in tp.changes if c.person_id == "local:1"}
    assert (CORE, Op.DISABLE) in gone and ("itslearning", Op.DELETE) in gone
    reasons = {c.reason for tp in out.plan.targets for c in tp.changes if c.person_id == "local:1"}
    assert f"local record local:1 ended on {DAY2} (its end date)" in reasons
    assert "local:1" not in env.persons("itslearning")
    assert env.store.identities.username_record("vervik")["person_id"] == "local:1"  # never reused


def test_a_returning_employee_as_substitute_gets_the_old_username(env: Env) -> None:
    nin = env.sis.persons[[p.person_id for p in env.sis.persons].index("T1")].nin
    env.sync(DAY1)
    old = env.username("T1")
    env.sis.employments[:] = [e for e in env.sis.employments if e.person_id != "T1"]
    env.sis.persons[:] = [p for p in env.sis.persons if p.person_id != "T1"]
    env.sis.memberships[:] = [m for m in env.sis.memberships if m.person_id != "T1"]
    env.configure(safety={"max_source_drop_percent": 100.0})
    env.sync(DAY2)
    local_edit.add(env.store, {**VIKAR, "nin": nin}, DAY2, "ola")
    out = env.sync("2026-01-07")
    aliases = [c.reason for c in out.plan.target(CORE).changes if c.kind == "alias"]
    assert aliases == ["SIS id local:1 has the NIN of known person T1: the same person returns"]
    assert env.persons("itslearning")["T1"]["username"] == old  # the same person, the same username


def test_lock_disables_in_plan_only_targets_and_never_deletes(env: Env) -> None:
    env.sync(DAY1)
    pid = local_edit.resolve_person(env.store, env.username("T1"))
    assert pid == "T1"
    made, left = local_edit.lock(env.cfg, env.store, "T1", "misuse", "2026-01-10", (), DAY1, "ola")
    assert [x.target for x in made] == ["*"] and left == ["itslearning", "feide"]
    out = env.sync(DAY2)
    for target in ("ad", "m365"):
        t1 = [
            (c.op, c.reason)
            for c in out.plan.target(target).changes
            if c.person_id == "T1" and c.kind == "person"
        ]
        assert t1 == [(Op.CREATE, t1[0][1]), (Op.DISABLE, "locked by ola until 2026-01-10: misuse")]
    assert not [c for c in out.plan.target("itslearning").changes if c.person_id == "T1"]
    assert not any(c.op is Op.DELETE for tp in out.plan.targets for c in tp.changes if c.person_id == "T1")
    out = env.sync("2026-01-11")  # the lock ended: nothing disables any more
    assert not [c for c in out.plan.target("ad").changes if c.person_id == "T1" and c.op is Op.DISABLE]


@pytest.mark.parametrize(
    ("targets", "error"),
    [(("feide",), "feide cannot disable an account"), (("nosuch",), "no enabled target nosuch")],
)
def test_lock_refuses_targets_that_cannot_disable(env: Env, targets: tuple[str, ...], error: str) -> None:
    with pytest.raises(local_edit.EditError, match=error):
        local_edit.lock(env.cfg, env.store, "T1", "misuse", None, targets, DAY1, "ola")


# -- applied against the local Microsoft Graph ---------------------------------------------------


def test_m365_lock_and_unlock_are_applied_and_kept_over_syncs(m365_env: M365Env) -> None:
    e = m365_env
    assert e.sync(DAY1).exit_code == 0
    assert e.user("T1")["accountEnabled"] is True
    e.store.local.lock("T1", ["*"], "misuse", None, "ola")
    out = e.sync(DAY1)
    assert out.exit_code == 0, out.message
    assert e.user("T1")["accountEnabled"] is False
    assert e.objects()["T1"]["status"] == ObjectStatus.DISABLED
    rows = [r for r in e.changelog("ok") if r["key"] == "T1" and r["op"] == "disable"]
    assert [r["reason"] for r in rows] == ["locked by ola: misuse"]
    for day in (DAY2, "2026-01-07"):  # stays disabled however many runs go by
        out = e.sync(day)
        assert not [c for c in out.plan.target("m365").changes if c.key == "T1"]
        assert e.user("T1")["accountEnabled"] is False
    e.store.local.unlock("T1", None, "kari")
    out = e.sync("2026-01-07")
    [enable] = [c for c in out.plan.target("m365").changes if c.key == "T1"]
    assert enable.op is Op.ENABLE and enable.reason.startswith("unlocked by kari on ")
    assert e.user("T1")["accountEnabled"] is True
    assert e.objects()["T1"]["status"] == ObjectStatus.ACTIVE
    assert [r["op"] for r in e.changelog("ok") if r["key"] == "T1" and r["op"] in ("disable", "enable")] == [
        "disable",
        "enable",
    ]


def test_m365_lock_expires_after_until(m365_env: M365Env) -> None:
    e = m365_env
    e.sync(DAY1)
    e.store.local.lock("T1", ["m365"], "leave", DAY2, "ola")
    e.sync(DAY1)
    e.sync(DAY2)
    assert e.user("T1")["accountEnabled"] is False  # the last day is still locked
    out = e.sync("2026-01-07")
    [enable] = [c for c in out.plan.target("m365").changes if c.key == "T1"]
    assert enable.reason.startswith(f"lock ended after {DAY2} (locked by ola until {DAY2}: leave)")
    assert e.user("T1")["accountEnabled"] is True
