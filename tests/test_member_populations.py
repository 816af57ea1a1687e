"""The member thresholds' base is counted once per write of a target, and is always what is stored."""

from __future__ import annotations

from pathlib import Path

from provisioner.run import runner
from provisioner.state.common import population_key
from provisioner.state.safety_reads import member_populations
from tests.sisbuilder import small_sis
from tests.test_pipeline import DAY1, Env


def _stored_members(env: Env, target: str) -> int:
    return sum(len(o["members"] or ()) for o in env.objects(target).values() if o["status"] != "deleted")


def test_a_count_is_kept_until_the_targets_objects_are_written_again(tmp_path: Path) -> None:
    env = Env(tmp_path, small_sis())
    try:
        assert env.sync(DAY1).exit_code == runner.EXIT_OK
        whole = _stored_members(env, "itslearning")
        assert whole > 0
        assert member_populations(env.store, ["itslearning", "feide"]) == {
            "itslearning": whole,
            "feide": _stored_members(env, "feide"),
        }
        # Kept: a later ask reads the count, not the objects (shown by a count put there).
        env.store.meta.set(population_key("itslearning"), "12345")
        assert member_populations(env.store, ["itslearning"]) == {"itslearning": 12345}
        # A quiet run writes no object: the count stays.
        assert env.sync(DAY1).exit_code == runner.EXIT_OK
        assert env.store.meta.get(population_key("itslearning")) == "12345"
        # A pupil leaves their groups: the run that writes itslearning's groups drops the count.
        env.sis.memberships = [m for m in env.sis.memberships if m.person_id != "S2"]
        assert env.sync(DAY1).exit_code == runner.EXIT_OK
        assert env.store.meta.get(population_key("itslearning")) is None
        now = member_populations(env.store, ["itslearning"])
        assert now == {"itslearning": _stored_members(env, "itslearning")} and now["itslearning"] < whole
        env.store.meta.set(population_key("itslearning"), "not a number")  # counted again, not trusted
        assert member_populations(env.store, ["itslearning"]) == now
    finally:
        env.store.close()
