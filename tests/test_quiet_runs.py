"""Quiet runs fold into one row per streak: a daemon polling every minute keeps `bas runs` readable."""

from __future__ import annotations

import json
from pathlib import Path

from provisioner.run.records import quiet_note
from tests import test_pipeline
from tests.test_pipeline import DAY1, Env, ok

env = test_pipeline.env  # the fixture: a store after a first sync


def _rows(env: Env) -> list[dict]:
    rows = env.store.runs.newest(50)
    for r in rows:
        r["summary"] = json.loads(r["summary"]) if r["summary"] else {}
    return rows


def test_a_streak_of_quiet_runs_is_one_row_the_newest(env: Env) -> None:
    first = [ok(env.sync(DAY1)) for _ in range(3)]
    assert all(o.plan.basis == "certified" for o in first)
    rows = _rows(env)
    assert len(rows) == 2  # the run that did the work, and the streak after it
    streak = rows[0]
    assert streak["run_id"] == first[-1].run_id
    assert streak["summary"]["quiet"]["runs"] == 3
    assert streak["summary"]["quiet"]["since"] < streak["started_at"]
    assert quiet_note(streak["summary"]).startswith("3 quiet runs since ")
    # AD and Microsoft 365 are plan-only here: their pending changes are in every quiet summary
    assert streak["summary"]["plan"]["ad"]
    assert "quiet" not in rows[1]["summary"]


def test_a_run_that_did_something_ends_the_streak(env: Env) -> None:
    ok(env.sync(DAY1))
    ok(env.sync(DAY1))
    env.sis.update_person("S2", family_name="Hansen-Berg")
    changed = ok(env.sync(DAY1))
    assert changed.plan.basis == "incremental"
    after = ok(env.sync(DAY1))
    rows = _rows(env)
    assert [r["run_id"] for r in rows[:2]] == [after.run_id, changed.run_id]
    assert rows[0]["summary"]["quiet"]["runs"] == 1 and quiet_note(rows[0]["summary"]) == ""
    assert rows[2]["summary"]["quiet"]["runs"] == 2  # the streak before the change stays
    assert env.store.runs.gate_baseline().counts["persons"] > 0


def test_dry_runs_and_full_runs_are_never_folded(env: Env) -> None:
    ok(env.sync(DAY1))
    plans = [env.sync(DAY1, dry_run=True) for _ in range(2)]
    full = ok(env.sync(DAY1, full=True))
    rows = _rows(env)
    ids = [r["run_id"] for r in rows]
    assert plans[0].run_id in ids and plans[1].run_id in ids and full.run_id in ids
    assert all("quiet" not in r["summary"] for r in rows if r["run_id"] in {full.run_id, plans[0].run_id})


def test_bas_runs_says_how_many_quiet_runs_since_when(env: Env, tmp_path: Path) -> None:
    for _ in range(2):
        ok(env.sync(DAY1))
    from click.testing import CliRunner

    from provisioner.cli.main import main

    cfg = tmp_path / "bas.toml"
    assert cfg.exists()
    out = CliRunner().invoke(main, ["--config", str(cfg), "runs"])
    assert out.exit_code == 0, out.output
    assert "2 quiet runs since" in out.output
