"""Safety rules: thresholds that hold a target, and the source sanity gate.

A target whose plan would disable or delete more objects than ``max_deletes`` (or
``max_delete_percent`` of what it holds), or remove more memberships than
``max_member_removals`` (or ``max_member_removal_percent`` of its memberships), is
*held*: nothing is applied to it, the plan is kept, and an admin approves that one plan
(``bas approve RUN``). The same limits hold for the sum over a sliding window of what
was applied plus what is planned, so a slow decline over many runs is held too.

The gate runs before any diff: every source table is compared with the largest count
of the good runs of the last ``gate_days`` days; an empty table, or one that fell by
more than ``max_source_drop_percent``, refuses the run. A school that disappears from
the source holds every target.

Everything here is pure: the runner reads the state store and passes values in.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from provisioner.config import SafetyConfig, TargetBase
from provisioner.core.model import TABLES, SourceSnapshot
from provisioner.core.plan import DESTRUCTIVE_OPS, Change, Hold, Op
from provisioner.core.stored import CountedChanges


class HoldRule(StrEnum):
    """Why a target is held (Hold.rule)."""

    MAX_DELETES = "max_deletes"
    MAX_DELETE_PERCENT = "max_delete_percent"
    MAX_MEMBER_REMOVALS = "max_member_removals"
    MAX_MEMBER_REMOVAL_PERCENT = "max_member_removal_percent"
    WINDOW_DELETES = "window_deletes"  # the sliding window's sum, deletes or disables
    WINDOW_MEMBER_REMOVALS = "window_member_removals"
    SCHOOL_GONE = "school_gone"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """The limits in force for one target."""

    max_deletes: int
    max_delete_percent: float
    max_member_removals: int = 2000
    max_member_removal_percent: float = 10.0


def _pick(override: float | None, default: float) -> float:
    return default if override is None else override


def thresholds_for(safety_cfg: SafetyConfig, target_cfg: TargetBase) -> Thresholds:
    """Target overrides win over the [safety] defaults."""
    s, t = safety_cfg, target_cfg
    return Thresholds(
        max_deletes=int(_pick(t.max_deletes, s.max_deletes)),
        max_delete_percent=_pick(t.max_delete_percent, s.max_delete_percent),
        max_member_removals=int(_pick(t.max_member_removals, s.max_member_removals)),
        max_member_removal_percent=_pick(t.max_member_removal_percent, s.max_member_removal_percent),
    )


@dataclass(frozen=True, slots=True)
class Removals:
    """What takes something away from a target: objects disabled or deleted, memberships removed."""

    objects: frozenset[tuple[str, str]] = frozenset()  # (kind, key)
    members: int = 0  # (person, role) pairs removed from groups
    since: str = ""  # for a window: when it starts (ISO time)


def planned_removals(changes: Iterable[Change]) -> Removals:
    """The removals of one target's planned changes.

    An object both disabled and deleted counts once; every removed (person, role) pair
    counts, also of a person deleted by the same plan.
    """
    if isinstance(changes, CountedChanges):  # held encoded: counted when encoded
        return Removals(changes.destructive, changes.member_removals)
    objects, members = set(), 0
    for c in changes:
        if c.op in DESTRUCTIVE_OPS:
            objects.add((c.kind, c.key))
        elif c.op == Op.REMOVE_MEMBERS:
            members += len(c.members)
    return Removals(frozenset(objects), members)


def _over(n: int, base: int, limit: int, percent: float) -> str | None:
    """'count' or 'percent' when n passes a limit, else None (an empty base has no percent rule)."""
    if n > limit:
        return "count"
    if base > 0 and n * 100.0 / base > percent:
        return "percent"
    return None


def check_hold(
    changes: Iterable[Change],
    population: int,
    limits: Thresholds,
    members_population: int = 0,
    window: Removals | None = None,
    window_hours: float = 24.0,
) -> Hold | None:
    """A Hold when one target's plan passes its limits, alone or with the window's removals, else None.

    ``population``: active objects the target holds; ``members_population``: memberships
    its groups hold; ``window``: what was applied to it within the sliding window.
    """
    plan = planned_removals(changes)
    n, m = len(plan.objects), plan.members
    hold = _limit_hold(
        n,
        population,
        limits.max_deletes,
        limits.max_delete_percent,
        _DELETE_RULES,
        "objects",
        "disabled or deleted",
    ) or _limit_hold(
        m,
        members_population,
        limits.max_member_removals,
        limits.max_member_removal_percent,
        _MEMBER_RULES,
        "memberships",
        "removed",
    )
    if hold is not None:
        return hold
    if window is None:
        return None
    return _check_window(plan, population, members_population, limits, window, window_hours)


_DELETE_RULES = (HoldRule.MAX_DELETES, HoldRule.MAX_DELETE_PERCENT)
_MEMBER_RULES = (HoldRule.MAX_MEMBER_REMOVALS, HoldRule.MAX_MEMBER_REMOVAL_PERCENT)


def _limit_hold(
    n: int, base: int, limit: int, percent: float, rules: tuple[HoldRule, HoldRule], what: str, done: str
) -> Hold | None:
    """The Hold of one limit pair (a count and a percent of ``base``) that ``n`` passes, else None."""
    over = _over(n, base, limit, percent)
    if over == "count":
        return Hold(rules[0], f"{n} {what} would be {done}; the limit is {limit}")
    if over == "percent":
        return Hold(
            rules[1],
            f"{n} of {base} {what} ({n * 100.0 / base:.1f} %) would be {done}; the limit is {percent:g} %",
        )
    return None


def _check_window(
    plan: Removals, population: int, members_population: int, limits: Thresholds, w: Removals, hours: float
) -> Hold | None:
    # The base of the percent rules is what the target held when the window began: what
    # it holds now plus what the window took away.
    # Only what this plan adds can be held: a plan that removes nothing passes.
    objects = plan.objects | w.objects
    n, done = len(objects), len(w.objects - plan.objects)
    over = (
        None
        if not plan.objects - w.objects
        else _over(n, population + len(w.objects), limits.max_deletes, limits.max_delete_percent)
    )
    if over:
        limit = f"{limits.max_deletes}" if over == "count" else f"{limits.max_delete_percent:g} %"
        return Hold(
            HoldRule.WINDOW_DELETES,
            f"{n} objects disabled or deleted within {hours:g} h ({done} applied since {w.since[:19]},"
            f" {len(plan.objects)} planned now) of {population + len(w.objects)}; the limit is {limit}",
        )
    m = plan.members + w.members
    over = (
        None
        if not plan.members
        else _over(
            m, members_population + w.members, limits.max_member_removals, limits.max_member_removal_percent
        )
    )
    if over:
        limit = (
            f"{limits.max_member_removals}" if over == "count" else f"{limits.max_member_removal_percent:g} %"
        )
        return Hold(
            HoldRule.WINDOW_MEMBER_REMOVALS,
            f"{m} memberships removed within {hours:g} h ({w.members} applied since {w.since[:19]},"
            f" {plan.members} planned now) of {members_population + w.members}; the limit is {limit}",
        )
    return None


def school_hold(gone: Iterable[str]) -> Hold | None:
    """The hold for schools that disappeared from the source (None when none did)."""
    ids = sorted(gone)
    if not ids:
        return None
    return Hold(
        HoldRule.SCHOOL_GONE,
        f"school(s) {', '.join(ids)} disappeared from the source since the last good run"
        " (a query that filters a school out?)",
    )


# -- the source gate ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GateBaseline:
    """What the gate compares a source with, from the good runs of the last days."""

    counts: Mapping[str, int] = field(default_factory=dict)  # the largest count per table
    active_persons: int | None = None  # the largest number of active persons
    schools: frozenset[str] | None = None  # the schools of the newest good run (None: not recorded)


def present_schools(snap: SourceSnapshot) -> frozenset[str]:
    """Schools in the schools table that have at least one enrollment or employment row.

    A query edit that filters a school out may drop its row or only its affiliations;
    either way the school is gone from this set.
    """
    listed = {str(s.school_id).strip() for s in snap.schools}
    used = {str(e.school_id).strip() for e in snap.enrollments} | {
        str(e.school_id).strip() for e in snap.employments
    }
    return frozenset(listed & used)


def gone_schools(schools: Iterable[str] | None, baseline: GateBaseline | None) -> frozenset[str]:
    """Schools of the baseline missing now (none when either side was not recorded)."""
    if schools is None or baseline is None or baseline.schools is None:
        return frozenset()
    return baseline.schools - frozenset(schools)


class SourceRefused(Exception):
    """The source failed the sanity gate; nothing was diffed or applied."""

    def __init__(
        self,
        message: str,
        active: int,
        counts: Mapping[str, int] | None = None,
        empty: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message)
        self.active = active  # what an approval of this refusal accepts as the new baseline
        self.counts = dict(counts or {})
        # Tables found empty: never accepted by an approval (the source must be fixed).
        self.empty = empty
        self.schools: list[str] | None = None  # the schools the run records (set by the runner)

    @property
    def approvable(self) -> bool:
        """An empty table is refused until the source is fixed; a drop can be approved once."""
        return not self.empty


def check_source(
    counts: Mapping[str, int], active_persons: int, baseline: GateBaseline | None, max_drop_percent: float
) -> None:
    """Raise SourceRefused for an empty source or table, or a sudden drop in any table or active persons."""
    base = baseline or GateBaseline()
    total = counts.get("persons", 0)
    if total == 0 or active_persons == 0:
        raise SourceRefused(
            f"the source is empty ({total} persons, {active_persons} active): refusing to run;"
            " check the SIS connection and queries",
            active_persons,
            counts,
            empty=("persons",),
        )
    empty = tuple(t for t in TABLES if counts.get(t, 0) == 0 and base.counts.get(t, 0) > 0)
    if empty:
        had = ", ".join(f"{t} {base.counts[t]}" for t in empty)
        raise SourceRefused(
            f"the {', '.join(empty)} table(s) are empty (the good runs of the last days had {had} rows):"
            " refusing to run; check the SIS connection and queries",
            active_persons,
            counts,
            empty=empty,
        )
    drops = [(t, base.counts[t], counts.get(t, 0)) for t in TABLES if base.counts.get(t)]
    if base.active_persons:
        drops.append(("active persons", base.active_persons, active_persons))
    fell = [
        f"{name} fell from {was} to {now} ({(was - now) * 100.0 / was:.1f} % fewer;"
        f" the limit is {max_drop_percent:g} %)"
        for name, was, now in drops
        if (was - now) * 100.0 / was > max_drop_percent
    ]
    if fell:
        raise SourceRefused(
            f"{'; '.join(fell)}: refusing to run",
            active_persons,
            counts,
        )
