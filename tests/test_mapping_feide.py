"""The Feide mapping: GO profile entries, DNs, affiliations and GO entitlements.

Also holds the small desired state the AD and Microsoft 365 mapping tests share
(``make_state``, ``OWNER``, ``NIN``) and an RFC 4514 unescape written independently of
the code under test.
"""

from __future__ import annotations

import json
from urllib.parse import quote, unquote

import pytest
from ldap3.utils.dn import parse_dn

from mappings import feide as m
from mappings.base import MappingContext
from provisioner.config import FeideConfig, OwnerConfig
from provisioner.core import dn as dns
from provisioner.core.model import (
    BASIS,
    CONTACT,
    GUARDIAN,
    LEADER,
    SCHOOL_GROUP_ROLES,
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
    name="Eksempel kommune",
    org_number="964000000",
    realm="Eksempel.Kommune.NO",
    mail_domain="skole.example.no",
)
NIN = "01010012356"  # synthetic test value, only ever compared with
GUARDIAN_NIN = "02020012345"  # synthetic test value
WEIRD_SHORT = '#Sør, "A+B" <x>;=*()\\ '  # every RFC 4514 special, a leading '#', a trailing space

SCHOOLS = {
    "NORD": School("NORD", "974000001", "Nordby skole", "NORDBY", "primary"),
    "SOR": School("SOR", "974000002", "Sørby skole", WEIRD_SHORT, "lower_secondary"),
}


def person(pid: str, roles: tuple[str, ...], school: str = "NORD", **kw: object) -> DesiredPerson:
    """A desired person with test defaults (username ``u<pid>`` lowercased)."""
    base: dict[str, object] = {
        "person_id": pid,
        "username": f"u{pid.lower()}",
        "nin": None,
        "given_name": "Ola",
        "middle_name": None,
        "family_name": "Nordmann",
        "display_name": "Ola Nordmann",
        "birth_date": "2010-05-17",
        "email": "privat@example.org",
        "mobile": "+4799999999",
        "roles": roles,
        "affiliations": tuple(sorted((school, r) for r in roles)),
        "primary_school": school,
        "grade": None,
    }
    base.update(kw)
    return DesiredPerson(**base)  # type: ignore[arg-type]


def group(key: str, kind: str, members: tuple[tuple[str, str], ...], **kw: object) -> DesiredGroup:
    """A desired SIS group with test defaults."""
    base: dict[str, object] = {
        "key": key,
        "school_id": "NORD",
        "kind": kind,
        "name": f"Gruppe {key}",
        "subject_code": None,
        "grade": None,
        "start_date": "2025-08-01",
        "end_date": "2026-06-30",
        "members": tuple(sorted(members)),
    }
    base.update(kw)
    return DesiredGroup(**base)  # type: ignore[arg-type]


def make_state() -> DesiredState:
    """Students, employees of every role, guardians, a two-school teacher, odd names and groups."""
    persons = [
        person("S1", (STUDENT,), nin=NIN, grade=10),
        person("T1", (TEACHER,), nin="15057612345", given_name="Kari", family_name="Lærer"),
        person("A1", (STAFF,)),
        person("L1", (LEADER,), middle_name="Nordby", display_name="Ola Nordby Nordmann"),
        person("G1", (GUARDIAN,), nin=GUARDIAN_NIN, students=("S1",)),
        person(
            "M1",
            (TEACHER,),
            affiliations=(("NORD", TEACHER), ("SOR", TEACHER)),
            primary_school="SOR",
            given_name="Åse",
            family_name="Øyen",
            display_name="Åse Øyen",
        ),
        person(
            "W1",
            (STUDENT,),
            given_name='#Ola, + " \\ < > ; = * ( )',
            family_name="Ærlig 😀",
            display_name='#Ola, + " \\ < > ; = * ( ) Ærlig 😀',
        ),
        person("SP", (STUDENT,), display_name=" leading and trailing ", given_name=" leading"),
        person("TG", (TEACHER, GUARDIAN), affiliations=(("NORD", GUARDIAN), ("NORD", TEACHER))),
    ]
    groups = [
        group("B1", BASIS, (("S1", STUDENT), ("T1", TEACHER), ("G1", STUDENT)), name="10A", grade=10),
        group(
            "MAT/10A",
            TEACHING,
            (("S1", STUDENT), ("T1", TEACHER), ("M1", TEACHER)),
            name="Matematikk  10A/B",
            subject_code="mat0010",
        ),
        group("KG-Å1", CONTACT, (("M1", TEACHER), ("W1", STUDENT)), school_id="SOR", name="Kontakt gruppe Å"),
    ]
    by_school_role: dict[tuple[str, str], list[str]] = {}
    for p in persons:
        for s, r in p.affiliations:
            by_school_role.setdefault((s, r), []).append(p.person_id)
    for sid, school in SCHOOLS.items():
        for which, roles in SCHOOL_GROUP_ROLES.items():
            mem = tuple(sorted((pid, r) for r in roles for pid in by_school_role.get((sid, r), ())))
            key = school_group_key(sid, which)
            groups.append(
                DesiredGroup(
                    key=key,
                    school_id=sid,
                    kind=SCHOOL_WIDE,
                    name=f"{school.short_name} {which}",
                    subject_code=None,
                    grade=None,
                    start_date=None,
                    end_date=None,
                    members=mem,
                    school_role=which,
                )
            )
    return DesiredState(
        as_of="2025-09-01",
        schools=SCHOOLS,
        persons={p.person_id: p for p in persons},
        groups={g.key: g for g in groups},
    )


def unescape(value: str) -> str:
    """RFC 4514 value unescaping (``\\c`` and ``\\XX`` hex pairs), for round-trip checks."""
    raw = bytearray()
    i = 0
    while i < len(value):
        if value[i] == "\\":
            nxt = value[i + 1 : i + 3]
            if len(nxt) == 2 and all(c in "0123456789abcdefABCDEF" for c in nxt):
                raw.append(int(nxt, 16))
                i += 3
            else:
                raw += value[i + 1].encode()
                i += 2
        else:
            raw += value[i].encode()
            i += 1
    return raw.decode()


CFG = FeideConfig(base_dn="dc=eksempel,dc=no", people_ou="ou=people", units_ou="ou=units")
CTX = MappingContext(owner=OWNER, target=CFG, as_of="2025-09-01")
UNIT_NORD = "norEduOrgUnitUniqueIdentifier=NO974000001,ou=units,dc=eksempel,dc=no"
UNIT_SOR = "norEduOrgUnitUniqueIdentifier=NO974000002,ou=units,dc=eksempel,dc=no"


@pytest.fixture(scope="module")
def objs() -> dict[tuple[str, str], TargetObject]:
    out = list(m.map_state(make_state(), CTX))
    return {(o.kind, o.key): o for o in out}


def persons_of(objs: dict[tuple[str, str], TargetObject]) -> dict[str, TargetObject]:
    return {k: o for (kind, k), o in objs.items() if kind == "person"}


def test_registered_as_the_feide_mapping() -> None:
    kind = kind_of("feide")
    fn, placement = kind.map_state, kind.placement
    assert fn is m.map_state
    assert placement == frozenset({"dn"})


def test_who_is_in_feide(objs) -> None:
    # Guardians never; a teacher who is also a guardian as a teacher; no groups at all.
    assert sorted(persons_of(objs)) == ["A1", "L1", "M1", "S1", "SP", "T1", "TG", "W1"]
    assert {kind for kind, _ in objs} == {"org", "orgunit", "person"}
    assert sorted(k for kind, k in objs if kind == "orgunit") == ["NORD", "SOR"]


def test_org_entry(objs) -> None:
    org = objs[("org", "org")]
    assert org.place == {"dn": "dc=eksempel,dc=no"}
    assert org.attrs == {
        "objectClass": ["top", "dcObject", "organization", "eduOrg", "norEduOrg"],
        "o": ["Eksempel kommune"],
        "dc": "eksempel",
        "eduOrgLegalName": "Eksempel kommune",
        "norEduOrgNIN": "NO964000000",
        "norEduOrgUniqueIdentifier": "964000000",
        "norEduOrgSchemaVersion": "2.0",
    }


def test_org_entry_under_an_o_rdn_keeps_its_rdn_value() -> None:
    ctx = MappingContext(OWNER, FeideConfig(base_dn="o=Skoleeier\\, Eksempel,c=NO"), "2025-09-01")
    org = list(m.map_state(make_state(), ctx))[0]
    assert org.attrs["o"] == ["Eksempel kommune", "Skoleeier, Eksempel"]
    assert "dcObject" not in org.attrs["objectClass"]


def test_orgunit_entries(objs) -> None:
    sor = objs[("orgunit", "SOR")]
    assert sor.place == {"dn": UNIT_SOR}
    assert sor.attrs == {
        "objectClass": ["top", "organizationalUnit", "norEduOrgUnit"],
        "ou": "Sørby skole",
        "norEduOrgUnitUniqueIdentifier": "NO974000002",
    }
    assert objs[("orgunit", "NORD")].place["dn"] == UNIT_NORD


AFFILIATION_CASES = [
    ("S1", ["member", "student"], "student"),
    ("T1", ["employee", "faculty", "member"], "faculty"),
    ("A1", ["employee", "member", "staff"], "staff"),
    ("L1", ["employee", "member", "staff"], "staff"),
    ("TG", ["employee", "faculty", "member"], "faculty"),
]


@pytest.mark.parametrize(("pid", "affiliations", "primary"), AFFILIATION_CASES)
def test_affiliations(objs, pid: str, affiliations: list[str], primary: str) -> None:
    attrs = objs[("person", pid)].attrs
    assert attrs["eduPersonAffiliation"] == affiliations
    assert attrs["eduPersonPrimaryAffiliation"] == primary


def test_student_entry_in_full(objs) -> None:
    o = objs[("person", "S1")]
    assert (o.username, o.person_id) == ("us1", "S1")
    b1 = "urn:mace:feide.no:go:group:b::NO974000001:B1:2025-08-01:2026-06-30:student:10A"
    u1 = (
        "urn:mace:feide.no:go:group:u:MAT0010:NO974000001:MAT%2F10A:2025-08-01:2026-06-30"
        ":student:Matematikk%2010A%2FB"
    )
    assert o.place == {"dn": "uid=us1,ou=people,dc=eksempel,dc=no"}
    assert o.attrs == {
        "objectClass": [
            "top",
            "person",
            "organizationalPerson",
            "inetOrgPerson",
            "eduPerson",
            "norEduPerson",
        ],
        "uid": "us1",
        "cn": "Ola Nordmann",
        "displayName": "Ola Nordmann",
        "givenName": "Ola",
        "sn": "Nordmann",
        "norEduPersonLegalName": "Ola Nordmann",
        "eduPersonPrincipalName": "us1@eksempel.kommune.no",
        "mail": "us1@skole.example.no",
        "norEduPersonNIN": NIN,
        "eduPersonAffiliation": ["member", "student"],
        "eduPersonPrimaryAffiliation": "student",
        "eduPersonOrgDN": "dc=eksempel,dc=no",
        "eduPersonOrgUnitDN": [UNIT_NORD],
        "eduPersonPrimaryOrgUnitDN": UNIT_NORD,
        "eduPersonEntitlement": sorted(
            [
                b1,
                "urn:mace:feide.no:go:groupid:b:NO974000001:b1:2025-08-01:2026-06-30",
                u1,
                "urn:mace:feide.no:go:groupid:u:NO974000001:mat%2F10a:2025-08-01:2026-06-30",
                "urn:mace:feide.no:go:grep:http://psi.udir.no/laereplan/aarstrinn/aarstrinn10",
            ]
        ),
    }


def test_go_values_for_an_other_group_with_non_ascii_id_and_name(objs) -> None:
    # Contact groups are "a": no grep code; the id keeps its case in the group value and
    # is lowercased before encoding in the groupid value (Å -> å -> %C3%A5).
    ents = objs[("person", "M1")].attrs["eduPersonEntitlement"]
    assert (
        "urn:mace:feide.no:go:group:a::NO974000002:KG-%C3%851:2025-08-01:2026-06-30:faculty:Kontakt%20gruppe%20%C3%85"
        in ents
    )
    assert "urn:mace:feide.no:go:groupid:a:NO974000002:kg-%C3%A51:2025-08-01:2026-06-30" in ents


def test_teachers_are_faculty_in_go_groups_and_groupid_is_shared(objs) -> None:
    t1 = set(objs[("person", "T1")].attrs["eduPersonEntitlement"])
    s1 = set(objs[("person", "S1")].attrs["eduPersonEntitlement"])
    assert "urn:mace:feide.no:go:group:b::NO974000001:B1:2025-08-01:2026-06-30:faculty:10A" in t1
    ids = {v for v in t1 if ":groupid:" in v}
    assert ids == {v for v in s1 if ":groupid:" in v}  # equal for every member, whatever the role


def test_each_group_value_has_its_groupid(objs) -> None:
    for o in persons_of(objs).values():
        ents = o.attrs["eduPersonEntitlement"]
        assert ents == sorted(set(ents))
        groups = [v for v in ents if v.startswith("urn:mace:feide.no:go:group:")]
        ids = [v for v in ents if v.startswith("urn:mace:feide.no:go:groupid:")]
        assert len(groups) == len(ids)
        for v in groups:
            t, _grep, org, gid, start, end, _role, _name = v.split(":")[5:]
            canonical = quote(unquote(gid).lower(), safe="")  # lowercase first, then encode
            assert f"urn:mace:feide.no:go:groupid:{t}:{org}:{canonical}:{start}:{end}" in ids


def test_no_double_spaces_and_no_school_wide_groups(objs) -> None:
    everything = [v for o in persons_of(objs).values() for v in o.attrs["eduPersonEntitlement"]]
    assert not any("%20%20" in v for v in everything)
    assert not any("school" in v.lower() or "students" in v for v in everything)


def test_go_encoding_is_canonical() -> None:
    assert m.go_encode("Prosjekt årbok") == "Prosjekt%20%C3%A5rbok"
    assert m.go_encode("a:b/c%d e~f.g_h-i") == "a%3Ab%2Fc%25d%20e~f.g_h-i"
    assert m.go_encode("a\u030a") == "%C3%A5"  # decomposed å is NFC-normalised first
    assert m.go_encode("ÆØÅ,+;=") == "%C3%86%C3%98%C3%85%2C%2B%3B%3D"


def test_person_at_two_schools(objs) -> None:
    a = objs[("person", "M1")].attrs
    assert a["eduPersonOrgUnitDN"] == sorted([UNIT_NORD, UNIT_SOR])
    assert a["eduPersonPrimaryOrgUnitDN"] == UNIT_SOR


def test_guardian_school_is_not_an_org_unit_of_a_teacher_guardian(objs) -> None:
    assert objs[("person", "TG")].attrs["eduPersonOrgUnitDN"] == [UNIT_NORD]


def test_nin_only_when_present(objs) -> None:
    assert objs[("person", "S1")].attrs["norEduPersonNIN"] == NIN
    assert "norEduPersonNIN" not in objs[("person", "A1")].attrs
    assert "norEduPersonNIN" not in objs[("person", "M1")].attrs


def test_no_guardian_data_anywhere(objs) -> None:
    text = json.dumps([o.record() for o in objs.values()], ensure_ascii=False)
    assert GUARDIAN_NIN not in text
    assert "ug1" not in text  # the guardian's username
    assert "privat@example.org" not in text  # private e-mail is not for Feide


def test_eppn_is_lowercase_uid_at_realm(objs) -> None:
    for o in persons_of(objs).values():
        assert o.attrs["eduPersonPrincipalName"] == f"{o.attrs['uid']}@eksempel.kommune.no"
        assert o.attrs["eduPersonPrincipalName"] == o.attrs["eduPersonPrincipalName"].lower()


@pytest.mark.parametrize(
    "username",
    ["plain", "#lead", " lead", "trail ", 'a,b+c"d\\e<f>g;h=i', "*(x)#", "æøå😀", "nul\x00in", "\\#"],
)
def test_person_dn_escapes_and_round_trips(username: str) -> None:
    dn = m.person_dn(username, CTX)
    rdns = parse_dn(dn)
    assert [(a, v) for a, v, _ in rdns[1:]] == [("ou", "people"), ("dc", "eksempel"), ("dc", "no")]
    attr, value, _ = rdns[0]
    assert attr == "uid"
    assert unescape(value) == username
    assert dns.unescape(value) == username


def test_odd_names_are_kept_as_values(objs) -> None:
    a = objs[("person", "W1")].attrs
    assert a["givenName"] == '#Ola, + " \\ < > ; = * ( )'
    assert a["cn"] == '#Ola, + " \\ < > ; = * ( ) Ærlig 😀'
    assert objs[("person", "SP")].attrs["displayName"] == " leading and trailing "


def test_values_are_json_able_and_lists_sorted(objs) -> None:
    for o in objs.values():
        json.dumps(dict(o.record()))
        for k, v in o.record().items():
            assert isinstance(v, str | list), k
            if isinstance(v, list) and k not in ("objectClass", "o"):
                assert v == sorted(v), k


def test_deterministic() -> None:
    assert list(m.map_state(make_state(), CTX)) == list(m.map_state(make_state(), CTX))
