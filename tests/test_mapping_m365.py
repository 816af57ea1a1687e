"""The Microsoft 365 mapping: users and groups as Graph sees them, and nothing more."""

from __future__ import annotations

import json
import re

import pytest

from mappings import ad
from mappings import m365 as m
from mappings.base import MappingContext
from provisioner.config import ADConfig, M365Config
from provisioner.core.model import TargetObject, school_group_key
from provisioner.kinds import kind_of
from tests.test_mapping_feide import GUARDIAN_NIN, NIN, OWNER, make_state

CFG = M365Config(usage_location="NO", group_type="security")
CTX = MappingContext(owner=OWNER, target=CFG, as_of="2025-09-01")


def by_key(objs: list[TargetObject]) -> dict[tuple[str, str], TargetObject]:
    return {(o.kind, o.key): o for o in objs}


@pytest.fixture(scope="module")
def objs() -> dict[tuple[str, str], TargetObject]:
    return by_key(m.map_state(make_state(), CTX))


def test_registered_as_the_m365_mapping() -> None:
    kind = kind_of("m365")
    fn, placement = kind.map_state, kind.placement
    assert fn is m.map_state
    assert placement == frozenset()


def test_who_is_in_m365(objs) -> None:
    persons = sorted(k for kind, k in objs if kind == "person")
    assert persons == ["A1", "L1", "M1", "S1", "SP", "T1", "TG", "W1"]  # no guardian G1


@pytest.mark.parametrize(
    ("pid", "expected"),
    [
        (
            "S1",
            {
                "userPrincipalName": "us1@skole.example.no",
                "mailNickname": "us1",
                "displayName": "Ola Nordmann",
                "givenName": "Ola",
                "surname": "Nordmann",
                "employeeId": "S1",
                "usageLocation": "NO",
                "department": "Nordby skole",
                "jobTitle": "student",
            },
        ),
        (
            "M1",
            {
                "userPrincipalName": "um1@skole.example.no",
                "mailNickname": "um1",
                "displayName": "Åse Øyen",
                "givenName": "Åse",
                "surname": "Øyen",
                "employeeId": "M1",
                "usageLocation": "NO",
                "department": "Sørby skole",
                "jobTitle": "teacher",
            },
        ),
    ],
)
def test_user_attrs(objs, pid: str, expected: dict) -> None:
    o = objs[("person", pid)]
    assert o.attrs == expected
    assert (o.username, o.person_id, o.members) == (expected["mailNickname"], pid, None)


@pytest.mark.parametrize(("pid", "title"), [("T1", "teacher"), ("A1", "staff"), ("L1", "leader")])
def test_job_title_per_role(objs, pid: str, title: str) -> None:
    assert objs[("person", pid)].attrs["jobTitle"] == title


def test_upn_domain_from_config() -> None:
    ctx = MappingContext(OWNER, M365Config(upn_domain="elev.example.no"), "2025-09-01")
    users = [o for o in m.map_state(make_state(), ctx) if o.kind == "person"]
    assert {o.attrs["userPrincipalName"].split("@")[1] for o in users} == {"elev.example.no"}


def test_security_group(objs) -> None:
    g = objs[("group", "MAT/10A")]
    assert g.attrs == {
        "displayName": "NORDBY Matematikk 10A/B",
        "mailNickname": "NORDBY-matematikk-10a-b",
        "description": "Matematikk 10A/B (Nordby skole)",
        "groupType": "security",
        "securityEnabled": True,
        "mailEnabled": False,
    }
    assert g.links == {"owners": ["M1", "T1"]}  # person ids: the connector binds their users
    assert g.members == (("M1", ""), ("S1", ""), ("T1", ""))


def test_m365_group_type() -> None:
    ctx = MappingContext(OWNER, M365Config(group_type="m365"), "2025-09-01")
    g = by_key(m.map_state(make_state(), ctx))[("group", "B1")]
    assert (g.attrs["groupType"], g.attrs["securityEnabled"], g.attrs["mailEnabled"]) == ("m365", False, True)


def test_owners_and_members(objs) -> None:
    b1 = objs[("group", "B1")]
    assert b1.links["owners"] == ["T1"]
    assert b1.members == (("S1", ""), ("T1", ""))  # G1 (a guardian) left out
    kg = objs[("group", "KG-Å1")]
    assert kg.links["owners"] == ["M1"]
    # School-wide groups: no teacher owns "all staff"; the connector adds the fallback owner.
    teachers = objs[("group", school_group_key("NORD", "teachers"))]
    assert teachers.links["owners"] == []
    assert teachers.attrs["displayName"] == "NORDBY teachers"
    assert teachers.members == (("M1", ""), ("T1", ""), ("TG", ""))
    assert ("group", school_group_key("NORD", "guardians")) not in objs


def test_mail_nicknames_match_ad_and_are_valid(objs) -> None:
    ad_objs = by_key(ad.map_state(make_state(), MappingContext(OWNER, ADConfig(), "2025-09-01")))
    for (kind, key), o in objs.items():
        if kind != "group":
            continue
        nick = o.attrs["mailNickname"]
        assert re.fullmatch(r"[A-Za-z0-9-]{1,64}", nick), nick
        assert nick == ad_objs[("group", key)].attrs["sAMAccountName"]


def test_data_minimisation(objs) -> None:
    text = json.dumps([dict(o.record()) for o in objs.values()], ensure_ascii=False)
    assert NIN not in text and GUARDIAN_NIN not in text and "15057612345" not in text
    assert "privat@example.org" not in text and "+4799999999" not in text
    assert "ug1" not in text
    for o in objs.values():
        assert not any("nin" in k.lower() for k in o.record())
        assert "G1" not in dict(o.members or ())
        assert "G1" not in o.links.get("owners", [])


def test_values_are_json_able_and_sorted(objs) -> None:
    for o in objs.values():
        for v in o.record().values():
            assert isinstance(v, str | bool | list)
            if isinstance(v, list):
                assert v == sorted(v)
