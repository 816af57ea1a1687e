"""`bas feide check`: validates a Feide catalog the way Feide's LDAP validator does.

Owns the rules (for the GO profile as SPEC.md states it) and where the entries come
from: the live catalog (a paged subtree search under the target's base DN) or an LDIF
export. Entries stream through ``Checker.feed`` one at a time; what needs the whole
catalog (DN references, one groupid per group across members) is checked in
``Checker.finish``.

Errors (the catalog is wrong; exit 1):

- a person lacks a mandatory attribute: cn, displayName, givenName, sn,
  norEduPersonLegalName, uid, eduPersonPrincipalName, eduPersonAffiliation,
  eduPersonOrgDN, eduPersonOrgUnitDN, eduPersonPrimaryOrgUnitDN, and norEduPersonNIN
  unless a norEduPersonLIN stands in for it (a person without a national identity
  number); the org lacks o or norEduOrgNIN; a school lacks ou or
  norEduOrgUnitUniqueIdentifier;
- "Missing Grep codes for student", as Feide's validator says since schema 1.5: a
  student (eduPersonAffiliation student) without a Grep grade value
  (``urn:mace:feide.no:go:grep:http://psi.udir.no/laereplan/aarstrinn/aarstrinn1`` ...
  ``aarstrinn10``, ``.../vg1`` ... ``vg3``; GO information model appendix 2,
  https://docs.feide.no/reference/schema/info_go/go_attributter_chA2.html); a Grep
  value that is neither a ``http://psi.udir.no/`` URI nor ``uuid:<uuid>``;
- a norEduPersonLIN not ``<realm>:<kind>:<id>``; a norEduPersonAuthnMethod SMS value not
  ``urn:mace:feide.no:auth:method:sms +<digits> [label=...]``
  (https://www.feide.no/metoder-sterk-autentisering);
- eduPersonPrincipalName not lowercase, or not ``uid@realm``;
- a name with double spaces, leading or trailing space, or empty;
- a NIN that fails its check digits; an org number not ``NO`` + 9 digits;
- affiliations outside the eduPerson vocabulary or missing what they imply (faculty and
  staff are employees, all of them members); a primary affiliation or primary org unit
  that is not among the person's own; an org or org unit DN that is not in the catalog;
- GO entitlements: a group value that does not parse, a type other than b/u/a, a
  teaching group (u) without a subject code or another type with one, a group id or
  name that is not canonically percent-encoded, a name with double spaces, a bad date,
  a role other than student/faculty; a group value without exactly one groupid value
  (and a groupid without a group value); a groupid whose group id is not the lowercased
  one; members of one group with different groupid values.

Warnings (printed, exit 0): a person with no eduPersonEntitlement (no GO groups); the
org or a school without ``mail`` (mandatory in the GO profile, which BAS writes from
``FeideConfig.org_mail`` / ``school_mail``); Grep codes on a person who is neither a
student nor faculty (Feide: other employees shall have none).
NINs are masked in every message.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from connectors.ldap.ldif_read import Entry, read_entries
from connectors.ldap.link import LdapLink, decode
from mappings.feide import SMS_METHOD, go_encode
from mappings.feide_grep import GREP_PREFIX, is_grade_value
from provisioner.core import dn as dns
from provisioner.core.nin import is_valid, mask

PERSON_MANDATORY = (
    "cn",
    "displayName",
    "givenName",
    "sn",
    "norEduPersonLegalName",
    "uid",
    "eduPersonPrincipalName",
    "eduPersonAffiliation",
    "eduPersonOrgDN",
    "eduPersonOrgUnitDN",
    "eduPersonPrimaryOrgUnitDN",
)
NAME_ATTRS = ("cn", "displayName", "givenName", "sn", "norEduPersonLegalName")
AFFILIATIONS = {"student", "faculty", "staff", "employee", "member", "affiliate", "alum", "library-walk-in"}
GO_GROUP = "urn:mace:feide.no:go:group:"
GO_GROUPID = "urn:mace:feide.no:go:groupid:"
_ORGNR = re.compile(r"NO[0-9]{9}")
_GREP_REF = re.compile(
    r"(?:http://psi\.udir\.no(?:/[A-Za-z0-9._~-]+)+|uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})"
)
_LIN = re.compile(r"[^:\s]+:[^:\s]+:\S+")
_SMS = re.compile(re.escape(SMS_METHOD) + r" \+[0-9]{8,15}(?: label=\S.*)?")
_AUTHN = "urn:mace:feide.no:auth:method:"


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding: the entry, the rule's name, what is wrong, error or warning."""

    dn: str
    rule: str
    message: str
    severity: str = "error"

    def render(self) -> str:
        """One line for the report."""
        return f"{self.severity.upper():<7} {self.dn}: {self.message} [{self.rule}]"


def _kind(attrs: dict[str, list[str]]) -> str | None:
    classes = {c.lower() for c in attrs.get("objectClass", [])}
    if classes & {"norEduPerson".lower(), "eduperson", "inetorgperson"}:
        return "person"
    if "noreduorgunit" in classes:
        return "orgunit"
    if "noreduorg" in classes:
        return "org"
    return None


def _norm_dn(dn: str) -> dns.Key:
    try:
        return dns.normalize(dn)
    except ValueError:  # not a DN at all (DNError): compared as text, and so found missing
        return ((("", dn.lower()),),)


def _bad_name(value: str) -> str | None:
    if not value.strip():
        return "is empty"
    if "  " in value:
        return "has double spaces"
    if value != value.strip():
        return "has leading or trailing space"
    return None


def _date_ok(s: str) -> bool:
    try:
        return dt.date.fromisoformat(s).isoformat() == s
    except ValueError:
        return False


class Checker:
    """Feed entries one at a time, then ``finish`` for the problems found."""

    def __init__(self, realm: str) -> None:
        self.realm = realm.lower()
        self.problems: list[Problem] = []
        self.persons = 0
        self.org_dns: set[dns.Key] = set()
        self.unit_dns: set[dns.Key] = set()
        self._org_refs: dict[dns.Key, tuple[str, str]] = {}  # referenced DN -> (as written, one person)
        self._unit_refs: dict[dns.Key, tuple[str, str]] = {}
        self._groupids: dict[tuple[str, str, str], tuple[str, str]] = {}  # group -> (groupid, first dn)

    def _err(self, dn: str, rule: str, message: str, severity: str = "error") -> None:
        self.problems.append(Problem(dn, rule, message, severity))

    def feed(self, dn: str, attrs: dict[str, list[str]]) -> None:
        """Check one entry."""
        kind = _kind(attrs)
        if kind == "person":
            self.persons += 1
            self._person(dn, attrs)
        elif kind == "orgunit":
            self.unit_dns.add(_norm_dn(dn))
            self._require(dn, attrs, ("ou", "norEduOrgUnitUniqueIdentifier"))
            self._want_mail(dn, attrs, "school")
            self._names(dn, attrs, ("ou",))
            for v in attrs.get("norEduOrgUnitUniqueIdentifier", []):
                if not _ORGNR.fullmatch(v):
                    self._err(dn, "orgunit-id", f"norEduOrgUnitUniqueIdentifier {v!r} is not NO + 9 digits")
        elif kind == "org":
            self.org_dns.add(_norm_dn(dn))
            self._require(dn, attrs, ("o", "norEduOrgNIN"))
            self._want_mail(dn, attrs, "org")
            self._names(dn, attrs, ("o", "eduOrgLegalName"))
            for v in attrs.get("norEduOrgNIN", []):
                if not _ORGNR.fullmatch(v):
                    self._err(dn, "org-nin", f"norEduOrgNIN {v!r} is not NO + 9 digits")

    def _require(self, dn: str, attrs: dict[str, list[str]], names: Iterable[str]) -> None:
        for name in names:
            if not any(v.strip() for v in attrs.get(name, [])):
                self._err(dn, "mandatory", f"mandatory attribute {name} is missing")

    def _want_mail(self, dn: str, attrs: dict[str, list[str]], what: str) -> None:
        if not any(v.strip() for v in attrs.get("mail", [])):
            self._err(dn, "mail", f"the {what} has no mail (mandatory in the GO profile)", "warning")

    def _names(self, dn: str, attrs: dict[str, list[str]], names: Iterable[str]) -> None:
        for name in names:
            for v in attrs.get(name, []):
                why = _bad_name(v)
                if why:
                    self._err(dn, "name", f"{name} {v!r} {why}")

    def _person(self, dn: str, attrs: dict[str, list[str]]) -> None:
        self._require(dn, attrs, PERSON_MANDATORY)
        self._names(dn, attrs, NAME_ATTRS)
        uid = attrs.get("uid", [""])[0]
        eppns = attrs.get("eduPersonPrincipalName", [])
        if len(eppns) > 1:
            self._err(dn, "eppn", "more than one eduPersonPrincipalName")
        for eppn in eppns:
            if eppn != eppn.lower():
                self._err(dn, "eppn", f"eduPersonPrincipalName {eppn!r} is not lowercase")
            if uid and eppn.lower() != f"{uid}@{self.realm}".lower():
                self._err(
                    dn, "eppn", f"eduPersonPrincipalName {eppn!r} is not uid@realm ({uid}@{self.realm})"
                )
        self._identity(dn, attrs)
        self._affiliations(dn, attrs)
        for v in attrs.get("eduPersonOrgDN", []):
            self._org_refs.setdefault(_norm_dn(v), (v, dn))
        units = set()
        for v in attrs.get("eduPersonOrgUnitDN", []):
            units.add(_norm_dn(v))
            self._unit_refs.setdefault(_norm_dn(v), (v, dn))
        for v in attrs.get("eduPersonPrimaryOrgUnitDN", []):
            if _norm_dn(v) not in units:
                self._err(
                    dn, "primary-unit", f"eduPersonPrimaryOrgUnitDN {v} is not among eduPersonOrgUnitDN"
                )
        ents = attrs.get("eduPersonEntitlement", [])
        if not ents:
            self._err(dn, "entitlement", "no eduPersonEntitlement (the person is in no GO group)", "warning")
        self._entitlements(dn, ents)
        self._grep(dn, attrs, ents)

    def _identity(self, dn: str, attrs: dict[str, list[str]]) -> None:
        """norEduPersonNIN (or a norEduPersonLIN in its place) and norEduPersonAuthnMethod."""
        nins, lins = attrs.get("norEduPersonNIN", []), attrs.get("norEduPersonLIN", [])
        if not any(v.strip() for v in nins + lins):
            self._err(dn, "mandatory", "mandatory attribute norEduPersonNIN is missing (no norEduPersonLIN)")
        for nin in nins:
            if not is_valid(nin):
                self._err(dn, "nin", f"norEduPersonNIN {mask(nin)} is not a valid national identity number")
        for lin in lins:
            if not _LIN.fullmatch(lin):
                self._err(dn, "lin", f"norEduPersonLIN {lin!r} is not <realm>:<kind>:<id>")
        for v in attrs.get("norEduPersonAuthnMethod", []):
            if not v.startswith(_AUTHN):
                self._err(dn, "authn", f"norEduPersonAuthnMethod is not a Feide method: {v.split(' ', 1)[0]}")
            elif v.split(" ", 1)[0] == SMS_METHOD and not _SMS.fullmatch(v):
                self._err(dn, "authn", "norEduPersonAuthnMethod SMS value is not 'sms +<number> label=...'")

    def _grep(self, dn: str, attrs: dict[str, list[str]], ents: list[str]) -> None:
        """Grep codes: well-formed; a student has a grade; only students and faculty have any."""
        greps = [v for v in ents if v.startswith(GREP_PREFIX)]
        for v in greps:
            if not _GREP_REF.fullmatch(v[len(GREP_PREFIX) :]):
                self._err(dn, "grep", f"Grep value is neither a psi.udir.no URI nor uuid:<uuid>: {v}")
        affs = {a.lower() for a in attrs.get("eduPersonAffiliation", [])}
        if "student" in affs and not any(is_grade_value(v) for v in greps):
            self._err(dn, "grep", "Missing Grep codes for student (no aarstrinn1-10 or vg1-3 grade value)")
        if greps and not affs & {"student", "faculty"}:
            self._err(dn, "grep", "Grep codes on a person who is neither student nor faculty", "warning")

    def _affiliations(self, dn: str, attrs: dict[str, list[str]]) -> None:
        affs = {a.lower() for a in attrs.get("eduPersonAffiliation", [])}
        for a in sorted(affs - AFFILIATIONS):
            self._err(dn, "affiliation", f"eduPersonAffiliation {a!r} is not an eduPerson affiliation")
        if affs & {"student", "faculty", "staff", "employee"} and "member" not in affs:
            self._err(dn, "affiliation", "eduPersonAffiliation lacks member")
        if affs & {"faculty", "staff"} and "employee" not in affs:
            self._err(
                dn, "affiliation", "eduPersonAffiliation lacks employee (faculty and staff are employees)"
            )
        for p in attrs.get("eduPersonPrimaryAffiliation", []):
            if p.lower() not in affs:
                self._err(
                    dn, "affiliation", f"eduPersonPrimaryAffiliation {p!r} is not in eduPersonAffiliation"
                )

    def _entitlements(self, dn: str, values: list[str]) -> None:
        wanted: dict[tuple[str, str, str], str] = {}  # group -> the groupid its group values imply
        groupids: dict[tuple[str, str, str], list[str]] = {}
        for v in values:
            if v.startswith(GO_GROUP):
                got = self._group_value(dn, v)
                if got:
                    key, gid_value = got
                    if wanted.get(key, gid_value) != gid_value:
                        self._err(dn, "go-group", f"group values of {key[2]} disagree on its dates: {v}")
                    wanted[key] = gid_value
            elif v.startswith(GO_GROUPID):
                gkey = self._groupid_value(dn, v)
                if gkey:
                    groupids.setdefault(gkey, []).append(v)
        for key, gid_value in wanted.items():
            have = groupids.get(key, [])
            if len(have) != 1:
                self._err(dn, "go-groupid", f"group {key[2]} has {len(have)} groupid values, not one")
            elif have[0] != gid_value:
                self._err(
                    dn, "go-groupid", f"groupid {have[0]} does not match its group values ({gid_value})"
                )
            seen = self._groupids.setdefault(key, (gid_value, dn))
            if seen[0] != gid_value:
                self._err(dn, "go-groupid", f"groupid {gid_value} differs from {seen[0]} held by {seen[1]}")
        for key in groupids.keys() - wanted.keys():
            self._err(dn, "go-groupid", f"groupid of group {key[2]} without a group value")

    def _group_value(self, dn: str, v: str) -> tuple[tuple[str, str, str], str] | None:
        parts = v[len(GO_GROUP) :].split(":")
        if len(parts) != 8:
            self._err(dn, "go-group", f"GO group value does not have 8 parts: {v}")
            return None
        t, grep, org, gid, start, end, role, name = parts
        bad = self._common(t, org, start, end)
        if t == "u" and not grep:
            bad.append("a teaching group (u) without a subject code")
        if t in ("b", "a") and grep:
            bad.append(f"a subject code on a {t} group")
        if grep and go_encode(unquote(grep)) != grep:
            bad.append("subject code not canonically encoded")
        if not gid or go_encode(unquote(gid)) != gid:
            bad.append("group id not canonically encoded")
        if role not in ("student", "faculty"):
            bad.append(f"role {role!r} is not student or faculty")
        if go_encode(unquote(name)) != name:
            bad.append("name not canonically encoded")
        why = _bad_name(unquote(name))
        if why:
            bad.append(f"name {unquote(name)!r} {why}")
        for b in bad:
            self._err(dn, "go-group", f"{b}: {v}")
        key = (t, org, unquote(gid).lower())
        return key, f"{GO_GROUPID}{t}:{org}:{go_encode(unquote(gid).lower())}:{start}:{end}"

    def _groupid_value(self, dn: str, v: str) -> tuple[str, str, str] | None:
        parts = v[len(GO_GROUPID) :].split(":")
        if len(parts) != 5:
            self._err(dn, "go-groupid", f"GO groupid value does not have 5 parts: {v}")
            return None
        t, org, gid, start, end = parts
        bad = self._common(t, org, start, end)
        if not gid or go_encode(unquote(gid).lower()) != gid:
            bad.append("group id is not the canonical lowercased one")
        for b in bad:
            self._err(dn, "go-groupid", f"{b}: {v}")
        return (t, org, unquote(gid).lower())

    def _common(self, t: str, org: str, start: str, end: str) -> list[str]:
        bad = []
        if t not in ("b", "u", "a"):
            bad.append(f"type {t!r} is not b, u or a")
        if not _ORGNR.fullmatch(org):
            bad.append(f"org {org!r} is not NO + 9 digits")
        for d in (start, end):
            if d and not _date_ok(d):
                bad.append(f"date {d!r} is not YYYY-MM-DD")
        if start and end and _date_ok(start) and _date_ok(end) and start > end:
            bad.append("start after end")
        return bad

    def finish(self) -> list[Problem]:
        """Checks across entries; every problem found, in the order found."""
        if not self.org_dns:
            self._err("(catalog)", "org", "no norEduOrg entry")
        for ref, (value, who) in self._org_refs.items():
            if self.org_dns and ref not in self.org_dns:
                self._err(who, "org-ref", f"eduPersonOrgDN {value} is not the org entry")
        for ref, (value, who) in self._unit_refs.items():
            if ref not in self.unit_dns:
                self._err(who, "unit-ref", f"eduPersonOrgUnitDN {value} is not an org unit in the catalog")
        return self.problems


def check_entries(entries: Iterable[Entry], realm: str) -> tuple[list[Problem], int]:
    """Every problem in a catalog, and the number of persons checked."""
    checker = Checker(realm)
    for dn, attrs in entries:
        checker.feed(dn, attrs)
    return checker.finish(), checker.persons


def ldif_entries(path: str | Path) -> Iterator[Entry]:
    """The entries of an LDIF export file."""
    with open(path, encoding="utf-8") as fh:
        yield from read_entries(fh)


def ldap_entries(link: LdapLink, base_dn: str, page_size: int = 500) -> Iterator[Entry]:
    """Every entry under ``base_dn`` on the server, read with paged searches."""
    for found_dn, raw in link.paged(base_dn, "(objectClass=*)", ["*"], page_size=page_size):
        yield found_dn, decode(raw)
