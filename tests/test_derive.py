"""Derivation: activity on a day, guardians, schools, roles, groups, usernames, bad input."""

from __future__ import annotations

import unicodedata

import pytest

from provisioner.config import UsernameConfig
from provisioner.core import nin as nin_mod
from provisioner.core.derive import Derivation, IdentityView, derive
from provisioner.core.diff import diff_target
from provisioner.core.lifecycle import Policy
from provisioner.core.model import (
    GUARDIAN,
    LEADER,
    SCHOOL_WIDE,
    STAFF,
    STUDENT,
    TEACHER,
    DataError,
    StudentEnrollment,
    Study,
    TargetObject,
    school_group_key,
)
from provisioner.core.plan import Op
from provisioner.core.rows import IndexRow, digest
from provisioner.core.usernames import valid_username
from tests.sisbuilder import Sis, bad_check_digit, synthetic_nin

AS_OF = "2025-10-01"
UCFG = UsernameConfig()


def run(sis: Sis, ident: IdentityView | None = None, as_of: str = AS_OF) -> Derivation:
    return derive(sis.snapshot(), as_of, ident or IdentityView(), UCFG)


def base() -> Sis:
    s = Sis().school("NORD", "974000001", "NORDBY").school("SOR", "974000002", "SORBY")
    s.student("OK1", "NORD", "Trygve", "Trygg")  # always fine: the run goes on around bad records
    return s


def errors_for(d: Derivation, kind: str) -> list[DataError]:
    return [e for e in d.state.errors if e.kind == kind]


# -- activity -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("start", "end", "active"),
    [
        ("2025-08-15", None, True),  # open
        (AS_OF, None, True),  # starts today: inclusive
        ("2025-08-15", AS_OF, True),  # ends today: inclusive (the last day)
        ("2025-10-09", None, False),  # future start (beyond the employees' 7 days before it)
        ("2025-08-15", "2025-09-30", False),  # ended yesterday
        ("2024-08-15", "2025-06-20", False),  # last year
        ("2026-08-15", "2027-06-20", False),  # next year
    ],
)
@pytest.mark.parametrize("how", ["enrollment", "employment"])
def test_activity_on_as_of(start: str, end: str | None, active: bool, how: str) -> None:
    s = base()
    if how == "enrollment":
        s.student("P", "NORD", start=start, end=end)
    else:
        s.employee("P", "NORD", start=start, end=end)
    d = run(s)
    assert ("P" in d.state.persons) is active
    assert "OK1" in d.state.persons
    assert d.state.errors == ()
    if active:
        assert d.state.persons["P"].roles == ((STUDENT,) if how == "enrollment" else (TEACHER,))


@pytest.mark.parametrize(
    ("student_start", "student_end", "guardian_active"),
    [
        ("2025-08-15", None, True),
        ("2025-08-15", AS_OF, True),
        ("2025-08-15", "2025-09-30", False),
        ("2025-10-02", None, False),
    ],
)
def test_guardian_active_only_while_a_student_is(
    student_start: str, student_end: str | None, guardian_active: bool
) -> None:
    s = base().student("S", "SOR", start=student_start, end=student_end).guardian("G", ["S"])
    d = run(s)
    assert ("G" in d.state.persons) is guardian_active
    if guardian_active:
        g = d.state.persons["G"]
        assert g.roles == (GUARDIAN,)
        assert g.affiliations == (("SOR", GUARDIAN),)
        assert g.primary_school == "SOR"
        assert g.students == ("S",)


def test_guardian_follows_only_active_students() -> None:
    s = base().student("S1", "NORD").student("S2", "SOR", end="2025-09-01").guardian("G", ["S1", "S2"])
    g = run(s).state.persons["G"]
    assert g.students == ("S1",)
    assert g.affiliations == (("NORD", GUARDIAN),)


def test_employed_guardian_keeps_employee_primary_school() -> None:
    s = base().student("S", "SOR").employee("G", "NORD").link_guardian("G", "S")
    g = run(s).state.persons["G"]
    assert g.roles == (TEACHER, GUARDIAN)
    assert g.affiliations == (("NORD", TEACHER), ("SOR", GUARDIAN))
    assert g.primary_school == "NORD"
    assert g.grade is None


# -- primary school, grade, roles --------------------------------------------------------------


def test_primary_school_main_enrollment_wins_over_earlier_secondary() -> None:
    s = base().person("P")
    s.enroll("P", "SOR", grade=7, start="2024-08-15", main=False)
    s.enroll("P", "NORD", grade=6, start="2025-08-15", main=True)
    p = run(s).state.persons["P"]
    assert p.primary_school == "NORD" and p.grade == 6
    assert p.affiliations == (("NORD", STUDENT), ("SOR", STUDENT))
    assert p.schools == ("NORD", "SOR")


def test_studies_cover_every_active_enrollment_at_every_school() -> None:
    s = base().school("VGS", "974000003", "VGS").person("P").person("E")
    s.enroll("P", "NORD", grade=10, start="2015-08-15", end="2025-06-20")  # ended: left out
    s.enrollments.append(
        StudentEnrollment("E-P-1", "P", "VGS", 11, "2025-08-15", None, True, "ST", "STUSP1----")
    )
    s.enrollments.append(StudentEnrollment("E-P-2", "P", "SOR", 11, "2025-08-15", None, False, "", None))
    s.enrollments.append(
        StudentEnrollment("E-P-3", "P", "VGS", 11, "2025-08-15", None, True, "ST", "STUSP1----")
    )
    s.enrollments.append(
        StudentEnrollment("E-P-4", "P", "VGS", 12, "2026-08-15", None, True, "ST", "STREA2----")
    )
    s.employ("E", "NORD", role="teacher")
    d = run(s).state.persons
    # Sorted, distinct (the doubled VGS row is one study), at every school; the
    # ended and the future enrollment are not studies; an empty programme is None.
    assert d["P"].studies == (
        Study("SOR", 11, None, None),
        Study("VGS", 11, "ST", "STUSP1----"),
    )
    assert d["P"].primary_school == "VGS" and d["P"].grade == 11
    assert d["E"].studies == ()
    assert d["OK1"].studies == (Study("NORD", 6, None, None),)


def test_primary_school_earliest_start_among_equals() -> None:
    s = base().person("P")
    s.enroll("P", "NORD", grade=6, start="2025-08-15")
    s.enroll("P", "SOR", grade=5, start="2024-08-15")
    p = run(s).state.persons["P"]
    assert p.primary_school == "SOR" and p.grade == 5


def test_enrollment_school_wins_over_employment_school() -> None:
    s = base().person("P", born="2005-01-01")
    s.employ("P", "SOR", role="staff", start="2020-01-01")
    s.enroll("P", "NORD", grade=13)
    p = run(s).state.persons["P"]
    assert p.primary_school == "NORD" and p.grade == 13
    assert p.roles == (STUDENT, STAFF)


def test_roles_distinct_in_canonical_order() -> None:
    s = base().person("P", born="1970-01-01")
    s.employ("P", "SOR", role="leader")
    s.employ("P", "NORD", role="teacher")
    s.employ("P", "NORD", role=" Teacher ")  # the same role twice: codes are trimmed and case-folded
    d = run(s)
    p = d.state.persons["P"]
    assert p.roles == (TEACHER, LEADER)
    assert p.affiliations == (("NORD", TEACHER), ("SOR", LEADER))
    assert p.primary_school == "NORD"  # earliest start ties; school id decides
    assert p.grade is None
    assert d.state.errors == ()


# -- groups ---------------------------------------------------------------------------------------


def test_school_wide_groups_and_members() -> None:
    s = base().student("S", "SOR").employee("T", "SOR").employee("L", "SOR", role="leader")
    s.employee("A", "SOR", role="staff").guardian("G", ["S"])
    groups = run(s).state.groups
    for school in ("NORD", "SOR"):
        for which in ("students", "teachers", "staff", "guardians"):
            g = groups[school_group_key(school, which)]
            assert g.kind == SCHOOL_WIDE and g.school_role == which and g.school_id == school
    sor = {
        w: groups[school_group_key("SOR", w)].members for w in ("students", "teachers", "staff", "guardians")
    }
    assert sor == {
        "students": (("S", STUDENT),),
        "teachers": (("T", TEACHER),),
        "staff": (("A", STAFF), ("L", LEADER), ("T", TEACHER)),
        "guardians": (("G", GUARDIAN),),
    }
    assert groups[school_group_key("NORD", "students")].members == (("OK1", STUDENT),)
    assert groups[school_group_key("NORD", "guardians")].members == ()  # exists before anyone joins
    assert groups[school_group_key("SOR", "students")].name == "SORBY students"


def test_a_member_in_many_groups_is_one_pair() -> None:
    """Every group listing (person, role) holds the same tuple: a pupil is in five or six."""
    s = base().student("S", "SOR").employee("T", "SOR")
    s.group("G1", "SOR", "basis", "6A", members=[("S", "student"), ("T", "teacher")])
    s.group("G2", "SOR", "teaching", "6A math", members=[("S", "student")], subject="MAT0006")
    groups = run(s).state.groups
    pairs = [m for g in groups.values() for m in g.members if m == ("S", STUDENT)]
    assert len(pairs) >= 2 and all(p is pairs[0] for p in pairs)


def test_sis_group_period_and_active_members_only() -> None:
    s = base().student("S", "NORD").student("GONE", "NORD", end="2025-09-01").employee("T", "NORD")
    s.group("G1", "NORD", "basis", "6A", members=[("S", "student"), ("GONE", "student"), ("T", "teacher")])
    s.group("OLD", "NORD", "basis", "5A", start="2024-08-15", end="2025-06-20", members=[("S", "student")])
    s.group("NEXT", "NORD", "basis", "7A", start="2026-08-15", end="2027-06-20")
    s.group("EDGE", "NORD", "contact", "K", start=AS_OF, end=AS_OF, members=[("T", "teacher")])
    d = run(s)
    g = d.state.groups
    assert g["G1"].members == (("S", STUDENT), ("T", TEACHER))
    assert g["EDGE"].members == (("T", TEACHER),)
    assert "OLD" not in g and "NEXT" not in g
    assert d.state.errors == ()


# -- usernames and the historic base ---------------------------------------------------------------


def test_usernames_come_from_the_historic_base() -> None:
    s = base().student("S1", "NORD", "Ola", "Nordmann").student("S2", "NORD", "Ola", "Nordmann")
    ident = IdentityView(username_by_person={"S1": "gammel7"}, taken=frozenset({"gammel7", "olanor"}))
    d = run(s, ident)
    assert d.state.persons["S1"].username == "gammel7"
    assert "S1" not in d.state.new_usernames
    assert d.state.persons["S2"].username == "olanor1"  # the taken one is skipped
    assert d.state.new_usernames["S2"] == "olanor1"


def test_returning_person_under_new_sis_id_gets_old_username() -> None:
    n = synthetic_nin()
    s = base().student("NEW", "SOR", "Ola", "Nordmann", nin=n)
    s.employee("T", "SOR").group("G", "SOR", members=[("NEW", "student"), ("T", "teacher")])
    s.guardian("PAR", ["NEW"])
    ident = IdentityView(
        username_by_person={"OLD": "olanor"}, person_by_nin={n: "OLD"}, taken=frozenset({"olanor"})
    )
    d = run(s, ident)
    assert d.new_aliases == {"NEW": "OLD"}
    assert "NEW" not in d.state.persons
    p = d.state.persons["OLD"]
    assert p.username == "olanor" and p.affiliations == (("SOR", STUDENT),)
    assert "OLD" not in d.state.new_usernames
    assert d.state.groups["G"].members == (("OLD", STUDENT), ("T", TEACHER))
    assert d.state.persons["PAR"].students == ("OLD",)


def test_known_alias_from_the_base_is_followed() -> None:
    s = base().student("NEW", "SOR")
    ident = IdentityView(username_by_person={"OLD": "olanor"}, aliases={"NEW": "OLD"})
    d = run(s, ident)
    assert d.state.persons["OLD"].username == "olanor" and d.new_aliases == {}


def test_nin_change_keeps_person_and_username() -> None:
    s = base().student("S", "NORD", nin=synthetic_nin())
    old = synthetic_nin()
    ident = IdentityView(
        username_by_person={"S": "olanor"}, person_by_nin={old: "S"}, taken=frozenset({"olanor"})
    )
    d = run(s, ident)
    assert d.state.persons["S"].username == "olanor" and d.new_aliases == {}


# -- bad input ----------------------------------------------------------------------------------------


def test_invalid_nin_is_reported_and_skipped() -> None:
    bad = bad_check_digit(synthetic_nin())
    assert not nin_mod.is_valid(bad)
    s = base().student("BAD", "NORD", nin=bad).student("ALSO", "NORD", nin="1234")
    s.group("G", "NORD", members=[("BAD", "student"), ("OK1", "student")])
    d = run(s)
    errs = errors_for(d, "invalid_nin")
    assert sorted(e.record for e in errs) == ["person:ALSO", "person:BAD"]
    assert all(bad not in e.message for e in errs)  # masked
    assert bad[:6] + "*****" in next(e.message for e in errs if e.record == "person:BAD")
    assert "BAD" not in d.state.persons and "OK1" in d.state.persons
    assert {"BAD", "ALSO"} <= d.frozen_persons
    assert "G" in d.frozen_groups and "G" not in d.state.groups  # a member we cannot judge
    assert not errors_for(d, "unknown_person")  # no follow-up noise about the skipped person


def test_two_new_persons_with_one_nin_the_older_record_keeps_it() -> None:
    n = synthetic_nin()
    s = base().student("A", "NORD", nin=n).student("B", "SOR", nin=n)
    d = run(s)
    assert [e.record for e in errors_for(d, "duplicate_nin")] == ["person:B"]
    assert "A" in d.state.persons and "B" not in d.state.persons
    assert "B" in d.frozen_persons and "A" not in d.frozen_persons
    assert "OK1" in d.state.persons


@pytest.mark.parametrize("order", ["owner_first", "owner_last"])
def test_duplicate_nin_keeps_the_one_the_base_ties_it_to(order: str) -> None:
    n = synthetic_nin()
    s = base()
    pairs = [("A", "Anne", "NORD"), ("B", "Bjørn", "SOR")]
    for pid, given, school in pairs if order == "owner_first" else reversed(pairs):
        s.student(pid, school, given, "Dobbel", nin=n)
    ident = IdentityView(
        username_by_person={"A": "annedob"}, person_by_nin={n: "A"}, taken=frozenset({"annedob"})
    )
    d = run(s, ident)
    assert [e.record for e in errors_for(d, "duplicate_nin")] == ["person:B"]
    a = d.state.persons["A"]
    assert (a.given_name, a.username, a.affiliations) == ("Anne", "annedob", (("NORD", STUDENT),))
    assert "B" not in d.state.persons
    assert "B" in d.frozen_persons and "A" not in d.frozen_persons
    assert d.new_aliases == {}


@pytest.mark.parametrize(
    ("given", "family", "which"),
    [
        (None, "Nordmann", "given"),
        ("Ola", None, "family"),
        ("  ", "Nordmann", "given"),
        ("Ola", "\u200b", "family"),
    ],
)
def test_missing_name(given: str | None, family: str | None, which: str) -> None:
    s = base().person("P", given, family)
    s.enroll("P", "NORD")
    d = run(s)
    (err,) = errors_for(d, "missing_name")
    assert err.record == "person:P" and which in err.message
    assert "P" not in d.state.persons and "P" in d.frozen_persons and "OK1" in d.state.persons


def test_ldap_special_characters_in_names_are_accepted_and_cleaned() -> None:
    s = base().student("P", "NORD", '  Ola, "Jr" + \\ ', " <Nord>;=*(mann)# ")
    d = run(s)
    p = d.state.persons["P"]
    assert p.given_name == 'Ola, "Jr" + \\'
    assert p.family_name == "<Nord>;=*(mann)#"
    assert p.display_name == 'Ola, "Jr" + \\ <Nord>;=*(mann)#'
    assert valid_username(p.username) and p.username.isascii() and p.username == "olanor"
    assert d.state.errors == ()


def test_emoji_and_combining_accents() -> None:
    s = base().student("P", "NORD", "Zoe\u0308 🎉", "A\u030angstro\u0308m")  # decomposed ë, å, ö
    s.student("Q", "NORD", "😀", "🙂")  # nothing folds: the fallback
    d = run(s)
    p = d.state.persons["P"]
    assert p.given_name == unicodedata.normalize("NFC", "Zoë 🎉") and p.family_name == "Ångström"
    assert p.username == "zoeaan" and p.username.isascii()
    q = d.state.persons["Q"]
    assert q.username.isascii() and valid_username(q.username)
    assert d.state.errors == ()


def test_very_long_name() -> None:
    s = base().student("P", "NORD", "Maximilian" * 15, "Fjellheimsbakken" * 10)
    d = run(s)  # 150 and 160 characters
    p = d.state.persons["P"]
    assert len(p.given_name) == 150 and len(p.username) <= 20
    assert d.state.errors == ()


def test_very_long_name_with_long_scheme() -> None:
    s = base().student("P", "NORD", "Maximilian" * 15, "Fjellheimsbakken" * 10)
    d = derive(s.snapshot(), AS_OF, IdentityView(), UsernameConfig(scheme="{given}.{family}{n}"))
    u = d.state.persons["P"].username
    assert len(u) <= 20 and u.isascii() and valid_username(u)


def test_teaching_group_without_subject_code_is_skipped_and_frozen() -> None:
    s = base().group("T1", "NORD", "teaching", "Matte", subject=None, members=[("OK1", "student")])
    s.group("T2", "NORD", "teaching", "Norsk", subject="  ", members=[("OK1", "student")])
    s.group("T3", "NORD", "teaching", "Engelsk", subject="ENG0006", members=[("OK1", "student")])
    d = run(s)
    assert sorted(e.record for e in errors_for(d, "missing_subject_code")) == ["group:T1", "group:T2"]
    assert "T1" not in d.state.groups and "T2" not in d.state.groups and "T3" in d.state.groups
    assert {"T1", "T2"} <= d.frozen_groups
    assert "OK1" in d.state.persons


def test_membership_pointing_to_unknown_person_or_group() -> None:
    s = base().group("G", "NORD", members=[("OK1", "student"), ("NOBODY", "student")])
    s.memberships.append(s.memberships[0]._replace(group_id="NOGROUP"))
    s.group("H", "NORD", members=[("OK1", "student")])
    d = run(s)
    assert [e.record for e in errors_for(d, "unknown_group")] == ["membership:NOGROUP/OK1"]
    assert [e.record for e in errors_for(d, "unknown_person")] == ["membership:G/NOBODY"]
    # A broken membership row freezes its group: it is neither shrunk nor grown this run.
    assert "G" not in d.state.groups and {"G", "NOGROUP"} <= d.frozen_groups
    assert d.state.groups["H"].members == (("OK1", STUDENT),)


def test_membership_of_an_inactive_person_is_no_error() -> None:
    s = base().student("GONE", "NORD", start="2024-08-15", end="2025-06-20")
    s.group("G", "NORD", members=[("OK1", "student"), ("GONE", "student")])
    d = run(s)
    assert d.state.errors == () and d.state.groups["G"].members == (("OK1", STUDENT),)


def test_enrollment_ending_before_it_starts() -> None:
    s = base().person("P")
    s.enroll("P", "NORD", start="2025-08-15", end="2025-08-01", eid="E-BAD")
    s.enroll("P", "SOR", start="2025-08-15", eid="E-GOOD")
    d = run(s)
    (err,) = errors_for(d, "bad_period")
    assert err.record == "enrollment:E-BAD" and "end_date" in err.message
    # The good enrollment does not make up for the broken one: P is frozen as they are.
    assert "P" not in d.state.persons and "P" in d.frozen_persons


def test_missing_start_date_is_a_data_error_not_a_crash() -> None:
    s = base().person("P")
    s.enroll("P", "NORD", eid="E-NOSTART")
    s.enrollments[-1] = s.enrollments[-1]._replace(start_date=None, end_date="2026-01-01")
    s.group("NOSTART", "NORD").group("OPEN", "NORD", members=[("OK1", "student")])
    s.groups[-2] = s.groups[-2]._replace(start_date=None)
    s.groups[-1] = s.groups[-1]._replace(end_date=None)  # an override may give open-ended groups
    d = run(s)
    assert {e.record for e in errors_for(d, "bad_period")} == {"enrollment:E-NOSTART", "group:NOSTART"}
    assert "NOSTART" in d.frozen_groups
    assert d.state.groups["OPEN"].members == (("OK1", STUDENT),) and d.state.groups["OPEN"].end_date is None
    assert "OK1" in d.state.persons


def test_references_to_unknown_persons_and_schools() -> None:
    s = base()
    s.enroll("NOBODY", "NORD", eid="E1")
    s.enroll("OK1", "NOSCHOOL", eid="E2")
    s.link_guardian("NOBODY", "OK1")
    d = run(s)
    recs = sorted((e.kind, e.record) for e in d.state.errors)
    assert recs == [
        ("unknown_person", "enrollment:E1"),
        ("unknown_person", "guardianship:NOBODY/OK1"),
        ("unknown_school", "enrollment:E2"),
    ]


def test_one_bad_record_each_rest_of_the_run_goes_on() -> None:
    s = base()
    s.student("BADNIN", "NORD", nin="01010112345")
    s.person("NONAME", "", "X")
    s.enroll("NONAME", "NORD")
    s.group("NOCODE", "NORD", "teaching", subject=None)
    d = run(s)
    assert {e.kind for e in d.state.errors} == {"invalid_nin", "missing_name", "missing_subject_code"}
    assert set(d.state.persons) == {"OK1"}


# -- frozen persons are not retired by the differ -------------------------------------------------------


def _row(pid: str, status: str = "active") -> IndexRow:
    return IndexRow("person", f"anchor-{pid}", status, "2025-08-15", "0" * 32, pid, pid.lower())


@pytest.mark.parametrize(
    "policy",
    [
        Policy(disable_first=False, delete_after_days=0),
        Policy(disable_first=True, delete_after_days=90),
        Policy(disable_first=True, delete_after_days=0, soft_delete=True, restore_within_days=30),
    ],
)
def test_frozen_person_is_not_retired(policy: Policy) -> None:
    s = base().student("FROZEN", "NORD", nin="01010112345").guardian("PAR", ["FROZEN"])
    d = run(s)
    assert {"FROZEN"} <= d.frozen_persons
    desired = [
        TargetObject("person", pid, {"name": p.display_name}, username=p.username, person_id=pid)
        for pid, p in d.state.persons.items()
    ]
    index = {"FROZEN": _row("FROZEN"), "GONE": _row("GONE"), "PAR": _row("PAR"), "OK1": _row("OK1")}
    changes = diff_target(
        "t",
        desired,
        [digest(o.kind, o.record(), o.members) for o in desired],
        index,
        {"OK1": ({"name": "Trygve Trygg"}, None)},
        policy=policy,
        placement=frozenset(),
        persons=d.state.persons,
        identities={},
        frozen=d.frozen_persons | d.frozen_groups,
        school_names={},
        as_of=AS_OF,
    )
    touched = {c.key for c in changes if c.op in (Op.DISABLE, Op.DELETE)}
    assert "GONE" in touched
    # The frozen student, and their guardian whose only student cannot be judged, stay as they are.
    assert "FROZEN" not in touched and "PAR" not in touched
    assert not [c for c in changes if c.key == "OK1"]
