"""Fingerprints of each person's enrollment and employment rows: who left, came back or moved.

A pupil who leaves gets an end date on their enrollment row; a teacher who changes
school gets another school on theirs. Nothing else in the SIS changes for them. The plan
made from the previous inputs (the certified one) is then right for every object but
theirs, their guardians', their groups' and their schools' school-wide groups', so a run
need not derive, map and diff the whole owner (provisioner/run/incremental.py patches
it). This module holds the pure parts of finding them: the membership fingerprints of
provisioner.core.memberships, kept per person id instead of per group id, over each
person's enrollment and employment records as (person id, table, *record), in the order
read (``changed``; ``changed_among`` when only joiners can have changed: their rows
alone). So a later run can tell not only who changed, but what their rows were before:
the schools they were at (whose school-wide groups they leave) and whether they were
active (the gate's count).

Records, not the rows as read: a driver's date is what the record holds as ISO text,
so the kept rows are JSON, and make the same records again (``before``).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from provisioner.core.fetched import Fetched
from provisioner.core.memberships import GroupPrints, changed_groups
from provisioner.core.memberships import changed_among as changed_among_groups
from provisioner.core.model import Employment, StudentEnrollment

Row = tuple[Any, ...]  # (person id, table, *the record's fields)
_MODELS: dict[str, Any] = {"enrollments": StudentEnrollment, "employments": Employment}
TABLES = tuple(_MODELS)


def rows_of(read: Fetched) -> list[Row]:
    """Every enrollment and employment of one read, keyed by the person it names."""
    return [(r.person_id, table, *r) for table in TABLES for r in read.table(table)]


def prints_of(read: Fetched) -> GroupPrints | None:
    """The fingerprints of one read's enrollments and employments (None: never patched for them)."""
    return GroupPrints.of(rows_of(read))


@dataclass(frozen=True)
class Changed:
    """The persons whose enrollment or employment rows changed since a GroupPrints was made."""

    persons: frozenset[str]  # ids whose rows came, went or differ
    before: Mapping[str, tuple[tuple[Any, ...], tuple[Any, ...]]]  # their (enrollments, employments) then
    prints: GroupPrints  # the rows' fingerprints now


def changed(before: GroupPrints, read: Fetched, limit: int) -> Changed | None:
    """Who changed since ``before``, with their records then; None when more than ``limit``
    did, or the rows give no fingerprints (a person id that is no text, a value JSON
    cannot write)."""
    found = changed_groups(before, rows_of(read), limit)
    if found is None:
        return None
    return Changed(found.groups, {p: records(found.was.get(p, ())) for p in found.groups}, found.prints)


def changed_among(before: GroupPrints, read: Fetched, persons: Collection[str], limit: int) -> Changed | None:
    """What ``changed`` finds, when the caller proved that only ``persons`` can have changed
    (each table without their rows is the table as it was: they joined): only their rows
    are made records and fingerprinted, not every person's."""
    rows = [(r.person_id, table, *r) for table in TABLES for r in read.where(table, "person_id", persons)]
    count = sum(read.count(table) for table in TABLES)
    found = changed_among_groups(before, rows, persons, count, limit)
    if found is None:
        return None
    return Changed(found.groups, {p: records(found.was.get(p, ())) for p in found.groups}, found.prints)


def records(rows: Iterable[Row]) -> tuple[tuple[Any, ...], tuple[Any, ...]]:
    """Kept rows as the records they were made of: (enrollments, employments)."""
    out: dict[str, list[Any]] = {table: [] for table in TABLES}
    for r in rows:
        out[r[1]].append(_MODELS[r[1]](*r[2:]))
    return tuple(out["enrollments"]), tuple(out["employments"])
