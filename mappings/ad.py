"""Active Directory mapping: the desired state as AD users and security groups.

Owns what AD holds for a school owner (plan only for now; the live ldap3 connector
comes later): one user per student and employee, placed in their primary school's OU,
and one security group per SIS group (basis, teaching, contact) and per school-wide
group. Guardians never go to AD, and neither does the NIN. Pure, no I/O.

Also owns the helpers Microsoft 365 shares (``held_persons``, ``account_group_keys``,
``group_account_names``, ``group_description``, ``group_members``, ``main_role``, ``cut``),
so both hold the same persons and groups and a group has the same name in both.

Users (kind ``person``, key person_id): sAMAccountName (the username, at most 20
characters by the username rules), userPrincipalName (``username@`` upn_domain or the
owner's mail domain), givenName, sn, displayName, cn, mail (``username@mail_domain``),
employeeID (SIS person_id), department (primary school name), company (owner name),
title (``main_role``: leader, teacher, staff or student); placed (``TargetObject.place``)
by cn and ou (the school OU's DN, ``OU=<school short name>,<base_dn>``).

``cn`` is ``"<display name> (<username>)"``: the username makes it unique (AD needs a cn
unique within its OU, and two pupils called Ola Nordmann may share a school), and the
display name keeps it readable. It is cut to AD's 64-character limit (counted in UTF-16
code units, as AD counts) by shortening the name part, never the username. A changed
``cn`` or ``ou`` is a rename or a move (``PLACEMENT_ATTRS``: the connector does modify_dn).
Lengths are cut to AD's limits: givenName, sn, department, company, title 64; displayName
256. employeeID is not cut (AD allows 16 characters; a longer SIS id is rejected by AD).

Groups (kind ``group``, key group key): sAMAccountName and cn (the same name from
``group_account_names``; cn in ``place``), description, ou in ``place`` (``groups_ou``
under base_dn, one OU for all schools: names carry the school), members
``(person_id, "")`` for persons AD holds. The school-wide guardians group is left out:
guardians are never in AD.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Mapping
from typing import Any

from mappings.base import MappingContext
from mappings.feide import escape_dn_value
from provisioner.core.model import (
    GUARDIAN,
    LEADER,
    SCHOOL_WIDE,
    STAFF,
    STUDENT,
    TEACHER,
    DesiredGroup,
    DesiredPerson,
    DesiredState,
    School,
    TargetObject,
)
from provisioner.core.names import fold

__all__ = [
    "GROUP_NAME_MAX",
    "PLACEMENT_ATTRS",
    "account_group_keys",
    "cut",
    "group_account_names",
    "group_description",
    "group_members",
    "held_persons",
    "main_role",
    "map_state",
    "person_cn",
    "school_ou",
]

PLACEMENT_ATTRS: frozenset[str] = frozenset({"ou", "cn"})

GROUP_NAME_MAX = 64  # sAMAccountName of groups and Microsoft 365 mailNickname: both fit
CN_MAX = 64
_ROLE_PRECEDENCE = (LEADER, TEACHER, STAFF, STUDENT)
_WORD_SPLIT = re.compile(r"[\W_]+")


def cut(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` UTF-16 code units (as AD and Graph count), never inside a character."""
    if len(text) <= limit and (text.isascii() or len(text.encode("utf-16-le")) <= 2 * limit):
        return text
    units = 0
    for i, ch in enumerate(text):
        units += 2 if ord(ch) > 0xFFFF else 1
        if units > limit:
            return text[:i].rstrip()
    return text


def held_persons(state: DesiredState) -> list[str]:
    """Sorted ids of the persons AD and Microsoft 365 hold: students and employees, not guardians."""
    return sorted(pid for pid, p in state.persons.items() if any(r != GUARDIAN for r in p.roles))


def main_role(p: DesiredPerson) -> str:
    """The role shown as title: leader, teacher, staff, student, from the primary school first."""
    if len(p.affiliations) == 1:  # most persons: one role at one school
        return p.affiliations[0][1]
    at_primary = {r for s, r in p.affiliations if s == p.primary_school}
    for pool in (at_primary, set(p.roles)):
        for r in _ROLE_PRECEDENCE:
            if r in pool:
                return r
    return p.roles[0] if p.roles else ""


def person_cn(p: DesiredPerson) -> str:
    """``"<display name> (<username>)"`` cut to 64 UTF-16 units in the name part."""
    tail = f" ({p.username})"
    room = CN_MAX - len(tail)
    return cut(p.display_name, room).rstrip() + tail


def school_ou(school: School, ctx: MappingContext) -> str:
    """DN of a school's OU: ``OU=<escaped short name>,<base_dn>``."""
    return f"OU={escape_dn_value(school.short_name or school.school_id)},{ctx.target.base_dn}"


def _under(rel: str, base: str) -> str:
    # groups_ou / disabled_ou are RDNs under base_dn, unless already given as a full DN.
    return rel if rel.lower().endswith(base.lower()) else f"{rel},{base}"


def _slug(text: str) -> str:
    """ASCII words joined with '-': 'Matematikk 10A (vår)' -> 'matematikk-10a-vaar'."""
    return "-".join(w for w in (fold(part) for part in _WORD_SPLIT.split(text)) if w)


def account_group_keys(state: DesiredState) -> list[str]:
    """Sorted keys of the groups AD and Microsoft 365 hold: SIS and school-wide, not guardians'."""
    return sorted(
        k for k, g in state.groups.items() if not (g.kind == SCHOOL_WIDE and g.school_role == "guardians")
    )


def group_account_names(state: DesiredState, keys: list[str]) -> dict[str, str]:
    """Unique ASCII names (at most 64 characters) for groups: ``<SHORT>-<name>``.

    ``<SHORT>`` is the school's short name folded and uppercased; ``<name>`` is the group
    name (school-wide groups: students, teachers, staff) folded to lowercase a-z0-9 words
    joined by '-'. Names that collide (case-insensitively, after cutting) all get a
    ``-<6 hex>`` suffix from a hash of their group key, so a name depends only on the
    group itself and on whether it has a namesake (a new namesake renames the old group
    once: a cn change, i.e. a rename in AD).
    """
    base: dict[str, str] = {}
    for k in keys:
        g = state.groups[k]
        school = state.schools[g.school_id]
        prefix = (_slug(school.short_name) or _slug(school.school_id) or "SKOLE").upper()
        text = g.school_role if g.kind == SCHOOL_WIDE and g.school_role else g.name
        slug = _slug(text) or _slug(g.key) or "gruppe"
        base[k] = (prefix + "-" + slug)[:GROUP_NAME_MAX].rstrip("-")
    counts = Counter(n.lower() for n in base.values())
    out: dict[str, str] = {}
    used: set[str] = set()
    for k in keys:
        name = base[k]
        if counts[name.lower()] > 1:
            h = hashlib.blake2b(k.encode("utf-8"), digest_size=8).hexdigest()
            for size in range(6, 17, 2):  # a longer hash only if a shorter one is taken
                suffix = "-" + h[:size]
                candidate = name[: GROUP_NAME_MAX - len(suffix)].rstrip("-") + suffix
                if candidate.lower() not in used and candidate.lower() not in counts:
                    break
            name = candidate
        used.add(name.lower())
        out[k] = name
    return out


def group_description(g: DesiredGroup, school: School) -> str:
    """A readable description: the group's name and its school."""
    return f"{' '.join(g.name.split())} ({school.name})"


def group_members(g: DesiredGroup, held: set[str] | Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The group's members that the target holds, once each, as sorted ``(person_id, "")``."""
    # g.members is sorted by person_id, so dropping repeats keeps the order sorted.
    return tuple((pid, "") for pid in dict.fromkeys(pid for pid, _ in g.members if pid in held))


def map_state(state: DesiredState, ctx: MappingContext) -> list[TargetObject]:
    """The AD users and security groups for this desired state."""
    owner, cfg = ctx.owner, ctx.target
    upn_domain = cfg.upn_domain or owner.mail_domain
    company = cut(owner.name, 64)
    ous = {sid: school_ou(s, ctx) for sid, s in state.schools.items()}
    out: list[TargetObject] = []

    held = held_persons(state)
    for pid in held:
        p = state.persons[pid]
        u = p.username
        attrs: dict[str, Any] = {
            "sAMAccountName": u,
            "userPrincipalName": f"{u}@{upn_domain}",
            "givenName": cut(p.given_name, 64),
            "sn": cut(p.family_name, 64),
            "displayName": cut(p.display_name, 256),
            "mail": f"{u}@{owner.mail_domain}",
            "employeeID": pid,
            "department": cut(state.schools[p.primary_school].name, 64),
            "company": company,
            "title": main_role(p),
        }
        place = {"cn": person_cn(p), "ou": ous[p.primary_school]}
        out.append(TargetObject("person", pid, attrs, username=u, person_id=pid, place=place))

    held_set = set(held)
    groups_ou = _under(cfg.groups_ou, cfg.base_dn)
    keys = account_group_keys(state)
    names = group_account_names(state, keys)
    for k in keys:
        g = state.groups[k]
        name = names[k]
        attrs = {
            "sAMAccountName": name,
            "description": group_description(g, state.schools[g.school_id]),
        }
        place = {"cn": name, "ou": groups_ou}
        out.append(TargetObject("group", k, attrs, members=group_members(g, held_set), place=place))
    return out
