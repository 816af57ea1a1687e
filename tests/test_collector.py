"""The garbage collector's thresholds during a run (provisioner/apply/collector.py)."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from provisioner.apply.collector import RUN_THRESHOLDS, paused, run_collector
from provisioner.run import runner
from provisioner.state.store import StateStore
from tests.sisbuilder import make_config, small_sis


def test_the_run_thresholds_hold_inside_and_the_old_ones_come_back_after_an_error() -> None:
    before = gc.get_threshold()
    assert before != RUN_THRESHOLDS
    with pytest.raises(RuntimeError), run_collector():
        assert gc.get_threshold() == RUN_THRESHOLDS
        raise RuntimeError("a run that fails")
    assert gc.get_threshold() == before


def test_every_run_works_under_the_run_thresholds(tmp_path: Path) -> None:
    src = f"sqlite:///{tmp_path / 'sis.db'}"
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        small_sis().write(src)
        cfg = make_config(tmp_path, src, store.url, targets=("itslearning",))
        before = gc.get_threshold()
        with runner._locked(cfg, store, "run-1"):
            assert gc.get_threshold() == RUN_THRESHOLDS
        assert gc.get_threshold() == before
    finally:
        store.close()


def test_a_paused_stretch_collects_nothing_and_leaves_what_it_made_out_until_the_run_ends() -> None:
    """Reading and planning run paused (runner.plan_run): no collection walks their objects,
    which stay frozen to the end of the run and are collected as usual after."""
    assert gc.isenabled() and gc.get_freeze_count() == 0
    with run_collector():
        with pytest.raises(RuntimeError), paused():
            assert not gc.isenabled()
            made = [[i] for i in range(1_000)]
            raise RuntimeError("a plan that fails")
        assert gc.isenabled()  # as it was
        assert gc.get_freeze_count() >= len(made)  # left out of every collection of the run
    assert gc.get_freeze_count() == 0
    gc.disable()
    try:
        with paused():
            pass
        assert not gc.isenabled()  # a collector someone turned off stays off
    finally:
        gc.enable()
        gc.unfreeze()
