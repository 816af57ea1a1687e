"""Account helpers that Active Directory and Microsoft 365 share. Pure, no I/O.

Both targets hold the same persons (students and employees, never guardians) and the
same groups (SIS groups and school-wide groups, not the guardians' one), and a group
has the same account name in both (AD's sAMAccountName and cn, Microsoft 365's
mailNickname). Lengths are cut as AD and Graph count them (UTF-16 code units).

Addresses: a person's UPN and mail domains follow their main role (``main_role``: a
teacher who is also an adult student is addressed as a teacher, at their primary school's
role first), from ``[owner] role_domains`` and a target's ``upn_domain``/``upn_domains``
(``AccountDomains``), so every target gives one person the same mail address.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast

from provisioner.config import OwnerConfig
from provisioner.core.model import (
    GUARDIAN,
    LEADER,
    NO_VALUES,
    OWNER_WIDE,
    SCHOOL_WIDE,
    STAFF,
    STUDENT,
    TEACHER,
    DesiredGroup,
    DesiredPerson,
    DesiredState,
    School,
)
from provisioner.core.names import fold

__all__ = [
    "GROUP_NAME_MAX",
    "AccountDomains",
    "account_group_keys",
    "cut",
    "group_account_names",
    "group_description",
    "group_members",
    "held_persons",
    "main_role",
    "person_mail_domain",
]

GROUP_NAME_MAX = 64  # sAMAccountName of groups and Microsoft 365 mailNickname: both fit
OWNER_PREFIX = "ALLE"  # the <SHORT> of owner-wide groups' account names: ALLE-teachers
_ROLE_PRECEDENCE = (LEADER, TEACHER, STAFF, STUDENT)
_STUDENT_ONLY = frozenset({STUDENT})
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
    """The role shown as title and deciding the address domains: leader, teacher, staff, student.

    The primary school's roles first, then the others; an employee role anywhere beats
    being a student, because the account must work for the job: a teacher who is also an
    adult student (whose primary school is then where they study, enrollments ranking
    first) is a teacher, with the staff domain and title.
    """
    if len(p.affiliations) == 1:  # most persons: one role at one school
        return p.affiliations[0][1]
    at_primary = {r for s, r in p.affiliations if s == p.primary_school}
    for pool in (at_primary - _STUDENT_ONLY, set(p.roles) - _STUDENT_ONLY, at_primary, set(p.roles)):
        for r in _ROLE_PRECEDENCE:
            if r in pool:
                return r
    return p.roles[0] if p.roles else ""


def _by_role(domains: Mapping[Any, str]) -> Mapping[str, str]:
    """A config's per-role domains (keyed by the account roles' Literal type) looked up by any role."""
    return cast(Mapping[str, str], domains)


def person_mail_domain(owner: OwnerConfig, p: DesiredPerson) -> str:
    """The mail domain of one person: their main role's in ``role_domains``, else ``mail_domain``."""
    return _by_role(owner.role_domains).get(main_role(p), owner.mail_domain)


@dataclass(frozen=True, slots=True)
class AccountDomains:
    """Which domain a person's UPN and mail address take, by their main role.

    Mail: ``[owner] role_domains[role]``, else ``mail_domain``. UPN: the target's
    ``upn_domains[role]``, else its ``upn_domain`` (one domain for everyone in that
    target), else the mail domain. Guardians have no account address.
    """

    mail_domain: str
    role_domains: Mapping[str, str]
    upn_domain: str | None
    upn_domains: Mapping[str, str]

    @classmethod
    def of(
        cls, owner: OwnerConfig, upn_domain: str | None = None, upn_domains: Mapping[Any, str] = NO_VALUES
    ) -> AccountDomains:
        """The owner's domains, with a target's UPN settings (AD, Microsoft 365) when given."""
        return cls(owner.mail_domain, _by_role(owner.role_domains), upn_domain, _by_role(upn_domains))

    def mail(self, role: str) -> str:
        """The mail domain of a person whose main role is ``role``."""
        return self.role_domains.get(role, self.mail_domain)

    def upn(self, role: str) -> str:
        """The UPN domain of a person whose main role is ``role``."""
        return self.upn_domains.get(role) or self.upn_domain or self.mail(role)


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

    ``<SHORT>`` is the school's short name folded and uppercased (``ALLE`` for owner-wide
    groups, which have no school); ``<name>`` is the group name (school-wide and owner-wide
    groups: students, teachers, staff; level groups ``8-trinn``, ``vg1``) folded to
    lowercase a-z0-9 words joined by '-'. Names that collide (case-insensitively, after cutting) all get a
    ``-<6 hex>`` suffix from a hash of their group key, so a name depends only on the
    group itself and on whether it has a namesake (a new namesake renames the old group
    once: a cn change, i.e. a rename in AD).
    """
    base: dict[str, str] = {}
    for k in keys:
        g = state.groups[k]
        school = state.schools.get(g.school_id)
        if school is None:  # owner-wide: no school
            prefix = OWNER_PREFIX
        else:
            prefix = (_slug(school.short_name) or _slug(school.school_id) or "SKOLE").upper()
        text = g.school_role if g.kind in (SCHOOL_WIDE, OWNER_WIDE) and g.school_role else g.name
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


def group_description(g: DesiredGroup, school: School | None) -> str:
    """A readable description: the group's name and its school (owner-wide groups: the name)."""
    name = " ".join(g.name.split())
    return name if school is None else f"{name} ({school.name})"


def group_members(g: DesiredGroup, held: set[str] | Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """The group's members that the target holds, once each, as sorted ``(person_id, "")``."""
    # g.members is sorted by person_id, so dropping repeats keeps the order sorted.
    return tuple((pid, "") for pid in dict.fromkeys(pid for pid, _ in g.members if pid in held))
