"""Feide mapping: the desired state as Feide catalog entries (GO profile).

Owns what the Feide LDAP catalog holds for a school owner: one ``norEduOrg`` entry for
the owner, one ``norEduOrgUnit`` entry per school and one ``norEduPerson`` entry per
student and employee, with groups as GO entitlement values on the person entries
(Feide has no group entries). Guardians never go to Feide. Pure, no I/O.

Objects (``TargetObject.kind`` / key):

* ``org`` / ``"org"``: DN = ``FeideConfig.base_dn``. ``o`` and ``eduOrgLegalName`` (owner
  name), ``norEduOrgNIN`` ("NO" + org number), ``norEduOrgUniqueIdentifier`` (the bare
  org number), ``norEduOrgSchemaVersion`` (``NOREDU_SCHEMA_VERSION``), and ``mail``
  (``FeideConfig.org_mail``) when set: the GO profile makes it mandatory for the org and
  each school (https://docs.feide.no/reference/schema/info_go/index.html, sections 4 and
  5), so ``bas feide check`` warns where it is missing.
* ``orgunit`` / school_id: DN = ``norEduOrgUnitUniqueIdentifier=NO<orgnr>,<units_ou>,<base_dn>``
  (an RDN that survives a school being renamed). ``ou`` (school name),
  ``norEduOrgUnitUniqueIdentifier`` ("NO" + school org number), ``mail`` when set
  (``FeideConfig.school_mails`` for the school id, else the ``school_mail`` template). No
  ``displayName``: ``organizationalUnit`` does not allow it, and ``ou`` carries the name.
* ``person`` / person_id: DN = ``uid=<username>,<people_ou>,<base_dn>`` (usernames never
  change, so neither does the DN). cn, displayName, norEduPersonLegalName (the full
  name), givenName, sn, uid, eduPersonPrincipalName (lowercase ``uid@realm``), mail
  (``uid@<role domain>``), norEduPersonNIN (only when the person has one), else
  norEduPersonLIN, eduPersonAffiliation, eduPersonPrimaryAffiliation, eduPersonOrgDN,
  eduPersonOrgUnitDN, eduPersonPrimaryOrgUnitDN, eduPersonEntitlement (always present,
  possibly an empty list: GO groups and Grep codes, ``mappings.feide_grep``), and
  norEduPersonAuthnMethod when ``FeideConfig.sms_authn`` is on.

norEduPersonLIN (GO information model, optional attributes, 6.3 norEduPersonLIN,
https://docs.feide.no/reference/schema/info_go/go_attributter_ch05.html): a locally
issued id for a person without a national identity number, written
``<realm>:<kind>:<id>`` (Feide's examples: ``uninett.no:employee:035016``,
``feide.trondelagfylke.no:fin:<local id>``). BAS writes ``<realm>:sis:<SIS person id>``
(the id percent-encoded where it holds anything but letters, digits and ``-._~``): the
SIS id is the anchor BAS keys the person on, so the value never changes with a name.

norEduPersonAuthnMethod (Feide's strong authentication, SMS one-time codes,
https://www.feide.no/metoder-sterk-autentisering): ``urn:mace:feide.no:auth:method:sms
+4712345678 label=<text>``. Written only when ``sms_authn`` is on, only for employees
who are not also students (never students or guardians), and only when the SIS mobile
normalises to an international number (``normalise_mobile``); otherwise none. The label
is percent-encoded (RFC 3986) as Feide's own method values are, so it holds no space.
With ``sms_authn`` on, BAS owns the attribute of the entries it writes it to (the SMS
value replaces what is there); with it off, BAS never touches the attribute.

Every object carries its entry DN in ``place["dn"]`` and its ``objectClass`` list in
``attrs``, so the connectors write ``attrs`` as they are and the differ sees a DN change. A
DN changes only when the config's base DN or OUs change or a school's org number does;
being a placement (``PLACEMENT_ATTRS = {"dn"}``) makes that a move (LDAP modrdn), not an update.

Affiliations: student -> student, member; teacher -> faculty, employee, member; staff
-> staff, employee, member; leader -> staff, employee, member (a leader is not
``faculty`` unless they also hold a teacher role, which then adds it). The primary
affiliation is taken from the roles at the person's primary school: faculty before
staff before student.

GO entitlements (docs.feide.no, GO information model appendices 3 and 4): for each
membership of a SIS group (basis -> ``b``, teaching -> ``u``, contact and anything else
-> ``a``; the derived school-wide groups are not GO groups) two values::

    urn:mace:feide.no:go:group:<t>:<grep>:NO<school orgnr>:<group id>:<start>:<end>:<role>:<name>
    urn:mace:feide.no:go:groupid:<t>:NO<school orgnr>:<lowercased group id>:<start>:<end>

``<grep>`` is the group's subject code (uppercased) for ``u`` and empty otherwise;
``<role>`` is ``student`` for a student membership and ``faculty`` for a teacher's;
dates are the group's own (the groupid value must be equal for every member). The
free-text parts (grep code, group id, name) are percent-encoded canonically: the text
is NFC-normalised, UTF-8 encoded, and every byte except the RFC 3986 unreserved
characters ``A-Z a-z 0-9 - . _ ~`` is written ``%XX`` with uppercase hex (so a space is
``%20``, ``:`` is ``%3A``, ``/`` is ``%2F``, ``%`` is ``%25``, ``å`` is ``%C3%A5``). The
group id is lowercased *before* encoding in the groupid value, as Feide's validator
requires. Runs of whitespace in names are collapsed to one space.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

from mappings.base import MappingContext, wanted
from mappings.common import person_mail_domain
from mappings.feide_grep import student_codes, teacher_codes
from provisioner.core import dn as dns
from provisioner.core import names
from provisioner.core.model import (
    BASIS,
    EMPLOYEE_ROLES,
    GUARDIAN,
    LEADER,
    SIS_GROUP_KINDS,
    STAFF,
    STUDENT,
    TEACHER,
    TEACHING,
    DesiredGroup,
    DesiredPerson,
    DesiredState,
    School,
    TargetObject,
)

__all__ = [
    "NIN_ATTRS",
    "NOREDU_SCHEMA_VERSION",
    "OPTIONAL_ATTRS",
    "PLACEMENT_ATTRS",
    "container_entries",
    "go_encode",
    "go_values",
    "map_state",
    "normalise_mobile",
    "org_dn",
    "person_dn",
    "unit_dn",
]

PLACEMENT_ATTRS: frozenset[str] = frozenset({"dn"})

# Attributes an entry of a kind holds only sometimes: the key is left out of ``attrs``
# (not set to an empty value) when there is nothing to write. A writer that compares an
# existing entry with ``attrs`` removes these when they are missing from ``attrs``.
# mail, norEduPersonLIN and norEduPersonAuthnMethod are left out on purpose: an adopted
# catalog may hold values BAS never wrote (a school address set by hand, a county's ``fin``
# LIN, an authenticator-app method), and those stay. Values BAS wrote and no longer wants
# go through the differ (the stored record has them, the new one not: a removal).
OPTIONAL_ATTRS: dict[str, frozenset[str]] = {"person": frozenset({"norEduPersonNIN"})}
# The attributes that carry a NIN: a run plans and stores them sealed (MappingContext.seal).
NIN_ATTRS: frozenset[str] = frozenset({"norEduPersonNIN"})
SMS_METHOD = "urn:mace:feide.no:auth:method:sms"

# norEdu* object class specification version the entries follow (Feide's docs use 2.0).
NOREDU_SCHEMA_VERSION = "2.0"

PERSON_CLASSES = ["top", "person", "organizationalPerson", "inetOrgPerson", "eduPerson", "norEduPerson"]
UNIT_CLASSES = ["top", "organizationalUnit", "norEduOrgUnit"]
ORG_CLASSES = ["top", "organization", "eduOrg", "norEduOrg"]

_AFFILIATIONS: dict[str, tuple[str, ...]] = {
    STUDENT: ("student", "member"),
    TEACHER: ("faculty", "employee", "member"),
    STAFF: ("staff", "employee", "member"),
    LEADER: ("staff", "employee", "member"),
}
_GO_TYPE = {BASIS: "b", TEACHING: "u"}  # everything else (contact, ...) is "a"
_GO_ROLE = {STUDENT: "student", TEACHER: "faculty"}
_PHONE_NOISE = re.compile(r"[\s().-]")


def go_encode(text: str) -> str:
    """Canonical percent-encoding of one GO value part (NFC, UTF-8, RFC 3986 unreserved kept)."""
    if not text.isascii():
        text = unicodedata.normalize("NFC", text)
    return quote(text, safe="")


def go_values(group: DesiredGroup, school_org_number: str) -> tuple[dict[str, str], str]:
    """The GO group value per member role (student, teacher) and the groupid value of a SIS group."""
    t = _GO_TYPE.get(group.kind, "a")
    grep = go_encode((group.subject_code or "").strip().upper()) if t == "u" else ""
    org = "NO" + school_org_number
    gid = group.key
    if not gid.isascii():
        gid = unicodedata.normalize("NFC", gid)
    dates = f"{group.start_date or ''}:{group.end_date or ''}"
    name = go_encode(" ".join(group.name.split()))
    head = f"urn:mace:feide.no:go:group:{t}:{grep}:{org}:{quote(gid, safe='')}:{dates}:"
    by_role = {role: f"{head}{go_role}:{name}" for role, go_role in _GO_ROLE.items()}
    groupid = f"urn:mace:feide.no:go:groupid:{t}:{org}:{quote(gid.lower(), safe='')}:{dates}"
    return by_role, groupid


def normalise_mobile(number: str | None) -> str | None:
    """A mobile number as ``+<country><number>``, or None when it is not one.

    Spaces, dots, dashes and brackets are dropped; ``00`` becomes ``+``; eight digits
    without a prefix are Norwegian, and taken only in the mobile ranges (4 and 9) since an
    SMS cannot go to a landline. An international number has 8-15 digits (E.164).
    """
    n = _PHONE_NOISE.sub("", number or "")
    if n.startswith("00"):
        n = "+" + n[2:]
    if n.isdigit() and len(n) == 8:
        return "+47" + n if n[0] in "49" else None
    if n.startswith("+47") and n[1:].isdigit():
        return n if len(n) == 11 and n[3] in "49" else None
    if n.startswith("+") and n[1:].isdigit() and 8 <= len(n) - 1 <= 15:
        return n
    return None


def _school_mail(school: School, ctx: MappingContext) -> str | None:
    """A school's mail: its own in ``school_mails``, else the ``school_mail`` template, else None."""
    t = ctx.target
    own = t.school_mails.get(school.school_id)
    if own or not t.school_mail:
        return own or None
    return str(
        t.school_mail.format(
            short_name=names.fold(school.short_name) or names.fold(school.school_id),
            school_id=school.school_id.lower(),
            org_number=school.org_number,
        )
    )


def org_dn(ctx: MappingContext) -> str:
    """DN of the owner's norEduOrg entry (the configured base DN)."""
    return ctx.target.base_dn


def person_dn(username: str, ctx: MappingContext) -> str:
    """DN of a person entry: ``uid=<username>,<people_ou>,<base_dn>``."""
    return f"uid={dns.escape(username)},{ctx.target.people_ou},{ctx.target.base_dn}"


def unit_dn(school_org_number: str, ctx: MappingContext) -> str:
    """DN of a school entry: ``norEduOrgUnitUniqueIdentifier=NO<orgnr>,<units_ou>,<base_dn>``."""
    rdn = dns.escape("NO" + school_org_number)
    return f"norEduOrgUnitUniqueIdentifier={rdn},{ctx.target.units_ou},{ctx.target.base_dn}"


def _org_object(ctx: MappingContext) -> TargetObject:
    owner = ctx.owner
    dn = org_dn(ctx)
    classes = list(ORG_CLASSES)
    attrs: dict[str, Any] = {"objectClass": classes, "o": [owner.name]}
    # The entry must hold its own RDN value: dc=... needs dcObject, o=... an o value.
    rdn_attr, rdn_value = dns.parse(dn)[0][0]
    if rdn_attr.lower() == "dc":
        classes.insert(1, "dcObject")
        attrs["dc"] = rdn_value
    elif rdn_attr.lower() == "o":
        if rdn_value != owner.name:
            attrs["o"] = [owner.name, rdn_value]
    else:
        attrs[rdn_attr] = rdn_value
    attrs.update(
        {
            "eduOrgLegalName": owner.name,
            "norEduOrgNIN": "NO" + owner.org_number,
            "norEduOrgUniqueIdentifier": owner.org_number,
            "norEduOrgSchemaVersion": NOREDU_SCHEMA_VERSION,
        }
    )
    if ctx.target.org_mail:
        attrs["mail"] = ctx.target.org_mail
    return TargetObject(kind="org", key="org", attrs=attrs, place={"dn": dn})


def container_entries(target: Any) -> list[tuple[str, dict[str, Any]]]:
    """The entries between the base DN and ``people_ou`` / ``units_ou`` (DN, attrs), parents first.

    An ``ou=`` level is an organizationalUnit; any other RDN attribute gets an
    extensibleObject entry holding its RDN value.
    """
    base = target.base_dn
    out: dict[str, dict[str, Any]] = {}
    for rel in (target.people_ou, target.units_ou):
        parts, pairs = dns.rdns(rel), dns.parse(rel)
        for i in range(len(parts) - 1, -1, -1):
            dn = dns.join(*parts[i:], base)
            attr, value = pairs[i][0]
            if attr.lower() == "ou":
                attrs: dict[str, Any] = {"objectClass": ["top", "organizationalUnit"], "ou": value}
            else:
                attrs = {"objectClass": ["top", "extensibleObject"], attr: value}
            out.setdefault(dn, attrs)
    return list(out.items())


def _primary_affiliation(p: DesiredPerson, roles: set[str]) -> str:
    if len(p.affiliations) == 1:  # most persons: one role at one school
        return _AFFILIATIONS[p.affiliations[0][1]][0]
    at_primary = {r for s, r in p.affiliations if s == p.primary_school} & roles
    for pool in (at_primary, roles):
        if TEACHER in pool:
            return "faculty"
        if STAFF in pool or LEADER in pool:
            return "staff"
        if STUDENT in pool:
            return "student"
    return "member"


def _entitlements(
    p: DesiredPerson, groups: list[str], taught: set[str] | None, adult: set[str], ctx: MappingContext
) -> list[str]:
    """GO group values, and Grep codes: a student's own, a teacher's where configured."""
    values = set(groups)
    if STUDENT in p.roles:
        values |= student_codes(p, adult, ctx.target.adult_grade)
    if taught and TEACHER in p.roles:
        values |= taught
    return sorted(values)


def _identity_attrs(attrs: dict[str, Any], p: DesiredPerson, realm: str, ctx: MappingContext) -> None:
    """norEduPersonNIN, else norEduPersonLIN; norEduPersonAuthnMethod (SMS) for employees if on."""
    if p.nin:
        attrs["norEduPersonNIN"] = ctx.seal(p.nin) if ctx.seal is not None else p.nin
    else:
        attrs["norEduPersonLIN"] = f"{realm}:sis:{quote(p.person_id, safe='')}"
    if ctx.target.sms_authn and STUDENT not in p.roles and any(r in EMPLOYEE_ROLES for r in p.roles):
        number = normalise_mobile(p.mobile)
        if number:
            label = go_encode(ctx.target.sms_authn_label)
            attrs["norEduPersonAuthnMethod"] = f"{SMS_METHOD} {number} label={label}"


def map_state(state: DesiredState, ctx: MappingContext) -> Iterator[TargetObject]:
    """The Feide catalog's org, school and person entries for this desired state."""
    owner = ctx.owner
    the_org_dn = org_dn(ctx)
    yield _org_object(ctx)

    unit_dns: dict[str, str] = {}
    for school_id, school in sorted(state.schools.items()):
        dn = unit_dn(school.org_number, ctx)
        unit_dns[school_id] = dn
        unit: dict[str, Any] = {
            "objectClass": list(UNIT_CLASSES),
            "ou": school.name,
            "norEduOrgUnitUniqueIdentifier": "NO" + school.org_number,
        }
        mail = _school_mail(school, ctx)
        if mail:
            unit["mail"] = mail
        yield TargetObject(kind="orgunit", key=school_id, attrs=unit, place={"dn": dn})

    # Feide holds students and employees; a person who is only a guardian is left out.
    held = {pid for pid, p in state.persons.items() if any(r != GUARDIAN for r in p.roles)}

    # One pass over every membership: entitlements per person.
    ents: dict[str, list[str]] = {pid: [] for pid in wanted(held, ctx)}
    taught = teacher_codes(state.groups.values()) if ctx.target.teacher_grep_codes else {}
    adult = {sid for sid, s in state.schools.items() if s.level == "adult"}
    for g in state.groups.values():
        if g.kind not in SIS_GROUP_KINDS or not g.members:  # school, level, owner: not GO groups
            continue
        by_role, groupid = go_values(g, state.schools[g.school_id].org_number)
        for pid, role in g.members:
            lst = ents.get(pid)
            if lst is not None and role in by_role:
                lst.append(by_role[role])
                lst.append(groupid)

    realm = owner.realm.lower()
    for pid in sorted(ents):
        p = state.persons[pid]
        roles = {r for r in p.roles if r != GUARDIAN}
        affs: set[str] = set()
        for r in roles:
            affs.update(_AFFILIATIONS[r])
        schools = sorted({s for s, r in p.affiliations if r != GUARDIAN})
        uid = p.username
        attrs: dict[str, Any] = {
            "objectClass": list(PERSON_CLASSES),
            "uid": uid,
            "cn": p.display_name,
            "displayName": p.display_name,
            "givenName": p.given_name,
            "sn": p.family_name,
            "norEduPersonLegalName": p.display_name,
            "eduPersonPrincipalName": f"{uid}@{realm}".lower(),
            "mail": f"{uid}@{person_mail_domain(owner, p)}",
            "eduPersonAffiliation": sorted(affs),
            "eduPersonPrimaryAffiliation": _primary_affiliation(p, roles),
            "eduPersonOrgDN": the_org_dn,
            "eduPersonOrgUnitDN": sorted(unit_dns[s] for s in schools),
            "eduPersonPrimaryOrgUnitDN": unit_dns[p.primary_school],
            "eduPersonEntitlement": _entitlements(p, ents[pid], taught.get(pid), adult, ctx),
        }
        _identity_attrs(attrs, p, realm, ctx)
        place = {"dn": person_dn(uid, ctx)}
        yield TargetObject("person", pid, attrs, username=uid, person_id=pid, place=place)
