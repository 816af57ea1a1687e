"""The relation half of the FINT mapping: enrollments, groups, memberships, employments, guardians.

Pure functions over a ``mapping.Mapper`` (its link index and person ids); see the
``mapping`` module docstring for where each field comes from.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from provisioner.core.model import (
    BASIS,
    CONTACT,
    TEACHING,
    Employment,
    Group,
    GroupMembership,
    Guardianship,
    StudentEnrollment,
)
from sources.fint.mapping import (
    ARBEIDSFORHOLD,
    ARSTRINN,
    BASISGRUPPE,
    BASISGRUPPEMEDLEMSKAP,
    ELEV_PERSON,
    ELEVFORHOLD,
    FAG,
    KONTAKTLARERGRUPPE,
    KONTAKTLARERGRUPPEMEDLEMSKAP,
    ORGANISASJONSELEMENT,
    PERSONAL_PERSON,
    PERSONALRESSURS,
    PROGRAMOMRADE,
    PROGRAMOMRADEMEDLEMSKAP,
    SKOLE,
    UNDERVISNINGSFORHOLD,
    UNDERVISNINGSGRUPPE,
    UNDERVISNINGSGRUPPEMEDLEMSKAP,
    UTDANNINGSPROGRAM,
    Mapper,
    _grep_code,
    _str_or_none,
    grade_of,
    ident,
    links,
    period,
)

# group resource -> (kind, membership resource, the membership's link to the group)
GROUP_KINDS: dict[str, tuple[str, str, str]] = {
    BASISGRUPPE: (BASIS, BASISGRUPPEMEDLEMSKAP, "basisgruppe"),
    UNDERVISNINGSGRUPPE: (TEACHING, UNDERVISNINGSGRUPPEMEDLEMSKAP, "undervisningsgruppe"),
    KONTAKTLARERGRUPPE: (CONTACT, KONTAKTLARERGRUPPEMEDLEMSKAP, "kontaktlarergruppe"),
}


@dataclass
class Enrollments:
    records: list[StudentEnrollment] = field(default_factory=list)
    grade_by_entry: dict[int, Any] = field(default_factory=dict)  # id(elevforhold) -> grade


def enrollments(m: Mapper) -> Enrollments:
    """StudentEnrollment per elevforhold, grade from its basis group or programme area."""
    grade: dict[int, Any] = {}
    for ms in m.get(BASISGRUPPEMEDLEMSKAP):
        ef = m.ix.one(ms, "elevforhold", ELEVFORHOLD)
        group = m.ix.one(ms, "basisgruppe", BASISGRUPPE)
        trinn = m.ix.one(group, "trinn", ARSTRINN) if group is not None else None
        if ef is not None and trinn is not None:
            grade.setdefault(id(ef), grade_of(trinn))
    programme: dict[int, tuple[str | None, str | None]] = {}
    for ms in m.get(PROGRAMOMRADEMEDLEMSKAP):
        ef = m.ix.one(ms, "elevforhold", ELEVFORHOLD)
        area = m.ix.one(ms, "programomrade", PROGRAMOMRADE)
        if ef is None or area is None:
            m.dropped["programomrademedlemskap linking nothing"] += 1
            continue
        up = m.ix.one(area, "utdanningsprogram", UTDANNINGSPROGRAM)
        programme.setdefault(id(ef), (_grep_code(up) if up else None, _grep_code(area)))
        trinn = m.ix.one(area, "trinn", ARSTRINN)
        if trinn is not None:
            grade.setdefault(id(ef), grade_of(trinn))
    out = Enrollments(grade_by_entry=grade)
    for ef in m.get(ELEVFORHOLD):
        eid, pid = ident(ef), m.student_of(ef)
        skole = m.ix.one(ef, "skole", SKOLE)
        sid = ident(skole) if skole else None
        if eid is None or pid is None or sid is None:
            m.dropped["elevforhold without systemId, elev or skole"] += 1
            continue
        start, end = period(ef, "gyldighetsperiode")
        prog, area_code = programme.get(id(ef), (None, None))
        out.records.append(
            StudentEnrollment(
                enrollment_id=eid,
                person_id=pid,
                school_id=sid,
                grade=grade.get(id(ef)),
                start_date=start,  # type: ignore[arg-type]  # None: the validator reports it
                end_date=end,
                main_school=bool(ef.get("hovedskole")),
                programme=prog,
                programme_area=area_code,
            )
        )
    return out


def groups_and_memberships(
    m: Mapper, grade_by_entry: dict[int, Any]
) -> tuple[list[Group], list[GroupMembership]]:
    """Groups of the three kinds with their student and teacher memberships."""
    groups: list[Group] = []
    members: list[GroupMembership] = []
    gid_of: dict[int, str] = {}
    for resource, (kind, ms_resource, rel) in GROUP_KINDS.items():
        student_grades: dict[str, set[Any]] = {}
        for ms in m.get(ms_resource):
            group = m.ix.one(ms, rel, resource)
            ef = m.ix.one(ms, "elevforhold", ELEVFORHOLD)
            gid, pid = (ident(group) if group else None), m.student_of(ef)
            if gid is None or pid is None:
                m.dropped[f"{rel}medlemskap linking nothing"] += 1
                continue
            members.append(GroupMembership(gid, pid, "student"))
            assert ef is not None
            student_grades.setdefault(gid, set()).add(grade_by_entry.get(id(ef)))
        for g in m.get(resource):
            gid = ident(g)
            skole = m.ix.one(g, "skole", SKOLE)
            if gid is None or skole is None or ident(skole) is None:
                m.dropped[f"{rel} without systemId or skole"] += 1
                continue
            gid_of[id(g)] = gid
            start, end = period(g, "periode", "gyldighetsperiode")
            trinn = m.ix.one(g, "trinn", ARSTRINN)
            shared = student_grades.get(gid, set())
            grade = (
                grade_of(trinn) if trinn is not None else (next(iter(shared)) if len(shared) == 1 else None)
            )
            fag = m.ix.one(g, "fag", FAG)
            groups.append(
                Group(
                    group_id=gid,
                    school_id=ident(skole),  # type: ignore[arg-type]
                    kind=kind,
                    name=_str_or_none(g.get("navn")),  # type: ignore[arg-type]
                    subject_code=_grep_code(fag) if fag is not None else None,
                    grade=grade,  # type: ignore[arg-type]  # text that is no grade: the validator reports it
                    start_date=start,  # type: ignore[arg-type]
                    end_date=end,  # type: ignore[arg-type]
                )
            )
    for uf in m.get(UNDERVISNINGSFORHOLD):
        pid = m.teacher_of(uf)
        for rel in ("basisgruppe", "undervisningsgruppe", "kontaktlarergruppe"):
            for g in m.ix.all(uf, rel):
                gid = gid_of.get(id(g))
                if gid is None or pid is None:
                    m.dropped["undervisningsforhold linking nothing"] += 1
                    continue
                members.append(GroupMembership(gid, pid, "teacher"))
    return groups, members


def employments(m: Mapper) -> list[Employment]:
    """Employment per arbeidsforhold, at the school of its arbeidssted."""
    leaders: dict[int, set[str]] = {}
    for element in m.get(ORGANISASJONSELEMENT):
        leaders[id(element)] = set(links(element, "leder"))
    out = []
    for af in m.get(ARBEIDSFORHOLD):
        eid = ident(af)
        pr = m.ix.one(af, "personalressurs", PERSONALRESSURS)
        pid = m.pid(m.ix.one(pr, "person")) if pr is not None else None
        org = m.ix.one(af, "arbeidssted", ORGANISASJONSELEMENT)
        skole = m.ix.one(org, "skole", SKOLE) if org is not None else None
        sid = ident(skole) if skole is not None else None
        if eid is None or pid is None or sid is None or pr is None or org is None:
            m.dropped["arbeidsforhold without systemId, person or school"] += 1
            continue
        if links(af, "undervisningsforhold"):
            role = "teacher"
        elif set(links(pr, "self")) & leaders.get(id(org), set()):
            role = "leader"
        else:
            role = "staff"
        start, end = period(af, "arbeidsforholdsperiode", "gyldighetsperiode")
        out.append(Employment(eid, pid, sid, role, start, end))  # type: ignore[arg-type]
    return out


def guardianships(m: Mapper) -> list[Guardianship]:
    """(guardian, student) pairs from foreldreansvar and foreldre links between persons."""
    out: list[Guardianship] = []
    for resource in (ELEV_PERSON, PERSONAL_PERSON):
        for p in m.get(resource):
            me = m.pid(p)
            if me is None:
                continue
            for child in m.ix.all(p, "foreldreansvar"):
                c = m.pid(child)
                if c is not None:
                    out.append(Guardianship(me, c))
            for parent in m.ix.all(p, "foreldre"):
                g = m.pid(parent)
                if g is not None:
                    out.append(Guardianship(g, me))
    return out
