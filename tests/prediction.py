"""Checking a prediction after apply (provisioner.core.certificate.predict_after_apply) against
the plan made in full, for the target test environments (tests/adtest.py, tests/m365test.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from provisioner.core.plan import Plan, TargetPlan
from provisioner.run.runner import RunOutcome


def a_leaver_applied_then_predicted(
    env: Any, days: tuple[str, str], target: str, leaver: str = "S2"
) -> TargetPlan:
    """Sync; ``leaver``'s enrollment ends; sync again (applied live); then the next plan is
    checked (``assert_predicted_as_in_full``). ``env``: an ADEnv or M365Env. Returns what
    the leaver's run planned for ``target``."""
    assert env.sync(days[0]).exit_code == 0
    env.sis.end_enrollments(leaver, days[0])
    out = env.sync(days[1])
    assert out.exit_code == 0, out.results[target].errors
    assert_predicted_as_in_full(env.sync, days[1], target)
    return out.plan.target(target)


def assert_predicted_as_in_full(sync: Callable[..., RunOutcome], day: str, target: str) -> None:
    """The next plan is certified (predicted by the last apply), has nothing for ``target``,
    and has every target's changes and population, the data errors and the counts as the
    same plan made in full."""
    predicted, full = sync(day, dry_run=True).plan, sync(day, dry_run=True, full=True).plan
    assert predicted is not None and full is not None
    assert predicted.basis == "certified" and full.basis == "full"
    assert _shape(predicted) == _shape(full)
    assert predicted.target(target).changes == ()


def _shape(plan: Plan) -> tuple[Any, ...]:
    """What the nightly comparison holds a patch to (provisioner.run.patch_check.check), here
    for a prediction: every target's changes and population, the data errors and counts."""
    return (
        [(tp.target, tp.changes, tp.population) for tp in plan.targets],
        plan.errors,
        plan.active_persons,
        dict(plan.source_counts),
    )
