"""What the reader keeps of each FINT entry: the fields and ``_links`` relations the mapping reads.

FINT serves far more than the mapping needs (a Person's addresses, photo and citizenship, every
Identifikator's own validity period, every link back from a school to its thousands of
elevforhold), and at a county's size holding entries whole costs gigabytes. ``slim`` cuts each
entry as it arrives, to the one ``PROJECTION`` table below, declared per resource next to the
mapping (``mapping.py``, ``mapping_groups.py`` and ``snapshot.py`` read nothing else:
tests/test_fint_projection.py runs the mapping over entries that record every key read and
fails on any key this table drops).

The slim form is one flat dict the mapping's readers (``mapping.ident``, ``mapping.links``,
``cache.entry_key``, ...) take as they take a full entry, only smaller:

- an Identifikator (``ID``) is kept as its ``identifikatorverdi`` string; one without a
  string value is dropped, as ``ident`` reads it as None;
- a plain field (``VALUE``) is kept as read; a complex field (a frozenset of its parts: a
  Periode, navn, kontaktinformasjon) keeps those parts, and of a list of them (a group's
  ``periode``) its first, the only one read;
- a relation ``rel`` is the key ``@rel`` (``cache.SLIM_LINK``; no ``_links`` object) holding
  its links as link paths (``cache.link_path``: the form links are matched by), one path as a
  plain string, several as a list; the relations in ``RAW_RELATIONS`` (Grep references, whose
  code keeps the case of the href) keep their ``{"href": ...}`` links;
- the self link is always kept, and the systemId when there is no self link: the entry's
  identity (``cache.entry_key``); else the systemId only where the mapping reads it.

Repeated strings are interned: link paths (every link to an entry shares its self path's
string, and so does the cache's key of the entry), dates and name parts. Keys absent or None
in the full entry are absent in the slim one.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sources.fint import mapping as fm
from sources.fint.cache import SLIM_LINK, link_path

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
    return Projection(fields, frozenset({"self", *relations}))


_SID: dict[str, Shape] = {"systemId": ID}


_PERSON = _p(
    {"fodselsnummer": ID, "navn": NAVN, "fodselsdato": INTERNED, "kontaktinformasjon": KONTAKT},
    "foreldreansvar", "foreldre",
)  # fmt: skip
_GROUP = _p(
    {**_SID, "navn": VALUE, "periode": PERIODE, "gyldighetsperiode": PERIODE}, "skole", "trinn", "fag"
)

# What the mapping reads, per resource (see sources.fint.snapshot's docstring for why).
PROJECTION: dict[str, Projection] = {
    fm.SKOLE: _p({**_SID, "organisasjonsnummer": ID, "skolenummer": ID, "navn": VALUE}),
    fm.ARSTRINN: _p({**_SID, "navn": VALUE, "beskrivelse": VALUE}, "grepreferanse"),
    fm.PROGRAMOMRADE: _p(_SID, "utdanningsprogram", "trinn", "grepreferanse"),
    fm.UTDANNINGSPROGRAM: _p(_SID, "grepreferanse"),
    fm.PROGRAMOMRADEMEDLEMSKAP: _p({}, "elevforhold", "programomrade"),
    fm.ELEV_PERSON: _PERSON,
    fm.ELEV: _p(_SID, "person"),
    fm.ELEVFORHOLD: _p({**_SID, "gyldighetsperiode": PERIODE, "hovedskole": VALUE}, "elev", "skole"),
    fm.BASISGRUPPE: _GROUP,
    fm.BASISGRUPPEMEDLEMSKAP: _p({}, "elevforhold", "basisgruppe"),
    fm.KONTAKTLARERGRUPPE: _GROUP,
    fm.KONTAKTLARERGRUPPEMEDLEMSKAP: _p({}, "elevforhold", "kontaktlarergruppe"),
    fm.SKOLERESSURS: _p({}, "personalressurs", "person"),
    fm.UNDERVISNINGSFORHOLD: _p(
        {}, "skoleressurs", "basisgruppe", "undervisningsgruppe", "kontaktlarergruppe"
    ),
    fm.KONTAKTPERSON: _p(_SID, "kontaktperson"),
    fm.UNDERVISNINGSGRUPPE: _GROUP,
    fm.UNDERVISNINGSGRUPPEMEDLEMSKAP: _p({}, "elevforhold", "undervisningsgruppe"),
    fm.FAG: _p(_SID, "grepreferanse"),
    fm.PERSONAL_PERSON: _PERSON,
    fm.PERSONALRESSURS: _p({**_SID, "ansattnummer": ID}, "person"),
    fm.ARBEIDSFORHOLD: _p(
        {**_SID, "arbeidsforholdsperiode": PERIODE, "gyldighetsperiode": PERIODE},
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
        _field(out, entry, name, shape)
    raw = entry.get("_links")
    if isinstance(raw, dict):
        for rel in proj.relations:
            v = _relation(rel, raw.get(rel))
            if v is not None and v != []:  # "" is a path (of an href with none)
                out[SLIM_LINK + rel] = v
    if SLIM_LINK + "self" not in out and "systemId" not in out:
        _field(out, entry, "systemId", ID)  # the identity of an entry without a self link
    return out


def _field(out: dict[str, Any], entry: Mapping[str, Any], name: str, shape: Shape) -> None:
    v = entry.get(name)
    if v is None:
        return
    if shape == ID:
        if isinstance(v, dict):
            v = v.get("identifikatorverdi")
        if isinstance(v, str):
            out[name] = v
    elif isinstance(shape, frozenset):
        out[name] = _complex(v, shape)
    else:
        out[name] = _intern(v) if shape == INTERNED and isinstance(v, str) else v


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
    for key, v in entry.items():
        if key.startswith(SLIM_LINK):
            if isinstance(v, str):
                entry[key] = _intern(v)
            elif isinstance(v, list) and key[len(SLIM_LINK) :] not in RAW_RELATIONS:
                entry[key] = [_intern(p) if isinstance(p, str) else p for p in v]
    return entry
