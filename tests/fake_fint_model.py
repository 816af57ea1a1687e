"""The inverse of sources.fint.mapping: a canonical SourceSnapshot as FINT 3.x resources.

Used by tests/fake_fint.py to serve demo or hand-built data the way FINT would hold it:
HAL entries with ``systemId``/``fodselsnummer`` identifiers and ``_links`` both ways between
resources (``elevforhold`` <-> ``elev``, memberships -> group and elevforhold, and so on).
Simplifications (the reader does not depend on them): a person without a NIN gets a self
link by the systemId of whoever names it (FINT's Person has only fodselsnummer); every
school has one organisasjonselement, whose ``leder`` links list every leader of the school;
a teacher has one undervisningsforhold per school (per teacher employment there);
``periode`` is filled on groups, ``gyldighetsperiode`` and ``arbeidsforholdsperiode`` alike
on arbeidsforhold; Dates are Europe/Oslo midnight as a UTC instant, as FINT serialises them.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo

from provisioner.core.model import Person, SourceSnapshot, StudentEnrollment
from sources.fint import mapping as fm

_OSLO = ZoneInfo("Europe/Oslo")
Entry = dict[str, Any]


def instant(day: str | None) -> str | None:
    """An ISO date as FINT's UTC instant of Oslo midnight ("2010-05-17" -> "2010-05-16T22:00:00Z")."""
    if day is None:
        return None
    try:
        d = dt.date.fromisoformat(day)
    except ValueError:
        return day
    utc = dt.datetime(d.year, d.month, d.day, tzinfo=_OSLO).astimezone(dt.UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%SZ")


def _id(value: str | None) -> dict[str, Any] | None:
    return None if value is None else {"identifikatorverdi": value}


def _name(p: Person) -> dict[str, Any]:
    return {"fornavn": p.given_name, "mellomnavn": p.middle_name, "etternavn": p.family_name}


def _period(start: str | None, end: str | None) -> dict[str, Any]:
    return {"start": instant(start), "slutt": instant(end)}


class Builder:
    """Builds every resource's entries from one snapshot (``build``)."""

    def __init__(self, base: str, snap: SourceSnapshot) -> None:
        self.base = base.rstrip("/")
        self.snap = snap
        self.out: dict[str, dict[str, Entry]] = {r: {} for r in fm.RESOURCES}

    def href(self, resource: str, field: str, value: str) -> str:
        return f"{self.base}/{resource}/{field}/{value}"

    def add(self, resource: str, field: str, value: str, body: Entry) -> Entry:
        links: dict[str, list[dict[str, str]]] = {"self": [{"href": self.href(resource, field, value)}]}
        body["_links"] = links
        self.out[resource][self.href(resource, field, value)] = body
        return body

    @staticmethod
    def link(entry: Entry, rel: str, href: str) -> None:
        rels = entry["_links"].setdefault(rel, [])
        if {"href": href} not in rels:
            rels.append({"href": href})

    def self_href(self, entry: Entry) -> str:
        return str(entry["_links"]["self"][0]["href"])

    # -- build -----------------------------------------------------------------------------

    def build(self) -> dict[str, dict[str, Entry]]:
        s = self.snap
        self.schools()
        students = {e.person_id for e in s.enrollments}
        guardians = {g.guardian_id for g in s.guardianships}
        teachers = {m.person_id for m in s.memberships if m.role == "teacher"}
        staff = {e.person_id for e in s.employments} | teachers
        self.persons(students, guardians, staff)
        self.enrollments()
        self.groups()
        self.employees(staff)
        self.memberships()
        self.guardians()
        return self.out

    def schools(self) -> None:
        self.skole: dict[str, Entry] = {}
        self.org: dict[str, Entry] = {}
        for sc in self.snap.schools:
            sk = self.add(
                fm.SKOLE, "systemid", sc.school_id,
                {"systemId": _id(sc.school_id), "skolenummer": _id(sc.school_id),
                 "organisasjonsnummer": _id(sc.org_number), "navn": sc.name},
            )  # fmt: skip
            org = self.add(
                fm.ORGANISASJONSELEMENT, "organisasjonsid", f"O-{sc.school_id}",
                {"organisasjonsId": _id(f"O-{sc.school_id}"), "organisasjonsKode": _id(sc.school_id),
                 "navn": sc.name, "kortnavn": sc.short_name},
            )  # fmt: skip
            self.link(org, "skole", self.self_href(sk))
            self.skole[sc.school_id], self.org[sc.school_id] = sk, org

    def persons(self, students: set[str], guardians: set[str], staff: set[str]) -> None:
        self.uperson: dict[str, Entry] = {}
        self.aperson: dict[str, Entry] = {}
        for p in self.snap.persons:
            body = {
                "fodselsnummer": _id(p.nin),
                "navn": _name(p),
                "fodselsdato": instant(p.birth_date),
                "kontaktinformasjon": {"epostadresse": p.email, "mobiltelefonnummer": p.mobile},
            }
            field, value = ("fodselsnummer", p.nin) if p.nin else ("systemid", p.person_id)
            if p.person_id in students or p.person_id in guardians or p.person_id not in staff:
                self.uperson[p.person_id] = self.add(fm.ELEV_PERSON, field, value, dict(body))
            if p.person_id in staff:
                self.aperson[p.person_id] = self.add(fm.PERSONAL_PERSON, field, value, dict(body))

    def enrollments(self) -> None:
        self.elev: dict[str, Entry] = {}
        self.ef: dict[str, Entry] = {}
        self.ef_by_person: dict[str, list[StudentEnrollment]] = defaultdict(list)
        for e in self.snap.enrollments:
            self.ef_by_person[e.person_id].append(e)
            elev = self.elev.get(e.person_id)
            if elev is None:
                elev = self.add(fm.ELEV, "systemid", e.person_id, {"systemId": _id(e.person_id)})
                person = self.uperson.get(e.person_id)
                if person is not None:
                    self.link(elev, "person", self.self_href(person))
                    self.link(person, "elev", self.self_href(elev))
                self.elev[e.person_id] = elev
            ef = self.add(
                fm.ELEVFORHOLD, "systemid", e.enrollment_id,
                {"systemId": _id(e.enrollment_id), "gyldighetsperiode": _period(e.start_date, e.end_date),
                 "hovedskole": e.main_school},
            )  # fmt: skip
            self.link(ef, "elev", self.self_href(elev))
            self.link(elev, "elevforhold", self.self_href(ef))
            if e.school_id in self.skole:
                self.link(ef, "skole", self.self_href(self.skole[e.school_id]))
            self.ef[e.enrollment_id] = ef
            if e.programme_area is not None:
                self.programme(e, ef)

    def programme(self, e: StudentEnrollment, ef: Entry) -> None:
        area_id = e.programme_area
        assert area_id is not None
        key = self.href(fm.PROGRAMOMRADE, "systemid", area_id)
        area = self.out[fm.PROGRAMOMRADE].get(key) or self.add(
            fm.PROGRAMOMRADE, "systemid", area_id, {"systemId": _id(area_id), "navn": area_id}
        )
        if e.programme is not None:
            pkey = self.href(fm.UTDANNINGSPROGRAM, "systemid", e.programme)
            prog = self.out[fm.UTDANNINGSPROGRAM].get(pkey) or self.add(
                fm.UTDANNINGSPROGRAM,
                "systemid",
                e.programme,
                {"systemId": _id(e.programme), "navn": e.programme},
            )
            self.link(area, "utdanningsprogram", self.self_href(prog))
        ms = self.add(
            fm.PROGRAMOMRADEMEDLEMSKAP, "systemid", f"PM-{e.enrollment_id}",
            {"systemId": _id(f"PM-{e.enrollment_id}")},
        )  # fmt: skip
        self.link(ms, "elevforhold", self.self_href(ef))
        self.link(ms, "programomrade", key)
        self.link(ef, "programomrademedlemskap", self.self_href(ms))

    def arstrinn(self, grade: int) -> Entry:
        code = f"aarstrinn{grade}" if grade <= 10 else f"vg{grade - 10}"
        key = self.href(fm.ARSTRINN, "systemid", code)
        name = f"{grade}. trinn" if grade <= 10 else f"Vg{grade - 10}"
        return self.out[fm.ARSTRINN].get(key) or self.add(
            fm.ARSTRINN, "systemid", code, {"systemId": _id(code), "navn": name, "beskrivelse": name}
        )

    def groups(self) -> None:
        self.group: dict[str, tuple[str, Entry]] = {}
        kinds = {
            "basis": fm.BASISGRUPPE,
            "teaching": fm.UNDERVISNINGSGRUPPE,
            "contact": fm.KONTAKTLARERGRUPPE,
        }
        for g in self.snap.groups:
            resource = kinds.get(g.kind)
            if resource is None:
                continue
            entry = self.add(
                resource, "systemid", g.group_id,
                {"systemId": _id(g.group_id), "navn": g.name, "beskrivelse": g.name,
                 "periode": [_period(g.start_date, g.end_date)]},
            )  # fmt: skip
            if g.school_id in self.skole:
                self.link(entry, "skole", self.self_href(self.skole[g.school_id]))
            if resource == fm.BASISGRUPPE and isinstance(g.grade, int):
                self.link(entry, "trinn", self.self_href(self.arstrinn(g.grade)))
            if resource == fm.UNDERVISNINGSGRUPPE and g.subject_code:
                fag = self.fag(g.subject_code)
                self.link(entry, "fag", self.self_href(fag))
                self.link(fag, "undervisningsgruppe", self.self_href(entry))
            self.group[g.group_id] = (resource, entry)

    def fag(self, code: str) -> Entry:
        key = self.href(fm.FAG, "systemid", code)
        fag = self.out[fm.FAG].get(key)
        if fag is None:
            fag = self.add(fm.FAG, "systemid", code, {"systemId": _id(code), "navn": code})
            self.link(fag, "grepreferanse", f"https://data.udir.no/kl06/v201906/fagkoder/{code}")
        return fag

    def employees(self, staff: Iterable[str]) -> None:
        self.pr: dict[str, Entry] = {}
        self.sr: dict[str, Entry] = {}
        for pid in sorted(staff):
            pr = self.add(
                fm.PERSONALRESSURS, "systemid", pid, {"systemId": _id(pid), "ansattnummer": _id(pid)}
            )
            person = self.aperson.get(pid)
            if person is not None:
                self.link(pr, "person", self.self_href(person))
                self.link(person, "personalressurs", self.self_href(pr))
            sr = self.add(fm.SKOLERESSURS, "systemid", pid, {"systemId": _id(pid)})
            self.link(sr, "personalressurs", self.self_href(pr))
            self.link(pr, "skoleressurs", self.self_href(sr))
            if person is not None:
                self.link(sr, "person", self.self_href(person))
            self.pr[pid], self.sr[pid] = pr, sr
        self.uf: dict[tuple[str, str], Entry] = {}
        for emp in self.snap.employments:
            af = self.add(
                fm.ARBEIDSFORHOLD, "systemid", emp.employment_id,
                {"systemId": _id(emp.employment_id), "stillingsnummer": emp.employment_id,
                 "hovedstilling": True, "gyldighetsperiode": _period(emp.start_date, emp.end_date),
                 "arbeidsforholdsperiode": _period(emp.start_date, emp.end_date)},
            )  # fmt: skip
            pr = self.pr[emp.person_id]
            self.link(af, "personalressurs", self.self_href(pr))
            self.link(pr, "arbeidsforhold", self.self_href(af))
            org = self.org.get(emp.school_id)
            if org is not None:
                self.link(af, "arbeidssted", self.self_href(org))
                self.link(org, "arbeidsforhold", self.self_href(af))
                if emp.role == "leader":
                    self.link(org, "leder", self.self_href(pr))
            if emp.role == "teacher":
                uf = self.teaching(emp.person_id, emp.school_id, emp.employment_id)
                self.link(uf, "arbeidsforhold", self.self_href(af))
                self.link(af, "undervisningsforhold", self.self_href(uf))

    def teaching(self, pid: str, school_id: str, uid: str | None = None) -> Entry:
        """The teacher's undervisningsforhold at a school (one per school)."""
        uf = self.uf.get((pid, school_id))
        if uf is None:
            sid = f"U-{uid or f'{pid}-{school_id}'}"
            uf = self.add(
                fm.UNDERVISNINGSFORHOLD, "systemid", sid, {"systemId": _id(sid), "hovedskole": True}
            )
            sr = self.sr[pid]
            self.link(uf, "skoleressurs", self.self_href(sr))
            self.link(sr, "undervisningsforhold", self.self_href(uf))
            if school_id in self.skole:
                self.link(uf, "skole", self.self_href(self.skole[school_id]))
                self.link(sr, "skole", self.self_href(self.skole[school_id]))
            self.uf[(pid, school_id)] = uf
        return uf

    def memberships(self) -> None:
        ms_resource = {
            fm.BASISGRUPPE: (fm.BASISGRUPPEMEDLEMSKAP, "basisgruppe"),
            fm.UNDERVISNINGSGRUPPE: (fm.UNDERVISNINGSGRUPPEMEDLEMSKAP, "undervisningsgruppe"),
            fm.KONTAKTLARERGRUPPE: (fm.KONTAKTLARERGRUPPEMEDLEMSKAP, "kontaktlarergruppe"),
        }
        schools = {g.group_id: g.school_id for g in self.snap.groups}
        for m in self.snap.memberships:
            got = self.group.get(m.group_id)
            if got is None:
                continue
            resource, group = got
            school = schools[m.group_id]
            rel = ms_resource[resource][1]
            if m.role == "teacher":
                uf = self.teaching(m.person_id, school)
                self.link(uf, rel, self.self_href(group))
                self.link(group, "undervisningsforhold", self.self_href(uf))
                continue
            e = self._enrollment_for(m.person_id, school)
            if e is None:
                continue  # not a student: FINT has no way to say it
            ef = self.ef[e.enrollment_id]
            ms_res, rel = ms_resource[resource]
            msid = f"{m.group_id}_{e.enrollment_id}"
            ms = self.add(ms_res, "systemid", msid, {"systemId": _id(msid)})
            self.link(ms, rel, self.self_href(group))
            self.link(ms, "elevforhold", self.self_href(ef))
            self.link(group, "gruppemedlemskap", self.self_href(ms))
            self.link(ef, f"{rel}medlemskap", self.self_href(ms))

    def _enrollment_for(self, pid: str, school: str) -> StudentEnrollment | None:
        mine = self.ef_by_person.get(pid, [])
        here = [e for e in mine if e.school_id == school] or mine
        return max(here, key=lambda e: (str(e.start_date), e.enrollment_id)) if here else None

    def guardians(self) -> None:
        persons = {p.person_id: p for p in self.snap.persons}
        for g in self.snap.guardianships:
            gp, sp = self.uperson.get(g.guardian_id), self.uperson.get(g.student_id)
            if gp is None or sp is None:
                continue
            self.link(gp, "foreldreansvar", self.self_href(sp))
            self.link(sp, "foreldre", self.self_href(gp))
            kp_key = self.href(fm.KONTAKTPERSON, "systemid", g.guardian_id)
            kp = self.out[fm.KONTAKTPERSON].get(kp_key)
            if kp is None:
                p = persons[g.guardian_id]
                kp = self.add(
                    fm.KONTAKTPERSON, "systemid", g.guardian_id,
                    {"systemId": _id(g.guardian_id), "type": "foreldre", "foreldreansvar": True,
                     "navn": _name(p),
                     "kontaktinformasjon": {"epostadresse": p.email, "mobiltelefonnummer": p.mobile}},
                )  # fmt: skip
                self.link(kp, "kontaktperson", self.self_href(gp))
            self.link(kp, "person", self.self_href(sp))


def build(base: str, snap: SourceSnapshot) -> dict[str, dict[str, Entry]]:
    """Every resource's entries, keyed by self href, in a stable order."""
    return Builder(base, snap).build()
