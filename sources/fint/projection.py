"""What the reader keeps of each FINT entry: the fields and ``_links`` relations the mapping reads.

FINT serves far more than the mapping needs (a Person's addresses, photo and citizenship, every
Identifikator's own validity period, every link back from a school to its thousands of
elevforhold), and at a county's size holding entries whole costs gigabytes. ``slim`` cuts each
entry as it arrives, to the one ``PROJECTION`` table below, declared per resource next to the
mapping (``mapping.py`` and ``mapping_groups.py`` read nothing else: tests/test_fint_projection.py
runs the mapping over entries that record every key read and fails on any key this table drops).

The slim form is still a HAL entry the mapping's readers take as they take a full one, only
smaller:

- an Identifikator (``ID``) is kept as its ``identifikatorverdi`` string (``mapping.ident``
  reads both forms); one without a string value is dropped, as ``ident`` reads it as None;
- a plain field (``VALUE``) is kept as read; a complex field (a frozenset of its parts: a
  Periode, navn, kontaktinformasjon) keeps those parts, and of a list of them (a group's
  ``periode``) its first, the only one read;
- a relation keeps its links as link paths (``cache.link_path``: the form links are matched
  by), one path as a plain string, several as a list; the relations in ``RAW_RELATIONS``
  (Grep references, whose code keeps the case of the href) keep their ``{"href": ...}`` links;
- the self link and ``systemId`` are always kept: they are the entry's identity
  (``cache.entry_key``).

Repeated strings are interned: link paths (every link to an entry shares its self path's
string), dates and name parts. Keys absent or None in the full entry are absent in the slim one.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sources.fint import mapping as fm
from sources.fint.cache import link_path

ID = "id"  # an Identifikator: kept as its identifikatorverdi
VALUE = "value"  # a plain value (text, boolean): kept as read
INTERNED = "interned"  # a plain value that repeats (a date): kept as read, text interned
PERIODE = frozenset({"start", "slutt"})
NAVN = frozenset({"fornavn", "mellomnavn", "etternavn"})
KONTAKT = frozenset({"epostadresse", "mobiltelefonnummer"})

Shape = str | frozenset[str]

# Relations whose links keep their href as FINT wrote it (the Grep code's case is read from it).
RAW_RELATIONS = frozenset({"grepreferanse"})


@dataclass(frozen=True)
class Projection:
    """The fields (name -> shape) and the ``_links`` relations kept of one resource's entries."""

    fields: Mapping[str, Shape]
    relations: frozenset[str] = field(default_factory=frozenset)


def _p(fields: Mapping[str, Shape], *relations: str) -> Projection:
    return Projection({"systemId": ID, **fields}, frozenset({"self", *relations}))


_PERSON = _p(
    {"fodselsnummer": ID, "navn": NAVN, "fodselsdato": INTERNED, "kontaktinformasjon": KONTAKT},
    "foreldreansvar", "foreldre",
)  # fmt: skip
_GROUP = _p({"navn": VALUE, "periode": PERIODE, "gyldighetsperiode": PERIODE}, "skole", "trinn", "fag")

# What the mapping reads, per resource (see the mapping module docstring for why).
PROJECTION: dict[str, Projection] = {
    fm.SKOLE: _p({"organisasjonsnummer": ID, "skolenummer": ID, "navn": VALUE}),
    fm.ARSTRINN: _p({"navn": VALUE, "beskrivelse": VALUE}, "grepreferanse"),
    fm.PROGRAMOMRADE: _p({}, "utdanningsprogram", "trinn", "grepreferanse"),
    fm.UTDANNINGSPROGRAM: _p({}, "grepreferanse"),
    fm.PROGRAMOMRADEMEDLEMSKAP: _p({}, "elevforhold", "programomrade"),
    fm.ELEV_PERSON: _PERSON,
    fm.ELEV: _p({}, "person"),
    fm.ELEVFORHOLD: _p({"gyldighetsperiode": PERIODE, "hovedskole": VALUE}, "elev", "skole"),
    fm.BASISGRUPPE: _GROUP,
    fm.BASISGRUPPEMEDLEMSKAP: _p({}, "elevforhold", "basisgruppe"),
    fm.KONTAKTLARERGRUPPE: _GROUP,
    fm.KONTAKTLARERGRUPPEMEDLEMSKAP: _p({}, "elevforhold", "kontaktlarergruppe"),
    fm.SKOLERESSURS: _p({}, "personalressurs", "person"),
    fm.UNDERVISNINGSFORHOLD: _p(
        {}, "skoleressurs", "basisgruppe", "undervisningsgruppe", "kontaktlarergruppe"
    ),
    fm.KONTAKTPERSON: _p({}, "kontaktperson"),
    fm.UNDERVISNINGSGRUPPE: _GROUP,
    fm.UNDERVISNINGSGRUPPEMEDLEMSKAP: _p({}, "elevforhold", "undervisningsgruppe"),
    fm.FAG: _p({}, "grepreferanse"),
    fm.PERSONAL_PERSON: _PERSON,
    fm.PERSONALRESSURS: _p({"ansattnummer": ID}, "person"),
    fm.ARBEIDSFORHOLD: _p(
        {"arbeidsforholdsperiode": PERIODE, "gyldighetsperiode": PERIODE},
        "personalressurs",
        "arbeidssted",
        "undervisningsforhold",
    ),  # fmt: skip
    fm.ORGANISASJONSELEMENT: _p({"kortnavn": VALUE}, "skole", "leder"),
}

_intern = sys.intern


def slim(resource: str, entry: Mapping[str, Any]) -> dict[str, Any]:
    """The entry as the mapping needs it (see the module docstring)."""
    proj = PROJECTION[resource]
    out: dict[str, Any] = {}
    for name, shape in proj.fields.items():
        v = entry.get(name)
        if v is None:
            continue
        if shape == ID:
            if isinstance(v, dict):
                v = v.get("identifikatorverdi")
            if isinstance(v, str):
                out[name] = v
        elif isinstance(shape, frozenset):
            out[name] = _complex(v, shape)
        else:
            out[name] = _intern(v) if shape == INTERNED and isinstance(v, str) else v
    raw = entry.get("_links")
    if isinstance(raw, dict):
        kept = {rel: _relation(rel, raw[rel]) for rel in proj.relations if raw.get(rel)}
        out["_links"] = {rel: v for rel, v in kept.items() if v != [] and v is not None}  # "" is a path
    return out


def _complex(v: Any, parts: frozenset[str]) -> Any:
    if isinstance(v, list):
        return [_complex(v[0], parts)] if v else []  # only the first is read (mapping.period)
    if not isinstance(v, dict):
        return v  # malformed: kept as read, for the mapping to read as it would
    return {k: _intern(x) if isinstance(x, str) else x for k, x in v.items() if k in parts and x is not None}


def _relation(rel: str, links: Any) -> Any:
    """A relation's links: paths (one as a string), or raw ``{"href"}`` links for RAW_RELATIONS."""
    if not isinstance(links, list):
        return None  # mapping.links reads anything but a list of links as no links
    got = (link.get("href") for link in links if isinstance(link, dict))
    hrefs: list[str] = [h for h in got if isinstance(h, str) and h]
    if rel in RAW_RELATIONS:
        return [{"href": h} for h in hrefs]
    paths = [_intern(link_path(h)) for h in hrefs]
    return paths[0] if len(paths) == 1 else paths


def intern_links(entry: dict[str, Any]) -> dict[str, Any]:
    """A slim entry loaded from the cache, its link paths interned again (JSON does not)."""
    raw = entry.get("_links")
    if isinstance(raw, dict):
        for rel, v in raw.items():
            if isinstance(v, str):
                raw[rel] = _intern(v)
            elif isinstance(v, list) and rel not in RAW_RELATIONS:
                raw[rel] = [_intern(p) if isinstance(p, str) else p for p in v]
    return entry
