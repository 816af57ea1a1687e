"""Holds before any diff is applied: the source gate and each target's thresholds.

Owns ``gate`` (every source table compared with the good runs of the last days; a refusal
names the schools gone) and ``hold_targets`` (per target: the deletion and membership
limits, the sliding window of what was applied plus what is planned, a school gone). Both
read the state store and return values; the runner calls them on a fresh plan and on a
certified one alike (provisioner.run.runner).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from provisioner.config import Config
from provisioner.core.plan import CORE, REMOVING_OPS, Plan
from provisioner.core.safety import (
    GateBaseline,
    SourceRefused,
    check_hold,
    check_source,
    gone_schools,
    school_hold,
    thresholds_for,
)
from provisioner.state import safety_reads
from provisioner.state.store import StateStore

__all__ = ["gate", "hold_targets"]


def gate(
    cfg: Config, store: StateStore, counts: dict[str, int], active: int, schools: Iterable[str] | None
) -> GateBaseline:
    """The source gate (raises SourceRefused); returns the baseline it compared with."""
    baseline = store.runs.gate_baseline(cfg.safety.gate_days)
    try:
        check_source(counts, active, baseline, cfg.safety.max_source_drop_percent)
    except SourceRefused as exc:
        # A refusal does not accept a school gone: it stays in the record until a plan
        # held for it is approved.
        if schools is not None:
            exc.schools = sorted(set(schools) | gone_schools(schools, baseline))
        raise
    return baseline


def hold_targets(cfg: Config, store: StateStore, plan: Plan, baseline: GateBaseline | None) -> Plan:
    """The plan with each target's hold decided now: thresholds, the sliding window, schools gone.

    Also run on a certified plan: the window moves and run ids change, the inputs do not.
    """
    gone = gone_schools(plan.schools, baseline)
    gone_hold = school_hold(gone)
    # Only a target whose plan takes something away can pass a limit (the window holds no
    # plan that adds no removal): the store is read for those alone, so a quiet run (the
    # certified no-op) reads nothing more.
    removing = [tp.target for tp in plan.targets if tp.target != CORE and tp.ops() & REMOVING_OPS]
    hours = cfg.safety.window_hours
    window = safety_reads.window_removals(store, removing, hours) if hours > 0 and removing else {}
    members = safety_reads.member_populations(store, removing) if removing else {}
    out = []
    for tp in plan.targets:
        tcfg = cfg.targets.get(tp.target)
        if tcfg is None:  # core: identities are never held
            out.append(tp)
            continue
        hold = gone_hold if gone_hold and tp.changes else None
        hold = hold or check_hold(
            tp.changes,
            tp.population,
            thresholds_for(cfg.safety, tcfg),
            members.get(tp.target, 0),
            window.get(tp.target),
            hours,
        )
        out.append(replace(tp, hold=hold))
    return replace(plan, targets=tuple(out), schools_gone=tuple(sorted(gone)))
