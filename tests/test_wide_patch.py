"""A wide patch: changes whose context is past the bound, derived for everyone (issue 15).

When the rows that judge the changed persons are more than a patch's context may hold
(provisioner.core.patch.context_bound), a patch still maps and diffs only the persons
and groups that changed, but derives everyone, as a full plan does
(provisioner/run/incremental.py). A small owner's contexts are never past the bound:
these tests lower it. The property test (tests/test_incremental_properties.py) runs its
random edits with it lowered too.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from provisioner.core import patch
from provisioner.core.model import GroupMembership
from provisioner.run import patch_check, runner
from sources import sql
from tests.sisbuilder import small_sis
from tests.test_incremental_properties import _pupil_joins, _shape
from tests.test_pipeline import DAY1, Env


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    """A small owner's first run made, then every context past the bound."""
    made = Env(tmp_path, small_sis())
    assert made.sync(DAY1).exit_code == runner.EXIT_OK
    monkeypatch.setattr(patch, "MIN_CONTEXT_ROWS", 0)
    monkeypatch.setattr(patch, "CONTEXT_SHARE", 10**9)
    try:
        yield made
    finally:
        made.store.close()


@pytest.fixture
def snapshots(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """One entry each time the SQL source's rows as read are made a whole snapshot."""
    made: list[str] = []
    real = sql._Rows.snapshot

    def counted(self: sql._Rows) -> object:
        made.append("snapshot")
        return real(self)

    monkeypatch.setattr(sql._Rows, "snapshot", counted)
    return made


def _churn(env: Env) -> None:
    """A rename, a class move, a pupil who leaves and one who joins, in one step."""
    env.sis.update_person("T1", family_name="Lærer-Berg")
    env.sis.memberships = [
        m._replace(group_id="NORD-MAT") if (m.group_id, m.person_id) == ("NORD-6A", "S2") else m
        for m in env.sis.memberships
    ]
    env.sis.end_enrollments("S1", "2025-09-30")  # G1 keeps S2 there
    _pupil_joins(env)


def test_past_the_bound_a_patch_derives_everyone_and_maps_only_what_changed(
    env: Env, snapshots: list[str]
) -> None:
    _churn(env)
    made = env.sync(DAY1, dry_run=True)
    # Taken whole once, by the patch: no full plan read it again.
    assert made.plan.basis == "incremental" and snapshots == ["snapshot"]
    full = env.sync(DAY1, dry_run=True, full=True)
    assert _shape(made.plan) == _shape(full.plan)
    assert made.plan.active_persons == full.plan.active_persons
    its = {c.key for c in made.plan.target("itslearning").changes}
    assert {"T1", "S1", "N1", "NORD-6A", "NORD-MAT", "SOR-6A"} <= its
    assert not its & {"S3", "S4", "T2"}  # no one else's objects were diffed into changes
    out = env.sync(DAY1)  # the plan the dry runs certified, applied
    assert out.exit_code == runner.EXIT_OK and out.plan.basis == "certified"
    assert env.persons("itslearning")["T1"]["attrs"]["family"] == "Lærer-Berg"
    assert ("N1", "01") in env.objects("itslearning")["SOR-6A"]["members"]
    assert ("S2", "01") in env.objects("itslearning")["NORD-MAT"]["members"]
    assert env.sync(DAY1).plan.basis == "certified"


def test_the_nightly_run_checks_a_wide_patch_against_the_full_plan(env: Env, snapshots: list[str]) -> None:
    env.sis.update_person("S2", family_name="Hansen-Berg")
    env.sis.memberships.append(GroupMembership("NORD-MAT", "S2", "student"))
    full = env.sync(DAY1, full=True)
    # The patch took the rows as read; the full plan read the source again, and compared.
    assert snapshots == ["snapshot", "snapshot"] and full.plan.basis == "full"
    assert json.loads(env.store.meta.get(patch_check.CHECK_KEY)) == {"run_id": full.run_id, "same": True}
    env.sis.update_person("S2", family_name="Hansen")  # the fingerprints were kept: patched again
    assert env.sync(DAY1, dry_run=True).plan.basis == "incremental"


def test_a_wide_patch_that_would_decode_too_much_leaves_a_full_plan_of_the_source_read_again(
    env: Env, snapshots: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """AD and Microsoft 365 are plan-only, a change pending for everyone: past WIDE_DECODED
    earlier changes to decode, the run plans in full (reading the source again, as the
    patch took its rows) and keeps the fingerprints, so a later run can patch."""
    monkeypatch.setattr(patch, "WIDE_DECODED", 0)
    _churn(env)
    made = env.sync(DAY1, dry_run=True)
    assert made.plan.basis == "full" and snapshots == ["snapshot", "snapshot"]
    full = env.sync(DAY1, dry_run=True, full=True)
    assert _shape(made.plan) == _shape(full.plan)
    assert env.sync(DAY1).plan.basis == "certified"  # applied (N1's username recorded)
    monkeypatch.setattr(patch, "WIDE_DECODED", 20_000)
    env.sis.update_person("T2", given_name="Kjell")
    again = env.sync(DAY1, dry_run=True)
    assert again.plan.basis == "incremental"
    assert _shape(again.plan) == _shape(env.sync(DAY1, dry_run=True, full=True).plan)
