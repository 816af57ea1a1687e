"""The pure parts of a patched plan (provisioner/core/patch.py), table-driven."""

from __future__ import annotations

import pytest

from provisioner.core import patch, stored
from provisioner.core.fetched import Converted
from provisioner.core.model import Group, GroupMembership, Person, SourceSnapshot
from provisioner.core.plan import Change, Op
from tests.sisbuilder import small_sis, synthetic_nin


def _person(pid: str, given: str = "Ola", nin: str | None = None, born: str = "2012-03-04") -> Person:
    return Person(pid, nin, given, None, "Nordmann", born, None, None)


BASE = [_person(f"P{i:05d}", nin=None) for i in range(10_000)]  # more than one comparison block


def _with(i: int, **changes: object) -> list[Person]:
    rows = list(BASE)
    rows[i] = rows[i]._replace(**changes)
    return rows


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (list(reversed(BASE)), set()),  # order does not matter
        (_with(9_999, given_name="Kari"), {"P09999"}),  # past the first block
        (_with(3, email="ola@example.org", mobile="+47 40000000"), {"P00003"}),
        (  # two blocks changed
            [*_with(3, given_name="Kari")[:5000], *_with(9_000, family_name="Berg")[5000:]],
            {"P00003", "P09000"},
        ),
        (_with(7, nin=synthetic_nin("2012-03-04")), None),  # a NIN: identities follow
        (_with(7, birth_date="2012-03-05"), None),
        (_with(7, person_id="X7"), None),  # one went, another came
        (BASE[:-1], None),
        (BASE + [BASE[0]._replace(given_name="Twin")], None),  # an id twice
        ([p._replace(given_name="Alle") for p in BASE[: patch.LIMIT + 1]] + BASE[patch.LIMIT + 1 :], None),
    ],
)
def test_changed_persons(after: list[Person], expected: set[str] | None) -> None:
    before = patch.PersonPrints.of(BASE)
    assert before is not None
    got = patch.changed_persons(before, after)
    if expected is None:
        assert got is None
        return
    assert got is not None and got[0] == expected
    assert got[1] == patch.PersonPrints.of(after)  # the fingerprints now, as a full read makes them


JOINER = _person("P04096x", nin=synthetic_nin("2012-03-04"))  # sorts after the first block's last


@pytest.mark.parametrize(
    ("after", "changed", "joined"),
    [
        (BASE + [_person("P10000")], set(), {"P10000"}),
        ([JOINER, *BASE], set(), {"P04096x"}),  # in the middle: every later block moves
        ([JOINER, *_with(9_000, given_name="Kari")], {"P09000"}, {"P04096x"}),
        ([_person("A"), _person("Z"), *_with(3, email="ola@example.org")], {"P00003"}, {"A", "Z"}),
        ([_person("A"), JOINER, *BASE], set(), {"A", "P04096x"}),  # the second after rows there were
    ],
)
def test_changed_persons_tells_who_joined(after: list[Person], changed: set[str], joined: set[str]) -> None:
    before = patch.PersonPrints.of(BASE)
    assert before is not None
    got = patch.changed_persons(before, after)
    assert got is not None and (got.changed, got.joined) == (changed, joined)
    assert got.prints == patch.PersonPrints.of(after)  # the joiners in their places


@pytest.mark.parametrize(
    "after",
    [
        BASE[1:] + [_person("P10000")],  # one went as another came
        BASE + [_person(f"Q{i}") for i in range(patch.LIMIT + 1)],
        BASE + [_person("Q1"), _person("Q1", given="Kari")],  # a joiner twice
        [*_with(5, nin=synthetic_nin("2012-03-04")), _person("Q1")],  # a NIN changed as one joined
        [*_with(5, birth_date="2012-03-05"), _person("Q1")],
        [_person(f"Q{i}") for i in range(patch.LIMIT // 2 + 1)]
        + [p._replace(given_name="Alle") for p in BASE[: patch.LIMIT // 2]]
        + BASE[patch.LIMIT // 2 :],  # changed and joined together more than LIMIT
    ],
)
def test_changed_persons_refuses_more_than_joiners(after: list[Person]) -> None:
    before = patch.PersonPrints.of(BASE)
    assert before is not None
    assert patch.changed_persons(before, after) is None


def test_prints_refuse_an_id_twice_or_missing() -> None:
    assert patch.PersonPrints.of([_person("A"), _person("A", given="Kari")]) is None
    assert patch.PersonPrints.of([_person("A"), _person(None)]) is None  # type: ignore[arg-type]
    before = patch.PersonPrints.of([_person("A"), _person("B")])
    assert before is not None
    assert patch.changed_persons(before, [_person("A"), _person(None)]) is None  # type: ignore[arg-type]


def test_context_holds_the_groups_their_members_and_students_of_guardians() -> None:
    snap = small_sis().snapshot()
    ctx = patch.context(snap, {"S2", "G1"})
    assert ctx is not None
    # S2's class with every member; G1 with both students; guardianships inside only
    assert {g.group_id for g in ctx.groups} == {"NORD-6A"}
    assert {m.person_id for m in ctx.memberships} == {"S1", "S2", "T1"}
    assert {p.person_id for p in ctx.persons} == {"S1", "S2", "T1", "G1"}
    assert {(g.guardian_id, g.student_id) for g in ctx.guardianships} == {("G1", "S1"), ("G1", "S2")}
    assert {e.person_id for e in ctx.enrollments} == {"S1", "S2"} and {
        e.person_id for e in ctx.employments
    } == {"T1"}
    assert ctx.schools == snap.schools
    assert patch.context(snap, {"S2"}, max_rows=3) is None


def _owner(persons: int, members: int) -> SourceSnapshot:
    """``persons`` persons; the first ``members`` of them in one group."""
    people = tuple(_person(f"P{i:06d}") for i in range(persons))
    group = Group("G", "SCH", "basis", "6A", None, 6, "2026-08-15", "2027-06-20")
    return SourceSnapshot(
        schools=(),
        persons=people,
        enrollments=(),
        employments=(),
        guardianships=(),
        groups=(group,),
        memberships=tuple(GroupMembership("G", p.person_id, "student") for p in people[:members]),
    )


@pytest.mark.parametrize(
    ("persons", "members", "bound"),
    [
        (1_000, 10, patch.MIN_CONTEXT_ROWS),  # a small owner: the floor
        (30_000, 15_000, patch.MIN_CONTEXT_ROWS),  # 45,001 rows: the share is below the floor
        (400_000, 15_000, 415_001 // patch.CONTEXT_SHARE),  # a share of the owner's rows
    ],
)
def test_context_bound_is_a_share_of_the_owner(persons: int, members: int, bound: int) -> None:
    snap = _owner(persons, members)
    assert patch.context_bound(Converted(snap)) == bound
    # One member's context is the group with every member: 2 * members + 1 rows.
    ctx = patch.context(snap, {"P000000"})
    assert (ctx is not None) == (2 * members + 1 <= bound)
    if ctx is not None:
        assert len(ctx.persons) == members and len(ctx.memberships) == members


def _g(op: Op, key: str, reason: str = "r") -> Change:
    return _c(op, key, "group", reason)


def _c(op: Op, key: str, kind: str = "person", reason: str = "r") -> Change:
    return Change("t", op, kind, key, reason)


ORG, G1 = _c(Op.UPDATE, "org", "org"), _c(Op.UPDATE, "g1", "group")
A, C, E = _c(Op.UPDATE, "a"), _c(Op.UPDATE, "c"), _c(Op.UPDATE, "e")
ADD, GONE = _c(Op.ADD_MEMBERS, "g1", "group"), _c(Op.DISABLE, "b")


@pytest.mark.parametrize(
    ("prev", "new", "keys", "expected"),
    [
        (
            (ORG, A, E, G1, ADD),
            [_c(Op.UPDATE, "c", reason="new")],
            {"c"},
            (ORG, A, _c(Op.UPDATE, "c", reason="new"), E, G1, ADD),
        ),
        ((ORG, A, C, E, G1), [], {"c"}, (ORG, A, E, G1)),  # nothing left to do for c
        (
            (ORG, G1),
            [_c(Op.MOVE, "c"), _c(Op.UPDATE, "c")],
            {"c"},
            (ORG, _c(Op.MOVE, "c"), _c(Op.UPDATE, "c"), G1),
        ),
        ((A, ADD, GONE), [_c(Op.UPDATE, "b"), GONE], {"b"}, (A, _c(Op.UPDATE, "b"), ADD, GONE)),
        ((A, GONE), [], {"b"}, (A,)),  # b is active again: its removal goes
        (  # a leaver: among the removals, groups' first, each kind's by key
            (A, ADD, _g(Op.DELETE, "g9"), GONE, _c(Op.DELETE, "f")),
            [_c(Op.DISABLE, "c"), _c(Op.DELETE, "c")],
            {"c"},
            (A, ADD, _g(Op.DELETE, "g9"), GONE, _c(Op.DISABLE, "c"), _c(Op.DELETE, "c"), _c(Op.DELETE, "f")),
        ),
        ((A, _c(Op.DELETE, "f"), GONE), [_c(Op.DISABLE, "c")], {"c"}, None),  # removals not by key
        ((A, GONE, _c(Op.DELETE, "x", "unit")), [_c(Op.DISABLE, "c")], {"c"}, None),  # a kind of no rank
        ((A,), [_c(Op.UPDATE, "g1", "group")], {"g1"}, None),  # only person objects are patched
        ((A,), [_c(Op.UPDATE, "x")], {"c"}, None),
    ],
)
def test_splice_target(prev: tuple, new: list, keys: set[str], expected: tuple | None) -> None:
    assert patch.splice_target(prev, new, keys) == expected


PENDING = (
    ORG,
    *(_c(Op.CREATE, k) for k in "abcdefgh"),
    G1,
    ADD,
    _c(Op.REMOVE_MEMBERS, "g1", "group"),
    GONE,
    _c(Op.DELETE, "f"),
    _c(Op.DISABLE, "z"),
)


@pytest.mark.parametrize(
    ("new", "keys", "splices"),
    [
        ([_c(Op.CREATE, "c", reason="renamed")], {"c"}, True),  # where c's was: two chunks of two
        ([_c(Op.CREATE, "a", reason="x"), _c(Op.CREATE, "h", reason="y")], {"a", "h"}, True),
        ([], {"d"}, True),  # nothing left for d
        ([_c(Op.CREATE, "b", reason="x"), GONE], {"b"}, True),  # b's removal stays, in its chunk
        ([_c(Op.CREATE, "f", reason="x"), _c(Op.DELETE, "f")], {"f"}, True),
        ([_c(Op.CREATE, "f", reason="x")], {"f"}, True),  # f is active again: its removal goes
        ([_c(Op.CREATE, "x")], {"x"}, True),  # x had none (a joiner): after h, found by binary search
        ([_c(Op.CREATE, "cc")], {"cc"}, True),  # between c and d
        ([_c(Op.CREATE, "0")], {"0"}, True),  # the first person: after the school owner
        ([_c(Op.CREATE, "c", reason="x"), _c(Op.CREATE, "cc")], {"c", "cc"}, True),
        ([_c(Op.UPDATE, "z"), _c(Op.DISABLE, "z")], {"z"}, True),  # z's update goes after h
        ([_c(Op.CREATE, "y"), _c(Op.DELETE, "y")], {"y"}, True),  # a new removal: between f's and z's
        ([_c(Op.DISABLE, "c")], {"c"}, True),  # a leaver: c's create goes, its disable after b's
        ([_c(Op.DISABLE, "zz")], {"zz"}, True),  # the last removal of all
        ([_c(Op.CREATE, "c")], {"q"}, False),  # nothing of q's is stored
        ([_c(Op.UPDATE, "g1", "group")], {"c"}, False),
    ],
)
@pytest.mark.parametrize("recorded", [True, False], ids=["lasts recorded", "lasts decoded"])
def test_splice_stored_decodes_only_the_chunks_with_their_changes(
    monkeypatch: pytest.MonkeyPatch, new: list, keys: set[str], splices: bool, recorded: bool
) -> None:
    """The same changes and counts as splicing them all and encoding the result, whether
    each chunk's last change is recorded beside it or (stored by an earlier version) not."""
    monkeypatch.setattr(stored, "CHUNK", 2)
    prev = stored.encode(PENDING) if recorded else _unrecorded(stored.encode(PENDING))
    decoded = []
    monkeypatch.setattr(stored.StoredChanges, "decode_chunks", _counting(decoded))
    got = patch.splice_stored(prev, new, keys)
    want = patch.splice_target(PENDING, new, keys)
    if not splices:
        assert got is None  # the caller splices them all (want), or plans in full (None)
        return
    assert got is not None and want is not None
    assert sum(decoded) < len(PENDING)  # not all of them
    expected = stored.encode(want)
    assert tuple(got) == want
    assert (got.size, got.op_counts, got.destructive, got.member_removals, got.keys) == (
        expected.size,
        expected.op_counts,
        expected.destructive,
        expected.member_removals,
        expected.keys,
    )


def _unrecorded(s: stored.StoredChanges) -> stored.StoredChanges:
    """``s`` as read back from chunks an earlier version stored: no chunk's last change known."""
    return stored.StoredChanges(s.chunks, s.size, s.op_counts, s.destructive, s.member_removals, s.chunk_keys)


@pytest.mark.parametrize(
    "new",
    [
        [_c(Op.CREATE, "x")],  # a joiner: after h
        [_c(Op.CREATE, "0")],  # the first person
        [_c(Op.DISABLE, "zz")],  # a leaver's removal, the last of all
        [_g(Op.ADD_MEMBERS, "g0")],  # a group with no change before
    ],
)
def test_a_new_changes_place_is_found_without_decoding_a_chunk(
    monkeypatch: pytest.MonkeyPatch, new: list
) -> None:
    """With each chunk's last change recorded, the binary search decodes nothing: only the
    chunk the change goes in is decoded, to be spliced. Without, the search decodes more."""
    monkeypatch.setattr(stored, "CHUNK", 2)
    keys = {c.key for c in new if c.kind == "person"}
    groups = {c.key for c in new if c.kind == "group"}
    want = patch.splice_target(PENDING, new, keys, groups)
    counts = {}
    pending = stored.encode(PENDING)
    for name, prev in (("recorded", pending), ("decoded", _unrecorded(pending))):
        decoded: list[int] = []
        with monkeypatch.context() as m:
            m.setattr(stored.StoredChanges, "decode_chunks", _counting(decoded))
            got = patch.splice_stored(prev, new, keys, groups)
        assert got is not None and tuple(got) == want
        counts[name] = len(decoded)
    assert counts["recorded"] == 1 < counts["decoded"]


def _counting(decoded: list[int]):  # noqa: ANN202
    real = stored.StoredChanges.decode_chunks

    def decode_chunks(self: stored.StoredChanges, lo: int, hi: int) -> list[Change]:
        out = real(self, lo, hi)
        decoded.append(len(out))
        return out

    return decode_chunks


def test_splice_core_keeps_aliases_first_and_identities_by_person_id() -> None:
    alias = _c(Op.CREATE, "X9", "alias")
    ids = [_c(Op.UPDATE, k, "identity") for k in ("a", "c", "e")]
    new = [_c(Op.UPDATE, "d", "identity", "renamed")]
    assert patch.splice_core((alias, *ids), new, {"d", "c"}) == (alias, ids[0], new[0], ids[2])
    assert patch.splice_core((alias,), new, {"d"}) == (alias, new[0])
    assert patch.splice_core((alias,), [_c(Op.UPDATE, "d", "person")], {"d"}) is None


def test_no_row_fingerprint_holds_a_nin() -> None:
    """A fingerprint of one row's NIN could be found by trying the NINs of its birth date:
    the rows' fingerprints leave it out, and one digest of the whole table tells a change."""
    a = patch.PersonPrints.of([_person("A", nin=synthetic_nin("2012-03-04"))])
    c = patch.PersonPrints.of([_person("A", nin=None)])
    assert a is not None and c is not None
    assert a.whole == c.whole and a.ident == c.ident and a.blocks == c.blocks
    assert a.nins != c.nins
    assert patch.changed_persons(c, [_person("A", nin=synthetic_nin("2012-03-04"))]) is None


@pytest.mark.parametrize(
    ("prev", "new", "keys", "groups", "expected"),
    [
        (  # a group's members: among the other groups' member changes, by key
            (ORG, A, G1, ADD),
            [_g(Op.ADD_MEMBERS, "g0")],
            set(),
            {"g0"},
            (ORG, A, G1, _g(Op.ADD_MEMBERS, "g0"), ADD),
        ),
        (
            (ORG, A, G1, ADD, _g(Op.REMOVE_MEMBERS, "g1")),
            [_g(Op.REMOVE_MEMBERS, "g2")],
            set(),
            {"g2"},
            (ORG, A, G1, ADD, _g(Op.REMOVE_MEMBERS, "g1"), _g(Op.REMOVE_MEMBERS, "g2")),
        ),
        ((ORG, A, G1, ADD), [], set(), {"g1"}, (ORG, A)),  # nothing left to do for g1
        (  # persons and groups at once: each in its kind's block, and the member changes after
            (ORG, A, E, G1, ADD),
            [_c(Op.UPDATE, "c"), _g(Op.UPDATE, "g2"), _g(Op.ADD_MEMBERS, "g2")],
            {"c"},
            {"g2"},
            (ORG, A, _c(Op.UPDATE, "c"), E, G1, _g(Op.UPDATE, "g2"), ADD, _g(Op.ADD_MEMBERS, "g2")),
        ),
        (  # a block not in key order: where a full plan puts g2 is not known
            (_g(Op.ADD_MEMBERS, "g3"), ADD),
            [_g(Op.ADD_MEMBERS, "g2")],
            set(),
            {"g2"},
            None,
        ),
        ((A, _g(Op.DELETE, "g1")), [], set(), {"g1"}, (A,)),  # g1 is active again
        (
            (A, _g(Op.DELETE, "g1"), GONE),
            [_g(Op.DELETE, "g2")],
            set(),
            {"g2"},
            (A, _g(Op.DELETE, "g1"), _g(Op.DELETE, "g2"), GONE),
        ),
        ((A, ADD), [_g(Op.ADD_MEMBERS, "g1")], set(), {"g2"}, None),  # another group's change
    ],
)
def test_splice_target_of_groups(
    prev: tuple, new: list, keys: set[str], groups: set[str], expected: tuple | None
) -> None:
    assert patch.splice_target(prev, new, keys, groups) == expected


@pytest.mark.parametrize(
    ("new", "splices"),
    [
        ([_g(Op.UPDATE, "g1", "x"), _g(Op.ADD_MEMBERS, "g1", "x"), _g(Op.REMOVE_MEMBERS, "g1", "x")], True),
        ([_g(Op.ADD_MEMBERS, "g1", "x")], True),  # nothing left but new members
        ([_g(Op.ADD_MEMBERS, "g0")], True),  # g0 had none: before g1's, found by binary search
        ([_g(Op.UPDATE, "g0"), _g(Op.ADD_MEMBERS, "g0")], True),  # after the persons, before g1
        ([_g(Op.REMOVE_MEMBERS, "g2")], True),  # after g1's
        ([_g(Op.DELETE, "g2")], True),  # a new removal: the groups' come before the persons'
    ],
)
def test_splice_stored_of_groups(monkeypatch: pytest.MonkeyPatch, new: list, splices: bool) -> None:
    monkeypatch.setattr(stored, "CHUNK", 2)
    prev = stored.encode(PENDING)
    decoded: list[int] = []
    monkeypatch.setattr(stored.StoredChanges, "decode_chunks", _counting(decoded))
    groups = {c.key for c in new}
    got = patch.splice_stored(prev, new, set(), groups)
    if not splices:
        assert got is None
        return
    assert sum(decoded) < len(PENDING)  # not all of them
    want = patch.splice_target(PENDING, new, set(), groups)
    assert got is not None and tuple(got) == want
    assert got.keys == stored.encode(want).keys


def test_splice_stored_decodes_no_more_changes_than_it_may(monkeypatch: pytest.MonkeyPatch) -> None:
    """``most`` (a wide patch's): the chunks holding the changed objects' changes, counted
    by stored.CHUNK before any of them is decoded."""
    monkeypatch.setattr(stored, "CHUNK", 2)
    prev = stored.encode(PENDING)
    decoded: list = []
    monkeypatch.setattr(stored.StoredChanges, "decode_chunks", _counting(decoded))
    new = [_c(Op.CREATE, "c", reason="x")]
    assert patch.splice_stored(prev, new, {"c"}, most=2) is not None  # c's chunk: two changes
    decoded.clear()
    assert patch.splice_stored(prev, new, {"c"}, most=1) is None and decoded == []
    assert patch.splice_stored(prev, new, {"a", "c", "e", "g"}, most=7) is None  # three or four chunks
