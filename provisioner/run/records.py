"""How a run is recorded when it ends: its outcome, status, summary and exit code.

``finish_run`` writes an applied run's record (and keeps the held part of its plan for
`bas approve`); ``refused`` a source refusal's; ``source_record`` is what later gates
compare with. A run that found nothing to do is folded into the streak of quiet runs
before it (provisioner.state.runs.Runs.fold_quiet): the daemon polls every minute.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import structlog

from provisioner.apply.result import TargetResult
from provisioner.core.plan import Plan
from provisioner.core.safety import SourceRefused
from provisioner.core.states import RUNS_THROUGH, PlanBasis, RunStatus
from provisioner.run.exits import EXIT_ERRORS, EXIT_HELD, EXIT_INTERRUPTED, EXIT_OK, EXIT_TARGET_FAILED
from provisioner.state import safety_reads
from provisioner.state.store import StateStore

log = structlog.get_logger("bas.run")

_EXIT_CODES = {
    RunStatus.HELD: EXIT_HELD,
    RunStatus.FAILED: EXIT_TARGET_FAILED,
    RunStatus.INTERRUPTED: EXIT_INTERRUPTED,
    RunStatus.DONE_WITH_ERRORS: EXIT_ERRORS,
    RunStatus.DONE: EXIT_OK,
}


@dataclass
class RunOutcome:
    """What a run did, for the CLI and the daemon."""

    run_id: str
    exit_code: int
    status: RunStatus
    message: str = ""
    plan: Plan | None = None
    results: dict[str, TargetResult] = field(default_factory=dict)


def finish_run(store: StateStore, plan: Plan, results: dict[str, TargetResult], kind: str) -> RunOutcome:
    """Record how an applied run ended (status, summary, the held part of its plan) and its outcome."""
    held = [tp for tp in plan.targets if tp.hold is not None and tp.changes]
    bad = sum(r.rejected + r.failed for r in results.values()) + len(plan.errors)
    status = RunStatus.of(held=bool(held), outcomes=(r.status for r in results.values()), errors=bad)
    summary = {
        "plan": plan.summary(),
        "results": {k: v.to_json() for k, v in results.items()},
        "data_errors": len(plan.errors),
        "source": source_record(plan, accept_gone=kind == "approve"),
    }
    # The held plan keeps the state versions as this run left them (it applied the other
    # targets and the core): `bas approve` applies it only while nothing changed since.
    held_plan = (
        replace(plan, targets=tuple(held), errors=(), cookie=store.versions.current()).dumps()
        if held
        else None
    )
    extra = {"kind": "apply"} if kind == "apply" else {}  # a saved plan applied is a run that did work
    store.runs.finish(
        plan.run_id, status, summary=summary, active_persons=plan.active_persons, plan=held_plan, **extra
    )
    if kind == "sync" and quiet(plan, results, held=bool(held)):
        store.runs.fold_quiet(plan.run_id)
    if status in RUNS_THROUGH:
        safety_reads.drop_superseded_plans(
            store, plan.run_id
        )  # this run planned afresh: older held plans are void
    # Data and change errors outrank an interruption in the exit code (not in the status).
    code = EXIT_ERRORS if status == RunStatus.INTERRUPTED and bad else _EXIT_CODES[status]
    msg = "; ".join(f"{tp.target} held: {tp.hold.message}" for tp in held if tp.hold)
    if held:
        msg += (
            f". Nothing was applied to {', '.join(tp.target for tp in held)}: if this is right,"
            f" `bas approve {plan.run_id}` applies this plan (or change the config)"
        )
    log.info(
        "run finished",
        run_id=plan.run_id,
        kind=kind,
        status=status,
        data_errors=len(plan.errors),
        **{f"{k}_ok": v.ok for k, v in results.items()},
    )
    return RunOutcome(plan.run_id, code, status, msg, plan, results)


def quiet(plan: Plan, results: dict[str, TargetResult], *, held: bool) -> bool:
    """A run that found nothing to do: its plan certified (inputs unchanged), nothing held,
    nothing applied, rejected, failed or delivered (the runs table keeps one row per streak)."""
    if plan.basis is not PlanBasis.CERTIFIED or held:
        return False
    return not any(r.ok or r.rejected or r.failed or r.delivered for r in results.values())


def source_record(plan: Plan, *, accept_gone: bool) -> dict:
    """What the gate of later runs compares with: the table counts and the schools present.

    A school gone stays in the record (and holds every run) until an admin approves a
    plan held for it (``accept_gone``).
    """
    schools = None if plan.schools is None else set(plan.schools)
    if schools is not None and not accept_gone:
        schools |= set(plan.schools_gone)
    return {"counts": dict(plan.source_counts), "schools": None if schools is None else sorted(schools)}


def refused(store: StateStore, run_id: str, exc: SourceRefused) -> RunOutcome:
    """Record a source refusal; the message names the run to approve (when it can be)."""
    hint = (
        f"; if this is real, `bas approve {run_id}` accepts it once"
        if exc.approvable
        else "; an empty table is never approved: fix the source"
    )
    message = f"{exc}{hint}"
    summary = {"source": {"counts": exc.counts, "schools": exc.schools}, "gate": {"empty": list(exc.empty)}}
    store.runs.finish(run_id, RunStatus.REFUSED, error=message, active_persons=exc.active, summary=summary)
    log.error("source refused", run_id=run_id, error=message)
    return RunOutcome(run_id, EXIT_HELD, RunStatus.REFUSED, message)


def quiet_note(summary: dict) -> str:
    """What `bas runs` and the console say of a folded streak of quiet runs ("" for any other run)."""
    streak = summary.get("quiet") or {}
    if streak.get("runs", 0) < 2:
        return ""
    return f"{streak['runs']} quiet runs since {str(streak['since'])[:16].replace('T', ' ')} UTC"
