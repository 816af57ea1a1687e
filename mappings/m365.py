"""Microsoft 365 mapping: the desired state as Entra ID users and groups (Graph v1.0 names).

Owns what Microsoft 365 holds for a school owner (plan only for now; the live Graph
connector comes later): one user per student and employee and one group per SIS group
and per school-wide group. Guardians never go to Microsoft 365, and neither does the
NIN. Pure, no I/O. Group names come from ``mappings.common`` so a group is called the
same in AD and Microsoft 365.

Users (kind ``person``, key person_id): userPrincipalName (``username@`` upn_domain of
the main role, ``AccountDomains``), mailNickname (username), displayName, givenName, surname,
employeeId (SIS person_id), usageLocation (config, needed before licences), department
(primary school name), jobTitle (leader, teacher, staff or student). Lengths are cut
to Graph's limits (givenName, surname, department 64; jobTitle 128; displayName 256);
employeeId is not cut (Graph allows 16 characters). accountEnabled and the password
profile belong to the connector and the lifecycle, not to the mapping.

Groups (kind ``group``, key group key): displayName (``"<short name> <group name>"``;
school-wide groups already carry the short name, owner-wide groups have no school:
``"Alle lærere"``; level groups ``"NORDBY 8. trinn"``), mailNickname (the AD group name:
``<SHORT>-<name>``, ASCII letters, digits and '-', unique, at most 64 characters, no
spaces), description, groupType (``ctx.target.group_type``), securityEnabled and
mailEnabled (security: True/False; m365: False/True, a Unified group); in ``links``:
owners (sorted person_ids of the group's teachers that Microsoft 365 holds; empty for
school-wide, owner-wide and level groups and groups without teachers: the connector adds
the configured fallback owner); members ``(person_id, "")``. The school-wide guardians group is left out.

Hybrid (``users = "synced"``): Entra Connect brings the users from AD, and Graph refuses
writes to what AD masters on them (names, UPN, mailNickname, employeeId, department,
jobTitle, accountEnabled, password). A user then carries only what BAS may write in the
cloud: usageLocation (needed before licences), and ``role`` (leader, teacher, staff or
student: which ``licenses`` it gets; never sent to Graph). The connector finds the
synced user by the AD objectGUID, then by employeeId (the key, the SIS person_id).

Nothing here is a placement: a changed department or name is a plain update.
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
from provisioner.core.model import (
    LEVEL,
    OWNER_WIDE,
    SCHOOL_WIDE,
    TEACHER,
    DesiredPerson,
    DesiredState,
    TargetObject,
)

__all__ = ["LINK_ATTRS", "PLACEMENT_ATTRS", "map_state"]

PLACEMENT_ATTRS: frozenset[str] = frozenset()
LINK_ATTRS: frozenset[str] = frozenset({"owners"})  # person_ids the connector turns into user ids
# Derived groups have no teachers of their own: the connector's fallback owner owns them.
_NO_OWNERS = frozenset({SCHOOL_WIDE, OWNER_WIDE, LEVEL})


def map_state(state: DesiredState, ctx: MappingContext) -> Iterator[TargetObject]:
    """The Microsoft 365 users and groups for this desired state."""
    owner, cfg = ctx.owner, ctx.target
    domains = AccountDomains.of(owner, cfg.upn_domain, cfg.upn_domains)

    held = held_persons(state)
    for pid in wanted(held, ctx):
        p = state.persons[pid]
        u = p.username
        if cfg.users == "synced":
            yield _synced_user(p, cfg.usage_location)
            continue
        role = main_role(p)
        attrs: dict[str, Any] = {
            "userPrincipalName": f"{u}@{domains.upn(role)}",
            "mailNickname": u,
            "displayName": cut(p.display_name, 256),
            "givenName": cut(p.given_name, 64),
            "surname": cut(p.family_name, 64),
            "employeeId": pid,
            "usageLocation": cfg.usage_location,
            "department": cut(state.schools[p.primary_school].name, 64),
            "jobTitle": role,
        }
        yield TargetObject(kind="person", key=pid, attrs=attrs, username=u, person_id=pid)

    held_set = set(held)
    security = cfg.group_type == "security"
    keys = account_group_keys(state)
    names = group_account_names(state, keys)
    for k in wanted(keys, ctx):
        g = state.groups[k]
        school = state.schools.get(g.school_id)  # None: an owner-wide group
        name = " ".join(g.name.split())
        display = name if g.kind == SCHOOL_WIDE or school is None else f"{school.short_name} {name}"
        owners = (
            []
            if g.kind in _NO_OWNERS
            else sorted({pid for pid, role in g.members if role == TEACHER and pid in held_set})
        )
        attrs = {
            "displayName": cut(display, 256),
            "mailNickname": names[k],
            "description": group_description(g, school),
            "groupType": cfg.group_type,
            "securityEnabled": security,
            "mailEnabled": not security,
        }
        members = group_members(g, held_set)
        yield TargetObject("group", k, attrs, members=members, links={"owners": owners})


def _synced_user(p: DesiredPerson, usage_location: str) -> TargetObject:
    """A user Entra Connect syncs from AD: only what the cloud may write, and the licence role."""
    attrs = {"usageLocation": usage_location, "role": main_role(p)}
    return TargetObject(
        kind="person", key=p.person_id, attrs=attrs, username=p.username, person_id=p.person_id
    )
