"""Who a patch reaches beyond the persons whose rows changed (provisioner/run/incremental.py).

Joiners and movers change their schools' school-wide groups (where they are now, and
where movers were), their groups, and the guardians of a pupil among them; a joiner
with the NIN of another SIS person, or at a school no one was at, or a school left with
no one, is left to a full plan. Read from the rows as read, before any is derived.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from provisioner.core.fetched import Fetched
from provisioner.core.model import SCHOOL_GROUP_ROLES, SourceSnapshot, school_group_key


class Reach(NamedTuple):
    """What joiners and movers change beyond themselves."""

    schools: set[str]  # where they are now (and a joining guardian's students are)
    left: set[str]  # where movers were
    wide: frozenset[str]  # the school-wide groups of both
    kin: set[str]  # the guardians of pupils among them
    groups: set[str]  # the groups of movers and of those guardians (who may be active now, or no longer)


def reach(read: Fetched, had: Iterable[str], came: frozenset[str], was: Mapping[str, Any]) -> Reach | None:
    """What the joiners and movers ``came`` (movers' rows then: ``was``) change beyond
    themselves; None when a school is no text, or they are now at one no one was at (of
    the schools the certified plan had: ``had``)."""
    schools = schools_of(read, came)
    left = schools_then(was)
    if schools is None or left is None or not schools <= set(had):
        return None
    wide = frozenset(school_group_key(s, which) for s in schools | left for which in SCHOOL_GROUP_ROLES)
    if not came:
        return Reach(schools, left, wide, set(), set())
    kin = {g.guardian_id for g in read.where("guardianships", "student_id", came)}
    groups = {m.group_id for m in read.where("memberships", "person_id", set(was) | kin)}
    return Reach(schools, left, wide, kin, groups)


def schools_then(was: Mapping[str, tuple[tuple[Any, ...], tuple[Any, ...]]]) -> set[str] | None:
    """The schools movers had an enrollment or employment at (None when one is no text)."""
    at = {r.school_id for rows in was.values() for table in rows for r in table}
    return at if all(type(s) is str and s == s.strip() for s in at) else None


def still_there(ctx: SourceSnapshot, schools: set[str]) -> bool:
    """Whether each school still has an enrollment or employment row (the context holds them all)."""
    used = {e.school_id for e in ctx.enrollments} | {e.school_id for e in ctx.employments}
    return schools <= used


def shares_a_nin(read: Fetched, joined: frozenset[str]) -> bool:
    """Whether a joiner has the NIN of another SIS person: then derivation skips one of
    them (and a holder outside the context would not be judged alike). One the historic
    base knows is found as an alias instead (when the patch derives them)."""
    if not joined:
        return False
    rows = read.person_rows()
    theirs = {_nin_text(r[1]) for r in rows if r[0] in joined} - {""}
    return bool(theirs) and any(_nin_text(r[1]) in theirs for r in rows if r[0] not in joined)


def _nin_text(value: object) -> str:
    """A NIN as derivation compares it (stripped; "" for none)."""
    return "" if value is None else str(value).strip()


def schools_of(read: Fetched, joined: frozenset[str]) -> set[str] | None:
    """The schools whose school-wide groups joiners change: where they have an enrollment
    or employment, and where their students do (a guardian who joins is a guardian there).
    None when one is no text."""
    if not joined:
        return set()
    students = {g.student_id for g in read.where("guardianships", "guardian_id", joined)}
    at = {e.school_id for e in read.where("enrollments", "person_id", joined | students)}
    at |= {e.school_id for e in read.where("employments", "person_id", joined)}
    if not all(type(s) is str and s == s.strip() for s in at):
        return None
    return at
