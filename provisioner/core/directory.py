"""The web console's directory: who is at which school and in which teaching group, as values.

Derived from one run's derivation and written to the state store by
provisioner/state/directory.py (tables ``dir_*``), so the console can answer "may this
school admin see this person?" and "is this pupil in this teacher's groups?" without
reading the source. Each person and group row carries a digest: a run rewrites only the
rows whose digest changed. Only the SIS's own groups (basis, teaching, contact) are kept:
the school-wide and owner-wide groups say nothing a person's affiliations do not.

Data errors are placed at a school here (``error_rows``) so each school office sees its
own: a person's error at the person's schools, a group's or membership's at the group's
school, a guardianship's at the pupil's schools, a school row's at that school; anything
else (enrollments and employments name no school in their record, local persons) at no
school ("", the owner's admins only).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from provisioner.core.jsontext import canonical
from provisioner.core.model import SIS_GROUP_KINDS, DataError, DesiredGroup, DesiredPerson
from provisioner.core.quickinit import quick_init


def fold(text: str) -> str:
    """Text as search compares it: case-folded, spaces collapsed (æ, ø and å kept as they are)."""
    return " ".join(text.casefold().split())


def _digest(value: object) -> str:
    raw = canonical(value)
    return hashlib.blake2b(raw.encode(), digest_size=12).hexdigest()


@quick_init
@dataclass(frozen=True, slots=True)
class PersonRow:
    """One person as the console lists them; ``active`` False once they left (kept, findable)."""

    person_id: str
    username: str
    display_name: str
    roles: str  # comma-separated, ALL_ROLES order
    schools: str  # comma-separated school ids
    active: bool
    affiliations: tuple[tuple[str, str], ...]  # (school_id, role)

    @property
    def key(self) -> str:
        """The row's key in the directory, as a GroupRow's."""
        return self.person_id

    @property
    def search(self) -> str:
        """What a name or username search matches against."""
        return fold(f"{self.display_name} {self.username}")

    @property
    def digest(self) -> str:
        """Changes whenever anything the console shows or checks changes."""
        return _digest([self.username, self.display_name, self.roles, self.active, self.affiliations])


@dataclass(frozen=True, slots=True)
class GroupRow:
    """One SIS group (basis, teaching or contact) and its active members."""

    key: str
    school_id: str
    name: str
    kind: str
    members: tuple[tuple[str, str], ...]  # (person_id, role)

    @property
    def digest(self) -> str:
        """Changes whenever the group's name, school or members change."""
        return _digest([self.school_id, self.name, self.kind, self.members])


@dataclass(frozen=True, slots=True)
class ErrorRow:
    """One data error, placed at one school ("" when no school is known)."""

    school_id: str
    kind: str
    record: str
    message: str
    person_id: str | None


def person_rows(persons: Mapping[str, DesiredPerson]) -> Iterator[PersonRow]:
    """The active persons' rows."""
    for p in persons.values():
        yield PersonRow(
            p.person_id,
            p.username,
            p.display_name,
            ",".join(p.roles),
            ",".join(p.schools),
            True,
            p.affiliations,
        )


def group_rows(groups: Mapping[str, DesiredGroup]) -> Iterator[GroupRow]:
    """The SIS groups' rows (school-, level- and owner-wide groups left out)."""
    for g in groups.values():
        if g.kind in SIS_GROUP_KINDS:
            yield GroupRow(g.key, g.school_id, g.name, g.kind, g.members)


def error_rows(
    errors: Iterable[DataError],
    schools_of_person: Callable[[str], Iterable[str]],
    school_of_group: Callable[[str], str | None],
) -> list[ErrorRow]:
    """Each error at every school it concerns (see the module docstring), in input order."""
    out: list[ErrorRow] = []
    for e in errors:
        table, _, ident = e.record.partition(":")
        person: str | None = None
        schools: list[str] = []
        if table == "person":
            person = ident
            schools = sorted(set(schools_of_person(ident)))
        elif table in ("group", "membership"):
            gid, _, member = ident.partition("/")
            school = school_of_group(gid)
            schools = [school] if school else []
            person = member or None
        elif table == "guardianship":
            _, _, student = ident.partition("/")
            schools = sorted(set(schools_of_person(student)))
        elif table == "school" and ident:
            schools = [ident]  # a broken school row: that school's office fixes it
        if not schools and e.school_id:
            schools = [e.school_id]  # the row names its school (a group never stored, an enrollment)
        for s in schools or [""]:
            out.append(ErrorRow(s, e.kind, e.record, e.message, person))
    return out
