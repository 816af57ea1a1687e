"""Local persons: people the admin keeps in BAS itself, merged into the source snapshot.

Substitutes, external staff and persons with protected identity (skjermet identitet,
whose real data must not come from the SIS) are kept in the state store
(provisioner/state/local.py) and enter a run as ordinary Person + Employment rows,
with ids no SIS id can take (``local:<n>``). This module owns the rules (ids, roles,
the end-date rule, the record checks) and the merge; it is pure.

The merge comes after the source gate has counted the SIS tables (a local row must not
mask an empty SIS table) and its digest joins the source digests the plan certificate
checks (a local change must not be hidden by a certified quiet run).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from provisioner.core import nin as nin_rules
from provisioner.core.model import EMPLOYEE_ROLES, DataError, Employment, Person, SourceSnapshot

LOCAL_PREFIX = "local:"
# Students are not local persons: a pupil needs classes, teaching groups and guardians,
# which only the SIS has (a pupil with protected identity is registered in the SIS with
# its protection marker). Local persons are employees and externals.
LOCAL_ROLES = EMPLOYEE_ROLES
# The end date is required, not in the past, and at most this many days ahead: a local
# person is re-confirmed at least once a year (`bas local set --end` extends).
MAX_DAYS_AHEAD = 366
LOCAL_FIELDS = (
    "given_name",
    "middle_name",
    "family_name",
    "nin",
    "protected",
    "school_id",
    "role",
    "start_date",
    "end_date",
    "email",
    "mobile",
    "ref",
    "note",
)


@dataclass(frozen=True, slots=True)
class LocalPerson:
    """One local person as the state store keeps it (``local_id`` gives ``local:<n>``)."""

    local_id: int
    given_name: str
    middle_name: str | None
    family_name: str
    nin: str | None
    protected: bool  # skjermet identitet: the NIN never leaves the local record
    school_id: str
    role: str
    start_date: str
    end_date: str
    email: str | None = None
    mobile: str | None = None
    ref: str | None = None  # the admin's own key (the CSV import matches on it)
    note: str | None = None

    @property
    def person_id(self) -> str:
        """The person id this record has in every run: ``local:<n>``."""
        return local_person_id(self.local_id)

    def values(self) -> dict[str, Any]:
        """The editable fields, as the audit and `bas local list` show them."""
        return {k: getattr(self, k) for k in LOCAL_FIELDS}


def local_person_id(local_id: int) -> str:
    """``local:<n>``: the id of a local person in snapshots, identities and targets."""
    return f"{LOCAL_PREFIX}{local_id}"


def is_local(person_id: str | None) -> bool:
    """True for a local person's id."""
    return bool(person_id) and str(person_id).startswith(LOCAL_PREFIX)


def check_end(end: str, today: str, *, start: str | None = None) -> str | None:
    """Why ``end`` is not an acceptable end date on ``today`` (None when it is).

    The rule: required, a real day, not before today (nor before ``start``), and at most
    MAX_DAYS_AHEAD days after today.
    """
    try:
        day = dt.date.fromisoformat(end)
    except (TypeError, ValueError):
        return f"end date {end!r} is not a day YYYY-MM-DD"
    now = dt.date.fromisoformat(today)
    if day < now:
        return f"end date {end} is in the past"
    if day > now + dt.timedelta(days=MAX_DAYS_AHEAD):
        latest = now + dt.timedelta(days=MAX_DAYS_AHEAD)
        return f"end date {end} is more than {MAX_DAYS_AHEAD} days ahead (at most {latest})"
    if start is not None and end < start:
        return f"end date {end} is before the start date {start}"
    return None


def check_record(values: Mapping[str, Any], schools: Iterable[str] | None = None) -> str | None:
    """Why a local record's fields are not acceptable (None when they are); dates aside.

    ``schools``: the school ids the source knows (None: not checked here).
    """
    for k in ("given_name", "family_name"):
        text = (values.get(k) or "").strip()
        if not text:
            return f"{k} is required"
        if text[0] in "=+-@\t\r":  # a name a spreadsheet would run as a formula is a typo
            return f"{k} {text!r} cannot start with {text[0]!r}"
    role = values.get("role")
    if role not in LOCAL_ROLES:
        return f"role {role!r} is not one of {', '.join(LOCAL_ROLES)}"
    school = values.get("school_id")
    if not school:
        return "school is required"
    if schools is not None and school not in set(schools):
        return f"school {school!r} is not a school in the source"
    nin = values.get("nin")
    if nin and not nin_rules.is_valid(nin):
        return "the NIN is not valid (11 digits, two check digits)"
    start = values.get("start_date")
    try:
        dt.date.fromisoformat(start or "")
    except ValueError:
        return f"start date {start!r} is not a day YYYY-MM-DD"
    return None


def merge(
    snap: SourceSnapshot, persons: Sequence[LocalPerson]
) -> tuple[SourceSnapshot, tuple[DataError, ...]]:
    """The snapshot with the local persons added as Person + Employment rows, and what was refused.

    A protected person's NIN is never put in the snapshot (no target, no identity record
    gets it). A local record is left out, with a data error naming it, when the SIS holds
    its id (a SIS id "local:..."), when its NIN belongs to a SIS person (the SIS record
    rules: two records for one NIN would freeze both), or when its school is not in the
    source. The digests are the SIS's own: the caller adds the local digest.
    """
    if not persons:
        return snap, ()  # most owners, most runs: no set of an Oslo-size SIS's ids is built
    sis_ids = {p.person_id for p in snap.persons}
    sis_nins = {p.nin for p in snap.persons if p.nin}
    schools = {s.school_id for s in snap.schools}
    people: list[Person] = []
    jobs: list[Employment] = []
    errors: list[DataError] = []
    for lp in persons:
        pid = lp.person_id
        record = f"local person {pid}"
        why = None
        if pid in sis_ids:
            why = f"the SIS has a person with the id {pid}"
        elif lp.nin and not lp.protected and lp.nin in sis_nins:
            why = "a SIS person has the same NIN: the SIS record rules (end this local record)"
        elif lp.school_id not in schools:
            why = f"school {lp.school_id!r} is not in the source"
        if why:
            errors.append(DataError("local_person", record, f"{record} left out: {why}"))
            continue
        people.append(
            Person(
                pid,
                None if lp.protected else lp.nin,
                lp.given_name,
                lp.middle_name,
                lp.family_name,
                None,
                lp.email,
                lp.mobile,
            )
        )
        jobs.append(Employment(pid, pid, lp.school_id, lp.role, lp.start_date, lp.end_date))
    merged = replace(
        snap,
        persons=snap.persons + tuple(people),
        employments=snap.employments + tuple(jobs),
    )
    return merged, tuple(errors)


def local_digest(persons: Sequence[LocalPerson], locks: Iterable[Mapping[str, Any]]) -> str:
    """Digest of every local record and lock a plan depends on (joins the source digests)."""
    material = {
        "persons": [lp.values() | {"local_id": lp.local_id} for lp in persons],
        "locks": sorted(json.dumps(dict(x), sort_keys=True, default=str) for x in locks),
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:32]


def check_values(values: Mapping[str, Any], today: str, before: LocalPerson | None = None) -> str | None:
    """Why adding (``before`` None) or changing a local person so is refused (None: accepted).

    The end date is required. Added or extended, it follows ``check_end`` (not in the
    past, at most MAX_DAYS_AHEAD days ahead); brought forward (the person leaves
    sooner, `bas local end`), it may be any day from the start date on.
    """
    merged = {**(before.values() if before else {}), **values}
    why = check_record(merged)
    if why:
        return why
    end, start = merged.get("end_date"), merged["start_date"]
    if not end:
        return "an end date is required"
    if before is None or end > before.end_date:
        return check_end(end, today, start=start)
    if end < start:
        return f"end date {end} is before the start date {start}"
    return None


def changed_values(before: LocalPerson, values: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``values`` that differ from ``before``."""
    old = before.values()
    return {k: v for k, v in values.items() if k in old and old[k] != v}
