"""The demo school-admin generator: counts, synthetic NINs, integrity, realism, determinism."""

from __future__ import annotations

import datetime as dt
import re
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from demo import data as demo_data
from demo.data import DEMO, TABLES, create_schema, generate, school_year
from provisioner.core import nin

AS_OF = dt.date(2025, 10, 1)
YEAR_START, YEAR_END = school_year(AS_OF)
SHARED_SCHEMA = Path(__file__).resolve().parents[1].parent / "shared" / "reference-sis" / "schema.sql"

# (child table, column, parent table, parent key)
FOREIGN_KEYS = (
    ("student_enrollment", "person_id", "person", "person_id"),
    ("student_enrollment", "school_id", "school", "school_id"),
    ("employment", "person_id", "person", "person_id"),
    ("employment", "school_id", "school", "school_id"),
    ("guardianship", "guardian_id", "person", "person_id"),
    ("guardianship", "student_id", "person", "person_id"),
    ("school_group", "school_id", "school", "school_id"),
    ("group_membership", "group_id", "school_group", "group_id"),
    ("group_membership", "person_id", "person", "person_id"),
)


def _generate(path: Path, seed: int = 1) -> dict[str, int]:
    return generate(f"sqlite:///{path}", DEMO, seed=seed, as_of=AS_OF)


def _dump(path: Path) -> dict[str, list[tuple]]:
    with sqlite3.connect(path) as db:
        return {t: db.execute(f"SELECT * FROM {t} ORDER BY 1, 2").fetchall() for t in TABLES}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[sqlite3.Connection, dict[str, int], Path]:
    path = tmp_path_factory.mktemp("demo") / "sis.sqlite"
    counts = _generate(path)
    db = sqlite3.connect(path)
    yield db, counts, path
    db.close()


def _one(db: sqlite3.Connection, sql: str) -> object:
    return db.execute(sql).fetchone()[0]


def test_packaged_schema_is_the_reference_schema() -> None:
    packaged = Path(demo_data.__file__).with_name("reference_schema.sql")
    if not SHARED_SCHEMA.exists():
        pytest.skip("../shared is not present")
    assert packaged.read_bytes() == SHARED_SCHEMA.read_bytes()


def test_create_schema_makes_the_seven_tables(tmp_path: Path) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'empty.sqlite'}")
    create_schema(engine)
    assert set(sa.inspect(engine).get_table_names()) == set(TABLES)
    engine.dispose()


def test_row_counts_are_in_range(demo) -> None:
    db, counts, _ = demo
    for table in TABLES:
        assert counts[table] == _one(db, f"SELECT COUNT(*) FROM {table}")
    levels = dict(db.execute("SELECT level, COUNT(*) FROM school GROUP BY level").fetchall())
    assert levels == dict.fromkeys(demo_data.LEVELS, 2)
    assert _one(db, "SELECT COUNT(DISTINCT person_id) FROM student_enrollment") == DEMO.students
    assert _one(db, "SELECT COUNT(DISTINCT person_id) FROM employment") == DEMO.employees
    assert 1_700 <= _one(db, "SELECT COUNT(DISTINCT guardian_id) FROM guardianship") <= 1_900
    assert 0.9 * DEMO.groups <= counts["school_group"] <= 1.1 * DEMO.groups
    assert 0.9 * DEMO.memberships <= counts["group_membership"] <= 1.1 * DEMO.memberships


def test_nins_are_valid_synthetic_and_unique(demo) -> None:
    db, _, _ = demo
    nins = [n for (n,) in db.execute("SELECT nin FROM person WHERE nin IS NOT NULL")]
    assert nins and all(nin.is_valid(n) and nin.kind(n) == "synthetic" for n in nins)
    assert len(set(nins)) == len(nins)
    # Each NIN encodes the person's birth date.
    for n, born in db.execute("SELECT nin, birth_date FROM person WHERE nin IS NOT NULL LIMIT 500"):
        assert nin.birth_date(n).isoformat() == born
    # Only guardians lack a NIN, about 1 % of them.
    missing = _one(
        db,
        "SELECT COUNT(*) FROM person WHERE nin IS NULL"
        " AND person_id IN (SELECT guardian_id FROM guardianship)",
    )
    guardians = _one(db, "SELECT COUNT(DISTINCT guardian_id) FROM guardianship")
    assert _one(db, "SELECT COUNT(*) FROM person WHERE nin IS NULL") == missing
    assert 0 < missing <= 0.03 * guardians


def test_referential_integrity(demo) -> None:
    db, _, _ = demo
    for child, col, parent, key in FOREIGN_KEYS:
        orphans = _one(
            db,
            f"SELECT COUNT(*) FROM {child} c LEFT JOIN {parent} p ON p.{key} = c.{col} WHERE p.{key} IS NULL",
        )
        assert orphans == 0, f"{child}.{col}"
    # Guardianships link a guardian to a student, never a student to themselves.
    assert _one(db, "SELECT COUNT(*) FROM guardianship WHERE guardian_id = student_id") == 0
    assert (
        _one(
            db,
            "SELECT COUNT(*) FROM guardianship"
            " WHERE student_id NOT IN (SELECT person_id FROM student_enrollment)",
        )
        == 0
    )


def test_names_look_norwegian(demo) -> None:
    db, _, _ = demo
    rows = db.execute("SELECT given_name, middle_name, family_name, email, mobile FROM person").fetchall()
    names = [" ".join(filter(None, r[:3])) for r in rows]
    assert any(ch in n for n in names for ch in "æøåÆØÅ")
    assert any(re.fullmatch(r"[^\W\d_]+-[^\W\d_]+", r[2]) for r in rows), "a hyphenated family name"
    assert any("'" in n for n in names), "an apostrophe (O'Neill, D'Souza)"
    assert any(" " in r[0] for r in rows), "several given names"
    assert any(r[1] for r in rows), "middle names"
    immigrant = {"Nguyen", "Tran", "Ali", "Ahmed", "Khan", "Kowalski", "Kowalska", "Nowak", "Abdi", "Hassan"}
    assert any(r[2] in immigrant for r in rows)
    emails = [r[3] for r in rows if r[3]]
    assert emails and all(
        re.fullmatch(r"[a-z0-9.]+@(example\.(org|net|com)|[a-z]+\.example)", e) for e in emails
    )
    mobiles = [r[4] for r in rows if r[4]]
    assert mobiles and all(re.fullmatch(r"\+47 [49]\d\d \d\d \d\d\d", m) for m in mobiles)
    # Guardians have contact details.
    with_email = _one(
        db,
        "SELECT COUNT(*) FROM person WHERE email IS NOT NULL"
        " AND person_id IN (SELECT guardian_id FROM guardianship)",
    )
    assert with_email >= 0.9 * _one(db, "SELECT COUNT(DISTINCT guardian_id) FROM guardianship")


def test_schools_look_real(demo) -> None:
    db, _, _ = demo
    rows = db.execute("SELECT org_number, name, short_name, level FROM school").fetchall()
    assert len({r[0] for r in rows}) == len(rows) and all(re.fullmatch(r"\d{9}", r[0]) for r in rows)
    assert len({r[2] for r in rows}) == len(rows) and all(re.fullmatch(r"[A-Z]+", r[2]) for r in rows)
    suffix = {
        "primary": " skole",
        "combined": " skole",
        "lower_secondary": " ungdomsskole",
        "upper_secondary": " videregående skole",
    }
    for _, name, _, level in rows:
        assert name.endswith(suffix[level]) if level in suffix else "voksenopplæring" in name


def test_grades_and_birth_dates_fit_the_level(demo) -> None:
    db, _, _ = demo
    allowed = {
        "primary": set(range(1, 8)),
        "lower_secondary": {8, 9, 10},
        "combined": set(range(1, 11)),
        "upper_secondary": {11, 12, 13},
        "adult": {None},
    }
    rows = db.execute(
        "SELECT s.level, e.grade, p.birth_date, e.end_date FROM student_enrollment e"
        " JOIN school s ON s.school_id = e.school_id JOIN person p ON p.person_id = e.person_id"
    ).fetchall()
    for level, grade, born, end in rows:
        if end is not None and end < YEAR_START.isoformat():
            continue  # last year's enrollment at the previous school
        assert grade in allowed[level]
        age = YEAR_START.year - int(born[:4])
        if grade is None:
            assert 19 <= age <= 60
        else:
            assert age - 5 - grade in (0, 1)
    assert _one(db, "SELECT COUNT(*) FROM student_enrollment WHERE main_school = 0") == 0


def test_every_student_has_a_grade_and_vgs_pupils_a_grep_programme(demo) -> None:
    # What Feide's Grep codes are made of: a grade for every student outside adult education
    # (which has no years; the Feide target's adult_grade stands in), programme and
    # programme area for every upper-secondary pupil.
    db, _, _ = demo
    rows = db.execute(
        "SELECT s.level, e.grade, e.programme, e.programme_area FROM student_enrollment e"
        " JOIN school s ON s.school_id = e.school_id"
    ).fetchall()
    assert all((grade is None) == (level == "adult") for level, grade, _, _ in rows)
    vgs = [(prog, area) for level, _, prog, area in rows if level == "upper_secondary"]
    assert vgs and all(prog and area for prog, area in vgs)
    assert not any(prog for level, _, prog, _ in rows if level != "upper_secondary")


def test_activity_rules_have_something_to_decide(demo) -> None:
    db, _, _ = demo
    day = AS_OF.isoformat()
    assert _one(db, f"SELECT COUNT(*) FROM student_enrollment WHERE end_date < '{day}'") > 0
    assert _one(db, f"SELECT COUNT(*) FROM student_enrollment WHERE start_date > '{day}'") > 0
    assert _one(db, f"SELECT COUNT(*) FROM student_enrollment WHERE end_date > '{day}'") > 0
    assert _one(db, f"SELECT COUNT(*) FROM employment WHERE end_date < '{day}'") > 0
    assert _one(db, f"SELECT COUNT(*) FROM employment WHERE start_date > '{day}'") > 0
    open_share = _one(db, "SELECT AVG(end_date IS NULL) FROM student_enrollment")
    assert open_share > 0.8
    two_schools = _one(
        db,
        "SELECT COUNT(*) FROM (SELECT person_id FROM employment GROUP BY person_id"
        " HAVING COUNT(DISTINCT school_id) > 1)",
    )
    assert two_schools >= 2
    roles = dict(
        db.execute("SELECT role, COUNT(DISTINCT person_id) FROM employment GROUP BY role").fetchall()
    )
    assert roles["teacher"] > roles["staff"] > 0 and roles["leader"] >= 2 * 10
    # Siblings share guardians: some guardian has two or more students.
    assert _one(db, "SELECT MAX(c) FROM (SELECT COUNT(*) c FROM guardianship GROUP BY guardian_id)") >= 2
    per_student = {c for (c,) in db.execute("SELECT COUNT(*) FROM guardianship GROUP BY student_id")}
    assert per_student <= {1, 2}


def test_groups_have_codes_names_and_members(demo) -> None:
    db, _, _ = demo
    groups = db.execute(
        "SELECT group_id, kind, name, subject_code, start_date, end_date FROM school_group"
    ).fetchall()
    kinds = {g[1] for g in groups}
    assert kinds == {"basis", "teaching", "contact"}
    for _, kind, name, code, start, end in groups:
        assert (start, end) == (YEAR_START.isoformat(), YEAR_END.isoformat())
        if kind == "teaching":
            assert code and re.fullmatch(r"[A-Z]{3}\d{4}", code) and name.startswith(code + " ")
        else:
            assert code is None
    basis = {g[2] for g in groups if g[1] == "basis"}
    assert {"6A", "1STA"} <= basis
    codes = {g[3] for g in groups}
    assert {"MAT0010", "NOR0214", "MAT1019", "MAT1021", "NOR1260"} <= codes
    assert {r for (r,) in db.execute("SELECT DISTINCT role FROM group_membership")} == {"student", "teacher"}
    # Every student with a current or coming enrollment sits in exactly one class.
    day = AS_OF.isoformat()
    placed = db.execute(
        "SELECT e.person_id, COUNT(m.group_id) FROM student_enrollment e"
        " LEFT JOIN group_membership m ON m.person_id = e.person_id AND m.role = 'student'"
        "  AND m.group_id IN (SELECT group_id FROM school_group WHERE kind = 'basis')"
        f" WHERE e.end_date IS NULL OR e.end_date >= '{day}' GROUP BY e.person_id"
    ).fetchall()
    assert placed and all(c == 1 for _, c in placed)
    teachers = _one(db, "SELECT COUNT(DISTINCT group_id) FROM group_membership WHERE role = 'teacher'")
    assert teachers == len(groups)


def test_same_seed_same_data_other_seed_other_data(demo, tmp_path: Path) -> None:
    _, counts, path = demo
    again = tmp_path / "again.sqlite"
    assert _generate(again) == counts
    assert _dump(again) == _dump(path)
    other = tmp_path / "other.sqlite"
    _generate(other, seed=2)
    assert _dump(other)["person"] != _dump(path)["person"]


@pytest.mark.postgres
def test_postgres_gets_the_same_rows(demo, pg_url: str) -> None:
    _, counts, _ = demo
    assert generate(pg_url, DEMO, seed=1, as_of=AS_OF) == counts
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            for table in TABLES:
                assert conn.exec_driver_sql(f"SELECT COUNT(*) FROM {table}").scalar() == counts[table]
            sample = conn.exec_driver_sql(
                "SELECT birth_date, main_school FROM person JOIN student_enrollment USING (person_id) LIMIT 1"
            ).one()
            assert isinstance(sample[0], dt.date) and sample[1] is True
    finally:
        engine.dispose()
