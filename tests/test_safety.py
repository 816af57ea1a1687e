"""Safety: deletion thresholds per target, the source sanity gate and its baseline."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.config import FeideConfig, ItslearningConfig, SafetyConfig
from provisioner.core.plan import Change, Op
from provisioner.core.safety import (
    TABLES,
    GateBaseline,
    HoldRule,
    Removals,
    SourceRefused,
    Thresholds,
    check_hold,
    check_source,
    gone_schools,
    present_schools,
    school_hold,
    thresholds_for,
)
from provisioner.state import schema as t
from provisioner.state.common import iso_ago
from provisioner.state.store import StateStore
from tests.sisbuilder import small_sis


def ch(op: Op, key: str, kind: str = "person") -> Change:
    return Change("t", op, kind, key, "test")


def test_thresholds_target_override_wins() -> None:
    safety = SafetyConfig(max_deletes=500, max_delete_percent=10)
    assert thresholds_for(safety, FeideConfig(max_member_removals=7)) == Thresholds(500, 10, 7, 10)
    assert thresholds_for(
        SafetyConfig(max_member_removals=9, max_member_removal_percent=1), ItslearningConfig()
    ) == Thresholds(500, 10, 9, 1)
    assert thresholds_for(safety, FeideConfig()) == Thresholds(500, 10)
    assert thresholds_for(safety, FeideConfig(max_deletes=3)) == Thresholds(3, 10)
    assert thresholds_for(safety, ItslearningConfig(max_delete_percent=50)) == Thresholds(500, 50)
    assert thresholds_for(safety, ItslearningConfig(max_deletes=0, max_delete_percent=0)) == Thresholds(0, 0)


@pytest.mark.parametrize(
    ("n", "population", "limits", "rule"),
    [
        (3, 1000, Thresholds(3, 10), None),  # at the count limit
        (4, 1000, Thresholds(3, 10), "max_deletes"),
        (10, 100, Thresholds(500, 10), None),  # exactly 10 %
        (11, 100, Thresholds(500, 10), "max_delete_percent"),
        (1, 0, Thresholds(500, 10), None),  # empty target: no percent rule
        (0, 0, Thresholds(0, 0), None),
        (1, 1000, Thresholds(0, 100), "max_deletes"),
    ],
)
def test_check_hold(n: int, population: int, limits: Thresholds, rule: str | None) -> None:
    changes = [ch(Op.DELETE, f"P{i}") for i in range(n)]
    hold = check_hold(changes, population, limits)
    assert (hold.rule if hold else None) == rule
    if hold:
        assert str(n) in hold.message


def test_check_hold_counts_objects_not_changes_and_only_destructive_ops() -> None:
    changes = [ch(Op.DISABLE, "A"), ch(Op.DELETE, "A"), ch(Op.DISABLE, "B"), ch(Op.DELETE, "B", kind="group")]
    changes += [ch(Op.CREATE, f"N{i}") for i in range(50)] + [ch(Op.REMOVE_MEMBERS, "G")] * 10
    assert check_hold(changes, 1000, Thresholds(3, 100)) is None  # A, B (person), B (group)
    hold = check_hold(changes, 1000, Thresholds(2, 100))
    assert hold is not None and hold.message.startswith("3 objects")


def test_percent_message() -> None:
    hold = check_hold([ch(Op.DELETE, "A"), ch(Op.DELETE, "B")], 8, Thresholds(500, 20))
    assert hold is not None and hold.rule == "max_delete_percent"
    assert "2 of 8 objects (25.0 %)" in hold.message and "20 %" in hold.message


def rm(key: str, *members: str) -> Change:
    return Change(
        "t", Op.REMOVE_MEMBERS, "group", key, "test", members=tuple((m, "student") for m in members)
    )


MEMBERS = Thresholds(500, 100, max_member_removals=3, max_member_removal_percent=10)


@pytest.mark.parametrize(
    ("changes", "members_population", "rule"),
    [
        ([rm("G1", "A", "B"), rm("G2", "C")], 1000, None),  # 3 pairs: at the count limit
        ([rm("G1", "A", "B"), rm("G2", "C", "D")], 1000, HoldRule.MAX_MEMBER_REMOVALS),
        ([rm("G1", "A", "B", "C")], 30, None),  # exactly 10 %
        ([rm("G1", "A", "B", "C")], 29, HoldRule.MAX_MEMBER_REMOVAL_PERCENT),
        ([rm("G1", "A", "B", "C")], 0, None),  # no memberships known: no percent rule
        # A person deleted in the same plan: their removals still count.
        ([ch(Op.DELETE, "A"), rm("G1", "A"), rm("G2", "A"), rm("G3", "A"), rm("G4", "A")], 1000, "members"),
        ([ch(Op.CREATE, "A"), ch(Op.ADD_MEMBERS, "G1")] * 5, 10, None),  # adds never count
    ],
)
def test_check_hold_members(changes: list[Change], members_population: int, rule: str | None) -> None:
    hold = check_hold(changes, 1000, MEMBERS, members_population)
    if rule == "members":
        assert (
            hold is not None and hold.rule == HoldRule.MAX_MEMBER_REMOVALS and hold.message.startswith("4 ")
        )
    else:
        assert (hold.rule if hold else None) == rule


def test_an_empty_memberships_view_is_held_by_the_member_limits() -> None:
    """Every class emptied at once: the default limits (2,000 or 10 %) hold it."""
    changes = [rm(f"G{g}", *(f"P{g}-{i}" for i in range(25))) for g in range(40)]  # 1,000 pairs
    hold = check_hold(changes, 5000, Thresholds(500, 10), members_population=1000)
    assert hold is not None and hold.rule == HoldRule.MAX_MEMBER_REMOVAL_PERCENT
    assert "1000 of 1000 memberships (100.0 %)" in hold.message


def _window(objects: int = 0, members: int = 0) -> Removals:
    return Removals(frozenset(("person", f"W{i}") for i in range(objects)), members, "2026-01-01T10:00:00")


@pytest.mark.parametrize(
    ("planned", "window", "population", "rule"),
    [
        (5, _window(0), 100, None),
        (5, _window(5), 100, None),  # 10 of 105: under 10 %
        (5, _window(6), 100, HoldRule.WINDOW_DELETES),  # 11 of 106
        (0, _window(50), 100, None),  # nothing planned: nothing to hold
        (3, _window(498), 10_000, HoldRule.WINDOW_DELETES),  # 501 > 500
        (3, _window(497), 10_000, None),
    ],
)
def test_check_hold_window_deletes(planned: int, window: Removals, population: int, rule: str | None) -> None:
    changes = [ch(Op.DELETE, f"P{i}") for i in range(planned)]
    hold = check_hold(changes, population, Thresholds(500, 10), window=window, window_hours=24)
    assert (hold.rule if hold else None) == rule
    if hold:
        assert (
            f"({len(window.objects)} applied since 2026-01-01T10:00:00, {planned} planned now)"
            in hold.message
        )
        assert "within 24 h" in hold.message


def test_check_hold_window_counts_an_object_once_and_adds_member_removals() -> None:
    w = Removals(frozenset({("person", "A")}), 2, "2026-01-01T10:00:00")
    again = [ch(Op.DELETE, "A")]  # disabled in the window, deleted now: one object
    assert check_hold(again, 1000, Thresholds(1, 100), window=w) is None
    hold = check_hold([rm("G", "X", "Y")], 1000, MEMBERS, 1000, window=w)
    assert hold is not None and hold.rule == HoldRule.WINDOW_MEMBER_REMOVALS
    assert hold.message.startswith("4 memberships removed within 24 h (2 applied")
    # A slow decline: 9 % a run passes alone, the second run within the window is held.
    assert check_hold([ch(Op.DELETE, f"P{i}") for i in range(38)], 420, Thresholds(500, 10)) is None
    w = Removals(frozenset(("person", f"P{i}") for i in range(38)), 0, "2026-01-01T10:00:00")
    decline = [ch(Op.DELETE, f"Q{i}") for i in range(34)]
    assert check_hold(decline, 382, Thresholds(500, 10)) is None
    assert check_hold(decline, 382, Thresholds(500, 10), window=w).rule == HoldRule.WINDOW_DELETES


# -- the source gate ---------------------------------------------------------------------------------


def _counts(persons: int, **more: int) -> dict[str, int]:
    return {t: 10 for t in TABLES} | {"persons": persons} | more


@pytest.mark.parametrize(
    ("active", "total", "baseline", "refused"),
    [
        (0, 0, None, True),  # empty source
        (0, 10, None, True),  # nobody active
        (0, 10, 100, True),
        (1, 1, None, False),  # first run: no baseline
        (80, 100, 100, False),  # exactly 20 % fewer
        (79, 100, 100, True),  # more than 20 % fewer
        (50, 100, 100, True),
        (150, 200, 100, False),  # growth is fine
        (1, 5, 0, False),  # a zero baseline is no baseline
    ],
)
def test_check_source(active: int, total: int, baseline: int | None, refused: bool) -> None:
    base = GateBaseline(active_persons=baseline)
    if refused:
        with pytest.raises(SourceRefused) as exc:
            check_source(_counts(total), active, base, 20.0)
        assert exc.value.active == active
        assert "refusing" in str(exc.value)
    else:
        check_source(_counts(total), active, base, 20.0)


def test_check_source_drop_message() -> None:
    with pytest.raises(SourceRefused, match=r"from 100 to 50 \(50.0 % fewer; the limit is 20 %\)"):
        check_source(_counts(60), 50, GateBaseline(active_persons=100), 20)


@pytest.mark.parametrize(
    ("now", "largest", "refused", "approvable"),
    [
        ({"enrollments": 0}, {"enrollments": 900}, "enrollments", False),  # empty: like an empty person table
        ({"memberships": 0}, {"memberships": 5000}, "memberships", False),
        ({"memberships": 0}, {"memberships": 0}, None, None),  # never had any: nothing lost
        ({"groups": 79}, {"groups": 100}, "groups", True),  # fell by more than 20 %
        ({"groups": 80}, {"groups": 100}, None, None),
        ({"guardianships": 10, "schools": 1}, {"guardianships": 20, "schools": 2}, "guardianships", True),
        ({"employments": 200}, {"employments": 100}, None, None),
    ],
)
def test_check_source_per_table(
    now: dict[str, int], largest: dict[str, int], refused: str | None, approvable: bool | None
) -> None:
    base = GateBaseline(counts=_counts(100) | largest, active_persons=100)
    if refused is None:
        check_source(_counts(100, **now), 100, base, 20)
        return
    with pytest.raises(SourceRefused, match=refused) as exc:
        check_source(_counts(100, **now), 100, base, 20)
    assert exc.value.approvable is approvable
    assert exc.value.counts == _counts(100, **now)


def test_gone_schools() -> None:
    base = GateBaseline(schools=frozenset({"A", "B"}))
    assert gone_schools(("A", "B", "C"), base) == frozenset()
    assert gone_schools(("A",), base) == {"B"}
    assert gone_schools(None, base) == frozenset()  # a plan from before schools were recorded
    assert gone_schools(("A",), GateBaseline()) == frozenset()
    assert gone_schools(("A",), None) == frozenset()
    hold = school_hold({"B", "X"})
    assert hold is not None and hold.rule == HoldRule.SCHOOL_GONE and "B, X" in hold.message
    assert school_hold(()) is None


def test_present_schools_needs_an_affiliation() -> None:
    sis = small_sis().school("EMPTY", "974000009")
    assert present_schools(sis.snapshot()) == {"NORD", "SOR"}
    sis.enrollments = [e for e in sis.enrollments if e.school_id != "SOR"]
    sis.employments = [e for e in sis.employments if e.school_id != "SOR"]
    assert present_schools(sis.snapshot()) == {"NORD"}  # the school row is there; its people are not


def _run(
    store: StateStore, rid: str, status: str, active: int | None, kind: str = "sync", **counts: int
) -> None:
    store.runs.start(rid, kind, "2025-10-01")
    summary = {"source": {"counts": counts, "schools": sorted(counts)}} if counts else None
    store.runs.finish(rid, status, active_persons=active, summary=summary)


def test_gate_baseline_is_the_largest_good_run_since_the_last_approved_refusal(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        assert store.runs.gate_baseline() == GateBaseline()
        _run(store, "r1", "done", 100, persons=120, groups=10)
        assert store.runs.gate_baseline().active_persons == 100
        _run(store, "r2", "planned", 10, kind="plan", persons=1)  # a dry-run is no baseline
        _run(store, "r3", "failed", 20)
        _run(store, "r4", "refused", 40, persons=50)  # refused, not approved: no baseline
        _run(store, "r4b", "done", 90, persons=110, groups=3)  # good, smaller: the largest stays
        base = store.runs.gate_baseline()
        assert (base.active_persons, base.counts) == (100, {"persons": 120, "groups": 10})
        assert base.schools == {"persons", "groups"}  # the newest good run's (here: the counts' keys)
        with pytest.raises(SourceRefused):
            check_source({"persons": 50}, 40, base, 20)
        store.runs.approve("r4", "admin")  # approved: it and the runs after it count
        base = store.runs.gate_baseline()
        assert (base.active_persons, base.counts) == (90, {"persons": 110, "groups": 3})
        _run(store, "r5", "held", 95, persons=115)
        assert store.runs.gate_baseline().active_persons == 95
        _run(store, "r6", "done_with_errors", 44)
        assert store.runs.gate_baseline().active_persons == 95
        _run(store, "r7", "done", 300, kind="plan")  # a dry-run's plan applied later (apply_saved)
        assert store.runs.gate_baseline().active_persons == 300
    finally:
        store.close()


def test_gate_baseline_looks_back_days_or_else_at_the_newest_good_run(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        _run(store, "old", "done", 500, persons=500)
        _run(store, "older", "done", 900, persons=900)
        with store.engine.begin() as c:
            r = t.runs.c
            c.execute(t.runs.update().where(r.run_id == "old").values(started_at=iso_ago(24 * 8)))
            c.execute(t.runs.update().where(r.run_id == "older").values(started_at=iso_ago(24 * 9)))
        assert store.runs.gate_baseline(7).active_persons == 500  # none within 7 days: the newest good run
        assert store.runs.gate_baseline(10).active_persons == 900
        _run(store, "new", "done", 400, persons=400)
        assert store.runs.gate_baseline(7).counts == {"persons": 400}
    finally:
        store.close()
