"""What one logged-in user may see and do, decided on the server for every request.

- Owner admins reach everything: every person, run and school, NIN search, approvals.
- School admins reach the persons affiliated with their schools (persons who left: their
  last schools), those schools' data errors, and the changelog rows of those persons;
  they lock and unlock those persons and reset the passwords of the pupils among them.
- Teachers reach the pupils of the SIS groups they teach (the directory's ``dir_members``)
  and may only reset those pupils' passwords. The teacher is found in BAS by the part of
  their user id before any ``@`` (Feide's eduPersonPrincipalName and an Entra UPN are
  ``username@realm``).

Every page and form asks here; a URL or a form post naming another school's person gets
403 whatever the page showed. The directory (provisioner/state/directory.py) is the truth
about who is at which school.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from provisioner.core.model import STUDENT
from provisioner.state import schema as t
from provisioner.state.store import StateStore
from provisioner.web.access import OWNER_ADMIN, SCHOOL_ADMIN, TEACHER
from provisioner.web.sessions import User

_NIN_SHAPED = re.compile(r"\s*[0-9]{11}\s*")


def nin_shaped(text: str) -> bool:
    """Does this look like a national identity number (11 digits)? Only owner admins look those up."""
    return _NIN_SHAPED.fullmatch(text) is not None


@dataclass(frozen=True)
class Reach:
    """One user's reach, computed per request (a school change in the SIS applies at once)."""

    user: User
    store: StateStore

    @property
    def everything(self) -> bool:
        """Owner admins: no restriction."""
        return self.user.role == OWNER_ADMIN

    @property
    def schools(self) -> tuple[str, ...] | None:
        """The schools this user administers (None: every school; () for teachers)."""
        if self.everything:
            return None
        return self.user.schools if self.user.role == SCHOOL_ADMIN else ()

    @property
    def may_search_nin(self) -> bool:
        """Only owner admins may look a person up by national identity number."""
        return self.everything

    @property
    def may_approve(self) -> bool:
        """Only owner admins approve held runs."""
        return self.everything

    def teacher_ids(self) -> set[str]:
        """The BAS person ids of a teacher user (empty for other roles or when not found).

        Matched on the username alone: a user id that happens to equal some person's SIS id
        or NIN must not make its holder that person.
        """
        if self.user.role != TEACHER:
            return set()
        username = self.user.user_id.partition("@")[0]
        return self.store.directory.by_username(username) if username else set()

    def pupils(self) -> set[str]:
        """A teacher's pupils (students of the SIS groups they teach)."""
        ids = self.teacher_ids()
        return self.store.directory.pupils_of(ids) if ids else set()

    def _ids(self, person_id: str) -> set[str]:
        if not self.may_search_nin and nin_shaped(person_id):
            # Resolving would look the number up as a NIN: the answer (seen or not) would
            # tell a school admin whether that NIN belongs to one of their persons.
            return {person_id}
        ids = self.store.identities.resolve(person_id)
        return ids | {person_id}

    def can_see(self, person_id: str) -> bool:
        """May this user open this person's page?"""
        if self.everything:
            return True
        ids = self._ids(person_id)
        if self.user.role == TEACHER:
            return bool(ids & self.pupils())
        return bool(self.store.directory.schools_of(ids) & set(self.user.schools))

    def can_lock(self, person_id: str) -> bool:
        """Owner admins and the person's school admins lock and unlock; teachers never."""
        return self.user.role != TEACHER and self.can_see(person_id)

    def can_reset_password(self, person_id: str) -> bool:
        """Owner admins: anyone; school admins: their schools' pupils; teachers: their pupils."""
        if self.everything:
            return True
        ids = self._ids(person_id)
        if self.user.role == TEACHER:
            return bool(ids & self.pupils())
        return self._student_at(ids, self.user.schools)

    def _student_at(self, ids: set[str], schools: Iterable[str]) -> bool:
        a = t.dir_affiliations.c
        q = sa.select(a.person_id).where(
            a.person_id.in_(sorted(ids)), a.school_id.in_(list(schools)), a.role == STUDENT
        )
        with self.store.engine.connect() as c:
            return c.execute(q.limit(1)).first() is not None

    def person_filter(self) -> sa.Select[Any] | None:
        """A sub-select of the person ids this user reaches (None: everyone) for other queries."""
        if self.everything:
            return None
        if self.user.role == TEACHER:
            return self.store.directory.pupils_select(self.teacher_ids())
        return self.store.directory.at_schools(self.user.schools)

    def can_see_school(self, school_id: str) -> bool:
        """May this user see this school's data errors?"""
        return self.everything or (self.user.role == SCHOOL_ADMIN and school_id in self.user.schools)
