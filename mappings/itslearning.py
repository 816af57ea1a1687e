"""The itslearning mapping: the desired state as IMS Enterprise 1.1 objects.

Owns what itslearning gets (SPEC "Roles and who goes where"): every active person,
guardians included, with name, username, e-mail and role; the owner and its schools as
the group hierarchy; every group with its members and IMS membership roles. It decides
the IMS ``sourcedid`` of every object (``attrs["sourcedid"]``), so the connector only
writes what it is given. Pure: no I/O.

Objects and attributes
----------------------
- ``org`` (key ``"org"``): sourcedid ``org:<org number>``, name, org_number,
  grouptype ``Skoleeier``. The root of the hierarchy (no parent).
- ``orgunit`` (key = school_id): sourcedid ``school:<school_id>``, name, short,
  org_number, grouptype ``Skole``; its parent is the org.
- ``person`` (key = person_id): sourcedid, userid, given, family, fn, email,
  institutionrole; guardians also ``students`` (in ``links``).
- ``group`` (key = DesiredGroup.key, which is also its sourcedid): sourcedid, name,
  grouptype, subject_code, start, end; ``school`` (in ``links``: school_id of the parent
  org unit).

Prefixing the org and school sourcedids keeps them apart from SIS group ids, which come
from another table and may well be the same strings; school-wide group keys are already
``school:<id>:<which>`` and cannot clash with ``school:<id>``.

Decisions
---------
- sourcedid: the SIS person_id; with ``nin_as_sourcedid`` the NIN, but only for persons
  that have one (a person without a NIN, typically a guardian, keeps the person_id).
  The NIN then appears nowhere else. Note that a NIN change (D-number replaced by a
  fødselsnummer) then changes the sourcedid: the connector writes it as Old/New.
- institutionrole (the itslearning profile): ``Staff`` for anyone employed (teacher,
  staff, leader), even if also a student, because the account must work for the job
  (their classes still carry them as Learner); ``Student`` for students; ``Guest`` for
  persons who are only guardians. SPEC says "Guest/guardian": the IMS 1.1 enumeration
  has no Guardian value, and Guest is itslearning's default guardian profile.
- given/family: ``given`` is given name plus middle name, so that itslearning's
  "first last" equals the display name and sorting is by family name.
- email: ``username@<mail domain of their main role>`` (``[owner] role_domains``, else
  ``mail_domain``; ``mappings.common.AccountDomains``) for students and employees; for
  persons who are only guardians their private e-mail from the SIS, or None.
- students (guardians): sorted person_ids of their active students in this target; the
  connector writes them as parent/child links (itslearning relation "Child").
- Data minimisation: no birth date, no mobile, no NIN except as sourcedid.
- Membership roles (IMS roletype): student ``01`` Learner, teacher ``02`` Instructor,
  leader ``02`` Instructor (no Manager/Administrator rights by import), staff ``04``
  Member, guardian ``06`` Mentor (IMS/LTI's role for a person who follows a learner,
  with no teaching rights). A person holding several roles in one group gets the
  strongest: 02 > 04 > 06 > 01. Members not among this target's persons are left out.
- grouptype: basis ``Basisgruppe``, teaching ``Undervisningsgruppe``, contact
  ``Kontaktlærergruppe``, school-wide ``Skolegruppe``, level (a target's trinn groups)
  ``Trinngruppe``, owner-wide ``Skoleeiergruppe``.
- A group's parent (``links["school"]``) is its school; an owner-wide group has none
  (None), so the connector places it under the owner.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from mappings.base import MappingContext, wanted_sorted
from mappings.common import AccountDomains, main_role
from provisioner.config import OwnerConfig
from provisioner.core.model import (
    BASIS,
    CONTACT,
    EMPLOYEE_ROLES,
    GUARDIAN,
    LEADER,
    LEVEL,
    OWNER_WIDE,
    SCHOOL_WIDE,
    STAFF,
    STUDENT,
    TEACHER,
    TEACHING,
    DesiredGroup,
    DesiredPerson,
    DesiredState,
    TargetObject,
)

PLACEMENT_ATTRS: frozenset[str] = frozenset()
# Keys of other objects (TargetObject.links): a guardian's students, a group's school.
LINK_ATTRS: frozenset[str] = frozenset({"students", "school"})

ORG_KEY = "org"

# IMS Enterprise 1.1 institutionroletype values (itslearning profiles).
ROLE_STUDENT = "Student"
ROLE_STAFF = "Staff"
ROLE_GUARDIAN = "Guest"

# IMS membership roletype per BAS role, and which wins when a person holds several.
MEMBER_ROLE: Mapping[str, str] = {
    STUDENT: "01",
    TEACHER: "02",
    LEADER: "02",
    STAFF: "04",
    GUARDIAN: "06",
}
_ROLE_RANK = {"02": 0, "04": 1, "06": 2, "01": 3}

GROUPTYPE_ORG = "Skoleeier"
GROUPTYPE_SCHOOL = "Skole"
GROUPTYPE: Mapping[str, str] = {
    BASIS: "Basisgruppe",
    TEACHING: "Undervisningsgruppe",
    CONTACT: "Kontaktlærergruppe",
    SCHOOL_WIDE: "Skolegruppe",
    LEVEL: "Trinngruppe",
    OWNER_WIDE: "Skoleeiergruppe",
}


def org_sourcedid(owner: OwnerConfig) -> str:
    """The IMS sourcedid of the school owner (the hierarchy root)."""
    return f"org:{owner.org_number}"


def school_sourcedid(school_id: str) -> str:
    """The IMS sourcedid of a school (an org unit under the owner)."""
    return f"school:{school_id}"


def map_state(state: DesiredState, ctx: MappingContext) -> Iterator[TargetObject]:
    """Every itslearning object for the desired state: org, schools, persons, groups."""
    owner = ctx.owner
    yield TargetObject(
        kind="org",
        key=ORG_KEY,
        attrs={
            "sourcedid": org_sourcedid(owner),
            "name": owner.name,
            "org_number": owner.org_number,
            "grouptype": GROUPTYPE_ORG,
        },
    )
    for school_id in sorted(state.schools):
        school = state.schools[school_id]
        yield TargetObject(
            kind="orgunit",
            key=school_id,
            attrs={
                "sourcedid": school_sourcedid(school_id),
                "name": school.name,
                "short": school.short_name,
                "org_number": school.org_number,
                "grouptype": GROUPTYPE_SCHOOL,
            },
        )

    nin_as_sourcedid = ctx.target.nin_as_sourcedid  # ctx.target is this kind's ItslearningConfig
    persons = state.persons
    domains = AccountDomains.of(owner)
    for pid in wanted_sorted(persons, ctx):
        yield _person(persons[pid], persons, domains, nin_as_sourcedid)
    for key in wanted_sorted(state.groups, ctx):
        yield _group(state.groups[key], persons)


def institution_role(person: DesiredPerson) -> str:
    """The itslearning profile of a person: Staff beats Student beats Guest."""
    roles = person.roles
    if any(r in EMPLOYEE_ROLES for r in roles):
        return ROLE_STAFF
    if STUDENT in roles:
        return ROLE_STUDENT
    return ROLE_GUARDIAN


def _person(
    p: DesiredPerson, persons: Mapping[str, DesiredPerson], domains: AccountDomains, nin_as_sourcedid: bool
) -> TargetObject:
    role = institution_role(p)
    # Only a person with a school account gets the school address; a pure guardian
    # has none, so itslearning gets the private address the SIS holds (or nothing).
    email = f"{p.username}@{domains.mail(main_role(p))}" if role != ROLE_GUARDIAN else (p.email or None)
    given = f"{p.given_name} {p.middle_name}" if p.middle_name else p.given_name
    attrs: dict[str, Any] = {
        "sourcedid": p.nin if nin_as_sourcedid and p.nin else p.person_id,
        "userid": p.username,
        "given": given,
        "family": p.family_name,
        "fn": p.display_name,
        "email": email,
        "institutionrole": role,
    }
    links = {"students": sorted(s for s in p.students if s in persons)} if GUARDIAN in p.roles else {}
    return TargetObject(
        kind="person", key=p.person_id, attrs=attrs, username=p.username, person_id=p.person_id, links=links
    )


def _group(g: DesiredGroup, persons: Mapping[str, DesiredPerson]) -> TargetObject:
    best: dict[str, str] = {}
    for pid, role in g.members:
        if pid not in persons:
            continue
        ims = MEMBER_ROLE[role]
        old = best.get(pid)
        if old is None or _ROLE_RANK[ims] < _ROLE_RANK[old]:
            best[pid] = ims
    return TargetObject(
        kind="group",
        key=g.key,
        attrs={
            "sourcedid": g.key,
            "name": g.name,
            "grouptype": GROUPTYPE[g.kind],
            "subject_code": g.subject_code,
            "start": g.start_date,
            "end": g.end_date,
        },
        members=tuple(sorted(best.items())),
        links={"school": g.school_id or None},
    )
