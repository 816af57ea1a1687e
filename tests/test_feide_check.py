"""`bas feide check`: the validator's rules, on LDIF exports, on the live catalog, and through the CLI."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from ldap3 import MODIFY_DELETE, MODIFY_REPLACE

from connectors.feide.check import Checker, check_entries, ldap_entries
from connectors.feide.ldap import link_from_config
from connectors.ldap.ldif_read import read_entries
from provisioner.run import runner
from provisioner.state.store import StateStore
from tests.sisbuilder import config_toml, make_config, small_sis
from tests.slapd_server import ADMIN_DN, ADMIN_PASSWORD, SUFFIX
from tests.test_feide_ldap import DAY1, REALM, LiveEnv, new_base, ok, read_entry

ORG = "dc=eksempel,dc=no"
UNIT = f"norEduOrgUnitUniqueIdentifier=NO974000001,ou=units,{ORG}"
GID = "urn:mace:feide.no:go:groupid:u:NO974000001:nord-mat:2025-08-15:2026-06-20"
GRP = "urn:mace:feide.no:go:group:u:MAT0006:NO974000001:NORD-MAT:2025-08-15:2026-06-20:student:MAT%206A"
GREP = "urn:mace:feide.no:go:grep:"
GRADE6 = GREP + "http://psi.udir.no/laereplan/aarstrinn/aarstrinn6"


def catalog(person: dict[str, list[str]]) -> list[tuple[str, dict[str, list[str]]]]:
    """An org, a school and one person (a valid one unless ``person`` overrides it)."""
    base = {
        "objectClass": [
            "top",
            "person",
            "organizationalPerson",
            "inetOrgPerson",
            "eduPerson",
            "norEduPerson",
        ],
        "uid": ["olanor"],
        "cn": ["Ola Nordmann"],
        "displayName": ["Ola Nordmann"],
        "givenName": ["Ola"],
        "sn": ["Nordmann"],
        "norEduPersonLegalName": ["Ola Nordmann"],
        "eduPersonPrincipalName": [f"olanor@{REALM}"],
        "norEduPersonNIN": ["01010750160"],
        "eduPersonAffiliation": ["member", "student"],
        "eduPersonPrimaryAffiliation": ["student"],
        "eduPersonOrgDN": [ORG],
        "eduPersonOrgUnitDN": [UNIT],
        "eduPersonPrimaryOrgUnitDN": [UNIT],
        "eduPersonEntitlement": [GRP, GID, GRADE6],
    }
    base.update(person)
    return [
        (
            ORG,
            {
                "objectClass": ["top", "organization", "norEduOrg"],
                "o": ["Kommune"],
                "norEduOrgNIN": ["NO964000000"],
                "mail": ["postmottak@kommune.example"],
            },
        ),
        (
            UNIT,
            {
                "objectClass": ["organizationalUnit", "norEduOrgUnit"],
                "ou": ["Nord skole"],
                "norEduOrgUnitUniqueIdentifier": ["NO974000001"],
                "mail": ["nord.skole@kommune.example"],
            },
        ),
        (f"uid=olanor,ou=people,{ORG}", {k: v for k, v in base.items() if v is not None}),
    ]


def problems(person: dict) -> list[str]:
    found, _ = check_entries(catalog(person), REALM)
    return [f"{p.severity}:{p.rule}:{p.message}" for p in found]


def test_a_valid_catalog_has_no_problems() -> None:
    assert problems({}) == []


def test_person_rules() -> None:
    assert any("mandatory attribute givenName" in p for p in problems({"givenName": None}))
    assert any("mandatory attribute norEduPersonNIN" in p for p in problems({"norEduPersonNIN": None}))
    assert any("not lowercase" in p for p in problems({"eduPersonPrincipalName": [f"Olanor@{REALM}"]}))
    assert any("not uid@realm" in p for p in problems({"eduPersonPrincipalName": ["olanor@other.no"]}))
    assert any("double spaces" in p for p in problems({"cn": ["Ola  Nordmann"]}))
    assert any("leading or trailing" in p for p in problems({"sn": ["Nordmann "]}))
    nin = problems({"norEduPersonNIN": ["01010750161"]})
    assert any("010107*****" in p and "not a valid" in p for p in nin) and not any(
        "01010750161" in p for p in nin
    )
    assert any("lacks employee" in p for p in problems({"eduPersonAffiliation": ["faculty", "member"]}))
    assert any("not among eduPersonOrgUnitDN" in p for p in problems({"eduPersonPrimaryOrgUnitDN": [ORG]}))
    assert any("not an org unit" in p for p in problems({"eduPersonOrgUnitDN": [UNIT, "ou=x," + ORG]}))
    assert problems({"eduPersonEntitlement": None}) == [
        "warning:entitlement:no eduPersonEntitlement (the person is in no GO group)",
        MISSING,
    ]


VG2 = GREP + "http://psi.udir.no/laereplan/aarstrinn/vg2"
STAFF_AFFS = {
    "eduPersonAffiliation": ["employee", "member", "staff"],
    "eduPersonPrimaryAffiliation": ["staff"],
    "eduPersonEntitlement": [GRP.replace(":student:", ":faculty:"), GID],
}
FACULTY_AFFS = {
    "eduPersonAffiliation": ["employee", "faculty", "member"],
    "eduPersonPrimaryAffiliation": ["faculty"],
}
MISSING = "error:grep:Missing Grep codes for student (no aarstrinn1-10 or vg1-3 grade value)"
SMS = "urn:mace:feide.no:auth:method:sms"

# (person overrides, the problems expected): the Grep, LIN and MFA rules, one case a row.
IDENTITY_AND_GREP_CASES = [
    ({"eduPersonEntitlement": [GRP, GID, VG2]}, []),
    ({"eduPersonEntitlement": [GRP, GID, GREP + "http://psi.udir.no/laereplan/aarstrinn/aarstrinn10"]}, []),
    ({"eduPersonEntitlement": [GRP, GID]}, [MISSING]),
    # A programme without a grade is still a student without grade codes.
    ({"eduPersonEntitlement": [GRP, GID, GREP + "http://psi.udir.no/kl06/ST"]}, [MISSING]),
    ({"eduPersonEntitlement": [GRP, GID, GREP + "http://psi.udir.no/laereplan/aarstrinn/vg4"]}, [MISSING]),
    (
        {"eduPersonEntitlement": [GRP, GID, GREP + "http://psi.udir.no/laereplan/aarstrinn/aarstrinn11"]},
        [MISSING],
    ),
    (
        {"eduPersonEntitlement": [GRP, GID, GRADE6, GREP + "uuid:c473400d-5c2c-46ca-9008-26e66ed9e3bd"]},
        [],
    ),
    (
        {"eduPersonEntitlement": [GRP, GID, GRADE6, GREP + "STREA2----"]},
        [f"error:grep:Grep value is neither a psi.udir.no URI nor uuid:<uuid>: {GREP}STREA2----"],
    ),
    ({**FACULTY_AFFS, "eduPersonEntitlement": [GREP + "http://psi.udir.no/kl06/MAT0010"]}, []),
    (
        {**STAFF_AFFS, "eduPersonEntitlement": [GRADE6]},
        ["warning:grep:Grep codes on a person who is neither student nor faculty"],
    ),
    ({**STAFF_AFFS, "eduPersonEntitlement": [GRP.replace(":student:", ":faculty:"), GID]}, []),
    ({"norEduPersonNIN": None, "norEduPersonLIN": [f"{REALM}:sis:P-17"]}, []),
    (
        {"norEduPersonNIN": None},
        ["error:mandatory:mandatory attribute norEduPersonNIN is missing (no norEduPersonLIN)"],
    ),
    (
        {"norEduPersonNIN": None, "norEduPersonLIN": ["P-17"]},
        ["error:lin:norEduPersonLIN 'P-17' is not <realm>:<kind>:<id>"],
    ),
    ({**STAFF_AFFS, "norEduPersonAuthnMethod": [f"{SMS} +4791234567 label=Mobil"]}, []),
    ({**STAFF_AFFS, "norEduPersonAuthnMethod": [f"{SMS} +4791234567"]}, []),
    (
        {**STAFF_AFFS, "norEduPersonAuthnMethod": [f"{SMS} 91234567 label=Mobil"]},
        ["error:authn:norEduPersonAuthnMethod SMS value is not 'sms +<number> label=...'"],
    ),
    (
        {**STAFF_AFFS, "norEduPersonAuthnMethod": ["sms +4791234567"]},
        ["error:authn:norEduPersonAuthnMethod is not a Feide method: sms"],
    ),
]


@pytest.mark.parametrize(("person", "expected"), IDENTITY_AND_GREP_CASES)
def test_identity_and_grep_rules(person: dict, expected: list[str]) -> None:
    assert problems(person) == expected


def test_org_and_school_without_mail_are_warned_about() -> None:
    entries = catalog({})
    for _, attrs in entries[:2]:
        del attrs["mail"]
    found, _ = check_entries(entries, REALM)
    assert [(p.dn, p.severity, p.message) for p in found] == [
        (ORG, "warning", "the org has no mail (mandatory in the GO profile)"),
        (UNIT, "warning", "the school has no mail (mandatory in the GO profile)"),
    ]


def test_go_entitlement_rules() -> None:
    def ents(*values: str) -> list[str]:
        return [p for p in problems({"eduPersonEntitlement": list(values)}) if p.startswith("error:go")]

    assert any("without a subject code" in p for p in ents(GRP.replace("u:MAT0006:", "u::"), GID))
    assert any(
        "subject code on a b group" in p
        for p in ents(GRP.replace("u:MAT0006:", "b:MAT0006:"), GID.replace(":u:", ":b:"))
    )
    assert any("group id not canonically" in p for p in ents(GRP.replace("NORD-MAT", "NORD MAT"), GID))
    assert any(
        "name" in p and "double spaces" in p for p in ents(GRP.replace("MAT%206A", "MAT%20%206A"), GID)
    )
    assert any("not the canonical lowercased" in p for p in ents(GRP, GID.replace("nord-mat", "NORD-MAT")))
    assert any("has 0 groupid values" in p for p in ents(GRP))
    two = GID.replace("2026-06-20", "2026-06-30")
    assert any("has 2 groupid values" in p for p in ents(GRP, GID, two))
    assert any("without a group value" in p for p in ents(GID))
    assert any(
        "not YYYY-MM-DD" in p
        for p in ents(GRP.replace("2025-08-15", "2025-13-01"), GID.replace("2025-08-15", "2025-13-01"))
    )
    assert any("role" in p for p in ents(GRP.replace(":student:", ":teacher:"), GID))
    # Two members of one group with different groupid values.
    checker = Checker(REALM)
    for dn, attrs in catalog({}):
        checker.feed(dn, attrs)
    other = dict(catalog({})[2][1], uid=["karhan"], eduPersonPrincipalName=[f"karhan@{REALM}"])
    other["eduPersonEntitlement"] = [GRP.replace("2026-06-20", "2026-06-30"), two]
    checker.feed(f"uid=karhan,ou=people,{ORG}", other)
    assert any("differs from" in p.message for p in checker.finish())


def test_the_ldif_export_passes_and_planted_errors_are_found(tmp_path: Path) -> None:
    src = f"sqlite:///{tmp_path / 'sis.db'}"
    cfg = make_config(tmp_path, src, f"sqlite:///{tmp_path / 'state.db'}", targets=("feide",))
    small_sis().write(src)
    ok(runner.sync(cfg, StateStore(cfg.state.url), as_of=DAY1))
    text = (tmp_path / "feide" / "latest-full.ldif").read_text(encoding="utf-8")
    found, persons = check_entries(read_entries(text.splitlines(True)), REALM)
    assert persons == 9 and [p for p in found if p.severity == "error"] == []
    bad = re.sub(r"^givenName: Per\n", "", text, count=1, flags=re.M)
    bad = re.sub(r"^sn: Hansen$", "sn: Han  sen", bad, count=1, flags=re.M)
    found, _ = check_entries(read_entries(bad.splitlines(True)), REALM)
    msgs = [p.message for p in found if p.severity == "error"]
    assert any("givenName is missing" in m for m in msgs) and any("double spaces" in m for m in msgs)


def test_the_live_catalog_passes_and_planted_errors_are_found(tmp_path: Path, slapd) -> None:
    env = LiveEnv(tmp_path, slapd, small_sis())
    ok(env.sync())
    session = link_from_config(env.cfg, env.cfg.targets["feide"])
    found, persons = check_entries(ldap_entries(session, env.base_dn, page_size=3), REALM)
    assert persons == 9 and [p for p in found if p.severity == "error"] == []
    stored = env.stored()
    conn = slapd.connect()
    conn.modify(stored["S1"]["attrs"]["dn"], {"cn": [(MODIFY_REPLACE, ["Ola  Nordmann"])]})
    eppn = stored["S2"]["attrs"]["eduPersonPrincipalName"]
    conn.modify(stored["S2"]["attrs"]["dn"], {"eduPersonPrincipalName": [(MODIFY_REPLACE, [eppn.upper()])]})
    conn.modify(stored["S4"]["attrs"]["dn"], {"norEduPersonLegalName": [(MODIFY_DELETE, [])]})
    conn.unbind()
    found, _ = check_entries(ldap_entries(session, env.base_dn, page_size=3), REALM)
    session.close()
    errors = {(p.dn, p.rule) for p in found if p.severity == "error"}
    assert errors == {
        (stored["S1"]["attrs"]["dn"], "name"),
        (stored["S2"]["attrs"]["dn"], "eppn"),
        (stored["S4"]["attrs"]["dn"], "mandatory"),
    }


# -- end to end through the CLI ------------------------------------------------------------------

BAS = [sys.executable, "-m", "provisioner.cli"]


def bas(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*BAS, "--config", str(config), *args], capture_output=True, text=True, timeout=300)


def test_cli_sync_to_slapd_then_feide_check(tmp_path: Path, slapd) -> None:
    base = new_base("cli")
    src = f"sqlite:///{tmp_path / 'sis.db'}"
    small_sis().write(src)
    (tmp_path / "bind.secret").write_text(ADMIN_PASSWORD, encoding="utf-8")
    feide = {
        "mode": "apply",
        "base_dn": base,
        **slapd.client,
        "bind_dn": ADMIN_DN,
        "password_file": "bind.secret",
    }
    cfg = tmp_path / "bas.toml"
    cfg.write_text(
        config_toml(tmp_path, src, f"sqlite:///{tmp_path / 'state.db'}", target_settings={"feide": feide}),
        encoding="utf-8",
    )
    assert bas(cfg, "config", "check").returncode == 0
    p = bas(cfg, "sync")
    assert p.returncode == 0, p.stdout + p.stderr
    assert re.search(r"feide\s+applied\s+ok 12", p.stdout), p.stdout
    assert read_entry(slapd, base)["norEduOrgNIN"] == ["NO964000000"]
    p = bas(cfg, "feide", "check")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "9 persons, 0 errors" in p.stdout
    assert bas(cfg, "sync").returncode == 0  # nothing left to do
    conn = slapd.connect()
    conn.search(f"ou=people,{base}", "(uid=*)", attributes=["uid"])
    dn = conn.response[0]["dn"]
    conn.modify(dn, {"givenName": [(MODIFY_DELETE, [])]})
    conn.unbind()
    p = bas(cfg, "feide", "check")
    assert p.returncode == 1 and "mandatory attribute givenName is missing" in p.stdout, p.stdout
    assert not re.search(r"(?<![0-9])[0-9]{11}(?![0-9])", p.stdout + p.stderr)  # no NIN shown
    # The LDIF export of the same run (itslearning/feide files target) is checked by file.
    ldif = tmp_path / "bad.ldif"
    ldif.write_text(
        "version: 1\n\ndn: uid=x,ou=people,dc=x\nobjectClass: inetOrgPerson\nuid: x\n", encoding="utf-8"
    )
    p = bas(cfg, "feide", "check", "--ldif", str(ldif))
    assert p.returncode == 1 and "no norEduOrg entry" in p.stdout
    # A wrong password is the target failing as a whole (exit 6), not a crash.
    (tmp_path / "bind.secret").write_text("wrong", encoding="utf-8")
    p = bas(cfg, "feide", "check")
    assert p.returncode == 6 and "invalidCredentials" in p.stderr
    assert "wrong" not in p.stdout + p.stderr
    assert SUFFIX in base
