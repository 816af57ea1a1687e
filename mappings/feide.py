"""Feide mapping: the desired state as Feide catalog entries (GO profile).

Owns what the Feide LDAP catalog holds for a school owner: one ``norEduOrg`` entry for
the owner, one ``norEduOrgUnit`` entry per school and one ``norEduPerson`` entry per
student and employee, with groups as GO entitlement values on the person entries
(Feide has no group entries). Guardians never go to Feide. Pure, no I/O.

Objects (``TargetObject.kind`` / key):

* ``org`` / ``"org"``: DN = ``FeideConfig.base_dn``. ``o`` and ``eduOrgLegalName`` (owner
  name), ``norEduOrgNIN`` ("NO" + org number), ``norEduOrgUniqueIdentifier`` (the bare
  org number), ``norEduOrgSchemaVersion`` (``NOREDU_SCHEMA_VERSION``). The GO profile
  also makes ``mail`` mandatory for the org and each school; the model has no such
  address, so it is left out (a later config field can add it).
* ``orgunit`` / school_id: DN = ``norEduOrgUnitUniqueIdentifier=NO<orgnr>,<units_ou>,<base_dn>``
  (an RDN that survives a school being renamed). ``ou`` (school name),
  ``norEduOrgUnitUniqueIdentifier`` ("NO" + school org number). No ``displayName``:
  ``organizationalUnit`` does not allow it, and ``ou`` carries the name.
* ``person`` / person_id: DN = ``uid=<username>,<people_ou>,<base_dn>`` (usernames never
  change, so neither does the DN). cn, displayName, norEduPersonLegalName (the full
  name), givenName, sn, uid, eduPersonPrincipalName (lowercase ``uid@realm``), mail
  (``uid@<role domain>``), norEduPersonNIN (only when the person has one; absent otherwise),
  eduPersonAffiliation, eduPersonPrimaryAffiliation, eduPersonOrgDN,
  eduPersonOrgUnitDN, eduPersonPrimaryOrgUnitDN, eduPersonEntitlement (always present,
  possibly an empty list).

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

import unicodedata
from typing import Any
from urllib.parse import quote

from mappings.base import MappingContext
from mappings.common import person_mail_domain
from provisioner.core import dn as dns
from provisioner.core.model import (
    BASIS,
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
    TargetObject,
)

__all__ = [
    "NOREDU_SCHEMA_VERSION",
    "OPTIONAL_ATTRS",
    "PLACEMENT_ATTRS",
    "container_entries",
    "go_encode",
    "go_values",
    "map_state",
    "org_dn",
    "person_dn",
    "unit_dn",
]

PLACEMENT_ATTRS: frozenset[str] = frozenset({"dn"})

# Attributes an entry of a kind holds only sometimes: the key is left out of ``attrs``
# (not set to an empty value) when there is nothing to write. A writer that compares an
# existing entry with ``attrs`` removes these when they are missing from ``attrs``.
OPTIONAL_ATTRS: dict[str, frozenset[str]] = {"person": frozenset({"norEduPersonNIN"})}

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


def map_state(state: DesiredState, ctx: MappingContext) -> list[TargetObject]:
    """The Feide catalog's org, school and person entries for this desired state."""
    owner = ctx.owner
    the_org_dn = org_dn(ctx)
    out: list[TargetObject] = [_org_object(ctx)]

    unit_dns: dict[str, str] = {}
    for school_id, school in sorted(state.schools.items()):
        dn = unit_dn(school.org_number, ctx)
        unit_dns[school_id] = dn
        out.append(
            TargetObject(
                kind="orgunit",
                key=school_id,
                attrs={
                    "objectClass": list(UNIT_CLASSES),
                    "ou": school.name,
                    "norEduOrgUnitUniqueIdentifier": "NO" + school.org_number,
                },
                place={"dn": dn},
            )
        )

    # Feide holds students and employees; a person who is only a guardian is left out.
    held = {pid for pid, p in state.persons.items() if any(r != GUARDIAN for r in p.roles)}

    # One pass over every membership: entitlements per person.
    ents: dict[str, list[str]] = {pid: [] for pid in held}
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
    for pid in sorted(held):
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
            "eduPersonEntitlement": sorted(set(ents[pid])),
        }
        if p.nin:
            attrs["norEduPersonNIN"] = p.nin
        place = {"dn": person_dn(uid, ctx)}
        out.append(TargetObject("person", pid, attrs, username=uid, person_id=pid, place=place))
    return out
