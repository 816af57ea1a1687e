"""Per-target scope: which schools and roles a target gets, and the extra groups it wants.

Owns ``restrict``: the desired state as one target sees it. A target's config
(``TargetBase``) may select schools (``schools``: school ids or org numbers;
``school_levels``: ``School.level`` values; a school is in when either names it, and
``exclude_schools`` takes schools out again) and roles (``roles``), and may ask for
level groups (all pupils of a grade at a school: a trinn) and owner-wide groups (all
students, teachers or staff of the owner). Pure, no I/O.

What restricting keeps (``restrict``):

- Per person, the affiliations at in-scope schools in in-scope roles. A guardian keeps
  their guardian affiliations only at schools where one of their students is still in
  this target as a student, and ``students`` only those students: guardians follow their
  in-scope students. A person with nothing left is not in the target (a target that held
  them retires their account: "no longer in scope").
- ``primary_school`` stays when it is still in scope; otherwise the first (by school id)
  in-scope school where the person studies, else where they work, else where they are a
  guardian (derive's own ranking also uses the SIS's main-school flag and start dates,
  which the desired state no longer has). ``grade`` follows: the highest grade the
  person has at the new primary school. ``studies`` keep the in-scope schools' only.
- Only in-scope schools, their groups (a school-wide group only when one of its roles is
  in scope) and, in every group, only members who are in the target in that role.

Level groups (``level_groups``) are made from the restricted ``studies``: one per school
and grade that has pupils (grade None, e.g. adult education, has none), named as schools
do ("8. trinn", "Vg1"). Owner-wide groups (``owner_groups``) hold every restricted
person in the roles of that name (staff: teachers, staff and leaders) and exist even
when empty. Both are added here, per target, not by derive for every target.

A target with no scope and no extra groups gets the very same state object: an
Oslo-size owner (255k persons) pays nothing for the feature it does not use.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace

from provisioner.config import TargetBase
from provisioner.core.model import (
    ALL_ROLES,
    EMPLOYEE_ROLES,
    GUARDIAN,
    LEVEL,
    OWNER_GROUP_NAMES,
    OWNER_WIDE,
    SCHOOL_GROUP_ROLES,
    SCHOOL_WIDE,
    STUDENT,
    DesiredGroup,
    DesiredPerson,
    DesiredState,
    School,
    level_group_key,
    level_name,
    owner_group_key,
)

__all__ = ["Scope", "restrict", "unknown_names"]

_ROLE_ORDER = {r: i for i, r in enumerate(ALL_ROLES)}


@dataclass(frozen=True)
class Scope:
    """What one target gets: schools, roles and extra groups. None selects all."""

    schools: frozenset[str] | None = None  # school ids or org numbers
    levels: frozenset[str] | None = None  # School.level values
    exclude: frozenset[str] = frozenset()  # school ids or org numbers
    roles: frozenset[str] | None = None
    level_groups: bool = False
    owner_groups: tuple[str, ...] = ()

    @classmethod
    def of(cls, t: TargetBase) -> Scope:
        """The scope a target's config asks for."""
        return cls(
            schools=None if t.schools is None else frozenset(t.schools),
            levels=None if t.school_levels is None else frozenset(t.school_levels),
            exclude=frozenset(t.exclude_schools),
            roles=None if t.roles is None else frozenset(t.roles),
            level_groups=t.level_groups,
            owner_groups=tuple(t.owner_groups),
        )

    @property
    def all_schools(self) -> bool:
        """Every school of the owner is in."""
        return self.schools is None and self.levels is None and not self.exclude

    @property
    def all_roles(self) -> bool:
        """Every role is in."""
        return self.roles is None or self.roles.issuperset(ALL_ROLES)

    @property
    def is_identity(self) -> bool:
        """Restricting changes nothing: all schools, all roles, no extra groups."""
        return self.all_schools and self.all_roles and not self.level_groups and not self.owner_groups

    def selects(self, school: School) -> bool:
        """Whether a school is in this scope."""
        if school.school_id in self.exclude or school.org_number in self.exclude:
            return False
        if self.schools is None and self.levels is None:
            return True
        named = self.schools is not None and (
            school.school_id in self.schools or school.org_number in self.schools
        )
        return named or (self.levels is not None and school.level in self.levels)

    def describe(self, schools: Mapping[str, School] | None = None) -> str:
        """The scope in a few words, e.g. ``3 of 12 schools; roles student, teacher; level groups``."""
        parts = []
        if self.all_schools:
            parts.append("all schools")
        elif schools is not None:
            parts.append(f"{sum(1 for s in schools.values() if self.selects(s))} of {len(schools)} schools")
        else:
            parts.append("some schools")
        parts.append(
            "all roles"
            if self.all_roles
            else "roles " + ", ".join(sorted(self.roles or (), key=_ROLE_ORDER.__getitem__))
        )
        if self.level_groups:
            parts.append("level groups")
        if self.owner_groups:
            parts.append("owner groups " + ", ".join(self.owner_groups))
        return "; ".join(parts)


def unknown_names(scope: Scope, schools: Iterable[School]) -> list[str]:
    """What a scope names that no school of the source is: ``schools: X``, ``school_levels: Y``."""
    schools = list(schools)
    ids = {s.school_id for s in schools} | {s.org_number for s in schools}
    levels = {s.level for s in schools}
    out = [f"schools: {n}" for n in sorted(scope.schools or ()) if n not in ids]
    out += [f"school_levels: {n}" for n in sorted(scope.levels or ()) if n not in levels]
    out += [f"exclude_schools: {n}" for n in sorted(scope.exclude) if n not in ids]
    return out


def restrict(state: DesiredState, scope: Scope) -> DesiredState:
    """The desired state as a target with this scope sees it (see the module docstring)."""
    if scope.is_identity:
        return state
    in_schools = {sid for sid, s in state.schools.items() if scope.selects(s)}
    roles = frozenset(ALL_ROLES) if scope.roles is None else scope.roles
    if scope.all_schools and scope.all_roles:
        persons: Mapping[str, DesiredPerson] = state.persons
        groups: dict[str, DesiredGroup] = dict(state.groups)
    else:
        persons = _persons(state.persons, in_schools, roles)
        groups = _groups(state.groups, persons, in_schools, roles)
    schools = state.schools if scope.all_schools else {sid: state.schools[sid] for sid in sorted(in_schools)}
    if scope.level_groups:
        groups.update(_level_groups(persons, schools))
    for which in scope.owner_groups:
        groups[owner_group_key(which)] = _owner_group(which, persons)
    return replace(state, schools=schools, persons=persons, groups=groups)


def _persons(
    persons: Mapping[str, DesiredPerson], in_schools: set[str], roles: frozenset[str]
) -> dict[str, DesiredPerson]:
    """Persons with their in-scope affiliations; guardians follow their in-scope students."""
    kept: dict[str, tuple[tuple[str, str], ...]] = {}
    student_at: dict[str, set[str]] = defaultdict(set)  # pid -> schools where a kept student
    for pid, p in persons.items():
        aff = tuple(a for a in p.affiliations if a[1] != GUARDIAN and a[0] in in_schools and a[1] in roles)
        kept[pid] = aff
        for school, role in aff:
            if role == STUDENT:
                student_at[pid].add(school)
    out: dict[str, DesiredPerson] = {}
    for pid, p in persons.items():
        aff = kept[pid]
        students = p.students
        if GUARDIAN in p.roles:
            students = tuple(s for s in p.students if s in student_at) if GUARDIAN in roles else ()
            followed = {school for s in students for school in student_at[s]}
            mine = {(school, GUARDIAN) for school in followed} & set(p.affiliations)
            aff = tuple(sorted({*aff, *mine}))
        if not aff:
            continue
        if aff == p.affiliations and students == p.students:
            out[pid] = p  # untouched: the same object
            continue
        out[pid] = _narrowed(p, aff, students, in_schools)
    return out


def _narrowed(
    p: DesiredPerson, aff: tuple[tuple[str, str], ...], students: tuple[str, ...], in_schools: set[str]
) -> DesiredPerson:
    """A person cut down to the affiliations ``aff``: roles, primary school, grade, studies."""
    held = {r for _, r in aff}
    roles = tuple(r for r in ALL_ROLES if r in held)
    schools = {s for s, _ in aff}
    primary = p.primary_school
    if primary not in schools:
        for pool in ((STUDENT,), EMPLOYEE_ROLES, (GUARDIAN,)):
            candidates = sorted(s for s, r in aff if r in pool)
            if candidates:
                primary = candidates[0]
                break
    studies = tuple(st for st in p.studies if st.school_id in in_schools) if STUDENT in held else ()
    grade = None
    if STUDENT in held:
        if primary == p.primary_school:
            grade = p.grade
        else:
            grades = [st.grade for st in studies if st.school_id == primary and st.grade is not None]
            grade = max(grades) if grades else None
    return replace(
        p,
        roles=roles,
        affiliations=aff,
        primary_school=primary,
        grade=grade,
        students=students,
        studies=studies,
    )


def _groups(
    groups: Mapping[str, DesiredGroup],
    persons: Mapping[str, DesiredPerson],
    in_schools: set[str],
    roles: frozenset[str],
) -> dict[str, DesiredGroup]:
    """In-scope schools' groups with only the members in the target in that role."""
    out: dict[str, DesiredGroup] = {}
    roles_of: dict[str, frozenset[str]] = {}
    for key, g in groups.items():
        if g.school_id not in in_schools:
            continue
        if (
            g.kind == SCHOOL_WIDE
            and g.school_role
            and not roles.intersection(SCHOOL_GROUP_ROLES[g.school_role])
        ):
            continue  # e.g. the guardians group of a target without guardians
        members = []
        for pid, role in g.members:
            p = persons.get(pid)
            if p is None:
                continue
            held = roles_of.get(pid)
            if held is None:
                held = roles_of[pid] = frozenset(p.roles)
            if role in held:
                members.append((pid, role))
        out[key] = g if len(members) == len(g.members) else replace(g, members=tuple(members))
    return out


def _level_groups(
    persons: Mapping[str, DesiredPerson], schools: Mapping[str, School]
) -> dict[str, DesiredGroup]:
    """One group per in-scope school and grade with pupils: the trinn."""
    pupils: dict[tuple[str, int], set[str]] = defaultdict(set)
    for pid, p in persons.items():
        if STUDENT not in p.roles:
            continue
        for st in p.studies:
            if st.grade is not None and st.school_id in schools:
                pupils[(st.school_id, st.grade)].add(pid)
    out: dict[str, DesiredGroup] = {}
    for (school, grade), pids in sorted(pupils.items()):
        members = tuple((pid, STUDENT) for pid in sorted(pids))
        key = level_group_key(school, grade)
        out[key] = _derived(key, school, LEVEL, level_name(grade), members, grade=grade)
    return out


def _owner_group(which: str, persons: Mapping[str, DesiredPerson]) -> DesiredGroup:
    """All of the owner's persons in the roles of ``which`` (students, teachers, staff)."""
    wanted = SCHOOL_GROUP_ROLES[which]
    members = tuple(sorted((pid, r) for pid, p in persons.items() for r in p.roles if r in wanted))
    return _derived(
        owner_group_key(which), "", OWNER_WIDE, OWNER_GROUP_NAMES[which], members, school_role=which
    )


def _derived(
    key: str,
    school_id: str,
    kind: str,
    name: str,
    members: tuple[tuple[str, str], ...],
    grade: int | None = None,
    school_role: str | None = None,
) -> DesiredGroup:
    """A group BAS makes itself: no subject, no dates."""
    return DesiredGroup(key, school_id, kind, name, None, grade, None, None, members, school_role)
