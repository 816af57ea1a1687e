"""Broken source data freezes what it is about and never stops the run (SPEC "Safety", first rule).

Table-driven: one hostile value in one column of one row; derive reports a data error
naming the record and the column, freezes the person (or group) the row is about, and
derives everyone else as usual. Plus a hypothesis property over random hostile rows.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioner.config import UsernameConfig
from provisioner.core.derive import Derivation, IdentityView, derive
from provisioner.core.model import STUDENT, TEACHER, school_group_key
from provisioner.core.plan import Op
from provisioner.core.validate import is_iso_date, show
from provisioner.run import runner
from provisioner.state.store import StateStore
from tests.sisbuilder import Sis, make_config, small_sis, synthetic_nin

AS_OF = "2025-10-01"
UCFG = UsernameConfig()
BAD_UTF8 = "Ol\udcff"  # what the source makes of the bytes b"Ol\xff" (surrogateescape)


def run(sis: Sis, ident: IdentityView | None = None) -> Derivation:
    return derive(sis.snapshot(), AS_OF, ident or IdentityView(), UCFG)


def world() -> Sis:
    """Two schools; P (student), T (teacher), G (guardian of P), OK (untouched), a class."""
    s = Sis().school("NORD", "974000001", "NORDBY").school("SOR", "974000002", "SORBY")
    s.student("OK", "SOR", "Trygve", "Trygg")
    s.student("P", "NORD", "Pia", "Elev").employee("T", "NORD", "Tor", "Lærer").guardian("G", ["P"])
    s.group("6A", "NORD", "basis", "6A", members=[("P", "student"), ("T", "teacher")])
    return s


def _set(rows: list, i: int, **change: Any) -> None:
    rows[i] = rows[i]._replace(**change)


def _assert_frozen(d: Derivation, pid: str) -> None:
    assert pid in d.frozen_persons and pid not in d.state.persons
    assert "OK" in d.state.persons  # the run goes on for everyone else


# -- a broken row about a person freezes that person -------------------------------------------------

PERSON_CASES = [
    # (table, row index in world(), column, value, error kind)
    ("enrollments", 1, "start_date", "2025-8-15", "bad_date"),
    ("enrollments", 1, "start_date", "20.06.2026", "bad_date"),
    ("enrollments", 1, "end_date", "2026-02-30", "bad_date"),
    ("enrollments", 1, "end_date", "2026-06-20x", "bad_date"),
    ("enrollments", 1, "start_date", None, "bad_period"),
    ("enrollments", 1, "end_date", "2025-08-01", "bad_period"),
    ("enrollments", 1, "grade", "6A", "bad_value"),
    ("enrollments", 1, "main_school", None, "bad_value"),
    ("enrollments", 1, "school_id", None, "missing_value"),
    ("enrollments", 1, "school_id", "  ", "missing_value"),
    ("enrollments", 1, "school_id", "NOSUCH", "unknown_school"),
    ("enrollments", 1, "enrollment_id", None, "missing_value"),
    ("enrollments", 1, "school_id", BAD_UTF8, "bad_text"),
    ("enrollments", 1, "start_date", dt.date(2025, 8, 15), "bad_date"),  # a date object is no ISO text
    ("employments", 0, "role", None, "missing_value"),
    ("employments", 0, "role", "Lærer", "bad_role"),
    ("employments", 0, "role", 7, "bad_role"),
    ("employments", 0, "start_date", "15.08.2020", "bad_date"),
    ("employments", 0, "school_id", "NOSUCH", "unknown_school"),
    ("persons", 1, "birth_date", "2012-3-4", "bad_date"),
    ("persons", 1, "given_name", 42, "bad_value"),
    ("persons", 1, "family_name", BAD_UTF8, "bad_text"),
    ("persons", 1, "nin", b"12345678901", "bad_value"),
    ("persons", 1, "email", "p\x00@x.no", "bad_text"),
]


@pytest.mark.parametrize(("table", "index", "column", "value", "kind"), PERSON_CASES)
def test_a_broken_row_freezes_its_person(table: str, index: int, column: str, value: Any, kind: str) -> None:
    s = world()
    who = getattr(s, table)[index].person_id
    _set(getattr(s, table), index, **{column: value})
    d = run(s)
    errs = [e for e in d.state.errors if e.kind == kind]
    assert len(errs) == 1, d.state.errors
    assert errs[0].record.split(":")[0] == {"persons": "person"}.get(table, table[:-1])
    assert column in errs[0].message or kind.startswith("unknown"), errs[0].message
    _assert_frozen(d, who)
    if who == "P":  # the class is not shrunk around a member who cannot be judged
        assert "6A" in d.frozen_groups and "6A" not in d.state.groups
        assert "G" in d.frozen_persons  # the guardian's only student cannot be judged either
    d.state.errors[0].to_json()  # every error is plain, printable data


def test_the_bad_value_is_shown_printable_and_masked() -> None:
    s = world()
    _set(s.enrollments, 1, start_date=BAD_UTF8 + "\x00")
    _set(s.employments, 0, start_date="01018012345")
    msgs = " ".join(e.message for e in run(s).state.errors)
    assert "\\udcff" in msgs and "\x00" not in msgs and "\udcff" not in msgs
    assert "01018012345" not in msgs and "010180*****" in msgs


@pytest.mark.parametrize("role", ["Teacher", " teacher ", "TEACHER", "Teacher\t"])
def test_codes_are_trimmed_and_case_folded(role: str) -> None:
    s = world()
    _set(s.employments, 0, role=role)
    _set(s.groups, 0, kind=" Basis")
    _set(s.memberships, 1, role="Teacher ")
    d = run(s)
    assert d.state.errors == ()
    assert d.state.persons["T"].roles == (TEACHER,)
    assert d.state.groups["6A"].kind == "basis"
    assert d.state.groups["6A"].members == (("P", STUDENT), ("T", TEACHER))


@pytest.mark.parametrize("which", ["student", "guardian"])
def test_a_guardianship_naming_an_unknown_person_freezes_the_guardian(which: str) -> None:
    s = world().guardian("G2", ["OK"])
    s.link_guardian("G2", "NOBODY") if which == "student" else s.link_guardian("NOBODY", "OK")
    d = run(s)
    (err,) = [e for e in d.state.errors if e.kind == "unknown_person"]
    assert "NOBODY" in err.record and "NOBODY" in err.message
    assert ("G2" in d.frozen_persons) is (which == "student")
    assert ("G2" in d.state.persons) is (which == "guardian")
    assert "G" in d.state.persons  # other guardians are fine


def test_a_person_row_without_person_id_freezes_the_person_its_rows_name() -> None:
    s = world()
    _set(s.persons, 1, person_id=None)  # P's row
    d = run(s)
    kinds = sorted((e.kind, e.record) for e in d.state.errors)
    assert ("missing_value", "person:None") in kinds
    assert ("unknown_person", f"enrollment:{s.enrollments[1].enrollment_id}") in kinds
    _assert_frozen(d, "P")


def test_a_nin_born_after_as_of_is_invalid() -> None:
    future = synthetic_nin("2026-03-04")
    s = world().update_person("P", nin=future)
    d = run(s)
    (err,) = [e for e in d.state.errors if e.kind == "invalid_nin"]
    assert err.record == "person:P" and "future" in err.message and future not in err.message
    _assert_frozen(d, "P")
    assert derive(s.snapshot(), "2026-03-04", IdentityView(), UCFG).state.persons["P"].nin == future


# -- duplicate NINs: the first-known holder keeps theirs ---------------------------------------------------


@pytest.mark.parametrize("order", ["holder_first", "holder_last"])
@pytest.mark.parametrize("how", ["nin_in_base", "identity_in_base"])
def test_the_known_holder_of_a_copied_nin_keeps_their_accounts(order: str, how: str) -> None:
    n = synthetic_nin()
    s = world()
    rows = [("A", "Anne", "NORD"), ("B", "Bjørn", "SOR")]
    for pid, first_name, school in rows if order == "holder_first" else reversed(rows):
        s.student(pid, school, first_name, "Dobbel", nin=n)
    ident = IdentityView(
        username_by_person={"A": "annedob"},
        person_by_nin={n: "A"} if how == "nin_in_base" else {},
        taken=frozenset({"annedob"}),
    )
    d = run(s, ident)
    assert [e.record for e in d.state.errors if e.kind == "duplicate_nin"] == ["person:B"]
    assert d.state.persons["A"].username == "annedob" and "A" not in d.frozen_persons
    assert "B" in d.frozen_persons and "B" not in d.state.persons


def test_copied_nin_on_two_known_persons_freezes_both() -> None:
    n = synthetic_nin()
    s = world().student("A", "NORD", nin=n).student("B", "SOR", nin=n)
    ident = IdentityView(username_by_person={"A": "a", "B": "b"}, taken=frozenset({"a", "b"}))
    d = run(s, ident)
    assert {"A", "B"} <= d.frozen_persons and "OK" in d.state.persons


# -- broken schools and groups -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value", "kind"),
    [
        ("short_name", None, "missing_value"),
        ("org_number", None, "missing_value"),
        ("name", BAD_UTF8, "bad_text"),
        ("school_id", "NORD", "duplicate_school"),  # a second row for NORD
    ],
)
def test_a_broken_school_freezes_everything_at_it(column: str, value: Any, kind: str) -> None:
    s = world()
    if kind == "duplicate_school":
        s.schools.append(s.schools[0]._replace(name="Nordby skole (kopi)"))
    else:
        _set(s.schools, 0, **{column: value})
    d = run(s)
    assert {e.kind for e in d.state.errors} == {kind}
    assert {"P", "T"} <= d.frozen_persons and not {"P", "T"} & set(d.state.persons)
    assert "G" in d.frozen_persons  # their only student cannot be judged
    assert "NORD" in d.frozen_groups  # the org unit
    assert school_group_key("NORD", "students") in d.frozen_groups
    assert school_group_key("NORD", "students") not in d.state.groups
    assert "6A" in d.frozen_groups and "6A" not in d.state.groups
    assert "OK" in d.state.persons and school_group_key("SOR", "students") in d.state.groups


@pytest.mark.parametrize(
    ("table", "column", "value", "kind"),
    [
        ("groups", "kind", "klasse", "bad_kind"),
        ("groups", "grade", "6A", "bad_value"),
        ("groups", "end_date", "20.06.2026", "bad_date"),
        ("groups", "school_id", None, "missing_value"),
        ("memberships", "role", "elev", "bad_role"),
        ("memberships", "person_id", None, "missing_value"),
        ("memberships", "person_id", "NOBODY", "unknown_person"),
    ],
)
def test_a_broken_group_or_membership_row_freezes_the_group(
    table: str, column: str, value: Any, kind: str
) -> None:
    s = world()
    _set(getattr(s, table), 0, **{column: value})
    d = run(s)
    assert [e.kind for e in d.state.errors] == [kind]
    assert "6A" in d.frozen_groups and "6A" not in d.state.groups
    assert {"P", "T", "G", "OK"} <= set(d.state.persons)  # a group's problem freezes no person


def test_duplicate_group_ids_freeze_the_group() -> None:
    s = world()
    s.group("6A", "SOR", "basis", "6A other")
    d = run(s)
    assert [(e.kind, e.record) for e in d.state.errors] == [("duplicate_group", "group:6A")] * 2
    assert "6A" in d.frozen_groups and "6A" not in d.state.groups


def test_membership_naming_an_unknown_person_in_an_ended_group_is_reported() -> None:
    s = world().group("5A", "NORD", start="2024-08-15", end="2025-06-20", members=[("GHOST", "student")])
    d = run(s)
    assert [(e.kind, e.record) for e in d.state.errors] == [("unknown_person", "membership:5A/GHOST")]


# -- values -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("2025-08-15", True),
        ("2024-02-29", True),
        ("2025-02-29", False),
        ("2025-8-15", False),
        ("20.06.2026", False),
        ("2025-08-15 ", False),
        ("2025-08-15T00:00", False),  # the source cuts a time off; derive sees only dates
        ("٢٠٢٥-٠٨-١٥", False),  # other digits are not ISO digits
        ("", False),
    ],
)
def test_iso_dates(value: str, ok: bool) -> None:
    assert is_iso_date(value) is ok


def test_show_is_short_printable_and_masked() -> None:
    assert show(None) == "None" and show(6) == "6" and show("6A") == "6A"
    assert show(BAD_UTF8) == "'Ol\\udcff'"
    assert len(show("x" * 500)) == 40
    assert show("01018012345") == "010180*****"


# -- property: no value stops the run, and no broken person loses anything ---------------------------------

HOSTILE = st.one_of(
    st.none(),
    st.sampled_from(["", "  ", "2025-8-15", "20.06.2026", "2025-02-30", "6A", "Lærer", BAD_UTF8, "a\x00b"]),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True),
    st.binary(max_size=4),
    st.dates(),
    st.booleans(),
)
# Person-reference columns are left alone: a broken reference is tested above, and a
# row that no longer names its person cannot freeze them.
COLUMNS = {
    "persons": ("nin", "given_name", "family_name", "birth_date", "email"),
    "enrollments": ("enrollment_id", "school_id", "grade", "start_date", "end_date", "main_school"),
    "employments": ("employment_id", "school_id", "role", "start_date", "end_date"),
    "guardianships": ("student_id",),
}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(sorted(COLUMNS)), st.integers(0, 3), st.data()),
        min_size=1,
        max_size=6,
    )
)
def test_hostile_values_never_raise_and_never_deprovision(edits: list) -> None:
    s = Sis().school("NORD", "974000001", "NORDBY")
    pids = ["S0", "S1", "T0", "T1"]
    s.student("S0", "NORD").student("S1", "NORD").employee("T0", "NORD").employee("T1", "NORD")
    s.guardian("G0", ["S0"]).guardian("G1", ["S1"])
    s.group("6A", "NORD", members=[("S0", "student"), ("S1", "student"), ("T0", "teacher")])
    ident = IdentityView(
        username_by_person={p: p.lower() for p in [*pids, "G0", "G1"]},
        taken=frozenset(["s0", "s1", "t0", "t1"]),
    )
    touched: set[str] = set()
    for table, i, data in edits:
        rows = getattr(s, table)
        i %= len(rows)
        column = data.draw(st.sampled_from(COLUMNS[table]))
        value = data.draw(HOSTILE)
        row = rows[i]
        rows[i] = row._replace(**{column: value})
        if value != getattr(row, column):
            touched.add(row.guardian_id if table == "guardianships" else row.person_id)
    d = run(s, ident)  # never raises
    everyone = {*pids, "G0", "G1"}
    # Nobody disappears: a person is derived, or frozen as they are.
    assert everyone <= set(d.state.persons) | d.frozen_persons
    assert not set(d.state.persons) & d.frozen_persons
    for e in d.state.errors:
        e.to_json()["message"].encode("utf-8")  # printable: no lone surrogates in any report
        assert e.record.split(":")[0] in ("person", "enrollment", "employment", "guardianship")
    # Persons none of whose rows were touched are derived as usual (guardians follow their student).
    for pid in everyone - touched:
        student = {"G0": "S0", "G1": "S1"}.get(pid)
        if student is None or student not in d.frozen_persons:
            assert pid in d.state.persons, (pid, d.state.errors)


# -- end to end: broken rows in a real SIS database deprovision nobody, in any target ------------------------


def test_broken_rows_in_the_sis_take_nothing_away_in_any_target(tmp_path: Path) -> None:
    sis, src = small_sis(), f"sqlite:///{tmp_path / 'sis.db'}"
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    # Frozen persons are not counted as active by today's sanity gate: let it through here.
    cfg = make_config(tmp_path, src, store.url, safety={"max_source_drop_percent": 100.0})
    sis.write(src)
    first = runner.sync(cfg, store, as_of="2025-10-01")
    assert first.exit_code == runner.EXIT_OK, first.plan and first.plan.errors
    con = sqlite3.connect(tmp_path / "sis.db")
    for stmt in (
        "UPDATE employment SET role = 'Lærer' WHERE person_id = 'T1'",  # a role typo
        "UPDATE employment SET role = 'Teacher ' WHERE person_id = 'T2'",  # the same role as written
        "UPDATE student_enrollment SET start_date = '2025-8-15' WHERE person_id = 'S2'",
        "UPDATE student_enrollment SET end_date = '20.06.2026', grade = '6A' WHERE person_id = 'S4'",
        "UPDATE person SET family_name = CAST(x'4f6cff' AS TEXT) WHERE person_id = 'S3'",
        "UPDATE guardianship SET student_id = 'NOBODY' WHERE guardian_id = 'G3'",
        "UPDATE school_group SET grade = '6A' WHERE group_id = 'SOR-6A'",
        "UPDATE person SET person_id = NULL WHERE person_id = 'S5'",
    ):
        con.execute(stmt)
    con.commit()
    con.close()
    out = runner.sync(cfg, store, as_of="2025-10-02")
    assert (out.exit_code, out.status) == (runner.EXIT_ERRORS, "done_with_errors"), out.message
    records = {e.record.split(":")[1].split("/")[0] for e in out.plan.errors}
    assert {"SOR-6A", "G3"} <= records and any(r.startswith("E-S2") for r in records)
    broken = {"T1", "S2", "S3", "S4", "S5", "G3", "G2"}  # G2: their only student is frozen
    taken = [
        (c.target, c.op.value, c.key)
        for c in out.plan.changes()
        if c.op in (Op.DISABLE, Op.DELETE, Op.PURGE) or c.op is Op.REMOVE_MEMBERS
    ]
    assert taken == []
    assert not [c for c in out.plan.changes() if c.person_id in broken or c.key in broken]
    assert all(row.status == "active" for row in store.identities.all().values())
    store.close()
