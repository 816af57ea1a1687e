"""Fingerprints of each group's membership rows (provisioner/core/memberships.py), table-driven."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner.core import memberships

BASE = [(f"G{g:03d}", f"P{g * 10 + i:05d}", "student") for g in range(300) for i in range(5)]
BASE += [(f"G{g:03d}", f"T{g:03d}", "teacher") for g in range(300)]


def _without(*rows: tuple) -> list[tuple]:
    return [r for r in BASE if r not in rows]


@pytest.mark.parametrize(
    ("after", "groups", "persons"),
    [
        (list(BASE), set(), set()),
        (  # one group's rows in another order: a change, about no one
            [r for r in BASE if r[0] != "G003"] + list(reversed([r for r in BASE if r[0] == "G003"])),
            {"G003"},
            set(),
        ),
        (sorted(BASE, key=lambda r: r[1]), set(), set()),  # the groups' rows interleaved otherwise
        ([*BASE, ("G007", "P99999", "student")], {"G007"}, {"P99999"}),  # a pupil joins
        (_without(("G007", "P00071", "student")), {"G007"}, {"P00071"}),  # and leaves
        (  # moves to another class: both groups, the one pupil
            [*_without(("G007", "P00071", "student")), ("G123", "P00071", "student")],
            {"G007", "G123"},
            {"P00071"},
        ),
        (  # a teacher becomes a student in their group: the same person, another row
            [(g, p, "student" if p == "T005" else r) for g, p, r in BASE],
            {"G005"},
            {"T005"},
        ),
        ([r for r in BASE if r[0] != "G042"], {"G042"}, {*(f"P{420 + i:05d}" for i in range(5)), "T042"}),
        ([*BASE, ("NEW", "P00001", "student")], {"NEW"}, {"P00001"}),  # a group's first member
        ([*BASE, ("G001", "P\udcff", "student")], {"G001"}, {"P\udcff"}),  # a lone surrogate, kept as read
    ],
)
def test_changed_groups(after: list[tuple], groups: set[str], persons: set[str]) -> None:
    before = memberships.GroupPrints.of(BASE)
    assert before is not None
    before = before.frozen({"P00003"}, {"G299"})
    got = memberships.changed_groups(before, after)
    assert got is not None
    assert (got.groups, got.persons, got.rows) == (groups, persons, len(after))
    now = memberships.GroupPrints.of(after)
    assert now is not None
    # the fingerprints now, as a full read makes them, with what the run before froze
    assert got.prints == now.frozen({"P00003"}, {"G299"})
    if after != BASE:  # and the next change is found from them
        again = memberships.changed_groups(got.prints, BASE)
        assert again is not None and again.groups == groups and again.persons == persons


@pytest.mark.parametrize(
    "after",
    [
        [(f"G{g:03d}", "P1", "student") for g in range(memberships.LIMIT + 1)] + BASE,  # too many groups
        [*BASE, (None, "P00001", "student")],  # a group id that is no text (NULL)
        [*BASE, ("G001", None, "student")],  # a changed row without a person id
        [*BASE, (7, "P00001", "student")],
    ],
)
def test_what_changed_groups_leaves_to_a_full_plan(after: list[tuple]) -> None:
    before = memberships.GroupPrints.of(BASE)
    assert before is not None
    assert memberships.changed_groups(before, after) is None


def test_rows_no_fingerprint_can_be_taken_of() -> None:
    assert memberships.GroupPrints.of([*BASE, (None, "P1", "student")]) is None
    assert memberships.GroupPrints.of([*BASE, ("G001", "P1", dt.date(2025, 1, 1))]) is None  # marshal refuses
    assert memberships.GroupPrints.of([*BASE, ("G001", "P1", 10**30)]) is not None  # JSON and marshal take it
    empty = memberships.GroupPrints.of([])
    assert empty is not None and empty.ids == () and len(empty.buckets) == memberships.BUCKETS


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(BASE)),  # where among the rows there were
            st.sampled_from(["G007", "G123", "G299", "A-NEW", "Z-NEW"]),  # a group there is, or a new one
            st.sampled_from(["N1", "N2", "N3"]),  # a joiner
            st.sampled_from(["student", "teacher"]),
        ),
        min_size=1,
        max_size=6,
    )
)
def test_changed_among_a_joiners_groups_is_what_changed_groups_finds(joins: list[tuple]) -> None:
    """Joiners' rows put anywhere among the rows there were (which stay as they were, in order):
    fingerprinting only the joiners' groups finds what fingerprinting every group does."""
    before = memberships.GroupPrints.of(BASE)
    assert before is not None
    before = before.frozen({"P00003"}, {"G299"})
    after = list(BASE)
    for at, group, person, role in sorted(joins, key=lambda j: -j[0]):
        after.insert(at, (group, person, role))
    joined = {j[2] for j in joins}
    groups = {r[0] for r in after if r[1] in joined}
    theirs = [r for r in after if r[0] in groups]
    assert memberships.changed_among(before, theirs, groups, len(after)) == memberships.changed_groups(
        before, after
    )


def test_changed_among_takes_only_the_candidates_rows() -> None:
    before = memberships.GroupPrints.of(BASE)
    assert before is not None
    assert memberships.changed_among(before, [("G001", "N1", "student")], {"G002"}, len(BASE) + 1) is None
    many = {f"NEW{n}" for n in range(memberships.LIMIT + 1)}
    rows = [(g, "N1", "student") for g in sorted(many)]
    assert memberships.changed_among(before, rows, many, len(BASE) + len(rows)) is None  # too many groups
