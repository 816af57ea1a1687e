"""Delegated password resets: the SET_PASSWORD change, its secret kept out of every record, and
`reset_password` against the local Graph (tests/fake_graph.py) through the executor."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from structlog.testing import capture_logs

from provisioner.cli.main import main as bas_main
from provisioner.core.plan import DESTRUCTIVE_OPS, REMOVING_OPS, Change, Op, Plan, TargetPlan
from provisioner.core.rows import ObjectRow
from provisioner.core.states import ObjectStatus, RunStatus
from provisioner.core.transitions import transition
from provisioner.run import password as pw_run
from provisioner.run import runner
from tests.m365test import M365Env
from tests.sisbuilder import small_sis

DAY = "2025-10-01"
SECRET = "Hemmelig-Passord-42x"  # noqa: S105 (a test value the records must never hold)


def _change(**kw: Any) -> Change:
    base: dict[str, Any] = {
        "target": "ad",
        "op": Op.SET_PASSWORD,
        "kind": "person",
        "key": "S1",
        "reason": "password reset by kari (CLI)",
        "anchor": "guid-1",
        "username": "olnor",
        "person_id": "S1",
        "secret": SECRET,
    }
    return Change(**{**base, **kw})


# -- the change itself ----------------------------------------------------------------------


def test_set_password_is_an_op_that_removes_nothing() -> None:
    assert Op("set_password") is Op.SET_PASSWORD
    assert Op.SET_PASSWORD not in DESTRUCTIVE_OPS | REMOVING_OPS
    order = list(Op)
    assert order.index(Op.RESTORE) < order.index(Op.SET_PASSWORD) < order.index(Op.DELETE)


def test_the_secret_is_in_no_json_repr_or_comparison() -> None:
    c = _change()
    assert SECRET not in json.dumps(c.to_json()) and "secret" not in c.to_json()
    assert SECRET not in repr(c)
    assert c == _change(secret="another")
    back = Change.from_json(c.to_json())
    assert back.secret is None and back == c
    plan = Plan("r1", "2025-10-01T00:00:00Z", DAY, {}, (TargetPlan("ad", (c,)),))
    assert SECRET not in plan.dumps() and SECRET not in repr(plan)
    assert plan.summary() == {"ad": {"set_password": 1}}


def test_a_new_password_leaves_the_stored_row_as_it_was() -> None:
    row = ObjectRow("person", "guid-1", ObjectStatus.ACTIVE, "2025-01-01", "S1", "olnor", {"cn": "Ola"}, None)
    assert transition(row, _change(), as_of=DAY) is row


# -- reset_password against the local Graph ---------------------------------------------------


@pytest.fixture()
def env(tmp_path: Path) -> Any:
    e = M365Env(tmp_path, small_sis())
    try:
        yield e
    finally:
        e.close()


def _rows(env: M365Env, table: str) -> list[dict[str, Any]]:
    with env.store.engine.connect() as c:
        return [dict(r._mapping) for r in c.execute(sa.text(f"SELECT * FROM {table}"))]  # noqa: S608


def test_reset_sets_the_cloud_password_and_records_no_secret(env: M365Env) -> None:
    assert env.sync(DAY).exit_code == 0
    before = env.objects()["S1"]
    version = env.store.versions.current()
    uid = before["anchor"]
    old = env.graph.directory.passwords[uid]
    env.graph.record()
    with capture_logs() as logs:
        out = pw_run.reset_password(env.cfg, env.store, "S1", "kari", connect=env.connect)
    assert out.exit_code == runner.EXIT_OK and out.status == RunStatus.DONE, out.message
    assert out.password and out.password != old
    assert env.graph.directory.passwords[uid] == out.password
    [(method, path, body)] = [r for r in env.graph.requests or () if r[0] == "PATCH"]
    assert path == f"/users/{uid}"
    assert body == {"passwordProfile": {"password": out.password, "forceChangePasswordNextSignIn": True}}
    assert [(t.target, t.result) for t in out.targets] == [("m365", "ok")]
    # The stored object, its version and every other record are as they were.
    assert env.objects()["S1"] == before
    assert env.store.versions.current() == version
    [row] = [r for r in _rows(env, "changelog") if r["run_id"] == out.run_id]
    assert (row["op"], row["result"], row["key"]) == ("set_password", "ok", "S1")
    assert row["reason"] == "password reset by kari (CLI)"
    assert row["before"] is None and row["after"] is None
    run = env.store.runs.get(out.run_id)
    assert run is not None and run["kind"] == "password" and run["status"] == RunStatus.DONE
    everything = json.dumps([_rows(env, "changelog"), _rows(env, "runs"), _rows(env, "objects")], default=str)
    assert out.password not in everything
    assert out.password not in repr(logs) and out.password not in repr(out)
    assert any(e["event"] == "password reset" and e["run_id"] == out.run_id for e in logs)


def test_a_reset_does_not_stale_a_held_plan_or_move_the_gate(env: M365Env) -> None:
    assert env.sync(DAY).exit_code == 0
    baseline = env.store.runs.gate_baseline()
    out = pw_run.reset_password(env.cfg, env.store, "S2", "kari", connect=env.connect)
    assert out.ok
    assert env.store.runs.gate_baseline() == baseline  # a password run reads no source


def test_hybrid_and_plan_only_targets_take_no_password(env: M365Env) -> None:
    assert env.sync(DAY).exit_code == 0
    env.configure(users="synced")
    out = pw_run.reset_password(env.cfg, env.store, "S1", "kari", connect=env.connect)
    assert out.password is None and out.run_id is None and out.exit_code == runner.EXIT_USAGE
    assert "password hash sync" in out.message
    env.configure(mode="plan")
    out = pw_run.reset_password(env.cfg, env.store, "S1", "kari", connect=env.connect)
    assert out.password is None and 'mode = "plan"' in out.message
    assert not [r for r in _rows(env, "runs") if r["kind"] == "password"]


def test_no_account_and_refused_password_are_clear(env: M365Env) -> None:
    assert env.sync(DAY).exit_code == 0
    out = pw_run.reset_password(env.cfg, env.store, "G1", "kari", connect=env.connect)  # a guardian
    assert out.password is None and "no account there" in out.message
    uid = env.objects()["S3"]["anchor"]
    del env.graph.directory.users[uid]  # deleted by hand in the tenant
    out = pw_run.reset_password(env.cfg, env.store, "S3", "kari", connect=env.connect)
    assert out.password is None and out.exit_code == runner.EXIT_ERRORS
    assert out.targets[0].result == "rejected" and "not in the tenant" in out.targets[0].message


def test_a_running_sync_holds_the_reset_off(env: M365Env) -> None:
    assert env.sync(DAY).exit_code == 0
    with env.store.runs.lock("a-sync-run"):
        t0 = time.monotonic()
        out = pw_run.reset_password(env.cfg, env.store, "S1", "kari", connect=env.connect, wait=0.5)
        assert time.monotonic() - t0 >= 0.5  # it waited for the lock before giving up
    assert out.status == RunStatus.LOCKED and out.exit_code == runner.EXIT_LOCKED
    assert out.password is None and "try again in a minute" in out.message
    assert not [r for r in _rows(env, "changelog") if r["op"] == "set_password"]


def test_a_reset_waits_for_a_short_run_to_end(env: M365Env) -> None:
    assert env.sync(DAY).exit_code == 0
    taken, release = threading.Event(), threading.Event()

    def short_run() -> None:
        with env.store.runs.lock("another-reset"):
            taken.set()
            release.wait(5)

    holder = threading.Thread(target=short_run)
    holder.start()
    assert taken.wait(5)
    threading.Timer(0.4, release.set).start()
    out = pw_run.reset_password(env.cfg, env.store, "S1", "kari", connect=env.connect)
    holder.join()
    assert out.ok and out.status == RunStatus.DONE, out.message


def test_cli_prints_the_password_once(env: M365Env, monkeypatch: pytest.MonkeyPatch) -> None:
    assert env.sync(DAY).exit_code == 0
    # The CLI builds the real connector; on the fake Graph it needs the env's own (same config).
    monkeypatch.setattr(pw_run, "build_connector", env.connect)
    res = CliRunner().invoke(
        bas_main, ["--config", str(env.config_path), "password", "reset", "S1", "--by", "kari"]
    )
    assert res.exit_code == 0, res.output
    uid = env.objects()["S1"]["anchor"]
    secret = env.graph.directory.passwords[uid]
    assert res.output.count(secret) == 1
    assert f"new password for {env.objects()['S1']['username']}: {secret}" in res.output
    res = CliRunner().invoke(bas_main, ["--config", str(env.config_path), "password", "reset", "nobody"])
    assert res.exit_code == runner.EXIT_ERRORS and "nobody known" in res.output
