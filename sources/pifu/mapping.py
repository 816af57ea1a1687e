"""Pure rules of the PIFU → canonical mapping that need more than one element to decide.

The reader (``sources.pifu.reader``) collects what the export says; these functions turn
the parts that span records into canonical values: the middle name hidden in ``fn``, a
school's level from the grades taught there, and a student's enrollments from their roles
in the school group plus their memberships of the school's ``trinn``,
``utdanningsprogram`` and ``programområde`` groups. No I/O, no lxml: table-driven tests
cover them (tests/test_pifu_read.py).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from provisioner.core.model import StudentEnrollment

# A school whose level cannot be told (no grades, no adult pupils, no school_levels
# setting): "combined" (grunnskole 1-10), logged with the school's id. The level is
# informational (nothing downstream maps it), so a guess must not freeze the school.
FALLBACK_LEVEL = "combined"


def middle_name(fn: str | None, given: str | None, family: str | None) -> str | None:
    """What the formatted name has between the given and the family name, or None.

    "Ola Johan Nordmann" with given "Ola" and family "Nordmann" gives "Johan"; a ``fn`` that
    does not start with the given name and end with the family name gives None.
    """
    if not fn or not given or not family:
        return None
    head, tail = given + " ", " " + family
    if len(fn) < len(head) + len(tail) or not fn.startswith(head) or not fn.endswith(tail):
        return None
    return fn[len(head) : len(fn) - len(tail)].strip() or None


def formatted_name(given: str | None, middle: str | None, family: str | None) -> str:
    """PIFU's ``fn``: the names joined by single spaces (the inverse of ``middle_name``)."""
    return " ".join(n for n in (given, middle, family) if n)


def school_level(grades: Iterable[int], adult_pupils: bool) -> str | None:
    """The level of a school from the grades taught there, or None when they do not tell.

    Grades 1-7 only: primary; 8-10 only: lower_secondary; both: combined; 11-13 only:
    upper_secondary; grunnskole and VGS grades together: whichever has more of the
    grade values counted (a tie is upper_secondary). No grades at all but pupils marked
    ``voksen`` (adult education has no years): adult.
    """
    counts = Counter(g for g in grades if 1 <= g <= 13)
    gs = sum(n for g, n in counts.items() if g <= 10)
    vgs = sum(n for g, n in counts.items() if g >= 11)
    if vgs and vgs >= gs:
        return "upper_secondary"
    if gs:
        low = any(g <= 7 for g in counts)
        high = any(8 <= g <= 10 for g in counts)
        return "combined" if low and high else "primary" if low else "lower_secondary"
    return "adult" if adult_pupils else None


class StudentRole(NamedTuple):
    """One roletype-01 role of a person in a school group, as the export gives it."""

    person_id: str
    school_id: str
    begin: str | None
    end: str | None
    main_school: bool


class Placement(NamedTuple):
    """A student's membership of a trinn / utdanningsprogram / programområde group of a school."""

    field: str  # "grade" | "programme" | "programme_area"
    value: int | str | None
    begin: str | None
    end: str | None


def role_record_id(school_id: str, person_id: str, index: int) -> str:
    """The synthesized id of a person's ``index``-th (from 1) student (or employee) role at a school.

    PIFU has no enrollment or employment id (file order counts); this one is stable as long
    as the export lists the roles in the same order.
    """
    return f"{school_id}/{person_id}/{index}"


def _pick(
    placements: Sequence[Placement],
    begin: str | None,
    end: str | None,
    others: set[tuple[str | None, str | None]],
) -> int | str | None:
    """The value of the placement with this role's time frame; else the one value of those left.

    Left: placements whose time frame is not that of another of the student's roles at the
    school (those belong to the other role).
    """
    for p in placements:
        if p.begin == begin and p.end == end:
            return p.value
    values = {p.value for p in placements if (p.begin, p.end) not in others}
    return values.pop() if len(values) == 1 else None


def enrollments(
    roles: Iterable[StudentRole], placements: Mapping[tuple[str, str], Sequence[Placement]]
) -> list[StudentEnrollment]:
    """One enrollment per student role, its grade and programme from the student's placements.

    A placement with the same time frame as the role belongs to it; otherwise the value is
    taken only when the student's placements at that school that belong to no other role
    agree on one; else None.
    """
    roles = list(roles)
    frames: dict[tuple[str, str], Counter[tuple[str | None, str | None]]] = {}
    for r in roles:
        frames.setdefault((r.person_id, r.school_id), Counter())[(r.begin, r.end)] += 1
    out: list[StudentEnrollment] = []
    seen: Counter[tuple[str, str]] = Counter()
    for r in roles:
        key = (r.person_id, r.school_id)
        seen[key] += 1
        found = placements.get(key, ())
        mine = (r.begin, r.end)
        others = set(frames[key]) - {mine}
        values: dict[str, int | str | None] = {}
        for name in ("grade", "programme", "programme_area"):
            values[name] = _pick([p for p in found if p.field == name], r.begin, r.end, others)
        grade = values["grade"]
        programme, area = values["programme"], values["programme_area"]
        out.append(
            StudentEnrollment(
                role_record_id(r.school_id, r.person_id, seen[key]),
                r.person_id,
                r.school_id,
                grade if isinstance(grade, int) else None,
                r.begin,  # type: ignore[arg-type]  # None is a bad period the validator reports
                r.end,
                r.main_school,
                programme if isinstance(programme, str) else None,
                area if isinstance(area, str) else None,
            )
        )
    return out
