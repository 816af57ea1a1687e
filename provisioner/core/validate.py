"""Validating a source snapshot before derivation: every value checked, nothing ever raised.

SPEC "Safety": broken data never removes anyone. ``check_rows`` looks at each row on its
own: ids present and text, text that is valid UTF-8, dates that are ISO dates
(``YYYY-MM-DD``, a real day), integers where integers belong, codes (employment role,
group kind, membership role) trimmed and case-folded before they are checked, periods
with a start and no end before it, and school and group ids that are unique.
``check_references`` runs once persons are checked: enrollments, employments and
guardianships that name an unknown person or school.

A broken row is a DataError naming the record and the column, and is dropped. What it
is about is *frozen* (the differ leaves its accounts exactly as they are): the person of
a person, enrollment or employment row, the guardian of a guardianship, the group of a
group or membership row, and for a broken school everything at it. Clean data takes
column-wise fast paths: a column whose values all have the right type and form is not
looked at row by row (an Oslo-size owner has over a million membership rows).
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, NamedTuple

from provisioner.core import nin
from provisioner.core.model import (
    EMPLOYEE_ROLES,
    SCHOOL_GROUP_ROLES,
    SIS_GROUP_KINDS,
    STUDENT,
    TEACHER,
    DataError,
    Person,
    School,
    SourceSnapshot,
    school_group_key,
)

__all__ = ["Broken", "check_references", "check_rows"]


class Kind(enum.Enum):
    """What a column must hold."""

    ID = "id"  # non-blank text: a key other rows refer to
    TEXT = "text"  # non-blank text
    OPT_TEXT = "optional text"
    OPT_DATE = "optional date"  # ISO date or NULL (a missing start is a bad period, not a bad date)
    OPT_INT = "optional integer"
    BOOL = "boolean"
    CODE = "code"  # one of a few words, after trimming and case-folding


class _About(enum.Enum):
    """What a broken row freezes."""

    PERSON = "person"
    GROUP = "group"
    SCHOOL = "school"


@dataclass(frozen=True)
class _Table:
    record: str  # record prefix in a DataError: "enrollment" -> "enrollment:E17"
    ids: tuple[str, ...]  # fields that name the record
    about: _About
    about_field: str  # the field holding the id of what a broken row freezes
    columns: Mapping[str, Kind]
    codes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # CODE column -> allowed values
    period: bool = False  # has start_date and end_date


_ID, _TEXT, _OPT, _DATE, _INT = Kind.ID, Kind.TEXT, Kind.OPT_TEXT, Kind.OPT_DATE, Kind.OPT_INT
_TABLES: dict[str, _Table] = {
    "schools": _Table(
        "school",
        ("school_id",),
        _About.SCHOOL,
        "school_id",
        {"school_id": _ID, "org_number": _ID, "name": _TEXT, "short_name": _TEXT, "level": _TEXT},
    ),
    "persons": _Table(
        "person",
        ("person_id",),
        _About.PERSON,
        "person_id",
        # Missing names and invalid NINs are judged with the person (derive._check_persons).
        {"person_id": _ID, "nin": _OPT, "given_name": _OPT, "middle_name": _OPT, "family_name": _OPT}
        | {"birth_date": _DATE, "email": _OPT, "mobile": _OPT},
    ),
    "enrollments": _Table(
        "enrollment",
        ("enrollment_id",),
        _About.PERSON,
        "person_id",
        {"enrollment_id": _ID, "person_id": _ID, "school_id": _ID, "grade": _INT}
        | {"start_date": _DATE, "end_date": _DATE, "main_school": Kind.BOOL}
        | {"programme": _OPT, "programme_area": _OPT},
        period=True,
    ),
    "employments": _Table(
        "employment",
        ("employment_id",),
        _About.PERSON,
        "person_id",
        {"employment_id": _ID, "person_id": _ID, "school_id": _ID, "role": Kind.CODE}
        | {"start_date": _DATE, "end_date": _DATE},
        codes={"role": EMPLOYEE_ROLES},
        period=True,
    ),
    "guardianships": _Table(
        "guardianship",
        ("guardian_id", "student_id"),
        _About.PERSON,
        "guardian_id",
        {"guardian_id": _ID, "student_id": _ID},
    ),
    "groups": _Table(
        "group",
        ("group_id",),
        _About.GROUP,
        "group_id",
        # A missing name or subject code is judged with the group (derive._derive_groups);
        # an override may give open-ended groups (no end date).
        {"group_id": _ID, "school_id": _ID, "kind": Kind.CODE, "name": _OPT, "subject_code": _OPT}
        | {"grade": _INT, "start_date": _DATE, "end_date": _DATE},
        codes={"kind": SIS_GROUP_KINDS},
        period=True,
    ),
    "memberships": _Table(
        "membership",
        ("group_id", "person_id"),
        _About.GROUP,
        "group_id",
        {"group_id": _ID, "person_id": _ID, "role": Kind.CODE},
        codes={"role": (STUDENT, TEACHER)},
    ),
}

_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")  # NUL, or bytes that were not UTF-8 (lone surrogates)
_STR = frozenset({str})
_STR_NONE = frozenset({str, type(None)})
_INT_NONE = frozenset({int, type(None)})
_BOOL = frozenset({bool})


@dataclass
class Broken:
    """What the broken rows are about: SIS ids to freeze, and the broken schools."""

    persons: set[str] = field(default_factory=set)  # SIS person ids (not yet canonical)
    person_rows: set[str] = field(default_factory=set)  # ids of broken person rows: not unknown persons
    groups: set[str] = field(default_factory=set)  # group ids, school-wide group keys, school ids
    schools: set[str] = field(default_factory=set)


class _Problem(NamedTuple):
    kind: str  # DataError kind
    column: str
    text: str


# -- one value ------------------------------------------------------------------------------


def show(value: Any) -> str:
    """A value for a message: printable whatever it is, short, NIN-like digits masked."""
    if isinstance(value, str) and not _BAD_TEXT.search(value):
        text = value
    else:
        text = ascii(value) if isinstance(value, str) else repr(value)
    text = text if len(text) <= 40 else text[:37] + "..."
    return nin.mask_text(text)


def is_iso_date(value: str) -> bool:
    """True for an ISO calendar date ``YYYY-MM-DD`` that exists (2025-02-30 does not)."""
    if not _ISO_DATE.fullmatch(value):
        return False
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _text_problem(value: Any, *, required: bool) -> tuple[str, str] | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return ("missing_value", "is empty") if required else None
    if not isinstance(value, str):
        return "bad_value", f"is not text ({type(value).__name__} {show(value)})"
    if _BAD_TEXT.search(value):
        return "bad_text", f"is not valid UTF-8 text ({show(value)})"
    return None


def _problem(kind: Kind, value: Any, codes: tuple[str, ...]) -> tuple[str, str] | None:
    """What is wrong with one value of a column of this kind, or None."""
    if kind in (Kind.ID, Kind.TEXT, Kind.OPT_TEXT):
        return _text_problem(value, required=kind is not Kind.OPT_TEXT)
    if kind is Kind.OPT_DATE:
        if value is None:
            return None
        if isinstance(value, str) and is_iso_date(value):
            return None
        return "bad_date", f"{show(value)} is not an ISO date (YYYY-MM-DD)"
    if kind is Kind.OPT_INT:
        if value is None or type(value) is int:
            return None
        return "bad_value", f"{show(value)} is not a whole number"
    if kind is Kind.BOOL:
        return None if type(value) is bool else ("bad_value", f"{show(value)} is not true or false")
    # Kind.CODE: the caller has already normalised every value it could
    if value in codes:
        return None
    if value is None or (isinstance(value, str) and not value.strip()):
        return "missing_value", "is empty"
    return "bad_code", f"{show(value)} is not one of {list(codes)}"


def _code(value: Any) -> Any:
    """A code as compared: trimmed and case-folded ("Teacher " is teacher)."""
    return value.strip().casefold() if isinstance(value, str) else value


# -- one column -----------------------------------------------------------------------------


def _clean_texts(values: Iterable[str]) -> bool:
    joined = "".join(values)
    return joined.isascii() and "\x00" not in joined or not _BAD_TEXT.search(joined)


def _column_ok(kind: Kind, col: tuple[Any, ...]) -> bool:
    """Fast path: True when every value is fine (False only means "look row by row")."""
    types = set(map(type, col))
    if kind in (Kind.ID, Kind.TEXT):
        return types <= _STR and all(map(str.strip, col)) and _clean_texts(col)
    if kind is Kind.OPT_TEXT:
        return types <= _STR_NONE and _clean_texts(filter(None, col))
    if kind is Kind.OPT_DATE:
        return types <= _STR_NONE and all(map(is_iso_date, set(col) - {None}))
    if kind is Kind.OPT_INT:
        return types <= _INT_NONE
    if kind is Kind.BOOL:
        return types <= _BOOL
    return False  # codes: see _codes


def _codes(col: tuple[Any, ...], allowed: tuple[str, ...]) -> tuple[dict[Any, Any], bool]:
    """Distinct value -> value as compared; and whether every value is already exactly allowed."""
    distinct = set(col)
    if distinct <= set(allowed):
        return {}, True
    return {v: _code(v) for v in distinct}, False


# -- one table ------------------------------------------------------------------------------


def _record(spec: _Table, row: Any) -> str:
    return f"{spec.record}:" + "/".join(show(getattr(row, f)) for f in spec.ids)


def _period_problem(start: str | None, end: str | None) -> _Problem | None:
    if start is None:
        return _Problem("bad_period", "start_date", "is empty: the period has no start")
    if end is not None and end < start:
        return _Problem("bad_period", "end_date", f"{end} is before start_date {start}")
    return None


def _check_table(name: str, rows: tuple[Any, ...]) -> tuple[tuple[Any, ...], dict[int, _Problem]]:
    """The table with codes normalised, and the problem of each broken row by index."""
    spec = _TABLES[name]
    if not rows:
        return rows, {}
    fields: tuple[str, ...] = rows[0]._fields
    bad: dict[int, _Problem] = {}
    fixes: dict[int, dict[str, Any]] = {}
    for i, fname in enumerate(fields):
        kind, col = spec.columns[fname], tuple(map(itemgetter(i), rows))  # zip(*rows) is 5x slower
        allowed = spec.codes.get(fname, ())
        if kind is Kind.CODE:
            norm, ok = _codes(col, allowed)
            if ok:
                continue
            for r, v in enumerate(col):
                if norm[v] != v or norm[v] not in allowed:
                    fixes.setdefault(r, {})[fname] = norm[v]
            col = tuple(norm[v] for v in col)
        elif _column_ok(kind, col):
            continue
        for r, v in enumerate(col):
            if r not in bad and (p := _problem(kind, v, allowed)) is not None:
                # a code error is named for its column: bad_role, bad_kind
                bad[r] = _Problem(f"bad_{fname}" if p[0] == "bad_code" else p[0], fname, p[1])
    if spec.period:
        s, e = fields.index("start_date"), fields.index("end_date")
        for r, row in enumerate(rows):
            if r not in bad and (pp := _period_problem(row[s], row[e])) is not None:
                bad[r] = pp
    if fixes:
        rows = tuple(
            row._replace(**fixes[r]) if r in fixes and r not in bad else row for r, row in enumerate(rows)
        )
    return rows, bad


def _duplicates(rows: tuple[Any, ...], key: str, bad: Mapping[int, _Problem]) -> dict[int, _Problem]:
    """Rows whose (otherwise valid) id another row also has: none of them can be trusted."""
    times = Counter(getattr(row, key) for r, row in enumerate(rows) if r not in bad)
    if all(n == 1 for n in times.values()):
        return {}
    return {
        r: _Problem(
            f"duplicate_{key.removesuffix('_id')}", key, f"{key} appears {times[getattr(row, key)]} times"
        )
        for r, row in enumerate(rows)
        if r not in bad and times[getattr(row, key)] > 1
    }


_CONSEQUENCE = {
    _About.PERSON: "person {} frozen until it is fixed",
    _About.GROUP: "group {} frozen until it is fixed",
    _About.SCHOOL: "school {} skipped; its persons and groups frozen until it is fixed",
}


def check_rows(snap: SourceSnapshot, errors: list[DataError]) -> tuple[SourceSnapshot, Broken]:
    """Every row checked on its own: the rows that pass (codes normalised), and what to freeze."""
    broken = Broken()
    tables: dict[str, tuple[Any, ...]] = {}
    for name, spec in _TABLES.items():
        rows, bad = _check_table(name, getattr(snap, name))
        if name in ("schools", "groups"):
            bad |= _duplicates(rows, spec.about_field, bad)
        for r in sorted(bad):
            row, p = rows[r], bad[r]
            about = getattr(row, spec.about_field)
            usable = _text_problem(about, required=True) is None
            who = show(about) if usable else "unknown"
            errors.append(
                DataError(
                    p.kind,
                    _record(spec, row),
                    f"{p.column} {p.text}; " + _CONSEQUENCE[spec.about].format(who),
                )
            )
            if not usable:
                continue  # no id to freeze by: the row cannot be tied to anyone
            if name == "persons":
                broken.person_rows.add(about)
            if spec.about is _About.PERSON:
                broken.persons.add(about)
            elif spec.about is _About.GROUP:
                broken.groups.add(about)
            else:
                broken.schools.add(about)
        tables[name] = tuple(row for r, row in enumerate(rows) if r not in bad) if bad else rows
    # An id with one broken row and one good one is broken all the same.
    tables["schools"] = tuple(s for s in tables["schools"] if s.school_id not in broken.schools)
    tables["groups"] = tuple(g for g in tables["groups"] if g.group_id not in broken.groups)
    for school in broken.schools:
        # Its org unit and school-wide groups stay as they are in every target.
        broken.groups.add(school)
        broken.groups.update(school_group_key(school, which) for which in SCHOOL_GROUP_ROLES)
    return SourceSnapshot(**tables, digests=snap.digests), broken


def check_references(
    snap: SourceSnapshot,
    persons: Mapping[str, Person],
    canon: Callable[[str], str],
    frozen: set[str],
    broken: Broken,
    errors: list[DataError],
) -> SourceSnapshot:
    """Drop enrollments, employments, guardianships and groups that refer to what is not there.

    ``persons`` are the checked persons by canonical id, ``frozen`` the canonical ids
    frozen so far; it gains the person every dropped row is about. A row at a broken
    school freezes its person (or group) without a second error: the school's says why.
    """
    schools: dict[str, School] = {s.school_id: s for s in snap.schools}
    has_row = {p.person_id for p in snap.persons} | broken.person_rows

    def unknown(sis_id: str) -> bool:
        return sis_id not in has_row and canon(sis_id) not in persons

    def about_person(rows: tuple[Any, ...], record: str, key: str) -> tuple[Any, ...]:
        kept = []
        for row in rows:
            pid, school = canon(row.person_id), row.school_id
            ref = f"{record}:{getattr(row, key)}"
            if unknown(row.person_id):
                msg = f"refers to unknown person {row.person_id}; person frozen"
                errors.append(DataError("unknown_person", ref, msg, school if school in schools else None))
            elif pid in frozen:
                continue  # frozen already: nothing at all is derived for them
            elif school not in schools and school not in broken.schools:
                msg = f"refers to unknown school {school}; person {row.person_id} frozen"
                errors.append(DataError("unknown_school", ref, msg))
            elif school in schools:
                kept.append(row)
                continue
            frozen.add(pid)
        return tuple(kept)

    enrollments = about_person(snap.enrollments, "enrollment", "enrollment_id")
    employments = about_person(snap.employments, "employment", "employment_id")
    guardianships = []
    for g in snap.guardianships:
        bad = next((x for x in (g.guardian_id, g.student_id) if unknown(x)), None)
        if bad is None:
            guardianships.append(g)  # derive knows what to do with a frozen student (or guardian)
            continue
        errors.append(
            DataError(
                "unknown_person",
                f"guardianship:{g.guardian_id}/{g.student_id}",
                f"refers to unknown person {bad}; guardian {g.guardian_id} frozen",
            )
        )
        frozen.add(canon(g.guardian_id))
    groups = []
    for grp in snap.groups:
        if grp.school_id in broken.schools:
            broken.groups.add(grp.group_id)
        else:
            groups.append(grp)
    return SourceSnapshot(
        schools=snap.schools,
        persons=snap.persons,
        enrollments=enrollments,
        employments=employments,
        guardianships=tuple(guardianships),
        groups=tuple(groups),
        memberships=snap.memberships,
        digests=snap.digests,
    )
