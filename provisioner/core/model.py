"""The canonical model: what the source snapshot and the desired state are made of.

Source records are NamedTuples (immutable and cheap: an Oslo-size owner has over a
million membership rows). Dates are ISO strings ("YYYY-MM-DD"), which compare
correctly as strings and survive JSON unchanged. The desired state is derived from a
snapshot by ``provisioner.core.derive`` and is the only input the per-target mappings see.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from provisioner.core.quickinit import quick_init
from provisioner.source_config import TABLES as TABLES  # kept where config, below the core, reads it

# Roles a person can hold at a school. Guardians hold theirs through their students.
STUDENT = "student"
TEACHER = "teacher"
STAFF = "staff"
LEADER = "leader"
GUARDIAN = "guardian"
EMPLOYEE_ROLES = (TEACHER, STAFF, LEADER)
ALL_ROLES = (STUDENT, TEACHER, STAFF, LEADER, GUARDIAN)

# Group kinds. basis/teaching/contact come from the SIS; "school" groups are derived
# per school and role (all students, all teachers, all staff, all guardians). "level"
# (all pupils of a grade at a school: a trinn) and "owner" (all students, teachers or
# staff of the owner, school_id "") are added per target by provisioner.core.scope.
BASIS = "basis"
TEACHING = "teaching"
CONTACT = "contact"
SCHOOL_WIDE = "school"
LEVEL = "level"
OWNER_WIDE = "owner"
SIS_GROUP_KINDS = (BASIS, TEACHING, CONTACT)

# School-wide groups: key suffix -> member roles that belong in it.
SCHOOL_GROUP_ROLES: dict[str, tuple[str, ...]] = {
    "students": (STUDENT,),
    "teachers": (TEACHER,),
    "staff": (TEACHER, STAFF, LEADER),
    "guardians": (GUARDIAN,),
}


# Owner-wide groups: which -> member roles (as the school-wide ones), and their names.
OWNER_GROUP_NAMES: dict[str, str] = {
    "students": "Alle elever",
    "teachers": "Alle lærere",
    "staff": "Alle ansatte",
}


def school_group_key(school_id: str, which: str) -> str:
    """Stable key of a derived school-wide group, e.g. ``school:NORDBY:students``."""
    return f"school:{school_id}:{which}"


def level_group_key(school_id: str, grade: int) -> str:
    """Stable key of a level group (all pupils of a grade at a school), e.g. ``level:NORDBY:8``."""
    return f"level:{school_id}:{grade}"


def owner_group_key(which: str) -> str:
    """Stable key of an owner-wide group, e.g. ``owner:teachers``."""
    return f"owner:{which}"


def level_name(grade: int) -> str:
    """A grade as schools name it: 1-10 ``"8. trinn"``, 11-13 (upper secondary) ``"Vg1"``..``"Vg3"``."""
    return f"Vg{grade - 10}" if grade > 10 else f"{grade}. trinn"


class School(NamedTuple):
    school_id: str
    org_number: str
    name: str
    short_name: str
    level: str


class Person(NamedTuple):
    # The SIS's own id of the person (SQL person_id, PIFU sourcedid, FINT systemId): the
    # anchor of everything BAS keeps about them. ``nin`` may be None (PIFU and FINT allow
    # persons without a national identity number): such a person is keyed on this id alone.
    person_id: str
    nin: str | None
    given_name: str | None
    middle_name: str | None
    family_name: str | None
    birth_date: str | None
    email: str | None
    mobile: str | None


class StudentEnrollment(NamedTuple):
    enrollment_id: str
    person_id: str
    school_id: str
    grade: int | None
    start_date: str
    end_date: str | None
    main_school: bool
    # Upper secondary: the Grep education programme (utdanningsprogram) and programme area
    # (programområde) of this enrollment, as the SIS gives them (a Grep URI, code or uuid).
    programme: str | None = None
    programme_area: str | None = None


class Employment(NamedTuple):
    employment_id: str
    person_id: str
    school_id: str
    role: str
    start_date: str
    end_date: str | None


class Guardianship(NamedTuple):
    guardian_id: str
    student_id: str


class Group(NamedTuple):
    group_id: str
    school_id: str
    kind: str
    name: str
    subject_code: str | None
    grade: int | None
    start_date: str
    end_date: str


class GroupMembership(NamedTuple):
    group_id: str
    person_id: str
    role: str


@dataclass(frozen=True)
class SourceSnapshot:
    """Everything read from the school-admin database in one run, unvalidated."""

    schools: tuple[School, ...]
    persons: tuple[Person, ...]
    enrollments: tuple[StudentEnrollment, ...]
    employments: tuple[Employment, ...]
    guardianships: tuple[Guardianship, ...]
    groups: tuple[Group, ...]
    memberships: tuple[GroupMembership, ...]
    digests: Mapping[str, str] = field(default_factory=dict)  # per query: digest of the rows as read

    def counts(self) -> dict[str, int]:
        """Row counts per table, for logs and the sanity gate."""
        return {
            "schools": len(self.schools),
            "persons": len(self.persons),
            "enrollments": len(self.enrollments),
            "employments": len(self.employments),
            "guardianships": len(self.guardianships),
            "groups": len(self.groups),
            "memberships": len(self.memberships),
        }


@dataclass(frozen=True, slots=True)
class DataError:
    """A problem with one source record: reported, the record skipped, the run goes on."""

    kind: str  # e.g. "invalid_nin", "duplicate_nin", "missing_name", "unknown_person"
    record: str  # what it concerns: "person:1234", "group:G17", "membership:G17/1234"
    message: str
    # The school the broken row names, where the row itself says (a group, an enrollment): the
    # console shows the error to that school's office (provisioner/core/directory.py).
    school_id: str | None = None

    def to_json(self) -> dict[str, str]:
        """Plain dict for plans and reports."""
        out = {"kind": self.kind, "record": self.record, "message": self.message}
        if self.school_id is not None:
            out["school_id"] = self.school_id
        return out


class Study(NamedTuple):
    """One active enrollment of a student as the targets see it (Feide's Grep codes, level groups).

    ``programme`` and ``programme_area`` are the SIS's Grep values as given (a Grep URI,
    code or uuid), None below upper secondary or when the SIS has none.
    """

    school_id: str
    grade: int | None
    programme: str | None
    programme_area: str | None


@quick_init
@dataclass(frozen=True, slots=True)
class DesiredPerson:
    """An active person as every target should see them (before per-target mapping)."""

    person_id: str
    username: str
    nin: str | None
    given_name: str
    middle_name: str | None
    family_name: str
    display_name: str
    birth_date: str | None
    email: str | None  # private e-mail from the SIS (guardians)
    mobile: str | None
    roles: tuple[str, ...]  # distinct active roles, in ALL_ROLES order
    affiliations: tuple[tuple[str, str], ...]  # sorted (school_id, role) pairs that are active
    primary_school: str  # the school that owns the account (OU, department)
    grade: int | None  # students: grade at the primary school
    students: tuple[str, ...] = ()  # guardians: person_ids of their active students
    # students: their active enrollments, sorted and distinct (one per school, grade and
    # programme), at every school of the owner, not only the primary one
    studies: tuple[Study, ...] = ()

    @property
    def schools(self) -> tuple[str, ...]:
        """Distinct school ids the person is active at, sorted."""
        return tuple(sorted({s for s, _ in self.affiliations}))


@dataclass(frozen=True, slots=True)
class DesiredGroup:
    """A group every target that has groups should hold, with its active members."""

    key: str  # SIS group_id, or school_group_key/level_group_key/owner_group_key(...)
    school_id: str  # "" for owner-wide groups (no school)
    kind: str  # basis | teaching | contact | school | level | owner
    name: str
    subject_code: str | None
    grade: int | None
    start_date: str | None
    end_date: str | None
    members: tuple[tuple[str, str], ...]  # sorted (person_id, role) with role in ALL_ROLES
    # school-wide and owner-wide groups: students | teachers | staff | guardians
    school_role: str | None = None


@dataclass(frozen=True)
class DesiredState:
    """The result of derivation: who should exist, in which groups, as of one day."""

    as_of: str
    schools: Mapping[str, School]
    persons: Mapping[str, DesiredPerson]
    groups: Mapping[str, DesiredGroup]
    errors: tuple[DataError, ...] = ()
    new_usernames: Mapping[str, str] = field(default_factory=dict)  # person_id -> username issued now


# The one empty mapping objects without placement or links share (never mutated).
NO_VALUES: Mapping[str, Any] = {}


@quick_init
@dataclass(frozen=True, slots=True)
class TargetObject:
    """One object as a target should hold it: the output of a target mapping.

    ``attrs`` are the target's own attributes, written as they are. ``place`` says where
    the object sits (an LDAP entry's DN, an AD object's OU and cn): a change there is a
    move, not an update. ``links`` name other BAS objects by key (a group's owners, a
    guardian's students, a group's school), which the connector turns into the target's
    references. All three hold JSON-able values only (str, int, bool, None, lists of str,
    sorted where order carries no meaning) and use distinct names, so ``record()`` (what
    the state store keeps, hashes and diffs) is one flat mapping of them. ``members`` is
    set for groups: sorted (person_id, target role) pairs; the role is a target's own
    vocabulary (itslearning "01"/"02", "" where the target has none).
    """

    kind: str  # person | group | org | orgunit
    key: str
    attrs: Mapping[str, Any]
    members: tuple[tuple[str, str], ...] | None = None
    username: str | None = None
    person_id: str | None = None  # the SIS person behind a person object
    place: Mapping[str, Any] = field(default_factory=lambda: NO_VALUES)
    links: Mapping[str, Any] = field(default_factory=lambda: NO_VALUES)

    def record(self) -> Mapping[str, Any]:
        """Attributes, placement and links as one mapping (``attrs`` itself when there are no others)."""
        return record_of(self.attrs, self.place, self.links)


def split_record(
    record: Mapping[str, Any], placement: frozenset[str], links: frozenset[str]
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A stored flat record back into (attrs, place, links), by a kind's place and link names."""
    attrs: dict[str, Any] = {}
    place: dict[str, Any] = {}
    linked: dict[str, Any] = {}
    for k, v in record.items():
        (place if k in placement else linked if k in links else attrs)[k] = v
    return attrs, place, linked


def record_of(
    attrs: Mapping[str, Any], place: Mapping[str, Any], links: Mapping[str, Any]
) -> Mapping[str, Any]:
    """The flat mapping the state store keeps for an object or a change (no copy when only attrs)."""
    if not place and not links:
        return attrs
    return {**attrs, **place, **links}
