"""Where an update's values come from, as its reason says (provisioner/run/targets.py):
"SIS", or "SIS or config" while a target's objects were last applied under another config."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.run.targets import changed_in, record_applied_config
from provisioner.state.store import StateStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[StateStore]:
    s = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    yield s
    s.close()


def test_known_only_for_targets_recorded_in_line_with_a_config(store: StateStore) -> None:
    record_applied_config(store, ["core", "itslearning"], "A")
    assert [changed_in(store, t, "A") for t in ("core", "itslearning", "feide", "ad")] == ["SIS"] * 4
    assert [changed_in(store, t, "B") for t in ("core", "itslearning", "feide", "ad")] == [
        "SIS",  # the core takes no reasons from it, and nothing is recorded for it
        "SIS or config",  # in line with A
        "SIS",  # held or plan-only: not known
        "SIS",
    ]
    assert changed_in(store, "itslearning", None) == "SIS"


def test_a_target_applying_under_the_new_config_says_sis_again(store: StateStore) -> None:
    record_applied_config(store, ["itslearning", "feide"], "A")
    record_applied_config(store, ["itslearning"], "B")  # feide held, or failed at once
    got = (changed_in(store, "itslearning", "B"), changed_in(store, "feide", "B"))
    assert got == ("SIS", "SIS or config")
