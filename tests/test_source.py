"""Reading the source on SQLite, PostgreSQL and MariaDB: the demo database, query overrides, errors."""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from demo.data import DEMO, generate
from provisioner.core.fetched import Converted
from provisioner.core.model import SourceSnapshot
from sources.sql import (
    DEFAULT_QUERIES,
    SourceError,
    read_snapshot,
    read_unless,
    source_engine,
    source_unchanged,
)
from tests.sisbuilder import small_sis

AS_OF = dt.date(2025, 10, 1)
TABLE_OF = {
    "schools": "school",
    "persons": "person",
    "enrollments": "student_enrollment",
    "employments": "employment",
    "guardianships": "guardianship",
    "groups": "school_group",
    "memberships": "group_membership",
}


def _sorted(snap: SourceSnapshot) -> dict[str, list]:
    return {name: sorted(getattr(snap, name), key=repr) for name in TABLE_OF}


@pytest.mark.parametrize("server", ["pg_url", "maria_url"])
def test_demo_reads_the_same_on_sqlite_postgresql_and_mariadb(
    tmp_path: Path, server: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(server)
    lite = f"sqlite:///{tmp_path / 'demo.db'}"
    rows = generate(lite, DEMO, seed=3, as_of=AS_OF)
    assert generate(url, DEMO, seed=3, as_of=AS_OF) == rows
    snaps = [read_snapshot(source_engine(u)) for u in (lite, url)]
    expected = {name: rows[table] for name, table in TABLE_OF.items()}
    assert snaps[0].counts() == snaps[1].counts() == expected
    # Not only the counts: the same rows, with the same Python types (dates as ISO text).
    assert _sorted(snaps[0]) == _sorted(snaps[1])
    e = snaps[1].enrollments[0]
    assert isinstance(e.start_date, str) and len(e.start_date) == 10 and isinstance(e.main_school, bool)
    assert all(isinstance(g.grade, int | None) for g in snaps[1].groups)


def test_small_sis_round_trips_through_the_database(source_url: str) -> None:
    sis = small_sis()
    sis.enrollments[0] = sis.enrollments[0]._replace(end_date="2026-06-20", main_school=False)
    sis.write(source_url)
    snap = read_snapshot(source_engine(source_url))
    assert _sorted(snap) == _sorted(sis.snapshot())


def test_repeated_text_is_one_object_and_reads_the_same(source_url: str) -> None:
    """Ids other tables refer to, roles and days are one string per value; values unchanged."""
    sis = small_sis()
    sis.write(source_url)
    snap = read_snapshot(source_engine(source_url))
    assert _sorted(snap) == _sorted(sis.snapshot())
    ids = {p.person_id: p.person_id for p in snap.persons}
    assert snap.memberships and all(m.person_id is ids[m.person_id] for m in snap.memberships)
    assert all(e.person_id is ids[e.person_id] for e in snap.enrollments)
    assert len({id(m.role) for m in snap.memberships}) == len({m.role for m in snap.memberships})
    group_ids = {g.group_id: g.group_id for g in snap.groups}
    assert all(m.group_id is group_ids[m.group_id] for m in snap.memberships)
    schools = {s.school_id: s.school_id for s in snap.schools}
    assert all(g.school_id is schools[g.school_id] for g in snap.groups)


def test_an_id_the_driver_gives_as_a_number_is_shared_as_text(tmp_path: Path) -> None:
    """SQLite keeps a column's values in any type: an id stored as 1001 in one table and as
    '1001' in another is the same text (ints and bools, being equal keys, are never pooled)."""
    path = tmp_path / "sis.db"
    small_sis().write(f"sqlite:///{path}")
    _corrupt_sqlite(
        path,
        "UPDATE person SET person_id = 1001 WHERE person_id = 'S1'",
        "UPDATE group_membership SET person_id = '1001' WHERE person_id = 'S1'",
        "UPDATE student_enrollment SET person_id = 1001, main_school = 1 WHERE person_id = 'S1'",
    )
    snap = read_snapshot(source_engine(f"sqlite:///{path}"))
    one = next(p.person_id for p in snap.persons if p.person_id == "1001")
    assert type(one) is str
    held = [m.person_id for m in snap.memberships if m.person_id == "1001"]
    assert held and all(pid is one for pid in held)
    enr = next(e for e in snap.enrollments if e.person_id == "1001")
    assert enr.person_id is one and enr.main_school is True


def test_override_with_columns_in_another_order_and_case(source_url: str) -> None:
    small_sis().write(source_url)
    queries = {
        "persons": (
            "SELECT mobile AS MOBILE, email, birth_date, family_name, middle_name, given_name AS Given_Name,"
            " nin, person_id, 'extra' AS unused FROM person"
        ),
        "enrollments": (
            "SELECT main_school, end_date, start_date, grade, school_id, person_id, enrollment_id"
            " FROM student_enrollment WHERE school_id LIKE 'N%'"  # a literal % must survive the driver
        ),
        "memberships": "SELECT role, person_id, group_id FROM group_membership",
    }
    eng = source_engine(source_url)
    plain, over = read_snapshot(eng), read_snapshot(eng, queries)
    assert sorted(over.persons) == sorted(plain.persons)
    assert sorted(over.memberships) == sorted(plain.memberships)
    assert sorted(over.enrollments) == sorted(e for e in plain.enrollments if e.school_id == "NORD")


def test_a_view_can_stand_in_for_a_table(source_url: str) -> None:
    small_sis().write(source_url)
    eng = sa.create_engine(source_url, poolclass=sa.pool.NullPool)
    with eng.begin() as conn:
        conn.exec_driver_sql(
            "CREATE VIEW elev AS SELECT person_id AS pid, enrollment_id AS eid, school_id AS skole,"
            " grade, start_date, end_date, main_school FROM student_enrollment"
        )
    eng.dispose()
    q = {
        "enrollments": "SELECT eid AS enrollment_id, skole AS school_id, pid AS person_id, grade, start_date,"
        " end_date, main_school FROM elev"
    }
    assert sorted(read_snapshot(source_engine(source_url), q).enrollments) == sorted(small_sis().enrollments)


def test_missing_column_names_query_and_column(source_url: str) -> None:
    small_sis().write(source_url)
    q = {"groups": "SELECT group_id, school_id, kind, name, grade, start_date, end_date FROM school_group"}
    with pytest.raises(SourceError, match=r"source query 'groups' lacks column\(s\) \['subject_code'\]"):
        read_snapshot(source_engine(source_url), q)


@pytest.mark.parametrize(
    "query",
    ["SELEC school_id FROM school", "SELECT school_id, org_number, name, short_name, level FROM skole"],
)
def test_broken_sql_is_a_source_error_naming_the_query(source_url: str, query: str) -> None:
    small_sis().write(source_url)
    with pytest.raises(SourceError, match=r"source query 'schools' failed"):
        read_snapshot(source_engine(source_url), {"schools": query})


def test_unreachable_source(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="cannot read the source database"):
        read_snapshot(source_engine(f"sqlite:///{tmp_path / 'no' / 'such' / 'dir.db'}"))


def test_the_source_is_only_read(source_url: str) -> None:
    small_sis().write(source_url)
    writing = {"schools": "INSERT INTO school VALUES ('X', '1', 'x', 'x', 'x') RETURNING *"}
    with pytest.raises(SourceError, match="'schools' failed"):
        read_snapshot(source_engine(source_url), writing)
    eng = sa.create_engine(source_url, poolclass=sa.pool.NullPool)
    with eng.connect() as conn:
        assert conn.exec_driver_sql("SELECT count(*) FROM school").scalar() == 2
    eng.dispose()


def test_read_only_mode_does_not_stick_to_a_pooled_connection(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'sis.db'}"
    small_sis().write(url)
    eng = sa.create_engine(url, poolclass=sa.pool.SingletonThreadPool)
    read_snapshot(eng)
    with eng.begin() as conn:  # the caller's engine can still write afterwards
        conn.exec_driver_sql("DELETE FROM group_membership")
    assert read_snapshot(eng).memberships == ()
    eng.dispose()


def test_default_queries_cover_every_table() -> None:
    assert set(DEFAULT_QUERIES) == set(TABLE_OF)


def test_digests_are_stable_and_follow_every_row(source_url: str) -> None:
    small_sis().write(source_url)
    engine = source_engine(source_url)
    first, second = read_snapshot(engine), read_snapshot(engine)
    assert first.digests == second.digests and set(first.digests) == set(TABLE_OF)
    assert source_unchanged(engine, None, first.digests)
    with sa.create_engine(source_url).begin() as c:
        c.execute(sa.text("UPDATE person SET given_name = 'Ola Johan' WHERE person_id = 'S1'"))
    assert not source_unchanged(engine, None, first.digests)
    changed = read_snapshot(engine).digests
    assert {k for k in changed if changed[k] != first.digests[k]} == {"persons"}
    assert not source_unchanged(engine, None, {"persons": changed["persons"]})  # incomplete: never a match
    # One read for both questions: None while unchanged, else the very snapshot a read gives.
    assert read_unless(engine, None, changed) is None
    got = read_unless(engine, None, first.digests)
    assert got is not None and got.snapshot() == read_snapshot(engine)
    partial = read_unless(engine, None, {"persons": changed["persons"]})
    assert partial is not None and partial.digests == changed


def test_a_read_converts_only_the_rows_asked_for_and_exactly_as_a_snapshot_holds_them(
    source_url: str,
) -> None:
    """``where`` is ``table`` filtered, in the order read, whatever the driver gives (an integer id)."""
    small_sis().write(source_url)
    engine = source_engine(source_url)
    queries = {
        # SQLite gives one column integers and text alike (another database would refuse the CASE)
        "memberships": "SELECT group_id, CASE WHEN person_id = 'S1' THEN 17 ELSE person_id END AS person_id,"
        " role FROM group_membership"
        if source_url.startswith("sqlite")
        else DEFAULT_QUERIES["memberships"],
        "enrollments": "SELECT enrollment_id, person_id, school_id, grade, start_date, end_date, main_school"
        " FROM student_enrollment",  # no programme columns: the model's defaults stand in
    }
    whole = read_snapshot(engine, queries)
    cases = [
        ("memberships", "person_id", {"17", "S2"}),
        ("memberships", "person_id", {17}),  # the record holds text: an integer matches nothing
        ("memberships", "group_id", {m.group_id for m in whole.memberships[:2]}),
        ("enrollments", "person_id", {"S2", "S3", "nobody"}),
        ("persons", "person_id", set()),
    ]
    for name, column, values in cases:
        read = read_unless(engine, queries, {**whole.digests, "persons": "stale"})
        assert read is not None
        want = tuple(r for r in getattr(whole, name) if getattr(r, column) in values)
        assert read.where(name, column, values) == want, (name, column, values)
        assert read.where(name, column, values) == want  # asked again: the column is kept now
        assert read.where(name, column, values) == want
        assert read.table(name) == getattr(whole, name)
        assert read.where(name, column, values) == want  # from the converted table now
        assert read.snapshot() == whole
    assert any(m.person_id == "17" for m in whole.memberships) == source_url.startswith("sqlite")
    # The persons as the patch fingerprints them: in the field order, ids as the records hold them.
    for persons in (
        DEFAULT_QUERIES["persons"],
        "SELECT mobile, email, birth_date, family_name, middle_name, given_name, nin, person_id FROM person",
    ):
        read = read_unless(engine, {**queries, "persons": persons}, {})
        assert read is not None
        rows = read.person_rows()
        assert [r[0] for r in rows] == [p.person_id for p in whole.persons]
        if source_url.startswith("sqlite"):  # text as read is what the records hold
            assert [tuple(r) for r in rows] == [tuple(p) for p in whole.persons]
        read.table("persons")
        assert list(read.person_rows()) == list(rows)  # still as read: the same values run after run
    # The memberships as their fingerprints are taken (provisioner.core.memberships): likewise.
    for memberships in (queries["memberships"], "SELECT role, person_id, group_id FROM group_membership"):
        asked = {**queries, "memberships": memberships}
        read = read_unless(engine, asked, {})
        assert read is not None
        rows = read.membership_rows()
        assert all(type(r) is tuple for r in rows)  # plain tuples: what marshal writes
        assert [tuple(r) for r in rows] == [tuple(m) for m in read_snapshot(engine, asked).memberships]
    read = read_unless(engine, {"groups": "SELECT group_id FROM school_group"}, dict(whole.digests))
    assert read is not None
    with pytest.raises(SourceError, match="'groups' lacks column"):
        read.where("groups", "group_id", {"G1"})


def test_a_tables_digest_without_joiners_rows_is_its_digest_before_they_joined(source_url: str) -> None:
    """What a joiner patch proves a table changed by (provisioner/run/incremental.py): the
    rows naming them, in either column of a guardianship, and nothing else."""
    sis = small_sis()
    sis.write(source_url)
    engine = source_engine(source_url)
    before = read_snapshot(engine).digests
    sis.student("N1", "NORD").link_guardian("G1", "N1").guardian("F1", ["S3"]).employee("L1", "SOR")
    sis.write(source_url)
    read = read_unless(engine, None, {})
    assert read is not None
    joined = {"N1", "F1", "L1"}
    assert read.digest_without("enrollments", ("person_id",), joined) == before["enrollments"]
    assert read.digest_without("employments", ("person_id",), joined) == before["employments"]
    both = ("guardian_id", "student_id")
    assert read.digest_without("guardianships", both, joined) == before["guardianships"]
    assert read.digest_without("guardianships", ("guardian_id",), joined) != before["guardianships"]  # G1/N1
    assert read.digest_without("enrollments", ("person_id",), {"N1", "S1"}) != before["enrollments"]
    assert read.count("guardianships") == len(read_snapshot(engine).guardianships)
    assert Converted(read_snapshot(engine)).digest_without("enrollments", ("person_id",), joined) is None


def _corrupt_sqlite(path: Path, *statements: str) -> None:
    """Write what a real SIS may hold and the schema would refuse (SQLite does not check)."""
    con = sqlite3.connect(path)
    for stmt in statements:
        con.execute(stmt)
    con.commit()
    con.close()


def test_malformed_values_are_read_as_they_are_never_raised(tmp_path: Path) -> None:
    path = tmp_path / "sis.db"
    small_sis().write(f"sqlite:///{path}")
    _corrupt_sqlite(
        path,
        "UPDATE student_enrollment SET start_date = '2025-8-15', grade = '6A' WHERE person_id = 'S1'",
        "UPDATE student_enrollment SET end_date = '20.06.2026', grade = 7.0 WHERE person_id = 'S2'",
        "UPDATE student_enrollment SET start_date = '2025-08-15 00:00:00', grade = ' 5 '"
        " WHERE person_id = 'S3'",
        "UPDATE employment SET start_date = 20200801, role = ' Teacher' WHERE person_id = 'T1'",
        "UPDATE person SET given_name = CAST(x'4f6cff61' AS TEXT), mobile = x'00ff' WHERE person_id = 'S4'",
        "UPDATE person SET person_id = NULL WHERE person_id = 'S5'",
    )
    engine = source_engine(f"sqlite:///{path}")
    snap = read_snapshot(engine)  # no exception
    enr = {e.person_id: e for e in snap.enrollments}
    assert (enr["S1"].start_date, enr["S1"].grade) == ("2025-8-15", "6A")  # kept for validation to report
    assert (enr["S2"].end_date, enr["S2"].grade) == ("20.06.2026", 7)
    assert (enr["S3"].start_date, enr["S3"].grade) == ("2025-08-15", 5)  # a time of day is cut off
    emp = {e.person_id: e for e in snap.employments}
    assert (emp["T1"].start_date, emp["T1"].role) == ("20200801", " Teacher")
    persons = {p.person_id: p for p in snap.persons}
    assert persons["S4"].given_name == "Ol\udcffa" and persons["S4"].mobile == "\x00\udcff"
    assert None in persons
    # The digest still works, and still follows every row.
    assert source_unchanged(engine, None, snap.digests)
    _corrupt_sqlite(path, "UPDATE person SET given_name = CAST(x'4f6cfe61' AS TEXT) WHERE person_id = 'S4'")
    assert not source_unchanged(engine, None, snap.digests)
    assert read_snapshot(engine).digests["persons"] != snap.digests["persons"]


def test_undecodable_text_after_the_first_row_is_read_too(tmp_path: Path) -> None:
    path = tmp_path / "sis.db"
    small_sis().write(f"sqlite:///{path}")
    _corrupt_sqlite(path, "UPDATE school_group SET name = CAST(x'36ff' AS TEXT) WHERE group_id = 'NORD-MAT'")
    groups = {g.group_id: g for g in read_snapshot(source_engine(f"sqlite:///{path}")).groups}
    assert groups["NORD-MAT"].name == "6\udcff" and groups["NORD-6A"].name == "6A"


def test_row_digest_is_by_value_and_takes_any_driver_value() -> None:
    """Equal rows give equal digests whatever objects hold them; one changed value changes it;
    a driver's date or Decimal (no marshal encoding) is digested too."""
    import datetime as dt
    import decimal

    from sources.sql import _digest

    def rows(family: str, extra: object = None) -> list[tuple]:
        # Built afresh each time: distinct string objects with equal values.
        return [("P1", "".join(["Nord", family]), None, 7, extra), ("P2", "Ola\udcff", "x", -1, extra)]

    cols = ["person_id", "family_name", "email", "grade", "extra"]
    assert _digest("persons", cols, rows("mann")) == _digest("persons", cols, rows("mann"))
    assert _digest("persons", cols, rows("mann")) != _digest("persons", cols, rows("menn"))
    assert _digest("persons", cols, rows("mann")) != _digest("other", cols, rows("mann"))
    for odd in (dt.date(2026, 8, 15), decimal.Decimal("6")):
        assert _digest("persons", cols, rows("mann", odd)) == _digest("persons", cols, rows("mann", odd))
        assert _digest("persons", cols, rows("mann", odd)) != _digest("persons", cols, rows("mann"))


@pytest.mark.parametrize(
    ("column", "types"),
    [
        (("a", None, "b"), {str, type(None)}),
        (("a", "b"), {str}),
        ((1, "a", None), {int, str, type(None)}),
        ((), set()),
        ((None, None), {type(None)}),
        ((b"x", "y"), {bytes, str}),
        ((2.0, None), {float, type(None)}),
        ((dt.date(2025, 8, 15),), {dt.date}),
    ],
)
def test_the_types_of_a_column_are_every_type_its_values_have(column: tuple, types: set[type]) -> None:
    from sources.sql import _types

    assert _types(column) == types
