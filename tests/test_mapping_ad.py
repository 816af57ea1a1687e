"""The AD mapping: users in school OUs, security groups, names that fit AD, nothing more."""

from __future__ import annotations

import json
import re

import pytest
from ldap3.utils.dn import parse_dn

from mappings import ad as m
from mappings.base import MappingContext
from provisioner.config import ADConfig
from provisioner.core.dn import escape as escape_dn_value
from provisioner.core.model import BASIS, STUDENT, DesiredState, TargetObject, school_group_key
from provisioner.kinds import kind_of
from tests.test_mapping_feide import (
    GUARDIAN_NIN,
    NIN,
    OWNER,
    WEIRD_SHORT,
    group,
    make_state,
    person,
    unescape,
)

CFG = ADConfig(base_dn="OU=Skoler,DC=example,DC=local", groups_ou="OU=Grupper", upn_domain="elev.example.no")
CTX = MappingContext(owner=OWNER, target=CFG, as_of="2025-09-01")
NORD_OU = "OU=NORDBY,OU=Skoler,DC=example,DC=local"


@pytest.fixture(scope="module")
def objs() -> dict[tuple[str, str], TargetObject]:
    return {(o.kind, o.key): o for o in m.map_state(make_state(), CTX)}


def test_registered_as_the_ad_mapping() -> None:
    kind = kind_of("ad")
    fn, placement = kind.map_state, kind.placement
    assert fn is m.map_state
    assert placement == frozenset({"ou", "cn"})


def test_who_is_in_ad(objs) -> None:
    persons = sorted(k for kind, k in objs if kind == "person")
    assert persons == ["A1", "L1", "M1", "S1", "SP", "T1", "TG", "W1"]  # no guardian G1
    assert {kind for kind, _ in objs} == {"person", "group"}


def test_student_user(objs) -> None:
    o = objs[("person", "S1")]
    assert (o.username, o.person_id, o.members) == ("us1", "S1", None)
    assert o.attrs == {
        "sAMAccountName": "us1",
        "userPrincipalName": "us1@elev.example.no",
        "givenName": "Ola",
        "sn": "Nordmann",
        "displayName": "Ola Nordmann",
        "mail": "us1@skole.example.no",
        "employeeID": "S1",
        "department": "Nordby skole",
        "company": "Eksempel kommune",
        "title": "student",
    }
    assert o.place == {"cn": "Ola Nordmann (us1)", "ou": NORD_OU}  # a change there is a move


def test_upn_defaults_to_the_mail_domain() -> None:
    ctx = MappingContext(OWNER, ADConfig(), "2025-09-01")
    users = [o for o in m.map_state(make_state(), ctx) if o.kind == "person"]
    assert all(o.attrs["userPrincipalName"] == f"{o.username}@skole.example.no" for o in users)


@pytest.mark.parametrize(
    ("pid", "title"),
    [
        ("S1", "student"),
        ("T1", "teacher"),
        ("A1", "staff"),
        ("L1", "leader"),
        ("M1", "teacher"),
        ("TG", "teacher"),
    ],
)
def test_title_is_the_main_role(objs, pid: str, title: str) -> None:
    assert objs[("person", pid)].attrs["title"] == title


def test_person_at_two_schools_lives_in_the_primary_schools_ou(objs) -> None:
    a = objs[("person", "M1")].attrs
    assert a["department"] == "Sørby skole"
    rdns = parse_dn(objs[("person", "M1")].place["ou"])
    assert rdns[0][0] == "OU"
    assert unescape(rdns[0][1]) == WEIRD_SHORT  # every special escaped, round-trips exactly
    assert [(x, v) for x, v, _ in rdns[1:]] == [("OU", "Skoler"), ("DC", "example"), ("DC", "local")]


@pytest.mark.parametrize(
    ("display", "username", "expected"),
    [
        ("Ola Nordmann", "olanor", "Ola Nordmann (olanor)"),
        ("A" * 70, "abcdefghijklmnopqrst", "A" * 41 + " (abcdefghijklmnopqrst)"),
        # Emoji take two UTF-16 units in AD: never cut in half, never over 64 units.
        ("😀" * 40, "u1", "😀" * 29 + " (u1)"),
        ("Ola " + "x" * 56 + " Nordmann", "u", "Ola " + "x" * 56 + " (u)"),
        ("Ola " + "x" * 55 + " Nordmann", "u", "Ola " + "x" * 55 + " (u)"),  # no space left dangling
    ],
)
def test_cn_is_unique_and_fits(display: str, username: str, expected: str) -> None:
    cn = m.person_cn(person("X", (STUDENT,), display_name=display, username=username))
    assert cn == expected
    assert len(cn.encode("utf-16-le")) // 2 <= 64
    assert cn.endswith(f" ({username})")


def test_cn_values_unique_for_namesakes(objs) -> None:
    cns = [o.place["cn"] for (kind, _), o in objs.items() if kind == "person"]
    assert len(cns) == len(set(cns))  # several "Ola Nordmann" in the fixture


def test_odd_names_kept_as_values(objs) -> None:
    a = objs[("person", "W1")].attrs
    assert a["givenName"] == '#Ola, + " \\ < > ; = * ( )'
    assert objs[("person", "W1")].place["cn"] == '#Ola, + " \\ < > ; = * ( ) Ærlig 😀 (uw1)'


def test_groups_cover_sis_and_school_wide_but_not_guardians(objs) -> None:
    keys = sorted(k for kind, k in objs if kind == "group")
    expected = ["B1", "KG-Å1", "MAT/10A"] + [
        school_group_key(s, w) for s in ("NORD", "SOR") for w in ("staff", "students", "teachers")
    ]
    assert keys == sorted(expected)


def test_group_attrs_and_members(objs) -> None:
    b1 = objs[("group", "B1")]
    assert b1.attrs == {"sAMAccountName": "NORDBY-10a", "description": "10A (Nordby skole)"}
    assert b1.place == {"cn": "NORDBY-10a", "ou": "OU=Grupper,OU=Skoler,DC=example,DC=local"}
    # G1 is a (bad-data) member in the SIS but a guardian: not in AD, so not a member.
    assert b1.members == (("S1", ""), ("T1", ""))
    staff = objs[("group", school_group_key("NORD", "staff"))]
    assert staff.attrs["sAMAccountName"] == "NORDBY-staff"
    assert staff.members == (("A1", ""), ("L1", ""), ("M1", ""), ("T1", ""), ("TG", ""))


def test_group_names_are_ascii_safe_and_short(objs) -> None:
    names = [o.attrs["sAMAccountName"] for (kind, _), o in objs.items() if kind == "group"]
    for n in names:
        assert re.fullmatch(r"[A-Za-z0-9-]{1,64}", n), n
    assert len({n.lower() for n in names}) == len(names)
    assert objs[("group", "MAT/10A")].attrs["sAMAccountName"] == "NORDBY-matematikk-10a-b"
    assert objs[("group", "KG-Å1")].attrs["sAMAccountName"] == "SOR-A-B-X-kontakt-gruppe-aa"


def test_colliding_group_names_get_stable_hash_suffixes() -> None:
    state = make_state()
    extra = {
        "X1": group(
            "X1", BASIS, (("S1", STUDENT),), name="10a"
        ),  # a namesake of "10A" (AD names ignore case)
        "X2": group("X2", BASIS, (), name="L" * 100),
        "X3": group("X3", BASIS, (), name="L" * 100 + "different tail"),
    }
    state2 = DesiredState(state.as_of, state.schools, state.persons, {**state.groups, **extra})
    keys = m.account_group_keys(state2)
    names = m.group_account_names(state2, keys)
    assert re.fullmatch(r"NORDBY-10a-[0-9a-f]{6}", names["B1"])
    assert re.fullmatch(r"NORDBY-10a-[0-9a-f]{6}", names["X1"])
    assert names["B1"] != names["X1"]
    assert len(names["X2"]) == 64 and len(names["X3"]) == 64 and names["X2"] != names["X3"]
    assert len({n.lower() for n in names.values()}) == len(names)
    # A namesake's suffix depends on its own key only: adding X1 did not rename MAT/10A.
    assert names["MAT/10A"] == "NORDBY-matematikk-10a-b"
    again = m.group_account_names(state2, keys)
    assert again == names


def test_data_minimisation(objs) -> None:
    text = json.dumps([dict(o.record()) for o in objs.values()], ensure_ascii=False)
    assert NIN not in text and GUARDIAN_NIN not in text and "15057612345" not in text
    assert "privat@example.org" not in text and "+4799999999" not in text
    assert "ug1" not in text and "G1" not in json.dumps([o.members for o in objs.values()])
    for o in objs.values():
        assert not any("nin" in k.lower() for k in o.record())


def test_values_are_json_able(objs) -> None:
    for o in objs.values():
        for v in o.record().values():
            assert isinstance(v, str)
        if o.members is not None:
            assert list(o.members) == sorted(set(o.members))


def test_cut_counts_utf16_units() -> None:
    assert m.cut("abc", 2) == "ab"
    assert m.cut("a😀b", 2) == "a"
    assert m.cut("a😀b", 3) == "a😀"
    assert m.cut("æøå", 3) == "æøå"


def test_every_cn_works_as_an_escaped_rdn(objs) -> None:
    # The connector builds the user's DN as CN=<escaped cn>,<ou>: it must parse and round-trip.
    for (kind, _), o in objs.items():
        if kind != "person":
            continue
        dn = f"CN={escape_dn_value(o.place['cn'])},{o.place['ou']}"
        rdns = parse_dn(dn)
        assert rdns[0][0] == "CN"
        assert unescape(rdns[0][1]) == o.place["cn"]
        assert len(rdns) == len(parse_dn(o.place["ou"])) + 1
