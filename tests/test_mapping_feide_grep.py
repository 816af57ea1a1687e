"""The Feide mapping's GO-profile extras: Grep codes, norEduPersonLIN, org and school mail, SMS MFA.

Table-driven: the Grep reference normalisation, grade codes, who gets which Grep values
(students over every school, teachers only when configured, other employees never), the
LIN of persons without a NIN, the mail settings, and the norEduPersonAuthnMethod rules.
"""

from __future__ import annotations

import re

import pytest

from mappings import feide as m
from mappings.base import MappingContext
from mappings.feide_grep import grade_uri, grep_ref, is_grade_value
from provisioner.config import ConfigError, FeideConfig, parse
from provisioner.core.model import (
    BASIS,
    GUARDIAN,
    LEADER,
    STAFF,
    STUDENT,
    TEACHER,
    TEACHING,
    DesiredState,
    School,
    Study,
    TargetObject,
)
from tests.test_mapping_feide import NIN, OWNER, SCHOOLS, group, person

GREP = "urn:mace:feide.no:go:grep:"
TRINN = GREP + "http://psi.udir.no/laereplan/aarstrinn/"
KL06 = GREP + "http://psi.udir.no/kl06/"
UUID = "c473400d-5c2c-46ca-9008-26e66ed9e3bd"
WITH_ADULT = {**SCHOOLS, "VO": School("VO", "974000009", "Voksenopplæringa", "VO", "adult")}

GREP_REF_CASES = [
    ("ST", "http://psi.udir.no/kl06/ST"),
    ("  strea2----  ", "http://psi.udir.no/kl06/STREA2----"),
    ("NOR0214", "http://psi.udir.no/kl06/NOR0214"),
    ("http://psi.udir.no/kl06/STREA3----", "http://psi.udir.no/kl06/STREA3----"),
    ("https://psi.udir.no/kl06/STREA3----/", "http://psi.udir.no/kl06/STREA3----"),
    ("https://data.udir.no/kl06/v201906/programomraader/STREA3----", "http://psi.udir.no/kl06/STREA3----"),
    (UUID, f"uuid:{UUID}"),
    (f"uuid:{UUID.upper()}", f"uuid:{UUID}"),
    ("12345", None),  # a bare number (a FINT systemId) is no Grep code
    ("Studiespesialisering vg1", None),
    ("https://example.org/kl06/ST", None),
    ("ftp://psi.udir.no/kl06/ST", None),
    ("", None),
    (None, None),
]


@pytest.mark.parametrize(("given", "expected"), GREP_REF_CASES)
def test_grep_ref_normalises_what_the_sis_gives(given: str | None, expected: str | None) -> None:
    assert grep_ref(given) == expected


GRADE_CASES = [
    (None, None),
    (0, None),
    (1, "aarstrinn1"),
    (7, "aarstrinn7"),
    (10, "aarstrinn10"),
    (11, "vg1"),
    (12, "vg2"),
    (13, "vg3"),
    (14, None),  # Grep's vg4 is not part of the official structure; the check shows the student
    (-1, None),
]


@pytest.mark.parametrize(("grade", "code"), GRADE_CASES)
def test_grade_codes(grade: int | None, code: str | None) -> None:
    uri = grade_uri(grade)
    assert uri == (None if code is None else "http://psi.udir.no/laereplan/aarstrinn/" + code)
    if uri:
        assert is_grade_value(GREP + uri)


def mapped(
    persons: list, groups: list | None = None, **settings: object
) -> dict[tuple[str, str], TargetObject]:
    cfg = FeideConfig(base_dn="dc=eksempel,dc=no", **settings)  # type: ignore[arg-type]
    state = DesiredState(
        as_of="2025-09-01",
        schools=WITH_ADULT,
        persons={p.person_id: p for p in persons},
        groups={g.key: g for g in groups or []},
    )
    return {(o.kind, o.key): o for o in m.map_state(state, MappingContext(OWNER, cfg, "2025-09-01"))}


def greps(obj: TargetObject) -> list[str]:
    return [v for v in obj.attrs["eduPersonEntitlement"] if v.startswith(GREP)]


# (person, the Grep values the person's entry holds)
STUDENT_CASES = [
    (person("P1", (STUDENT,), grade=4, studies=(Study("NORD", 4, None, None),)), [TRINN + "aarstrinn4"]),
    # A VGS pupil: grade, programme and programme area, however the SIS spelled them.
    (
        person(
            "P2",
            (STUDENT,),
            grade=12,
            studies=(Study("NORD", 12, "ST", "http://psi.udir.no/kl06/STREA2----"),),
        ),
        [KL06 + "ST", KL06 + "STREA2----", TRINN + "vg2"],
    ),
    # The union over two schools; a uuid programme area kept as uuid:.
    (
        person(
            "P3",
            (STUDENT,),
            affiliations=(("NORD", STUDENT), ("SOR", STUDENT)),
            grade=11,
            studies=(Study("NORD", 11, "ST", "STUSP1----"), Study("SOR", 11, "MD", UUID)),
        ),
        [KL06 + "MD", KL06 + "ST", KL06 + "STUSP1----", TRINN + "vg1", GREP + f"uuid:{UUID}"],
    ),
    # Adult education without a grade, and a value that is no Grep code: nothing made up.
    (person("P4", (STUDENT,), studies=(Study("NORD", None, "12345", None),)), []),
    # Built without studies (no derive): the primary grade.
    (person("P5", (STUDENT,), grade=9), [TRINN + "aarstrinn9"]),
    # A student who also works at the school still has their student codes.
    (
        person("P6", (STUDENT, STAFF), grade=13, studies=(Study("NORD", 13, "HS", None),)),
        [KL06 + "HS", TRINN + "vg3"],
    ),
    (person("E1", (TEACHER,), grade=None), []),
    (person("E2", (STAFF,)), []),
    (person("E3", (LEADER,)), []),
]


ADULT_CASES = [
    # Adult education has no years: the target's adult_grade (default 10) stands in.
    ({}, (Study("VO", None, None, None),), [TRINN + "aarstrinn10"]),
    ({"adult_grade": 9}, (Study("VO", None, None, None),), [TRINN + "aarstrinn9"]),
    ({"adult_grade": 0}, (Study("VO", None, None, None),), []),
    ({}, (Study("VO", 8, None, None),), [TRINN + "aarstrinn8"]),  # a grade the SIS gave wins
    ({}, (Study("NORD", None, None, None),), []),  # not adult education: nothing made up
    ({}, (), [TRINN + "aarstrinn10"]),  # without studies: the primary school (VO) decides
]


@pytest.mark.parametrize(("settings", "studies", "expected"), ADULT_CASES)
def test_adult_education_pupils_get_the_adult_grade(
    settings: dict, studies: tuple, expected: list[str]
) -> None:
    p = person("V1", (STUDENT,), school="VO", studies=studies)
    assert greps(mapped([p], **settings)[("person", "V1")]) == expected


@pytest.mark.parametrize(("p", "expected"), STUDENT_CASES, ids=[c[0].person_id for c in STUDENT_CASES])
def test_grep_codes_of_students_and_none_for_other_employees(p, expected: list[str]) -> None:
    assert greps(mapped([p])[("person", p.person_id)]) == expected


TEACHING_GROUPS = [
    group("MAT5", TEACHING, (("T1", TEACHER), ("P1", STUDENT)), subject_code="MAT0010", grade=5),
    group("NAT", TEACHING, (("T1", TEACHER), ("A1", STAFF)), subject_code="nat0010"),
    group("5A", BASIS, (("T1", TEACHER), ("T2", TEACHER)), grade=5),
]
STAFF_AND_TEACHERS = [
    person("T1", (TEACHER,)),
    person("T2", (TEACHER,)),
    person("A1", (STAFF,)),
    person("P1", (STUDENT,), grade=5, studies=(Study("NORD", 5, None, None),)),
]


@pytest.mark.parametrize(
    ("on", "expected"),
    [
        (False, {"T1": [], "T2": [], "A1": []}),
        (True, {"T1": [KL06 + "MAT0010", KL06 + "NAT0010", TRINN + "aarstrinn5"], "T2": [], "A1": []}),
    ],
)
def test_teachers_get_the_codes_of_what_they_teach_only_when_configured(
    on: bool, expected: dict[str, list[str]]
) -> None:
    objs = mapped(STAFF_AND_TEACHERS, TEACHING_GROUPS, teacher_grep_codes=on)
    assert {pid: greps(objs[("person", pid)]) for pid in expected} == expected
    assert greps(objs[("person", "P1")]) == [TRINN + "aarstrinn5"]  # the student's own, not the group's


def test_lin_for_persons_without_a_nin_only_and_stable() -> None:
    objs = mapped(
        [
            person("S-17", (STUDENT,), grade=3),
            person("S 18/x", (STUDENT,), grade=3),
            person("S1", (STUDENT,), grade=3, nin=NIN),
        ]
    )
    assert objs[("person", "S-17")].attrs["norEduPersonLIN"] == "eksempel.kommune.no:sis:S-17"
    assert objs[("person", "S 18/x")].attrs["norEduPersonLIN"] == "eksempel.kommune.no:sis:S%2018%2Fx"
    assert "norEduPersonLIN" not in objs[("person", "S1")].attrs
    renamed = mapped([person("S-17", (STUDENT,), grade=3, given_name="Kari", display_name="Kari Nordmann")])
    assert renamed[("person", "S-17")].attrs["norEduPersonLIN"] == "eksempel.kommune.no:sis:S-17"


# (settings, mail of the org, of NORD (short name NORDBY), of SOR)
MAIL_CASES = [
    ({}, None, None, None),
    ({"org_mail": "postmottak@eksempel.kommune.no"}, "postmottak@eksempel.kommune.no", None, None),
    (
        {"school_mail": "{short_name}.skole@eksempel.kommune.no"},
        None,
        "nordby.skole@eksempel.kommune.no",
        "sorabx.skole@eksempel.kommune.no",  # the odd test short name folded to a-z0-9
    ),
    (
        {"school_mail": "skole-{school_id}-{org_number}@k.no", "school_mails": {"SOR": "sor@k.no"}},
        None,
        "skole-nord-974000001@k.no",
        "sor@k.no",
    ),
    ({"school_mails": {"NORD": "nord@k.no"}}, None, "nord@k.no", None),
]


@pytest.mark.parametrize(("settings", "org", "nord", "sor"), MAIL_CASES)
def test_org_and_school_mail(settings: dict, org: str | None, nord: str | None, sor: str | None) -> None:
    objs = mapped([], **settings)
    got = [objs[k].attrs.get("mail") for k in (("org", "org"), ("orgunit", "NORD"), ("orgunit", "SOR"))]
    assert got == [org, nord, sor]


@pytest.mark.parametrize(
    "settings",
    [
        {"school_mail": "{name}@k.no"},
        {"school_mail": "no-at-sign"},
        {"org_mail": "a b@k.no"},
        {"sms_authn_label": ""},
    ],
)
def test_bad_mail_and_label_settings_are_config_errors(settings: dict) -> None:
    lines = ['[owner]\nname = "K"\norg_number = "964000000"\nrealm = "k.no"\nmail_domain = "k.no"']
    lines += ['[source]\nurl = "sqlite:///x.db"\n[state]\nurl = "sqlite:///s.db"\n[targets.feide]']
    lines += [f"{k} = {v!r}".replace("'", '"') for k, v in settings.items()]
    with pytest.raises(ConfigError, match=next(iter(settings))):
        parse("\n".join(lines) + "\n")


SMS = "urn:mace:feide.no:auth:method:sms"
# (roles, SIS mobile, sms_authn on, the norEduPersonAuthnMethod expected)
MFA_CASES = [
    ((TEACHER,), "+47 912 34 567", True, f"{SMS} +4791234567 label=Mobil"),
    ((STAFF,), "41234567", True, f"{SMS} +4741234567 label=Mobil"),
    ((LEADER,), "0047 98765432", True, f"{SMS} +4798765432 label=Mobil"),
    ((TEACHER, GUARDIAN), "(+46) 70-123 45 67", True, f"{SMS} +46701234567 label=Mobil"),
    ((TEACHER,), "+4791234567", False, None),  # off by default
    ((STUDENT,), "+4791234567", True, None),  # never for students
    ((STUDENT, TEACHER), "+4791234567", True, None),
    ((TEACHER,), None, True, None),  # no mobile, no method
    ((TEACHER,), "22 33 44 55", True, None),  # a landline cannot take an SMS
    ((TEACHER,), "+47 2233 4455", True, None),
    ((TEACHER,), "1234", True, None),
    ((TEACHER,), "ring meg", True, None),
]


@pytest.mark.parametrize(("roles", "mobile", "on", "expected"), MFA_CASES)
def test_sms_authn_method(roles: tuple[str, ...], mobile: str | None, on: bool, expected: str | None) -> None:
    p = person("P1", roles, mobile=mobile, grade=5 if STUDENT in roles else None)
    attrs = mapped([p], sms_authn=on)[("person", "P1")].attrs
    assert attrs.get("norEduPersonAuthnMethod") == expected


def test_sms_label_is_percent_encoded() -> None:
    attrs = mapped([person("P1", (TEACHER,))], sms_authn=True, sms_authn_label="Mobil (jobb)")[
        ("person", "P1")
    ]
    assert attrs.attrs["norEduPersonAuthnMethod"] == f"{SMS} +4799999999 label=Mobil%20%28jobb%29"


def test_the_example_config_documents_every_feide_setting() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "config" / "bas.example.toml").read_text(encoding="utf-8")
    for name in ("school_mails", "teacher_grep_codes", "adult_grade", "sms_authn", "sms_authn_label"):
        text = re.sub(rf"^# ({name} = [^#\n]*?)\s*(#.*)?$", r"\1", text, count=1, flags=re.M)
    feide = parse(text).targets["feide"]
    assert isinstance(feide, FeideConfig)
    assert feide.org_mail == "postmottak@eksempel.kommune.no"
    assert feide.school_mail == "postmottak.{short_name}@eksempel.kommune.no"
    assert feide.school_mails == {"NORDBY": "nordby.skole@eksempel.kommune.no"}
    assert (feide.teacher_grep_codes, feide.adult_grade) == (False, 10)
    assert (feide.sms_authn, feide.sms_authn_label) == (False, "Mobil")
