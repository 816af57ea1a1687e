"""The console's directory (provisioner/core/directory.py, provisioner/state/directory.py) and Reach.

Table-driven: folding and where each kind of data error is placed; the SQLite store's
update (only changed rows written, leavers kept inactive and findable, frozen persons
kept, returners active again, errors replaced whole), its search (case-folded æøå,
LIKE's wildcards taken literally, per school) and pupils; a property test that any
sequence of updates leaves what one update of the last state writes; and what each role
reaches (provisioner/web/reach.py) on a small store.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioner.core.directory import ErrorRow, error_rows, fold
from provisioner.core.model import (
    ALL_ROLES,
    BASIS,
    STUDENT,
    TEACHER,
    TEACHING,
    DataError,
    DesiredGroup,
    DesiredPerson,
    DesiredState,
    School,
)
from provisioner.state import schema as t
from provisioner.state.store import StateStore
from provisioner.web.access import OWNER_ADMIN, SCHOOL_ADMIN
from provisioner.web.access import TEACHER as TEACHER_ROLE
from provisioner.web.reach import Reach, nin_shaped
from provisioner.web.sessions import User

SCHOOLS = ("S1", "S2", "S3")
NIN = "01010112345"  # shaped like a NIN; Reach never checks it (test data only)


def person(pid: str, name: str, *aff: tuple[str, str], username: str | None = None) -> DesiredPerson:
    given_name, _, family = name.partition(" ")
    affiliations = tuple(sorted(set(aff)))
    roles = tuple(r for r in ALL_ROLES if any(x == r for _, x in affiliations))
    return DesiredPerson(
        person_id=pid,
        username=username or pid.lower(),
        nin=None,
        given_name=given_name,
        middle_name=None,
        family_name=family,
        display_name=name,
        birth_date=None,
        email=None,
        mobile=None,
        roles=roles,
        affiliations=affiliations,
        primary_school=affiliations[0][0],
        grade=None,
    )


def group(key: str, school: str, *members: tuple[str, str], kind: str = BASIS) -> DesiredGroup:
    return DesiredGroup(key, school, kind, key.upper(), None, None, None, None, tuple(sorted(set(members))))


def state(
    persons: Iterable[DesiredPerson], groups: Iterable[DesiredGroup] = (), errors: Iterable[DataError] = ()
) -> DesiredState:
    return DesiredState(
        as_of="2026-01-05",
        schools={s: School(s, "999999999", f"School {s}", s, "primary") for s in SCHOOLS},
        persons={p.person_id: p for p in persons},
        groups={g.key: g for g in groups},
        errors=tuple(errors),
    )


KARI = person("P1", "Kari Nordmann", ("S1", STUDENT))
OLA = person("P2", "Ola Østby", ("S2", STUDENT))
AASE = person("P3", "Åse Ærø", ("S1", TEACHER), ("S2", TEACHER), username="aase_ae")
PER = person("P4", "Per Pupil", ("S1", STUDENT))
G1 = group("g1", "S1", ("P1", STUDENT), ("P3", TEACHER))
G2 = group("g2", "S2", ("P2", STUDENT), ("P3", TEACHER), kind=TEACHING)
BASE = state([KARI, OLA, AASE, PER], [G1, G2])


# -- core ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("Kari Nordmann", "kari nordmann"),
        ("  ÆRLIG   ØSTBY ", "ærlig østby"),
        ("Åse", "åse"),
        ("Straße", "strasse"),
        ("", ""),
    ],
)
def test_fold(text: str, folded: str) -> None:
    assert fold(text) == folded


@pytest.mark.parametrize(
    ("record", "schools", "person_id"),
    [
        ("person:P1", ["S1", "S2"], "P1"),
        ("person:NOBODY", [""], "NOBODY"),
        ("group:g1", ["S1"], None),
        ("group:gx", [""], None),
        ("membership:g1/P9", ["S1"], "P9"),
        ("membership:gx/P9", [""], "P9"),
        ("guardianship:P5/P1", ["S1", "S2"], None),
        ("guardianship:P5/NOBODY", [""], None),
        ("school:S3", ["S3"], None),
        ("enrollment:E17", [""], None),
        ("employment:A1", [""], None),
        ("local person local:3", [""], None),
    ],
)
def test_error_rows_place_each_record(record: str, schools: list[str], person_id: str | None) -> None:
    persons = {"P1": ["S2", "S1", "S1"]}
    groups = {"g1": "S1"}
    e = DataError("some_kind", record, "msg")
    rows = error_rows([e], lambda p: persons.get(p, ()), groups.get)
    assert rows == [ErrorRow(s, "some_kind", record, "msg", person_id) for s in schools]


@pytest.mark.parametrize(
    ("record", "schools"),
    [
        ("group:gx", ["S7"]),  # a group never stored: the school its own row names
        ("enrollment:E17", ["S7"]),
        ("group:g1", ["S1"]),  # a stored group's school wins (it is the same school in practice)
        ("person:P1", ["S1", "S2"]),
    ],
)
def test_error_rows_fall_back_to_the_school_the_row_names(record: str, schools: list[str]) -> None:
    e = DataError("some_kind", record, "msg", school_id="S7")
    rows = error_rows([e], lambda p: {"P1": ["S1", "S2"]}.get(p, ()), {"g1": "S1"}.get)
    assert [r.school_id for r in rows] == schools


def test_derive_names_the_school_of_a_broken_group_or_enrollment() -> None:
    from provisioner.config import UsernameConfig
    from provisioner.core.derive import IdentityView, derive
    from tests.sisbuilder import small_sis

    sis = small_sis()
    school = sis.schools[0].school_id
    sis.group("BAD1", school, "teaching", "Matte uten kode", subject=None, members=[])
    sis.enroll("NOBODY-HERE", school, grade=5)
    errors = derive(sis.snapshot(), "2025-10-01", IdentityView(), UsernameConfig()).state.errors
    by_record = {e.record.split(":")[0] + ":" + e.kind: e.school_id for e in errors}
    assert by_record["group:missing_subject_code"] == school
    assert by_record["enrollment:unknown_person"] == school


# -- the store ----------------------------------------------------------------------------


# ``store`` is tests/conftest.py's: each store test runs on SQLite and on PostgreSQL.


def _rows(store: StateStore, table: sa.Table, order: str) -> list[dict[str, Any]]:
    with store.engine.connect() as c:
        return [dict(r) for r in c.execute(sa.select(table).order_by(table.c[order])).mappings()]


def _active(store: StateStore) -> dict[str, bool]:
    return {r["person_id"]: r["active"] for r in _rows(store, t.dir_persons, "person_id")}


def test_second_identical_update_writes_nothing(store: StateStore) -> None:
    errs = [DataError("invalid_nin", "person:P1", "NIN 010101***** is invalid")]
    first = store.directory.update(state(BASE.persons.values(), BASE.groups.values(), errs))
    assert (first.persons, first.left, first.groups, first.groups_gone, first.errors) == (4, 0, 2, 0, 1)
    before = [_rows(store, tb, tb.c.keys()[0]) for tb in (t.dir_persons, t.dir_affiliations, t.dir_members)]
    again = store.directory.update(state(BASE.persons.values(), BASE.groups.values(), errs))
    assert (again.persons, again.left, again.groups, again.groups_gone) == (0, 0, 0, 0)
    assert again.errors == 1  # errors are replaced whole every time
    after = [_rows(store, tb, tb.c.keys()[0]) for tb in (t.dir_persons, t.dir_affiliations, t.dir_members)]
    assert after == before
    assert store.directory.school_names() == {s: f"School {s}" for s in SCHOOLS}


def test_the_directory_writes_with_statement_journals_in_memory(tmp_path: Path) -> None:
    """Every write of an update, the first (all inserts) and one of changes (a leaver, a
    frozen person, a moved group: deletes by lists of keys), runs with SQLite's statement
    journals in memory (state/common.py ``bulk_transaction``): as temp files, a first
    Oslo-size directory wrote 2.7 GB for ~180 MB of rows. The setting is put back after.
    Statement journals are SQLite's: the store is a SQLite file."""
    store = StateStore(f"sqlite:///{tmp_path / 'bas.db'}")
    seen: list[tuple[str, int]] = []

    def spy(conn: sa.Connection, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith(("INSERT", "DELETE", "UPDATE")) and "dir_" in statement.split("(")[0]:
            raw = conn.connection.dbapi_connection
            assert raw is not None
            seen.append((statement.split()[0], raw.execute("PRAGMA temp_store").fetchone()[0]))

    sa.event.listen(store.engine, "before_cursor_execute", spy)
    try:
        store.directory.update(BASE)
        moved = group("g1", "S1", ("P1", STUDENT), ("P3", TEACHER), ("P4", STUDENT))
        store.directory.update(state([KARI, AASE, PER], [moved]), frozen_persons={"P3"})
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", spy)
    assert {verb for verb, _ in seen} == {"INSERT", "DELETE", "UPDATE"}
    assert {mode for _, mode in seen} == {2}  # 2: MEMORY
    with store.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA temp_store").scalar() == 0
    store.close()


def test_leaver_inactive_findable_frozen_kept_returner_active(store: StateStore) -> None:
    store.directory.update(BASE)
    # Ola leaves; Åse's record is broken this run (frozen): her rows stay as they are.
    gone = store.directory.update(state([KARI, PER], [G1]), frozen_persons={"P3"})
    assert (gone.persons, gone.left, gone.groups, gone.groups_gone) == (0, 1, 0, 1)
    assert _active(store) == {"P1": True, "P2": False, "P3": True, "P4": True}
    (found,) = store.directory.search("østby")
    assert found["person_id"] == "P2" and not found["active"] and found["schools"] == "S2"
    assert store.directory.schools_of(["P2"]) == {"S2"}
    assert store.directory.search("østby", schools=["S2"]) and not store.directory.search(
        "østby", schools=["S1"]
    )
    assert store.directory.schools_of(["P3"]) == {"S1", "S2"}
    # Back, unchanged: written again (active), nothing else.
    back = store.directory.update(state([KARI, OLA, AASE, PER], [G1, G2]))
    assert (back.persons, back.left, back.groups) == (1, 0, 1)
    assert all(_active(store).values())
    # Frozen groups keep their rows too.
    kept = store.directory.update(state([KARI, OLA, AASE, PER], [G1]), frozen_groups={"g2"})
    assert kept.groups_gone == 0 and {g["group_key"] for g in store.directory.groups_of(["P3"])} == {
        "g1",
        "g2",
    }


def test_membership_change_rewrites_only_that_group(store: StateStore) -> None:
    store.directory.update(BASE)
    moved = group("g1", "S1", ("P1", STUDENT), ("P3", TEACHER), ("P4", STUDENT))
    w = store.directory.update(state(BASE.persons.values(), [moved, G2]))
    assert (w.persons, w.groups, w.groups_gone) == (0, 1, 0)
    assert store.directory.pupils_of({"P3"}) == {"P1", "P2", "P4"}
    by_group = store.directory.pupils_by_group({"P3"})
    assert [(g["group_key"], [p["person_id"] for p in ps]) for g, ps in by_group] == [
        ("g1", ["P1", "P4"]),
        ("g2", ["P2"]),
    ]
    assert store.directory.pupils_of({"P1"}) == set()  # a student teaches nobody


def test_errors_replaced_whole_and_placed_by_stored_rows(store: StateStore) -> None:
    store.directory.update(BASE)
    store.directory.update(
        state(BASE.persons.values(), BASE.groups.values(), [DataError("a", "group:g2", "x")])
    )
    assert [(e["school_id"], e["kind"]) for e in store.directory.errors()] == [("S2", "a")]
    # Åse is frozen (not in this state): her stored schools place her error.
    errs = [
        DataError("invalid_nin", "person:P3", "bad"),
        DataError("local_person", "local person local:1", "y"),
    ]
    store.directory.update(state([KARI, OLA, PER], [G1, G2], errs), frozen_persons={"P3"})
    rows = store.directory.errors()
    assert [(e["school_id"], e["kind"], e["person_id"]) for e in rows] == [
        ("", "local_person", None),
        ("S1", "invalid_nin", "P3"),
        ("S2", "invalid_nin", "P3"),
    ]
    assert [e["school_id"] for e in store.directory.errors(["S2"])] == ["S2"]
    assert [e["kind"] for e in store.directory.errors([""])] == ["local_person"]


@pytest.mark.parametrize(
    ("q", "found"),
    [
        ("kari", ["P1"]),
        ("KARI   NORDMANN", ["P1"]),
        ("ØSTBY", ["P2"]),
        ("åSE æRØ", ["P3"]),
        ("AASE_AE", ["P3"]),
        ("e_a", ["P3"]),  # "_" is no wildcard: "exa" (P6) does not match
        ("%", ["P5"]),  # nor is "%": only the name with a percent sign
        ("0%", ["P5"]),
        ("p4", ["P4"]),  # usernames match too
        ("zzz", []),
        ("  ", []),
    ],
)
def test_search_folds_and_escapes(store: StateStore, q: str, found: list[str]) -> None:
    odd = person("P5", "Odd 100%", ("S3", STUDENT), username="odd")
    emma = person("P6", "Emma Xa", ("S3", STUDENT), username="exa")
    store.directory.update(state([KARI, OLA, AASE, PER, odd, emma]))
    assert sorted(r["person_id"] for r in store.directory.search(q)) == found


def test_search_scoped_by_school_and_sub_select(store: StateStore) -> None:
    store.directory.update(BASE)
    assert {r["person_id"] for r in store.directory.search("a", schools=["S1"])} == {"P1", "P3"}
    assert {r["person_id"] for r in store.directory.search("a", schools=["S2"])} == {"P2", "P3"}
    within = store.directory.pupils_select({"P3"})
    assert {r["person_id"] for r in store.directory.search("a", within=within)} == {"P1", "P2"}
    assert store.directory.search("a", schools=[]) == []
    assert store.directory.by_username("AASE_AE") == {"P3"}


# -- any sequence of updates equals one update of the last state -------------------------

# Few choices, so that persons and groups often leave and come back unchanged.
_pid = st.sampled_from([f"P{i}" for i in range(4)])
_aff = st.sampled_from([(("S1", STUDENT),), (("S2", TEACHER),), (("S1", STUDENT), ("S2", TEACHER))])
_persons = st.dictionaries(_pid, st.tuples(st.sampled_from(["Kari Ås", "Ola Ødegård"]), _aff))


@st.composite
def _states(draw: st.DrawFn) -> DesiredState:
    persons = [person(pid, name, *aff) for pid, (name, aff) in draw(_persons).items()]
    ids = sorted(p.person_id for p in persons)
    groups = []
    for key in draw(st.sets(st.sampled_from(["g0", "g1", "g2"]))):
        members = (
            draw(st.sets(st.tuples(st.sampled_from(ids), st.sampled_from([STUDENT, TEACHER]))))
            if ids
            else set()
        )
        groups.append(group(key, draw(st.sampled_from(SCHOOLS)), *members))
    return state(persons, groups)


def _snapshot(store: StateStore) -> dict[str, Any]:
    persons = [r for r in _rows(store, t.dir_persons, "person_id") if r["active"]]
    ids = {r["person_id"] for r in persons}
    aff = [r for r in _rows(store, t.dir_affiliations, "person_id") if r["person_id"] in ids]
    members = _rows(store, t.dir_members, "group_key")
    return {
        "persons": persons,
        "aff": sorted((r["person_id"], r["school_id"], r["role"]) for r in aff),
        "groups": _rows(store, t.dir_groups, "group_key"),
        "members": sorted((r["group_key"], r["person_id"], r["role"]) for r in members),
    }


def _clear(store: StateStore) -> None:
    with store.engine.begin() as c:
        for table in (t.dir_persons, t.dir_affiliations, t.dir_groups, t.dir_members, t.dir_errors):
            c.execute(table.delete())


def test_any_update_sequence_equals_a_fresh_update_of_the_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Also across batches: the sequence is written two rows at a time, the fresh one whole."""
    from provisioner.state import directory as directory_mod

    many, fresh = StateStore(f"sqlite:///{tmp_path / 'a.db'}"), StateStore(f"sqlite:///{tmp_path / 'b.db'}")

    @settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.lists(_states(), min_size=1, max_size=5))
    def check(states: list[DesiredState]) -> None:
        _clear(many)
        _clear(fresh)
        monkeypatch.setattr(directory_mod, "_BATCH", 2)
        for s in states:
            many.directory.update(s)
        monkeypatch.setattr(directory_mod, "_BATCH", 10_000)
        fresh.directory.update(states[-1])
        assert _snapshot(many) == _snapshot(fresh)
        again = many.directory.update(states[-1])
        assert (again.persons, again.left, again.groups, again.groups_gone) == (0, 0, 0, 0)

    try:
        check()
    finally:
        many.close()
        fresh.close()


# -- Reach -----------------------------------------------------------------------------------


@pytest.fixture()
def small(store: StateStore) -> StateStore:
    """BASE, plus Per who left S1, in the directory and the historic base (NINs for resolve)."""
    store.directory.update(BASE)
    store.directory.update(state([KARI, OLA, AASE], [G1, G2]))  # Per left
    now = "2026-01-05T00:00:00"
    with store.engine.begin() as c:
        for i, p in enumerate([KARI, OLA, AASE, PER]):
            nin = NIN[:-1] + str(i)
            c.execute(
                t.identities.insert().values(
                    person_id=p.person_id,
                    username=p.username,
                    nin=nin,
                    display_name=p.display_name,
                    roles=",".join(p.roles),
                    status="active",
                    created_at=now,
                    updated_at=now,
                )
            )
            c.execute(t.person_nins.insert().values(nin=nin, person_id=p.person_id, first_seen=now))
    return store


def _ids(store: StateStore, sub: sa.Select[Any] | None) -> set[str] | None:
    if sub is None:
        return None
    with store.engine.connect() as c:
        return {r[0] for r in c.execute(sub)}


def test_reach_owner_admin(small: StateStore) -> None:
    r = Reach(User("o", "Owner", OWNER_ADMIN), small)
    assert r.everything and r.may_search_nin and r.may_approve and r.schools is None
    assert all(r.can_see(p) and r.can_lock(p) and r.can_reset_password(p) for p in ("P1", "P2", "P3", "P4"))
    assert r.can_see(NIN[:-1] + "1")  # an owner admin's NIN finds Ola
    assert r.person_filter() is None and r.can_see_school("") and r.can_see_school("S3")


def test_reach_school_admin(small: StateStore) -> None:
    r = Reach(User("s", "School", SCHOOL_ADMIN, ("S1",)), small)
    assert not r.everything and not r.may_search_nin and not r.may_approve and r.schools == ("S1",)
    expect = {"P1": True, "P2": False, "P3": True, "P4": True, "nobody": False}  # P4 left S1
    assert {p: r.can_see(p) for p in expect} == expect
    assert {p: r.can_lock(p) for p in expect} == expect
    # Passwords: S1's pupils only (Åse teaches there).
    assert [p for p in expect if r.can_reset_password(p)] == ["P1", "P4"]
    assert r.can_see("p1") and r.can_see("aase_ae")  # usernames resolve
    assert not r.can_see(NIN[:-1] + "0") and nin_shaped(NIN)  # Kari's NIN is not looked up
    assert _ids(small, r.person_filter()) == {"P1", "P3", "P4"}
    assert r.can_see_school("S1") and not r.can_see_school("S2") and not r.can_see_school("")
    assert r.pupils() == set() and r.teacher_ids() == set()


def test_reach_teacher(small: StateStore) -> None:
    r = Reach(User("aase_ae@demo.kommune.no", "Åse", TEACHER_ROLE), small)
    assert r.schools == () and not r.may_search_nin and r.teacher_ids() == {"P3"}
    assert r.pupils() == {"P1", "P2"}
    assert [p for p in ("P1", "P2", "P3", "P4") if r.can_see(p)] == ["P1", "P2"]
    assert [p for p in ("P1", "P2", "P3", "P4") if r.can_reset_password(p)] == ["P1", "P2"]
    assert not any(r.can_lock(p) for p in ("P1", "P2"))
    assert _ids(small, r.person_filter()) == {"P1", "P2"}
    assert not r.can_see_school("S1")
    # A user id that is some person's SIS id (not a username) makes nobody a teacher.
    assert Reach(User("P3@demo.kommune.no", "x", TEACHER_ROLE), small).pupils() == set()
