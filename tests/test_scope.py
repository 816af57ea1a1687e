"""Per-target scope (provisioner.core.scope): schools, roles, guardians following students,
level and owner-wide groups, and the config settings that ask for them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provisioner import config
from provisioner.config import ADConfig, ItslearningConfig
from provisioner.core.model import (
    ALL_ROLES,
    BASIS,
    GUARDIAN,
    LEADER,
    LEVEL,
    OWNER_WIDE,
    SCHOOL_GROUP_ROLES,
    SCHOOL_WIDE,
    STUDENT,
    TEACHER,
    DesiredGroup,
    DesiredPerson,
    DesiredState,
    School,
    Study,
    level_name,
    school_group_key,
)
from provisioner.core.scope import Scope, restrict, unknown_names

SCHOOLS = {
    "BARN": School("BARN", "974000011", "Barneby skole", "BARNEBY", "primary"),
    "UNG": School("UNG", "974000012", "Ungby ungdomsskole", "UNGBY", "lower_secondary"),
    "VGS": School("VGS", "974000013", "Byen videregående skole", "BYENVGS", "upper_secondary"),
    "VO": School("VO", "974000014", "Voksenopplæringen", "VO", "adult"),
}


def person(
    pid: str,
    affiliations: Iterable[tuple[str, str]],
    primary: str,
    *,
    grade: int | None = None,
    studies: Iterable[Study] = (),
    students: tuple[str, ...] = (),
) -> DesiredPerson:
    """A desired person as derive makes one (roles from the affiliations, in ALL_ROLES order)."""
    aff = tuple(sorted(set(affiliations)))
    return DesiredPerson(
        person_id=pid,
        username=f"u{pid.lower()}",
        nin=None,
        given_name="Kari",
        middle_name=None,
        family_name=pid,
        display_name=f"Kari {pid}",
        birth_date=None,
        email=None,
        mobile=None,
        roles=tuple(r for r in ALL_ROLES if any(r == a for _, a in aff)),
        affiliations=aff,
        primary_school=primary,
        grade=grade,
        students=students,
        studies=tuple(studies),
    )


def sis_group(key: str, school: str, members: Iterable[tuple[str, str]]) -> DesiredGroup:
    """A basis group of a school."""
    return DesiredGroup(
        key, school, BASIS, key, None, None, "2025-08-01", "2026-06-30", tuple(sorted(members))
    )


def make_state() -> DesiredState:
    """Four schools (primary, lower and upper secondary, adult education) and who is at them.

    P4 goes to lower secondary and takes a Vg1 course at upper secondary; AS teaches at
    upper secondary and studies at the adult school (their primary school, as derive ranks
    enrollments first); GA is the guardian of P1 and P2, GB of P3.
    """
    persons = [
        person("P1", [("BARN", STUDENT)], "BARN", grade=3, studies=[Study("BARN", 3, None, None)]),
        person("P2", [("UNG", STUDENT)], "UNG", grade=8, studies=[Study("UNG", 8, None, None)]),
        person("P3", [("VGS", STUDENT)], "VGS", grade=11, studies=[Study("VGS", 11, "ST", "STSSA1")]),
        person(
            "P4",
            [("UNG", STUDENT), ("VGS", STUDENT)],
            "UNG",
            grade=9,
            studies=[Study("UNG", 9, None, None), Study("VGS", 11, "ST", "STSSA1")],
        ),
        person("TA", [("BARN", TEACHER), ("UNG", TEACHER)], "BARN"),
        person("AS", [("VGS", TEACHER), ("VO", STUDENT)], "VO", studies=[Study("VO", None, None, None)]),
        person("LD", [("VO", LEADER)], "VO"),
        person("GA", [("BARN", GUARDIAN), ("UNG", GUARDIAN)], "BARN", students=("P1", "P2")),
        person("GB", [("VGS", GUARDIAN)], "VGS", students=("P3",)),
    ]
    groups = [
        sis_group("1A", "BARN", [("P1", STUDENT), ("TA", TEACHER)]),
        sis_group("8A", "UNG", [("P2", STUDENT), ("P4", STUDENT), ("TA", TEACHER)]),
        sis_group("1STA", "VGS", [("P3", STUDENT), ("P4", STUDENT), ("AS", TEACHER)]),
    ]
    for sid in SCHOOLS:
        for which, roles in SCHOOL_GROUP_ROLES.items():
            members = sorted(
                (p.person_id, r) for p in persons for s, r in p.affiliations if s == sid and r in roles
            )
            key = school_group_key(sid, which)
            groups.append(
                DesiredGroup(
                    key, sid, SCHOOL_WIDE, f"{sid} {which}", None, None, None, None, tuple(members), which
                )
            )
    return DesiredState(
        as_of="2025-09-01",
        schools=SCHOOLS,
        persons={p.person_id: p for p in persons},
        groups={g.key: g for g in groups},
    )


STATE = make_state()


# name, scope, the persons the target gets, its schools
SCOPE_CASES: list[tuple[str, Scope, set[str], set[str]]] = [
    ("one school by id", Scope(schools=frozenset({"UNG"})), {"P2", "P4", "TA", "GA"}, {"UNG"}),
    ("one school by org number", Scope(schools=frozenset({"974000013"})), {"P3", "P4", "AS", "GB"}, {"VGS"}),
    (
        "lower and upper secondary by level",
        Scope(levels=frozenset({"lower_secondary", "upper_secondary"})),
        {"P2", "P3", "P4", "TA", "AS", "GA", "GB"},
        {"UNG", "VGS"},
    ),
    (
        "a level or a named school",
        Scope(schools=frozenset({"BARN"}), levels=frozenset({"adult"})),
        {"P1", "TA", "AS", "LD", "GA"},
        {"BARN", "VO"},
    ),
    (
        "all but the adult-education school",
        Scope(exclude=frozenset({"VO"})),
        {"P1", "P2", "P3", "P4", "TA", "AS", "GA", "GB"},
        {"BARN", "UNG", "VGS"},
    ),
    (
        "excluded by org number",
        Scope(exclude=frozenset({"974000014", "974000011"})),
        {"P2", "P3", "P4", "TA", "AS", "GA", "GB"},
        {"UNG", "VGS"},
    ),
    (
        "no guardians",
        Scope(roles=frozenset({STUDENT, TEACHER, "staff", LEADER})),
        {"P1", "P2", "P3", "P4", "TA", "AS", "LD"},
        set(SCHOOLS),
    ),
    ("employees only", Scope(roles=frozenset({TEACHER, "staff", LEADER})), {"TA", "AS", "LD"}, set(SCHOOLS)),
    ("guardians without students follow nobody", Scope(roles=frozenset({GUARDIAN})), set(), set(SCHOOLS)),
    (
        "students and guardians at one school",
        Scope(schools=frozenset({"BARN"}), roles=frozenset({STUDENT, GUARDIAN})),
        {"P1", "GA"},
        {"BARN"},
    ),
]


@pytest.mark.parametrize(
    ("name", "scope", "persons", "schools"), SCOPE_CASES, ids=[c[0] for c in SCOPE_CASES]
)
def test_restrict_keeps_the_in_scope_persons_and_schools(
    name: str, scope: Scope, persons: set[str], schools: set[str]
) -> None:
    out = restrict(STATE, scope)
    assert set(out.persons) == persons
    assert set(out.schools) == schools
    for p in out.persons.values():
        assert p.affiliations and {s for s, _ in p.affiliations} <= schools
        assert p.primary_school in {s for s, _ in p.affiliations}
        assert set(p.roles) == {r for _, r in p.affiliations}
        assert set(p.students) <= set(out.persons)
        assert {st.school_id for st in p.studies} <= schools
    for g in out.groups.values():
        assert g.school_id in schools
        assert all(pid in out.persons and r in out.persons[pid].roles for pid, r in g.members)
    assert out.errors is STATE.errors and out.as_of == STATE.as_of


# person, scope, (affiliations, primary school, grade, studies' schools, students)
PERSON_CASES: list[tuple[str, Scope, tuple[Any, ...]]] = [
    ("TA", Scope(schools=frozenset({"UNG"})), ((("UNG", TEACHER),), "UNG", None, (), ())),
    ("P4", Scope(schools=frozenset({"UNG"})), ((("UNG", STUDENT),), "UNG", 9, ("UNG",), ())),
    ("P4", Scope(schools=frozenset({"VGS"})), ((("VGS", STUDENT),), "VGS", 11, ("VGS",), ())),
    ("AS", Scope(exclude=frozenset({"VO"})), ((("VGS", TEACHER),), "VGS", None, (), ())),
    ("AS", Scope(roles=frozenset({STUDENT})), ((("VO", STUDENT),), "VO", None, ("VO",), ())),
    ("GA", Scope(schools=frozenset({"UNG"})), ((("UNG", GUARDIAN),), "UNG", None, (), ("P2",))),
    (
        "GA",
        Scope(exclude=frozenset({"VO"})),
        ((("BARN", GUARDIAN), ("UNG", GUARDIAN)), "BARN", None, (), ("P1", "P2")),
    ),
]


@pytest.mark.parametrize(("pid", "scope", "expected"), PERSON_CASES)
def test_a_person_is_cut_to_the_scope_and_primary_school_recomputed(
    pid: str, scope: Scope, expected: tuple[Any, ...]
) -> None:
    p = restrict(STATE, scope).persons[pid]
    assert (
        p.affiliations,
        p.primary_school,
        p.grade,
        tuple(s.school_id for s in p.studies),
        p.students,
    ) == expected


def test_untouched_persons_and_groups_are_the_same_objects() -> None:
    out = restrict(STATE, Scope(exclude=frozenset({"VO"})))
    assert out.persons["P1"] is STATE.persons["P1"]
    assert out.groups["1A"] is STATE.groups["1A"]
    assert out.persons["AS"] is not STATE.persons["AS"]


def test_groups_keep_only_in_scope_members() -> None:
    out = restrict(STATE, Scope(schools=frozenset({"UNG"})))
    assert set(out.groups) == {"8A", *(school_group_key("UNG", w) for w in SCHOOL_GROUP_ROLES)}
    out = restrict(STATE, Scope(roles=frozenset({STUDENT})))
    assert out.groups["8A"].members == (("P2", STUDENT), ("P4", STUDENT))
    # a school-wide group none of whose roles is in scope is left out
    assert school_group_key("UNG", "teachers") not in out.groups
    assert school_group_key("UNG", "guardians") not in out.groups
    assert (
        out.groups[school_group_key("UNG", "students")] is STATE.groups[school_group_key("UNG", "students")]
    )


def test_no_scope_returns_the_same_state_object() -> None:
    assert restrict(STATE, Scope()) is STATE
    assert restrict(STATE, Scope.of(ADConfig())) is STATE
    assert restrict(STATE, Scope(roles=frozenset(ALL_ROLES))) is STATE


def test_level_groups_per_school_and_grade() -> None:
    out = restrict(STATE, Scope(level_groups=True))
    levels = {k: g for k, g in out.groups.items() if g.kind == LEVEL}
    assert {k: (g.school_id, g.name, g.grade, g.members) for k, g in levels.items()} == {
        "level:BARN:3": ("BARN", "3. trinn", 3, (("P1", STUDENT),)),
        "level:UNG:8": ("UNG", "8. trinn", 8, (("P2", STUDENT),)),
        "level:UNG:9": ("UNG", "9. trinn", 9, (("P4", STUDENT),)),
        "level:VGS:11": ("VGS", "Vg1", 11, (("P3", STUDENT), ("P4", STUDENT))),
    }  # adult education has no grade: no level group
    assert out.persons is STATE.persons  # all schools and roles: persons untouched
    scoped = restrict(STATE, Scope(schools=frozenset({"UNG"}), level_groups=True))
    assert sorted(k for k, g in scoped.groups.items() if g.kind == LEVEL) == ["level:UNG:8", "level:UNG:9"]


@pytest.mark.parametrize(
    ("grade", "name"), [(1, "1. trinn"), (8, "8. trinn"), (10, "10. trinn"), (11, "Vg1"), (13, "Vg3")]
)
def test_level_names(grade: int, name: str) -> None:
    assert level_name(grade) == name


def test_owner_groups() -> None:
    out = restrict(STATE, Scope(owner_groups=("students", "teachers", "staff")))
    owner = {k: g for k, g in out.groups.items() if g.kind == OWNER_WIDE}
    assert {k: (g.school_id, g.name, g.school_role) for k, g in owner.items()} == {
        "owner:students": ("", "Alle elever", "students"),
        "owner:teachers": ("", "Alle lærere", "teachers"),
        "owner:staff": ("", "Alle ansatte", "staff"),
    }
    assert owner["owner:teachers"].members == (("AS", TEACHER), ("TA", TEACHER))
    assert owner["owner:staff"].members == (("AS", TEACHER), ("LD", LEADER), ("TA", TEACHER))
    assert [pid for pid, _ in owner["owner:students"].members] == ["AS", "P1", "P2", "P3", "P4"]
    # within a scope: the owner's persons in that target only
    adult_out = restrict(STATE, Scope(exclude=frozenset({"VO"}), owner_groups=("staff", "students")))
    assert adult_out.groups["owner:staff"].members == (("AS", TEACHER), ("TA", TEACHER))
    assert [pid for pid, _ in adult_out.groups["owner:students"].members] == ["P1", "P2", "P3", "P4"]


def test_describe_and_unknown_names() -> None:
    assert Scope().describe(SCHOOLS) == "all schools; all roles"
    scope = Scope.of(
        ADConfig(
            school_levels=("lower_secondary", "upper_secondary"),
            roles=("teacher", "student"),
            level_groups=True,
        )
    )
    assert scope.describe(SCHOOLS) == "2 of 4 schools; roles student, teacher; level groups"
    bad = Scope(
        schools=frozenset({"UNG", "GONE"}), levels=frozenset({"vgs"}), exclude=frozenset({"974000099"})
    )
    assert unknown_names(bad, SCHOOLS.values()) == [
        "schools: GONE",
        "school_levels: vgs",
        "exclude_schools: 974000099",
    ]
    assert unknown_names(Scope(schools=frozenset({"974000012"})), SCHOOLS.values()) == []


# -- properties ----------------------------------------------------------------------

school_sets = st.frozensets(st.sampled_from(sorted(SCHOOLS) + [s.org_number for s in SCHOOLS.values()]))
scopes = st.builds(
    Scope,
    schools=st.none() | school_sets,
    levels=st.none() | st.frozensets(st.sampled_from(sorted({s.level for s in SCHOOLS.values()}))),
    exclude=school_sets,
    roles=st.none() | st.frozensets(st.sampled_from(ALL_ROLES)),
)


@given(extra=st.booleans())
def test_an_all_inclusive_scope_is_the_identity(extra: bool) -> None:
    everything = Scope(
        schools=frozenset(SCHOOLS),
        levels=frozenset(s.level for s in SCHOOLS.values()),
        roles=frozenset(ALL_ROLES),
    )
    out = restrict(STATE, everything)
    assert (out.schools, out.persons, out.groups) == (STATE.schools, STATE.persons, STATE.groups)
    if extra:  # extra groups add to the state, the rest stays as it was
        out = restrict(STATE, Scope(level_groups=True, owner_groups=("staff",)))
        assert out.persons is STATE.persons
        assert {k: g for k, g in out.groups.items() if k in STATE.groups} == dict(STATE.groups)


@given(scope=scopes)
def test_a_restricted_state_is_a_subset(scope: Scope) -> None:
    out = restrict(STATE, scope)
    assert set(out.schools) <= set(STATE.schools)
    assert set(out.persons) <= set(STATE.persons)
    assert set(out.groups) <= set(STATE.groups)
    for pid, p in out.persons.items():
        orig = STATE.persons[pid]
        assert set(p.affiliations) <= set(orig.affiliations) and p.affiliations
        assert set(p.students) <= set(orig.students) and set(p.studies) <= set(orig.studies)
        assert p.primary_school in out.schools
    for key, g in out.groups.items():
        assert set(g.members) <= set(STATE.groups[key].members)
    # restricting again with the same scope changes nothing
    again = restrict(out, scope)
    assert (again.persons, again.groups) == (out.persons, out.groups)


# -- config ----------------------------------------------------------------------------

HEAD = """
[owner]
name = "Eksempel kommune"
org_number = "999888777"
realm = "eksempel.kommune.no"
mail_domain = "eksempel.kommune.no"
{owner}
[source]
url = "sqlite:///sis.db"

[state]
url = "sqlite:///state.db"
"""


def _parse(target: str, owner: str = "") -> config.Config:
    return config.parse(HEAD.format(owner=owner) + target)


@pytest.mark.parametrize(
    ("owner", "target", "message"),
    [
        ("", "[targets.ad]\nschools = []\n", "targets.ad.ad: schools: an empty list selects nothing"),
        ("", '[targets.ad]\nroles = ["pupil"]\n', "targets.ad.ad.roles.0"),
        ("", "[targets.ad]\nroles = []\n", "roles: an empty list selects nothing"),
        ("", '[targets.ad]\nschools = ["A", "A"]\n', "schools: A named more than once"),
        (
            "",
            '[targets.ad]\nschools = ["A"]\nexclude_schools = ["A"]\n',
            "exclude_schools: A is also in schools",
        ),
        ("", '[targets.ad]\nschools = [""]\n', "targets.ad.ad.schools.0"),
        (
            "",
            '[targets.itslearning]\nowner_groups = ["guardians"]\n',
            "targets.itslearning.itslearning.owner_groups.0",
        ),
        ("", '[targets.ad]\nlevel_groups = "sometimes"\n', "targets.ad.ad.level_groups"),
        ("", '[targets.m365]\nupn_domains = { pupil = "elev.no" }\n', "targets.m365.m365.upn_domains.pupil"),
        ("", '[targets.m365]\nupn_domains = { student = "elev" }\n', "targets.m365.m365.upn_domains.student"),
        ('[owner.role_domains]\nguardian = "x.no"\n', "", "owner.role_domains.guardian"),
        ('[owner.role_domains]\nstudent = "elev kommune.no"\n', "", "owner.role_domains.student"),
    ],
)
def test_config_errors_name_the_key(owner: str, target: str, message: str) -> None:
    with pytest.raises(config.ConfigError) as err:
        _parse(target, owner)
    assert message in str(err.value)


def test_config_scope_and_domains_parse() -> None:
    cfg = _parse(
        '[targets.ad]\nschool_levels = ["lower_secondary", "upper_secondary"]\n'
        'roles = ["student", "teacher"]\nlevel_groups = true\nowner_groups = ["teachers", "staff"]\n'
        'upn_domains = { teacher = "kommune.no" }\n'
        '[targets.itslearning]\nexclude_schools = ["VO", "974000014"]\n',
        '[owner.role_domains]\nstudent = "elev.eksempel.kommune.no"\n',
    )
    ad, its = cfg.targets["ad"], cfg.targets["itslearning"]
    assert isinstance(ad, ADConfig) and isinstance(its, ItslearningConfig)
    assert Scope.of(ad) == Scope(
        levels=frozenset({"lower_secondary", "upper_secondary"}),
        roles=frozenset({STUDENT, TEACHER}),
        level_groups=True,
        owner_groups=("teachers", "staff"),
    )
    assert Scope.of(its) == Scope(exclude=frozenset({"VO", "974000014"}))
    assert ad.upn_domains == {"teacher": "kommune.no"}
    assert cfg.owner.role_domains == {"student": "elev.eksempel.kommune.no"}
