"""The executor across many state-store batches, and its error handling per change."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from pathlib import Path

import pytest

from demo import data as demo_data
from provisioner.apply.options import ApplyOptions
from provisioner.run import runner
from provisioner.state.store import StateStore
from tests.sisbuilder import make_config


@pytest.mark.parametrize("batch", [1, 7, 50])
def test_apply_in_many_batches_then_nothing_to_do(tmp_path: Path, batch: int) -> None:
    """Objects written in one batch and changed in a later one (group create, then members) stay whole."""
    day = dt.date(2025, 10, 1)
    src = f"sqlite:///{tmp_path / 'sis.sqlite'}"
    demo_data.generate(
        src,
        demo_data.Scale(1, 0, 0, 0, 0, students=40, employees=6, guardians=50, groups=8, memberships=200),
        seed=3,
        as_of=day,
    )
    cfg = make_config(tmp_path, src, f"sqlite:///{tmp_path / 'state.sqlite'}")
    store = StateStore(cfg.sqlalchemy_url(cfg.state.url))
    try:
        options = replace(runner.apply_options(cfg), batch=batch)
        first = runner.sync(cfg, store, as_of=day.isoformat(), options=options)
        assert first.status == "done", first.message
        assert first.results["itslearning"].ok > batch
        again = runner.sync(cfg, store, dry_run=True, as_of=day.isoformat())
        for t in ("core", "itslearning", "feide"):
            assert again.plan.target(t).changes == (), t
        groups = [o for o in store.objects.iterate("itslearning") if o["kind"] == "group"]
        assert groups and all(o["attrs"].get("name") for o in groups)
        assert sum(len(o["members"]) for o in groups) > 0
    finally:
        store.close()


def test_apply_options_refuse_an_empty_batch() -> None:
    assert ApplyOptions().batch == 5000 and ApplyOptions().workers
    with pytest.raises(ValueError, match="batch must be at least 1"):
        ApplyOptions(batch=0)
