"""FINT resources (model 3.x) to the canonical SourceSnapshot: pure, joined by ``_links``.

Input: per resource path (``RESOURCES``) the list of HAL entries, as FINT serves them or
slim (``projection.slim``, what the source holds: only what is read here, which
``projection.PROJECTION`` must list: a field read here and not listed there is a test
failure). Links are matched by their path (``cache.link_path``), so the host in an href does
not matter. Where each canonical field comes from:

- School: ``skole`` — school_id = systemId, org_number = organisasjonsnummer, name = navn,
  short_name = ``kortnavn`` of the ``organisasjonselement`` whose ``skole`` link names it
  (else skolenummer); level = ``school_levels[school_id]`` from the config, else derived from
  the grades of its enrollments (all 1-7 primary, all 8-10 lower_secondary, both combined,
  all 11-13 upper_secondary, enrollments but no grades adult; none at all: combined).
- Person: one per ``person`` resource (``utdanning/elev/person`` and
  ``administrasjon/personal/person``, merged by fodselsnummer). FINT's Person has no systemId,
  so person_id is the systemId of the ``elev`` that links it, else of its ``personalressurs``,
  else of a ``kontaktperson`` (guardians) whose ``kontaktperson`` link names it, else a
  synthesized ``fint-`` + hash of its self link. nin = fodselsnummer (None when absent),
  names from ``navn``, birth_date from ``fodselsdato``, email/mobile from ``kontaktinformasjon``.
- StudentEnrollment: ``elevforhold`` — systemId, ``elev`` -> person, ``skole``, gyldighetsperiode,
  hovedskole; grade = the ``trinn`` (arstrinn) of the basisgruppe of its basisgruppemedlemskap,
  else of its programområde; programme_area/programme from its programomrademedlemskap ->
  programomrade (-> utdanningsprogram), as the Grep code (grepreferanse) or the systemId.
- Group: basisgruppe (basis), undervisningsgruppe (teaching, subject_code = its ``fag``'s Grep
  code), kontaktlarergruppe (contact); dates from the (deprecated but served) ``periode``;
  grade: a basisgruppe's ``trinn``, else the one grade all its students' enrollments share.
- GroupMembership: students from basis-/undervisnings-/kontaktlarergruppemedlemskap
  (``elevforhold`` -> elev); teachers from the group links of each ``undervisningsforhold``
  (``skoleressurs`` -> personalressurs -> person).
- Employment: ``arbeidsforhold`` — systemId, ``personalressurs`` -> person, ``arbeidssted`` ->
  organisasjonselement -> ``skole``; role teacher when it links an undervisningsforhold,
  leader when its personalressurs is a ``leder`` of that organisasjonselement, staff otherwise;
  dates from arbeidsforholdsperiode, else gyldighetsperiode.
- Guardianship: the ``foreldreansvar`` links of a guardian's person and the ``foreldre`` links
  of a student's person.

Dates: FINT serialises java.util.Date as UTC instants ("2010-05-16T22:00:00Z" is 17 May in
Norway); they are read as the Europe/Oslo calendar date.

What FINT cannot carry (differences from the same data read from SQL): an enrollment's
grade when the student is in no basis group or programme area for it (a student who left,
last year's enrollment at the previous school); a teaching or contact group's grade when its
students do not share one; a school's level (derived, or from the config); a programme
without a programme area; a student membership of someone with no elevforhold; the ids of
persons no elev, personalressurs or kontaktperson names (synthesized: a guardian whose
students are all gone, a person with no role). Entries that are malformed (a missing field, a link to
nothing) become records with None where the value is missing, for the validator to report,
or are dropped and counted in ``dropped`` (logged by the source); never an exception.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from provisioner.core.model import School, SourceSnapshot, StudentEnrollment
from sources.fint.mapping import ORGANISASJONSELEMENT, SKOLE, Entry, Mapper, _str_or_none, ident
from sources.fint.mapping_groups import employments, enrollments, groups_and_memberships, guardianships


def to_snapshot(
    data: Mapping[str, list[Entry]], school_levels: Mapping[str, str] | None = None
) -> tuple[SourceSnapshot, Counter[str]]:
    """The canonical snapshot (sorted by key, no digests) and the count of dropped entries per kind."""
    m = Mapper(data, school_levels or {})
    m.build_persons()
    enr = enrollments(m)
    grps, mems = groups_and_memberships(m, enr.grade_by_entry)
    emps = employments(m)
    guards = guardianships(m)
    schools = _schools(m, enr.records)
    snap = SourceSnapshot(
        schools=tuple(sorted(schools)),
        persons=tuple(sorted(m.persons)),
        enrollments=tuple(sorted(enr.records, key=_by_first)),
        employments=tuple(sorted(emps, key=_by_first)),
        guardianships=tuple(sorted(set(guards))),
        groups=tuple(sorted(grps, key=_by_first)),
        memberships=tuple(sorted(set(mems))),
    )
    return snap, m.dropped


def _by_first(rec: Any) -> tuple[str, ...]:
    return tuple(str(x) for x in rec)


def _schools(m: Mapper, enrollments: Iterable[StudentEnrollment]) -> list[School]:
    short: dict[str, str] = {}
    for org in m.get(ORGANISASJONSELEMENT):
        kort = _str_or_none(org.get("kortnavn"))
        for skole in m.ix.all(org, "skole"):
            sid = ident(skole)
            if sid and kort and sid not in short:
                short[sid] = kort
    grades: dict[str, set[int]] = defaultdict(set)
    enrolled: set[str] = set()
    for e in enrollments:
        enrolled.add(e.school_id)
        if isinstance(e.grade, int):
            grades[e.school_id].add(e.grade)
    out = []
    for s in m.get(SKOLE):
        sid = ident(s)
        if sid is None:
            m.dropped["skole without systemId"] += 1
            continue
        level = m.levels.get(sid) or _level(grades.get(sid, set()), sid in enrolled)
        out.append(
            School(
                school_id=sid,
                org_number=ident(s, "organisasjonsnummer"),  # type: ignore[arg-type]
                name=_str_or_none(s.get("navn")),  # type: ignore[arg-type]
                short_name=short.get(sid) or ident(s, "skolenummer"),  # type: ignore[arg-type]
                level=level,
            )
        )
    return out


def _level(grades: set[int], enrolled: bool) -> str:
    if not grades:
        return "adult" if enrolled else "combined"
    if min(grades) >= 11:
        return "upper_secondary"
    if max(grades) <= 7:
        return "primary"
    if min(grades) >= 8 and max(grades) <= 10:
        return "lower_secondary"
    return "combined"
