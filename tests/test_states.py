"""The typed states: stored strings unchanged, how a run ends, and `bas plan` showing every op."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from provisioner.cli import runs as cli
from provisioner.core.plan import Change, Op, Plan, TargetPlan
from provisioner.core.states import (
    RUNS_DONE,
    RUNS_THROUGH,
    TARGET_OK,
    ChangeResult,
    DaemonState,
    IdentityStatus,
    ObjectStatus,
    Origin,
    RunStatus,
    TargetOutcome,
)
from provisioner.service import status
from provisioner.state.store import StateStore

T = TargetOutcome
APPLIED, FAILED, STOPPED, HELD, PLANNED, SAME = (
    T.APPLIED,
    T.FAILED,
    T.INTERRUPTED,
    T.HELD,
    T.PLANNED,
    T.UNCHANGED,
)


def test_stored_values_are_the_strings_the_store_always_held() -> None:
    # No data migration: each enum's values are exactly the strings in existing stores.
    assert [s.value for s in ObjectStatus] == ["active", "disabled", "deleted"]
    assert [s.value for s in IdentityStatus] == ["active", "inactive", "purged"]
    assert [s.value for s in Origin] == ["issued", "reserved", "adopted"]
    # "pending" (a hybrid user not synced yet) is new: older stores hold only the first four.
    assert [s.value for s in ChangeResult] == ["ok", "rejected", "failed", "skipped", "pending"]
    assert [s.value for s in DaemonState] == ["idle", "running", "stopped"]
    assert {s.value for s in TargetOutcome} == {
        "applied",
        "held",
        "planned",
        "failed",
        "unchanged",
        "interrupted",
    }
    stored_runs = {"running", "planned", "done", "done_with_errors", "held", "failed", "interrupted"}
    assert {s.value for s in RunStatus} >= stored_runs | {"aborted", "refused", "drift"}
    assert [o.value for o in Op][-1] == "forget" and Op("forget") is Op.FORGET
    assert RunStatus("done") == "done" and f"{RunStatus.HELD}" == "held"
    assert RUNS_DONE < RUNS_THROUGH and {APPLIED, SAME, PLANNED} == TARGET_OK


# held, target outcomes, errors (rejected + failed changes + data errors) -> run status
RUN_TABLE = [
    (False, [], 0, RunStatus.DONE),
    (False, [APPLIED, SAME, PLANNED], 0, RunStatus.DONE),
    (False, [APPLIED], 3, RunStatus.DONE_WITH_ERRORS),
    (False, [APPLIED, STOPPED], 0, RunStatus.INTERRUPTED),
    (False, [APPLIED, STOPPED], 2, RunStatus.INTERRUPTED),  # the status says stopped; the exit code, errors
    (False, [FAILED, APPLIED], 0, RunStatus.FAILED),
    (False, [FAILED, STOPPED], 5, RunStatus.FAILED),
    (True, [HELD, APPLIED], 0, RunStatus.HELD),
    (True, [HELD, FAILED, STOPPED], 9, RunStatus.HELD),
]


@pytest.mark.parametrize(("held", "outcomes", "errors", "want"), RUN_TABLE)
def test_how_a_run_ended(held: bool, outcomes: list[TargetOutcome], errors: int, want: RunStatus) -> None:
    assert RunStatus.of(held=held, outcomes=iter(outcomes), errors=errors) is want


def test_the_plan_table_has_a_column_per_op() -> None:
    change = Change("feide", Op.FORGET, "person", "P1", "deleted by hand")
    plan = Plan("r1", "2025-01-01T00:00:00+00:00", "2025-01-01", {}, (TargetPlan("feide", (change,)),))
    runner = CliRunner()
    with runner.isolation() as (out, _err, _):
        cli._print_plan(plan, show=0)
    header, _rule, row = out.getvalue().decode().splitlines()[:3]
    assert header.split()[2:] == [op.value for op in Op]
    assert row.split() == ["feide", "apply", "1"]  # only the forget column counts one
    assert header.index("forget") == row.index("1")


def test_the_pure_core_never_imports_the_state_store() -> None:
    # diff and derive take the store's rows as values (provisioner/core/rows.py).
    core = Path(__file__).parents[1] / "provisioner" / "core"
    for path in sorted(core.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            assert not [n for n in names if n.startswith("provisioner.state")], path.name


def test_status_only_reads(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    store.runs.start("r1", "sync", "2025-01-01")
    store.runs.finish("r1", RunStatus.DONE_WITH_ERRORS, summary={"results": {"feide": {"status": "applied"}}})
    store.daemons.report(pid=1, started_at="2025-01-01T00:00:00+00:00", state="idle")
    statements: list[str] = []
    sa.event.listen(
        store.engine, "before_cursor_execute", lambda *a: statements.append(a[2].split()[0].upper())
    )
    health = status.collect(store, ["feide"])
    store.close()
    assert health.last_run is not None and health.last_run["status"] == RunStatus.DONE_WITH_ERRORS
    assert health.targets["feide"].last_status == TargetOutcome.APPLIED and len(health.daemons) == 1
    assert statements and set(statements) == {"SELECT"}
