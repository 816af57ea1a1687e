"""Level groups, owner-wide groups and per-role address domains in every target mapping."""

from __future__ import annotations

import pytest

from mappings import ad, feide, itslearning, m365
from mappings.base import MappingContext
from mappings.common import AccountDomains, main_role, person_mail_domain
from provisioner.config import ADConfig, FeideConfig, ItslearningConfig, M365Config, OwnerConfig
from provisioner.core.model import TargetObject
from provisioner.core.scope import Scope, restrict
from tests.test_scope import STATE

OWNER = OwnerConfig(
    name="Eksempel kommune",
    org_number="999888777",
    realm="eksempel.kommune.no",
    mail_domain="eksempel.kommune.no",
    role_domains={"student": "elev.eksempel.kommune.no"},
)
EXTRA = Scope(exclude=frozenset({"VO"}), level_groups=True, owner_groups=("students", "teachers", "staff"))
SCOPED = restrict(STATE, EXTRA)


def objects(
    mapping: object, target: object, owner: OwnerConfig = OWNER
) -> dict[tuple[str, str], TargetObject]:
    out = list(mapping.map_state(SCOPED, MappingContext(owner, target, "2025-09-01")))  # type: ignore[attr-defined]
    return {(o.kind, o.key): o for o in out}


def test_ad_level_and_owner_groups() -> None:
    objs = objects(ad, ADConfig(base_dn="OU=Skoler,DC=ex,DC=no", groups_ou="OU=Grupper"))
    ou = "OU=Grupper,OU=Skoler,DC=ex,DC=no"
    got = {
        k: (o.attrs["sAMAccountName"], o.attrs["description"], o.place["ou"], o.members)
        for (kind, k), o in objs.items()
        if kind == "group" and (k.startswith("level:") or k.startswith("owner:"))
    }
    assert got == {
        "level:BARN:3": ("BARNEBY-3-trinn", "3. trinn (Barneby skole)", ou, (("P1", ""),)),
        "level:UNG:8": ("UNGBY-8-trinn", "8. trinn (Ungby ungdomsskole)", ou, (("P2", ""),)),
        "level:UNG:9": ("UNGBY-9-trinn", "9. trinn (Ungby ungdomsskole)", ou, (("P4", ""),)),
        "level:VGS:11": ("BYENVGS-vg1", "Vg1 (Byen videregående skole)", ou, (("P3", ""), ("P4", ""))),
        "owner:students": (
            "ALLE-students",
            "Alle elever",
            ou,
            (("P1", ""), ("P2", ""), ("P3", ""), ("P4", "")),
        ),
        "owner:teachers": ("ALLE-teachers", "Alle lærere", ou, (("AS", ""), ("TA", ""))),
        "owner:staff": ("ALLE-staff", "Alle ansatte", ou, (("AS", ""), ("TA", ""))),
    }
    assert ("person", "LD") not in objs  # only at the excluded adult-education school
    assert objs[("person", "AS")].place["ou"].startswith("OU=BYENVGS,")  # primary school recomputed


def test_m365_level_and_owner_groups() -> None:
    objs = objects(m365, M365Config())
    shown = {
        k: (o.attrs["displayName"], o.attrs["mailNickname"], o.attrs["description"], o.links["owners"])
        for (kind, k), o in objs.items()
        if kind == "group" and k in ("level:UNG:8", "level:VGS:11", "owner:teachers")
    }
    assert shown == {
        "level:UNG:8": ("UNGBY 8. trinn", "UNGBY-8-trinn", "8. trinn (Ungby ungdomsskole)", []),
        "level:VGS:11": ("BYENVGS Vg1", "BYENVGS-vg1", "Vg1 (Byen videregående skole)", []),
        "owner:teachers": ("Alle lærere", "ALLE-teachers", "Alle lærere", []),
    }
    assert objs[("group", "owner:teachers")].members == (("AS", ""), ("TA", ""))


def test_itslearning_level_groups_under_their_school_and_owner_groups_under_the_owner() -> None:
    objs = objects(itslearning, ItslearningConfig())
    level, owner = objs[("group", "level:UNG:9")], objs[("group", "owner:staff")]
    assert (level.attrs["name"], level.attrs["grouptype"], level.links) == (
        "9. trinn",
        "Trinngruppe",
        {"school": "UNG"},
    )
    assert level.members == (("P4", "01"),)
    assert (owner.attrs["name"], owner.attrs["grouptype"], owner.links) == (
        "Alle ansatte",
        "Skoleeiergruppe",
        {"school": None},
    )
    assert owner.members == (("AS", "02"), ("TA", "02"))
    assert ("orgunit", "VO") not in objs and ("orgunit", "UNG") in objs


def test_feide_skips_level_and_owner_groups() -> None:
    target = FeideConfig(base_dn="dc=ex,dc=no")
    with_extra = objects(feide, target)
    plain = {
        (o.kind, o.key): o
        for o in feide.map_state(
            restrict(STATE, Scope(exclude=frozenset({"VO"}))), MappingContext(OWNER, target, "x")
        )
    }
    assert with_extra == plain  # not GO groups: no entitlement values, no entries


# -- per-role domains ----------------------------------------------------------------


def test_main_role_decides_and_an_employee_role_beats_studying() -> None:
    assert main_role(STATE.persons["AS"]) == "teacher"  # teaches at VGS, studies at VO (primary)
    assert main_role(STATE.persons["P4"]) == "student"
    assert person_mail_domain(OWNER, STATE.persons["AS"]) == "eksempel.kommune.no"
    assert person_mail_domain(OWNER, STATE.persons["P1"]) == "elev.eksempel.kommune.no"


# pid, AD (userPrincipalName, mail), Microsoft 365 userPrincipalName, Feide mail, itslearning email
DOMAIN_CASES = [
    ("P1", ("up1@elev.eksempel.kommune.no", "up1@elev.eksempel.kommune.no"), "up1@elev.eksempel.kommune.no"),
    ("TA", ("uta@eksempel.kommune.no", "uta@eksempel.kommune.no"), "uta@eksempel.kommune.no"),
    ("AS", ("uas@eksempel.kommune.no", "uas@eksempel.kommune.no"), "uas@eksempel.kommune.no"),
]


@pytest.mark.parametrize(("pid", "ad_addresses", "mail"), DOMAIN_CASES)
def test_owner_role_domains_in_every_mapping(pid: str, ad_addresses: tuple[str, str], mail: str) -> None:
    a = objects(ad, ADConfig())[("person", pid)].attrs
    assert (a["userPrincipalName"], a["mail"]) == ad_addresses
    assert objects(m365, M365Config())[("person", pid)].attrs["userPrincipalName"] == ad_addresses[0]
    assert objects(feide, FeideConfig())[("person", pid)].attrs["mail"] == mail
    assert objects(itslearning, ItslearningConfig())[("person", pid)].attrs["email"] == mail


@pytest.mark.parametrize(
    ("upn_domain", "upn_domains", "student_upn", "teacher_upn"),
    [
        (None, {}, "up1@elev.eksempel.kommune.no", "uta@eksempel.kommune.no"),
        ("ad.eksempel.no", {}, "up1@ad.eksempel.no", "uta@ad.eksempel.no"),
        (
            "ad.eksempel.no",
            {"student": "elev.ad.eksempel.no"},
            "up1@elev.ad.eksempel.no",
            "uta@ad.eksempel.no",
        ),
        (None, {"teacher": "ansatt.eksempel.no"}, "up1@elev.eksempel.kommune.no", "uta@ansatt.eksempel.no"),
    ],
)
def test_a_targets_upn_settings_override_the_owners(
    upn_domain: str | None, upn_domains: dict[str, str], student_upn: str, teacher_upn: str
) -> None:
    for mapping, target in (
        (ad, ADConfig(upn_domain=upn_domain, upn_domains=upn_domains)),  # type: ignore[arg-type]
        (m365, M365Config(upn_domain=upn_domain, upn_domains=upn_domains)),  # type: ignore[arg-type]
    ):
        objs = objects(mapping, target)
        assert objs[("person", "P1")].attrs["userPrincipalName"] == student_upn
        assert objs[("person", "TA")].attrs["userPrincipalName"] == teacher_upn
    # mail never follows a target's UPN settings
    assert objects(ad, ADConfig(upn_domain="ad.eksempel.no"))[("person", "P1")].attrs["mail"] == (
        "up1@elev.eksempel.kommune.no"
    )


def test_without_role_domains_everyone_has_the_mail_domain() -> None:
    plain = OwnerConfig(name="X", org_number="999888777", realm="x.no", mail_domain="x.no")
    domains = AccountDomains.of(plain)
    assert {domains.mail(r) for r in ("student", "teacher", "staff", "leader")} == {"x.no"}
    assert objects(itslearning, ItslearningConfig(), plain)[("person", "P1")].attrs["email"] == "up1@x.no"
    assert objects(ad, ADConfig(), plain)[("person", "P1")].attrs["userPrincipalName"] == "up1@x.no"
