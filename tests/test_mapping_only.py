"""A mapping asked for some persons' and groups' objects (MappingContext.only, as a patch
asks) gives exactly those objects of the whole mapping, each as the whole mapping makes it:
a group's name still judged by all its namesakes, a person's entitlements by all groups."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import pytest

from mappings import ad, feide, itslearning, m365
from mappings.base import MappingContext, wanted, wanted_sorted
from provisioner.config import ADConfig, FeideConfig, ItslearningConfig, M365Config
from provisioner.core.model import BASIS, STUDENT, TEACHER, DesiredState, TargetObject, school_group_key
from tests.test_mapping_feide import OWNER, group, make_state

TARGETS = {
    "ad": (ad, ADConfig(base_dn="OU=Skoler,DC=example,DC=local", groups_ou="OU=Grupper")),
    "m365": (m365, M365Config(usage_location="NO", group_type="security")),
    "itslearning": (itslearning, ItslearningConfig()),
    "feide": (feide, FeideConfig(base_dn="dc=eksempel,dc=no", teacher_grep_codes=True)),
}


def _state() -> DesiredState:
    """make_state's, with a namesake of group B1 ("10A": AD and Microsoft 365 names ignore case)."""
    state = make_state()
    x1 = group("X1", BASIS, (("S1", STUDENT), ("T1", TEACHER)), name="10a")
    return DesiredState(state.as_of, state.schools, state.persons, {**state.groups, "X1": x1})


STATE = _state()


def _mapped(mapping: object, cfg: object, only: frozenset[str] | None) -> list[TargetObject]:
    ctx = MappingContext(OWNER, cfg, "2025-09-01", only=only)
    return list(mapping.map_state(STATE, ctx))  # type: ignore[attr-defined]


def _wanted(objs: Iterable[TargetObject], keys: frozenset[str]) -> list[TargetObject]:
    return [o for o in objs if o.kind in ("person", "group") and o.key in keys]


CHOICES = [
    frozenset({"S1"}),  # a pupil
    frozenset({"T1", "G1"}),  # a teacher, and a guardian (held by itslearning only)
    frozenset({"X1"}),  # a group whose name depends on a namesake not asked for
    frozenset({"B1", "S1", school_group_key("NORD", "students")}),
    frozenset({"nobody", "MAT/10A"}),  # a key with no object is no error
    frozenset(),
]


@pytest.mark.parametrize("target", sorted(TARGETS))
@pytest.mark.parametrize("keys", CHOICES, ids=lambda k: ",".join(sorted(k)) or "none")
def test_only_gives_the_whole_mappings_objects_for_those_keys(target: str, keys: frozenset[str]) -> None:
    mapping, cfg = TARGETS[target]
    whole = _wanted(_mapped(mapping, cfg, None), keys)
    some = _wanted(_mapped(mapping, cfg, keys), keys)
    assert [dataclasses.astuple(o) for o in some] == [dataclasses.astuple(o) for o in whole]
    assert {o.key for o in some} == {o.key for o in whole}
    # Something was asked for and found (the table is not vacuous): every target holds the
    # pupil S1; all but Feide (persons only) hold groups.
    if "S1" in keys or (target != "feide" and keys & {"X1", "B1"}):
        assert some


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_only_skips_the_other_persons_and_groups(target: str) -> None:
    mapping, cfg = TARGETS[target]
    got = _mapped(mapping, cfg, frozenset({"S1"}))
    assert [(o.kind, o.key) for o in got if o.kind in ("person", "group")] == [("person", "S1")]
    everyone = [o for o in _mapped(mapping, cfg, None) if o.kind in ("person", "group")]
    assert len(everyone) > 5


def test_a_namesakes_name_is_the_same_asked_alone() -> None:
    for target in ("ad", "m365"):
        mapping, cfg = TARGETS[target]
        (x1,) = _wanted(_mapped(mapping, cfg, frozenset({"X1"})), frozenset({"X1"}))
        name = x1.attrs.get("sAMAccountName") or x1.attrs["mailNickname"]
        assert name.lower().startswith("nordby-10a-")  # suffixed: B1 ("10A") is its namesake


class _Unsortable(dict):
    """Keys that may be looked up but not listed: sorting them all would fail the test."""

    def __iter__(self):  # noqa: ANN204 - the test's tripwire
        raise AssertionError("every key was listed")


@pytest.mark.parametrize(
    ("keys", "only", "expected"),
    [
        (["b", "a", "c"], None, ["a", "b", "c"]),  # a full plan: every key, sorted
        (["b", "a", "c"], frozenset({"c", "a"}), ["a", "c"]),
        (["b", "a", "c"], frozenset({"c", "zz"}), ["c"]),  # a wanted key with no object
        (["b", "a", "c"], frozenset(), []),
        ([], frozenset({"a"}), []),
    ],
)
def test_wanted_sorted_is_wanted_of_the_sorted_keys(
    keys: list[str], only: frozenset[str] | None, expected: list[str]
) -> None:
    ctx = MappingContext(OWNER, ItslearningConfig(), "2025-09-01", only=only)
    assert wanted_sorted(dict.fromkeys(keys), ctx) == expected == list(wanted(sorted(keys), ctx))


def test_wanted_sorted_does_not_list_every_key_for_a_patch() -> None:
    ctx = MappingContext(OWNER, ItslearningConfig(), "2025-09-01", only=frozenset({"P2", "P9"}))
    assert wanted_sorted(_Unsortable(P1=1, P2=2, P3=3), ctx) == ["P2"]
