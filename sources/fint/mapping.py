"""FINT resources, read: their paths, the helpers that follow ``_links``, and the ``Mapper``.

What every part of the FINT mapping builds on: the resource paths (``RESOURCES``), reading
ids, links, dates, periods and grades from HAL entries, and the ``Mapper`` that indexes
the entries by their self links and gives each person their canonical id.
sources.fint.mapping_groups maps enrollments, groups, employments and guardianships with
it, and sources.fint.snapshot puts the whole SourceSnapshot together (its docstring says
where each canonical field comes from).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from provisioner.core.model import (
    Person,
)
from sources.fint.cache import entry_key, link_path, relation

Entry = dict[str, Any]

SKOLE = "utdanning/utdanningsprogram/skole"
ARSTRINN = "utdanning/utdanningsprogram/arstrinn"
PROGRAMOMRADE = "utdanning/utdanningsprogram/programomrade"
UTDANNINGSPROGRAM = "utdanning/utdanningsprogram/utdanningsprogram"
PROGRAMOMRADEMEDLEMSKAP = "utdanning/utdanningsprogram/programomrademedlemskap"
ELEV_PERSON = "utdanning/elev/person"
ELEV = "utdanning/elev/elev"
ELEVFORHOLD = "utdanning/elev/elevforhold"
BASISGRUPPE = "utdanning/elev/basisgruppe"
BASISGRUPPEMEDLEMSKAP = "utdanning/elev/basisgruppemedlemskap"
KONTAKTLARERGRUPPE = "utdanning/elev/kontaktlarergruppe"
KONTAKTLARERGRUPPEMEDLEMSKAP = "utdanning/elev/kontaktlarergruppemedlemskap"
SKOLERESSURS = "utdanning/elev/skoleressurs"
UNDERVISNINGSFORHOLD = "utdanning/elev/undervisningsforhold"
KONTAKTPERSON = "utdanning/elev/kontaktperson"
UNDERVISNINGSGRUPPE = "utdanning/timeplan/undervisningsgruppe"
UNDERVISNINGSGRUPPEMEDLEMSKAP = "utdanning/timeplan/undervisningsgruppemedlemskap"
FAG = "utdanning/timeplan/fag"
PERSONAL_PERSON = "administrasjon/personal/person"
PERSONALRESSURS = "administrasjon/personal/personalressurs"
ARBEIDSFORHOLD = "administrasjon/personal/arbeidsforhold"
ORGANISASJONSELEMENT = "administrasjon/organisasjon/organisasjonselement"

# Every resource the source reads, in reading order.
RESOURCES: tuple[str, ...] = (
    SKOLE, ARSTRINN, PROGRAMOMRADE, UTDANNINGSPROGRAM, PROGRAMOMRADEMEDLEMSKAP,
    ELEV_PERSON, ELEV, ELEVFORHOLD, BASISGRUPPE, BASISGRUPPEMEDLEMSKAP,
    KONTAKTLARERGRUPPE, KONTAKTLARERGRUPPEMEDLEMSKAP, SKOLERESSURS, UNDERVISNINGSFORHOLD,
    KONTAKTPERSON, UNDERVISNINGSGRUPPE, UNDERVISNINGSGRUPPEMEDLEMSKAP, FAG,
    PERSONAL_PERSON, PERSONALRESSURS, ARBEIDSFORHOLD, ORGANISASJONSELEMENT,
)  # fmt: skip

_OSLO = ZoneInfo("Europe/Oslo")
_GRADE = re.compile(r"(?:a+rstrinn|årstrinn|trinn)?\s*([0-9]{1,2})\.?(?:\s*(?:\.|trinn|klasse))*", re.I)
_VG = re.compile(r"vg\s*([1-3])", re.I)


# -- small readers of entry fields -------------------------------------------------------


def ident(entry: Mapping[str, Any], name: str = "systemId") -> str | None:
    """An Identifikator field's identifikatorverdi (slim entries hold it as a plain string)."""
    v = entry.get(name)
    if isinstance(v, dict):
        v = v.get("identifikatorverdi")
    return v if isinstance(v, str) and v else None


def links(entry: Mapping[str, Any], rel: str) -> list[str]:
    """The link paths of one relation (of a full entry, or of a slim one: ``projection``)."""
    rels = relation(entry, rel)
    if isinstance(rels, str):
        return [rels]  # slim: one link, as its path
    out = []
    for link in rels if isinstance(rels, list) else ():
        if isinstance(link, str):
            out.append(link)  # slim: a path already
            continue
        href = link.get("href") if isinstance(link, dict) else None
        if isinstance(href, str) and href:
            out.append(link_path(href))
    return out


def fint_date(value: Any) -> str | None:
    """A FINT Date (a UTC instant, or a plain date) as the ISO calendar date in Norway."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if len(text) == 10:
        return text
    try:
        stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text  # kept as read: the validator reports it
    if stamp.tzinfo is None:
        return stamp.date().isoformat()
    return stamp.astimezone(_OSLO).date().isoformat()


def period(entry: Mapping[str, Any], *names: str) -> tuple[str | None, str | None]:
    """(start, slutt) of the first of these Periode fields that is set (a list: its first)."""
    for name in names:
        p = entry.get(name)
        if isinstance(p, list):
            p = p[0] if p else None
        if isinstance(p, dict):
            return fint_date(p.get("start")), fint_date(p.get("slutt"))
    return None, None


def grade_of(arstrinn: Mapping[str, Any]) -> int | str | None:
    """An årstrinn as a grade: 1-10, Vg1-Vg3 as 11-13; text kept for the validator otherwise."""
    candidates = [_grep_code(arstrinn), arstrinn.get("navn"), ident(arstrinn), arstrinn.get("beskrivelse")]
    for c in candidates:
        if not isinstance(c, str):
            continue
        m = _VG.search(c)
        if m:
            return 10 + int(m.group(1))
        m = _GRADE.fullmatch(c.strip())
        if m and 1 <= int(m.group(1)) <= 10:
            return int(m.group(1))
    first = next((c for c in candidates if isinstance(c, str)), None)
    return first


def _grep_code(entry: Mapping[str, Any]) -> str | None:
    """The Grep code of an entry: the last segment of its grepreferanse, else its systemId."""
    for path in links(entry, "grepreferanse"):
        seg = path.rstrip("/").rsplit("/", 1)[-1]
        if seg:
            return _original_case(entry, seg)
    return ident(entry)


def _original_case(entry: Mapping[str, Any], seg: str) -> str:
    """Link paths are lowercased for matching; a Grep code keeps the case the href had."""
    raw = relation(entry, "grepreferanse")
    for link in raw if isinstance(raw, list) else ():
        href = link.get("href") if isinstance(link, dict) else None
        if isinstance(href, str) and href.rstrip("/").lower().endswith(seg):
            return href.rstrip("/").rsplit("/", 1)[-1]
    return seg


class _Index:
    """Entries by link path, across every resource."""

    def __init__(self, data: Mapping[str, list[Entry]]) -> None:
        self.by_path: dict[str, Entry] = {}
        self.kind: dict[str, str] = {}
        for resource, entries in data.items():
            for e in entries:
                for p in links(e, "self"):
                    self.by_path[p] = e
                    self.kind[p] = resource

    def one(self, entry: Mapping[str, Any], rel: str, kind: str | None = None) -> Entry | None:
        """The first linked entry of a relation (of this resource kind, when given)."""
        for p in links(entry, rel):
            hit = self.by_path.get(p)
            if hit is not None and (kind is None or self.kind.get(p) == kind):
                return hit
        return None

    def all(self, entry: Mapping[str, Any], rel: str) -> list[Entry]:
        return [self.by_path[p] for p in links(entry, rel) if p in self.by_path]


# -- the mapping -------------------------------------------------------------------------


class Mapper:
    """One mapping run over one set of resources (``to_snapshot`` is the entry point)."""

    def __init__(self, data: Mapping[str, list[Entry]], school_levels: Mapping[str, str]) -> None:
        self.data = {r: list(data.get(r, ())) for r in RESOURCES}
        self.levels = school_levels
        self.ix = _Index(self.data)
        self.dropped: Counter[str] = Counter()
        self.person_of: dict[int, str] = {}  # id(person entry) -> person_id
        self.persons: list[Person] = []

    def get(self, resource: str) -> list[Entry]:
        return self.data[resource]

    # persons ------------------------------------------------------------------------------

    def build_persons(self) -> None:
        """Person records, and person_id per person entry (merged across domains by NIN)."""
        anchors: dict[int, tuple[int, str]] = {}  # id(person entry) -> (precedence, systemId)
        for rank, (resource, rel) in enumerate(
            ((ELEV, "person"), (PERSONALRESSURS, "person"), (KONTAKTPERSON, "kontaktperson"))
        ):
            for e in self.get(resource):
                sid = ident(e) or (ident(e, "ansattnummer") if resource == PERSONALRESSURS else None)
                target = self.ix.one(e, rel)
                if sid is None or target is None:
                    continue
                key = id(target)
                if key not in anchors or anchors[key][0] > rank:
                    anchors[key] = (rank, sid)
        groups: dict[str, list[Entry]] = defaultdict(list)
        for resource in (ELEV_PERSON, PERSONAL_PERSON):
            for e in self.get(resource):
                nin = ident(e, "fodselsnummer")
                k = f"nin:{nin}" if nin else f"self:{entry_key(e)}"
                groups[k].append(e)
        by_pid: dict[str, list[Entry]] = defaultdict(list)
        for members in groups.values():
            ranked = sorted((anchors[id(m)] for m in members if id(m) in anchors), key=lambda a: a[0])
            if ranked:
                pid = ranked[0][1]
            else:
                seed = entry_key(members[0]) or repr(sorted(members[0]))
                pid = "fint-" + hashlib.sha256(seed.encode()).hexdigest()[:16]
            by_pid[pid].extend(members)  # one person without a NIN in both domains: one record
        for pid, members in by_pid.items():
            for m in members:
                self.person_of[id(m)] = pid
            self.persons.append(_person(pid, members))

    def pid(self, person_entry: Entry | None) -> str | None:
        return None if person_entry is None else self.person_of.get(id(person_entry))

    def pid_via(self, entry: Entry | None, *path: tuple[str, str | None]) -> str | None:
        """Follow relations (rel, kind) from an entry to a person entry; its person_id."""
        cur = entry
        for rel, kind in path:
            if cur is None:
                return None
            cur = self.ix.one(cur, rel, kind)
        return self.pid(cur)

    def student_of(self, elevforhold: Entry | None) -> str | None:
        if elevforhold is None:
            return None
        elev = self.ix.one(elevforhold, "elev", ELEV)
        if elev is None:
            return None
        return self.pid(self.ix.one(elev, "person")) or ident(elev)

    def teacher_of(self, undervisningsforhold: Entry) -> str | None:
        sr = self.ix.one(undervisningsforhold, "skoleressurs", SKOLERESSURS)
        if sr is None:
            return None
        via_pr = self.pid_via(sr, ("personalressurs", PERSONALRESSURS), ("person", None))
        return via_pr or self.pid(self.ix.one(sr, "person"))


def _person(pid: str, members: list[Entry]) -> Person:
    """One Person from the person entries of one individual (the first that has a field wins)."""

    def first(get: Any) -> Any:
        for m in members:
            v = get(m)
            if v is not None:
                return v
        return None

    def name(part: str) -> Any:
        return first(lambda m: _str_or_none(_sub(m, "navn", part)))

    def contact(part: str) -> Any:
        return first(lambda m: _str_or_none(_sub(m, "kontaktinformasjon", part)))

    return Person(
        person_id=pid,
        nin=first(lambda m: ident(m, "fodselsnummer")),
        given_name=name("fornavn"),
        middle_name=name("mellomnavn"),
        family_name=name("etternavn"),
        birth_date=first(lambda m: fint_date(m.get("fodselsdato"))),
        email=contact("epostadresse"),
        mobile=contact("mobiltelefonnummer"),
    )


def _sub(entry: Mapping[str, Any], name: str, part: str) -> Any:
    """A field of a complex field (``navn.fornavn``); None when either is missing or malformed."""
    outer = entry.get(name)
    return outer.get(part) if isinstance(outer, dict) else None


def _str_or_none(v: Any) -> str | None:
    return v if isinstance(v, str) and v != "" else None
