"""Safety rules: deletion thresholds that hold a target, and the source sanity gate.

A target whose plan would disable or delete more objects than ``max_deletes`` or more
than ``max_delete_percent`` of what it holds is *held*: nothing is applied to it, the
plan is kept, and an admin approves that one plan (``bas approve RUN``). The gate runs
before any diff: an empty source, or one whose active persons fell by more than
``max_source_drop_percent`` since the last good run, is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

from provisioner.plan import DESTRUCTIVE_OPS, Change, Hold


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The limits in force for one target."""

    max_deletes: int
    max_delete_percent: float


def thresholds_for(safety_cfg, target_cfg) -> Thresholds:
    """Target overrides win over the [safety] defaults."""
    return Thresholds(
        max_deletes=target_cfg.max_deletes if target_cfg.max_deletes is not None else safety_cfg.max_deletes,
        max_delete_percent=(
            target_cfg.max_delete_percent
            if target_cfg.max_delete_percent is not None
            else safety_cfg.max_delete_percent
        ),
    )


def check_hold(changes: list[Change], population: int, limits: Thresholds) -> Hold | None:
    """A Hold when the destructive changes of one target pass its limits, else None."""
    objects = {(c.kind, c.key) for c in changes if c.op in DESTRUCTIVE_OPS}
    n = len(objects)
    if n > limits.max_deletes:
        return Hold(
            "max_deletes", f"{n} objects would be disabled or deleted; the limit is {limits.max_deletes}"
        )
    if population > 0 and n * 100.0 / population > limits.max_delete_percent:
        pct = n * 100.0 / population
        return Hold(
            "max_delete_percent",
            f"{n} of {population} objects ({pct:.1f} %) would be disabled or deleted;"
            f" the limit is {limits.max_delete_percent:g} %",
        )
    return None


class SourceRefused(Exception):
    """The source failed the sanity gate; nothing was diffed or applied."""

    def __init__(self, message: str, active: int) -> None:
        super().__init__(message)
        self.active = active  # what an approval of this refusal accepts as the new baseline


def check_source(
    active_persons: int, total_persons: int, baseline: int | None, max_drop_percent: float
) -> None:
    """Raise SourceRefused for an empty source or a sudden drop in active persons."""
    if total_persons == 0 or active_persons == 0:
        raise SourceRefused(
            f"the source is empty ({total_persons} persons, {active_persons} active): refusing to run;"
            " check the SIS connection and queries",
            active_persons,
        )
    if baseline:
        drop = (baseline - active_persons) * 100.0 / baseline
        if drop > max_drop_percent:
            raise SourceRefused(
                f"active persons fell from {baseline} to {active_persons} ({drop:.1f} % fewer; the limit is"
                f" {max_drop_percent:g} %): refusing to run."
                " If this is real, `bas approve RUN` accepts it once",
                active_persons,
            )
