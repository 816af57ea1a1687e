"""Active Directory mapping: the desired state as AD users and security groups.

Owns what AD holds for a school owner (plan only for now; the live ldap3 connector
comes later): one user per student and employee, placed in their primary school's OU,
and one security group per SIS group (basis, teaching, contact) and per school-wide
group. Guardians never go to AD, and neither does the NIN. Pure, no I/O.

The persons and groups it holds, group names, roles and length cuts come from
``mappings.common``, shared with Microsoft 365, so both hold the same persons and
groups and a group has the same name in both.

Users (kind ``person``, key person_id): sAMAccountName (the username, at most 20
characters by the username rules), userPrincipalName and mail (``username@`` the
domains of the person's main role: ``mappings.common.AccountDomains``), givenName, sn,
displayName, cn,
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
guardians are never in AD. A target's level groups (``NORDBY-8-trinn``) and owner-wide
groups (``ALLE-teachers``, description without a school) go to the same OU.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mappings.base import MappingContext, wanted
from mappings.common import (
    AccountDomains,
    account_group_keys,
    cut,
    group_account_names,
    group_description,
    group_members,
    held_persons,
    main_role,
)
from provisioner.core import dn as dns
from provisioner.core.model import DesiredPerson, DesiredState, School, TargetObject

__all__ = ["PLACEMENT_ATTRS", "map_state", "person_cn", "school_ou"]

PLACEMENT_ATTRS: frozenset[str] = frozenset({"ou", "cn"})

CN_MAX = 64


def person_cn(p: DesiredPerson) -> str:
    """``"<display name> (<username>)"`` cut to 64 UTF-16 units in the name part."""
    tail = f" ({p.username})"
    room = CN_MAX - len(tail)
    return cut(p.display_name, room).rstrip() + tail


def school_ou(school: School, ctx: MappingContext) -> str:
    """DN of a school's OU: ``OU=<escaped short name>,<base_dn>``."""
    return f"OU={dns.escape(school.short_name or school.school_id)},{ctx.target.base_dn}"


def map_state(state: DesiredState, ctx: MappingContext) -> Iterator[TargetObject]:
    """The AD users and security groups for this desired state."""
    owner, cfg = ctx.owner, ctx.target
    domains = AccountDomains.of(owner, cfg.upn_domain, cfg.upn_domains)
    company = cut(owner.name, 64)
    ous = {sid: school_ou(s, ctx) for sid, s in state.schools.items()}

    held = held_persons(state)
    for pid in wanted(held, ctx):
        p = state.persons[pid]
        u = p.username
        role = main_role(p)
        attrs: dict[str, Any] = {
            "sAMAccountName": u,
            "userPrincipalName": f"{u}@{domains.upn(role)}",
            "givenName": cut(p.given_name, 64),
            "sn": cut(p.family_name, 64),
            "displayName": cut(p.display_name, 256),
            "mail": f"{u}@{domains.mail(role)}",
            "employeeID": pid,
            "department": cut(state.schools[p.primary_school].name, 64),
            "company": company,
            "title": role,
        }
        place = {"cn": person_cn(p), "ou": ous[p.primary_school]}
        yield TargetObject("person", pid, attrs, username=u, person_id=pid, place=place)

    held_set = set(held)
    groups_ou = dns.within(cfg.groups_ou, cfg.base_dn)
    keys = account_group_keys(state)
    names = group_account_names(state, keys)
    for k in wanted(keys, ctx):
        g = state.groups[k]
        name = names[k]
        attrs = {
            "sAMAccountName": name,
            "description": group_description(g, state.schools.get(g.school_id)),
        }
        place = {"cn": name, "ou": groups_ou}
        yield TargetObject("group", k, attrs, members=group_members(g, held_set), place=place)
