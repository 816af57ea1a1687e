"""The itslearning mapping: who and what itslearning gets, and nothing more."""

from __future__ import annotations

import json

import pytest

from mappings import itslearning as m
from mappings.base import MappingContext
from provisioner.config import ItslearningConfig, OwnerConfig
from provisioner.core.model import (
    BASIS,
    CONTACT,
    GUARDIAN,
    LEADER,
    SCHOOL_WIDE,
    STAFF,
    STUDENT,
    TEACHER,
    TEACHING,
    DesiredGroup,
    DesiredPerson,
    DesiredState,
    School,
    TargetObject,
    school_group_key,
)
from provisioner.kinds import kind_of

OWNER = OwnerConfig(
    name="Nordby kommune", org_number="123456785", realm="nordby.kommune.no", mail_domain="skole.no"
)
NIN = "01010012356"  # synthetic test value, only ever compared with
GUARDIAN_NIN = "02020012345"  # synthetic test value


def person(pid: str, roles: tuple[str, ...], **kw: object) -> DesiredPerson:
    """A desired person with test defaults."""
    base: dict[str, object] = {
        "person_id": pid,
        "username": f"u{pid}",
        "nin": None,
        "given_name": "Ola",
        "middle_name": None,
        "family_name": "Nordmann",
        "display_name": "Ola Nordmann",
        "birth_date": "2010-05-17",
        "email": None,
        "mobile": "+4799999999",
        "roles": roles,
        "affiliations": tuple(("NORDBY", r) for r in roles),
        "primary_school": "NORDBY",
        "grade": None,
    }
    base.update(kw)
    return DesiredPerson(**base)  # type: ignore[arg-type]


PERSONS = [
    person("S1", (STUDENT,), nin=NIN, grade=5),
    person("T1", (TEACHER,), nin="15057612345"),
    person("A1", (STAFF,)),
    person("L1", (LEADER,), middle_name="Nordby", display_name="Ola Nordby Nordmann"),
    person("SE", (STUDENT, STAFF)),
    person("G1", (GUARDIAN,), email="foresatt@example.org", nin=GUARDIAN_NIN, students=("S1",)),
    person("G2", (GUARDIAN,), email=None, students=("S1", "GONE")),
    person("TG", (TEACHER, GUARDIAN), email="private@example.org", students=("S1",)),
]


def group(key: str, kind: str, members: tuple[tuple[str, str], ...], **kw: object) -> DesiredGroup:
    """A desired group with test defaults."""
    base: dict[str, object] = {
        "key": key,
        "school_id": "NORDBY",
        "kind": kind,
        "name": f"Gruppe {key}",
        "subject_code": None,
        "grade": None,
        "start_date": "2025-08-18",
        "end_date": "2026-06-19",
        "members": members,
    }
    base.update(kw)
    return DesiredGroup(**base)  # type: ignore[arg-type]


GROUPS = [
    group("5A", BASIS, (("S1", STUDENT), ("T1", TEACHER))),
    group("5A-MAT", TEACHING, (("A1", STAFF), ("S1", STUDENT), ("T1", TEACHER)), subject_code="MAT0010"),
    group("5A-KL", CONTACT, (("S1", STUDENT), ("T1", TEACHER), ("UNKNOWN", STUDENT))),
    group(
        school_group_key("NORDBY", "students"),
        SCHOOL_WIDE,
        (("S1", STUDENT), ("SE", STUDENT)),
        start_date=None,
        end_date=None,
        school_role="students",
    ),
    group(
        school_group_key("NORDBY", "staff"),
        SCHOOL_WIDE,
        (("A1", STAFF), ("L1", LEADER), ("SE", STAFF), ("T1", TEACHER), ("TG", TEACHER)),
        start_date=None,
        end_date=None,
        school_role="staff",
    ),
    group(
        school_group_key("NORDBY", "guardians"),
        SCHOOL_WIDE,
        (("G1", GUARDIAN), ("G2", GUARDIAN), ("TG", GUARDIAN)),
        start_date=None,
        end_date=None,
        school_role="guardians",
    ),
    # A person listed under two roles in one group gets the strongest.
    group("MIX", TEACHING, (("SE", STAFF), ("SE", STUDENT))),
]


def state() -> DesiredState:
    """A small desired state covering every role."""
    return DesiredState(
        as_of="2025-09-01",
        schools={"NORDBY": School("NORDBY", "974778874", "Nordby skole", "NBS", "grunnskole")},
        persons={p.person_id: p for p in PERSONS},
        groups={g.key: g for g in GROUPS},
    )


def run(nin_as_sourcedid: bool = False) -> dict[tuple[str, str], TargetObject]:
    """Map the test state; objects by (kind, key)."""
    ctx = MappingContext(
        owner=OWNER, target=ItslearningConfig(nin_as_sourcedid=nin_as_sourcedid), as_of="2025-09-01"
    )
    objs = list(m.map_state(state(), ctx))
    out = {(o.kind, o.key): o for o in objs}
    assert len(out) == len(objs), "keys must be unique"
    return out


def test_registered_and_placement_free() -> None:
    kind = kind_of("itslearning")
    fn, placement = kind.map_state, kind.placement
    assert fn is m.map_state
    assert placement == frozenset()


def test_org_and_schools_form_the_hierarchy() -> None:
    objs = run()
    assert objs[("org", "org")].attrs == {
        "sourcedid": "org:123456785",
        "name": "Nordby kommune",
        "org_number": "123456785",
        "grouptype": "Skoleeier",
    }
    assert objs[("orgunit", "NORDBY")].attrs == {
        "sourcedid": "school:NORDBY",
        "name": "Nordby skole",
        "short": "NBS",
        "org_number": "974778874",
        "grouptype": "Skole",
    }


@pytest.mark.parametrize(
    ("pid", "role", "email", "sourcedid", "nin_sourcedid"),
    [
        ("S1", "Student", "uS1@skole.no", "S1", NIN),
        ("T1", "Staff", "uT1@skole.no", "T1", "15057612345"),
        ("A1", "Staff", "uA1@skole.no", "A1", "A1"),  # no NIN: keeps the person_id
        ("L1", "Staff", "uL1@skole.no", "L1", "L1"),
        ("SE", "Staff", "uSE@skole.no", "SE", "SE"),  # student and employed: Staff
        ("G1", "Guest", "foresatt@example.org", "G1", GUARDIAN_NIN),  # guardian with a NIN
        ("G2", "Guest", None, "G2", "G2"),  # guardian without e-mail or NIN
        ("TG", "Staff", "uTG@skole.no", "TG", "TG"),  # employee who is also a guardian
    ],
)
def test_person_attrs(pid: str, role: str, email: str | None, sourcedid: str, nin_sourcedid: str) -> None:
    for nin_on, expected_sid in ((False, sourcedid), (True, nin_sourcedid)):
        o = run(nin_as_sourcedid=nin_on)[("person", pid)]
        assert o.attrs["institutionrole"] == role
        assert o.attrs["email"] == email
        assert o.attrs["sourcedid"] == expected_sid
        assert o.attrs["userid"] == f"u{pid}"
        assert o.username == f"u{pid}" and o.person_id == pid
        assert o.members is None


def test_names_middle_name_goes_with_given() -> None:
    o = run()[("person", "L1")]
    assert (o.attrs["given"], o.attrs["family"], o.attrs["fn"]) == (
        "Ola Nordby",
        "Nordmann",
        "Ola Nordby Nordmann",
    )


@pytest.mark.parametrize(
    ("pid", "students"),
    [("G1", ["S1"]), ("G2", ["S1"]), ("TG", ["S1"]), ("S1", None), ("T1", None)],  # G2's GONE is not a person
)
def test_guardian_student_links(pid: str, students: list[str] | None) -> None:
    assert run()[("person", pid)].links.get("students") == students


@pytest.mark.parametrize("nin_on", [False, True])
def test_data_minimisation(nin_on: bool) -> None:
    objs = run(nin_as_sourcedid=nin_on)
    allowed = {"sourcedid", "userid", "given", "family", "fn", "email", "institutionrole", "students"}
    for (kind, _key), o in objs.items():
        if kind == "person":
            assert set(o.attrs) <= allowed
        blob = json.dumps({k: v for k, v in o.record().items() if not (nin_on and k == "sourcedid")})
        assert NIN not in blob and GUARDIAN_NIN not in blob, "a NIN only ever as sourcedid"
        assert "2010-05-17" not in blob, "no birth date"
        assert "+4799999999" not in blob, "no mobile"
    if not nin_on:
        assert all(NIN not in json.dumps(o.record()) for o in objs.values())


def test_everyone_active_is_a_person() -> None:
    objs = run()
    assert {k for kind, k in objs if kind == "person"} == {p.person_id for p in PERSONS}


@pytest.mark.parametrize(
    ("key", "grouptype", "members"),
    [
        ("5A", "Basisgruppe", (("S1", "01"), ("T1", "02"))),
        ("5A-MAT", "Undervisningsgruppe", (("A1", "04"), ("S1", "01"), ("T1", "02"))),
        ("5A-KL", "Kontaktlærergruppe", (("S1", "01"), ("T1", "02"))),  # UNKNOWN left out
        ("school:NORDBY:students", "Skolegruppe", (("S1", "01"), ("SE", "01"))),
        (
            "school:NORDBY:staff",
            "Skolegruppe",
            (("A1", "04"), ("L1", "02"), ("SE", "04"), ("T1", "02"), ("TG", "02")),
        ),
        ("school:NORDBY:guardians", "Skolegruppe", (("G1", "06"), ("G2", "06"), ("TG", "06"))),
        ("MIX", "Undervisningsgruppe", (("SE", "04"),)),
    ],
)
def test_groups(key: str, grouptype: str, members: tuple[tuple[str, str], ...]) -> None:
    o = run()[("group", key)]
    assert o.attrs["grouptype"] == grouptype
    assert o.attrs["sourcedid"] == key
    assert o.links["school"] == "NORDBY"
    assert o.attrs["name"] == f"Gruppe {key}"
    assert o.members == members


def test_group_dates_and_subject() -> None:
    objs = run()
    assert objs[("group", "5A-MAT")].attrs == {
        "sourcedid": "5A-MAT",
        "name": "Gruppe 5A-MAT",
        "grouptype": "Undervisningsgruppe",
        "subject_code": "MAT0010",
        "start": "2025-08-18",
        "end": "2026-06-19",
    }
    assert objs[("group", "5A-MAT")].links == {"school": "NORDBY"}
    wide = objs[("group", "school:NORDBY:guardians")].attrs
    assert (wide["start"], wide["end"], wide["subject_code"]) == (None, None, None)


def test_attrs_are_json_and_deterministic() -> None:
    ctx = MappingContext(owner=OWNER, target=ItslearningConfig(), as_of="2025-09-01")
    a = list(m.map_state(state(), ctx))
    b = list(m.map_state(state(), ctx))
    assert a == b
    for o in a:
        json.dumps(dict(o.record()))
