"""Safety: deletion thresholds per target, the source sanity gate and its baseline."""

from __future__ import annotations

from pathlib import Path

import pytest

from provisioner.config import FeideConfig, ItslearningConfig, SafetyConfig
from provisioner.plan import Change, Op
from provisioner.safety import SourceRefused, Thresholds, check_hold, check_source, thresholds_for
from provisioner.state.store import StateStore


def ch(op: Op, key: str, kind: str = "person") -> Change:
    return Change("t", op, kind, key, "test")


def test_thresholds_target_override_wins() -> None:
    safety = SafetyConfig(max_deletes=500, max_delete_percent=10)
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


# -- the source gate ---------------------------------------------------------------------------------


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
    if refused:
        with pytest.raises(SourceRefused) as exc:
            check_source(active, total, baseline, 20.0)
        assert exc.value.active == active
        assert "refusing" in str(exc.value)
    else:
        check_source(active, total, baseline, 20.0)


def test_check_source_drop_message() -> None:
    with pytest.raises(SourceRefused, match=r"from 100 to 50 \(50.0 % fewer; the limit is 20 %\)"):
        check_source(50, 60, 100, 20)


def _run(store: StateStore, rid: str, status: str, active: int | None, kind: str = "sync") -> None:
    store.start_run(rid, kind, "2025-10-01")
    store.finish_run(rid, status, active_persons=active)


def test_gate_baseline_is_last_good_run_or_approved_refusal(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        assert store.gate_baseline() is None
        _run(store, "r1", "done", 100)
        assert store.gate_baseline() == 100
        _run(store, "r2", "planned", 10, kind="plan")  # a dry-run is no baseline
        _run(store, "r3", "failed", 20)
        _run(store, "r4", "refused", 40)  # refused, not approved: no baseline
        assert store.gate_baseline() == 100
        with pytest.raises(SourceRefused):
            check_source(40, 50, store.gate_baseline(), 20)
        store.approve_run("r4", "admin")  # approved: the next run accepts 40
        assert store.gate_baseline() == 40
        check_source(40, 50, store.gate_baseline(), 20)
        _run(store, "r5", "held", 45)
        assert store.gate_baseline() == 45
        _run(store, "r6", "done_with_errors", 44)
        assert store.gate_baseline() == 44
        _run(store, "r7", "done", 30, kind="plan")  # a dry-run's plan applied later (apply_saved)
        assert store.gate_baseline() == 30
    finally:
        store.close()
