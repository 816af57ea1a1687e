"""A patched plan equals the full plan, after every step of random SIS edits (issue 15).

Random sequences of edits to a small owner (two schools, pupils, teachers, staff,
guardians, groups; AD and Microsoft 365 plan-only, itslearning and Feide applied): names
(emoji, DN and LDAP specials, spaces, an empty name), e-mail and mobile of one or several
persons, and edits a patch must leave to a full plan (a new NIN or birth date, an ended
enrollment, a newcomer, a moved membership). After each edit the run's plan (patched
where provisioner/run/incremental.py can, else full) must equal `--full`'s exactly:
every change with its reason and order, populations, holds, data errors and counts.
Now and then the plan is applied, so patches also start from a certificate an apply
predicted (provisioner.core.certificate.predict_after_apply).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioner.core import stored
from provisioner.core.plan import Plan
from provisioner.run import incremental, runner
from provisioner.service import daemon
from tests.sisbuilder import small_sis, synthetic_nin
from tests.test_pipeline import DAY1, Env

PERSONS = ("S1", "S2", "S3", "S4", "S5", "S6", "T1", "T2", "A1", "G1", "G2", "G3")
NAMES = ("Kari", "Ola Nils", "Åse-Marie", "O'Neil", 'Ku,"rt\\+<>;=*()#', " Lise ", "Ørjan 🎓", "", "Per")
EDITS = ("given", "family", "middle", "email", "mobile", "nin", "born", "leave", "newcomer", "move", "apply")
PATCHABLE = frozenset({"given", "family", "middle", "email", "mobile"})


def _shape(plan: Plan) -> tuple:
    return (
        [(tp.target, tuple(tp.changes), tp.population, tp.dry_run, tp.hold) for tp in plan.targets],
        plan.errors,
        plan.active_persons,
        dict(plan.source_counts),
        plan.schools,
        plan.schools_gone,
        plan.as_of,
    )


def _edit(env: Env, edit: str, who: list[str], value: int, seq: int) -> None:
    sis = env.sis
    for pid in who:
        name = NAMES[value % len(NAMES)]
        if edit == "given":
            sis.update_person(pid, given_name=name)  # "" too: a missing name freezes the person
        elif edit == "family":
            sis.update_person(pid, family_name=name.strip() or "Berg")
        elif edit == "middle":
            sis.update_person(pid, middle_name=name or None)
        elif edit == "email":
            sis.update_person(pid, email=f"{pid.lower()}{value}@privat.example.org" if value % 3 else None)
        elif edit == "mobile":
            sis.update_person(pid, mobile=f"+47 4{value % 10**7:07d}" if value % 3 else None)
        elif edit == "nin":
            sis.update_person(pid, nin=synthetic_nin(f"20{10 + value % 5}-0{1 + value % 9}-1{value % 9}"))
        elif edit == "born":
            sis.update_person(pid, birth_date=f"2011-0{1 + value % 9}-1{value % 9}")
        elif edit == "leave":
            sis.end_enrollments(pid, "2025-09-30")
    if edit == "newcomer":
        sis.student(f"N{seq}", "NORD", NAMES[value % len(NAMES)] or "Ny", "Elev")
    elif edit == "move":
        sis.memberships = [m for m in sis.memberships if m.person_id != who[0]]


# Each example runs a few plans per step: 20 in a normal run, ten times more in the thorough profile.
@settings(
    max_examples=max(20, settings().max_examples // 5),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(EDITS),
            st.lists(st.sampled_from(PERSONS), min_size=1, max_size=3, unique=True),
            st.integers(min_value=0, max_value=10**6),
        ),
        min_size=1,
        max_size=6,
    ),
    chunk=st.sampled_from([2, stored.CHUNK]),  # small chunks: a patch decodes some of them only
)
def test_the_patched_plan_is_the_full_plan(steps: list[tuple[str, list[str], int]], chunk: int) -> None:
    with tempfile.TemporaryDirectory() as d, mock.patch.object(stored, "CHUNK", chunk):
        env = Env(Path(d), small_sis(), safety={"max_source_drop_percent": 100})  # the gate is not under test
        try:
            assert env.sync(DAY1).exit_code in (runner.EXIT_OK, runner.EXIT_ERRORS)
            for seq, (edit, who, value) in enumerate(steps):
                if edit == "apply":
                    env.sync(DAY1)
                    continue
                _edit(env, edit, who, value, seq)
                if value % 2:  # as the nightly run: the full plan first, which checks the patch itself
                    full = env.sync(DAY1, dry_run=True, full=True)
                    check = json.loads(env.store.meta.get(incremental.CHECK_KEY) or "{}")
                    if check.get("run_id") == full.run_id:
                        assert check["same"], (edit, who)
                    continue
                made = env.sync(DAY1, dry_run=True)
                full = env.sync(DAY1, dry_run=True, full=True)
                assert made.plan is not None and full.plan is not None, (made.message, full.message)
                assert full.plan.basis == "full"
                if edit not in PATCHABLE:  # certified: the edit changed nothing
                    assert made.plan.basis in ("full", "certified"), edit
                assert _shape(made.plan) == _shape(full.plan), (edit, who, made.plan.basis)
        finally:
            env.store.close()


def test_a_renamed_teacher_and_guardian_are_patched_and_their_accounts_follow(tmp_path: Path) -> None:
    """The path the property test reaches by chance, made sure of: a patch, applied."""
    env = Env(tmp_path, small_sis())
    try:
        assert env.sync(DAY1).exit_code == runner.EXIT_OK
        env.sis.update_person("T1", family_name="Lærer-Berg")
        env.sis.update_person("G1", given_name="Pål", email="pal@privat.example.org")
        out = env.sync(DAY1)
        assert out.exit_code == runner.EXIT_OK and out.plan.basis == "incremental"
        its = {c.key: c for c in out.plan.target("itslearning").changes}
        assert set(its) == {"T1", "G1"} and its["T1"].attrs["family"] == "Lærer-Berg"
        assert {c.key for c in out.plan.target("core").changes} == {"T1", "G1"}
        assert env.persons("itslearning")["G1"]["attrs"]["given"] == "Pål"
        rerun = env.sync(DAY1)
        assert rerun.plan.basis == "certified"
        assert rerun.plan.target("itslearning").changes == ()
    finally:
        env.store.close()


def test_the_nightly_full_run_checks_the_patch_and_records_a_difference(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = Env(tmp_path, small_sis())
    try:
        env.sync(DAY1)
        env.sis.update_person("S2", family_name="Hansen-Berg")
        full = env.sync(DAY1, full=True)
        assert json.loads(env.store.meta.get(incremental.CHECK_KEY)) == {"run_id": full.run_id, "same": True}
        env.sis.update_person("S2", family_name="Hansen")
        monkeypatch.setattr(
            incremental.patch, "splice_core", lambda prev, new, keys: tuple(prev)
        )  # a broken patch
        full = env.sync(DAY1, full=True)
        assert json.loads(env.store.meta.get(incremental.CHECK_KEY)) == {"run_id": full.run_id, "same": False}
        assert full.plan.basis == "full" and [c.key for c in full.plan.target("core").changes] == ["S2"]
        # the daemon counts it in bas_patch_mismatches after the run
        assert daemon._patch_differed(env.store, full.run_id)
        assert not daemon._patch_differed(env.store, "another run")
    finally:
        env.store.close()


def _missing_name_fixed(env: Env) -> None:
    env.sis.update_person("S2", given_name="")
    env.sync(DAY1)
    env.sis.update_person("S2", given_name="Kari")


def _shared_nin_renamed(env: Env) -> None:
    env.sis.update_person("S3", nin=env.sis.get_person("S2").nin)  # S3 is the newcomer: skipped, frozen
    env.sync(DAY1)
    env.sis.update_person("S3", family_name="Olsen-Berg")
    env.sis.update_person("S2", family_name="Hansen-Berg")


def _name_emptied(env: Env) -> None:
    env.sis.update_person("T1", given_name=" ")


def _guardian_and_student(env: Env) -> None:
    env.sis.update_person("G1", family_name="Forelder-Lie")
    env.sis.update_person("S1", given_name="Ola Nils")


@pytest.mark.parametrize(
    ("setup", "basis"),
    [
        (_missing_name_fixed, "full"),  # the certified plan had a data error about S2
        (_shared_nin_renamed, "full"),  # a NIN on two rows decides who is skipped
        (_name_emptied, "full"),  # a missing name freezes T1: a data error the certified plan lacks
        (_guardian_and_student, "incremental"),
    ],
)
def test_what_a_patch_leaves_to_a_full_plan(tmp_path: Path, setup: Callable[[Env], None], basis: str) -> None:
    env = Env(tmp_path, small_sis())
    try:
        env.sync(DAY1)
        setup(env)
        made = env.sync(DAY1, dry_run=True)
        full = env.sync(DAY1, dry_run=True, full=True)
        assert made.plan.basis == basis
        assert _shape(made.plan) == _shape(full.plan)
    finally:
        env.store.close()
