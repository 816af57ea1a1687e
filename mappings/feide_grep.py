"""Grep codes for Feide: a person's grade, education programme and programme area as GO values.

Owns turning what the SIS says about a student (``DesiredPerson.studies``) and, when a
Feide target asks for it, what a teacher teaches into ``eduPersonEntitlement`` values::

    urn:mace:feide.no:go:grep:<Grep URI or uuid:...>

Feide's rules (GO information model, appendix 2, "Registrering av Grep-koder i
eduPersonEntitlement", https://docs.feide.no/reference/schema/info_go/go_attributter_chA2.html):
every student in primary and lower secondary has their grade (``.../aarstrinn/aarstrinn1``
... ``aarstrinn10``); upper secondary students have their grade (``.../aarstrinn/vg1`` ...
``vg3``) and their education programme and programme area; a person's values are the
union over every school they attend; teachers *may* have the codes of what they teach;
other employees have none. Since schema 1.5 Feide's validator reports "Missing Grep codes
for student" for a student without them (``connectors.feide.check``).

Grades: 1-10 are ``aarstrinn1``-``aarstrinn10``, 11-13 are Vg1-Vg3. Grep also holds a
``vg4`` year, but the ministry ruled it out of the official upper-secondary structure
(https://github.com/Utdanningsdirektoratet/KL06-LK20-public/wiki/Om-bruken-av-vg4-som-%C3%A5rstrinn),
and Feide lists only Vg1-Vg3: a grade of 14 or more (or 0, or none) gives no grade code,
and ``bas feide check`` shows the student so the SIS can be corrected (a fourth-year
pupil, e.g. on påbygging, is registered in the Vg3 year of their programme area).
Adult education has no years in the SIS (the sources tell an adult-education school by
exactly that), but Feide wants a grade for every pupil: an enrollment without a grade at a
school of level ``adult`` takes ``FeideConfig.adult_grade`` (default 10: grunnskole for
adults leads to the 10th-grade exams; 0 gives no code).

Programme and programme area values are normalised from whatever the SIS gives:

* a Grep PSI URI (``http://psi.udir.no/kl06/STREA2----``; ``https`` is written ``http``,
  as Grep's PSIs are) is kept; a Grep REST URL (``https://data.udir.no/kl06/v201906/
  programomraader/STREA2----``) becomes the PSI of its code;
* a bare Grep code (``ST``, ``STREA2----``, ``NOR0214``) becomes its PSI
  ``http://psi.udir.no/kl06/<CODE>`` (Grep URI syntax: https://github.com/Utdanningsdirektoratet/
  KL06-public, sparql-grensesnittet/url-syntaks_for_ontologien_og_psi-oppslag.md);
* a Grep uuid (``c473400d-...``, with or without ``uuid:``) becomes ``uuid:<lowercase uuid>``;
* anything else (an id with no letter, a URL of another host, text with spaces) is no
  Grep code and is left out rather than written as one.

Pure, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from urllib.parse import urlsplit

from provisioner.core.model import TEACHER, TEACHING, DesiredGroup, DesiredPerson

__all__ = [
    "AARSTRINN",
    "GREP_PREFIX",
    "PSI_KL06",
    "grade_uri",
    "grep_ref",
    "is_grade_value",
    "student_codes",
    "teacher_codes",
]

GREP_PREFIX = "urn:mace:feide.no:go:grep:"
AARSTRINN = "http://psi.udir.no/laereplan/aarstrinn/"
PSI_KL06 = "http://psi.udir.no/kl06/"

_UUID = re.compile(r"(?:uuid:)?([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})", re.IGNORECASE)
_CODE = re.compile(r"[A-Z0-9][A-Z0-9_-]*")
_PSI_PATH = re.compile(r"(?:/[A-Za-z0-9._~-]+)+")
_GRADE_VALUE = re.compile(re.escape(GREP_PREFIX + AARSTRINN) + r"(?:aarstrinn(?:[1-9]|10)|vg[1-3])")


def grade_uri(grade: int | None) -> str | None:
    """The Grep URI of a grade: 1-10 -> ``.../aarstrinn1``..``aarstrinn10``, 11-13 -> ``.../vg1``..``vg3``."""
    if grade is None:
        return None
    if 1 <= grade <= 10:
        return f"{AARSTRINN}aarstrinn{grade}"
    if 11 <= grade <= 13:
        return f"{AARSTRINN}vg{grade - 10}"
    return None


def grep_ref(value: str | None) -> str | None:
    """A SIS programme, programme area or subject value as the Grep reference Feide takes, or None."""
    v = (value or "").strip()
    if not v:
        return None
    m = _UUID.fullmatch(v)
    if m:
        return "uuid:" + m.group(1).lower()
    if "://" in v:
        parts = urlsplit(v)
        host = parts.netloc.lower()
        path = parts.path.rstrip("/")
        if parts.scheme.lower() not in ("http", "https") or not _PSI_PATH.fullmatch(path):
            return None
        if host == "psi.udir.no":
            return "http://psi.udir.no" + path
        if host == "data.udir.no":
            return grep_ref(path.rsplit("/", 1)[-1])
        return None
    code = v.upper()
    if _CODE.fullmatch(code) and any(c.isalpha() for c in code):
        return PSI_KL06 + code
    return None


def is_grade_value(value: str) -> bool:
    """True for a Grep grade entitlement value (``aarstrinn1``-``aarstrinn10``, ``vg1``-``vg3``)."""
    return _GRADE_VALUE.fullmatch(value) is not None


def _values(refs: Iterable[str | None]) -> set[str]:
    return {GREP_PREFIX + r for r in refs if r}


def student_codes(
    p: DesiredPerson, adult_schools: Collection[str] = (), adult_grade: int | None = None
) -> set[str]:
    """A student's Grep values: grade, programme and programme area of every active study.

    A study without a grade at one of ``adult_schools`` counts as ``adult_grade``.
    """

    def grade(school_id: str, g: int | None) -> str | None:
        return grade_uri(adult_grade if g is None and school_id in adult_schools else g)

    if not p.studies:  # a person built without studies (older callers): the primary grade
        return _values([grade(p.primary_school, p.grade)])
    refs: list[str | None] = []
    for s in p.studies:
        refs += [grade(s.school_id, s.grade), grep_ref(s.programme), grep_ref(s.programme_area)]
    return _values(refs)


def teacher_codes(groups: Iterable[DesiredGroup]) -> dict[str, set[str]]:
    """person_id -> the Grep values (subject and grade) of the teaching groups they teach."""
    out: dict[str, set[str]] = {}
    for g in groups:
        if g.kind != TEACHING:
            continue
        codes = _values([grep_ref(g.subject_code), grade_uri(g.grade)])
        if not codes:
            continue
        for pid, role in g.members:
            if role == TEACHER:
                out.setdefault(pid, set()).update(codes)
    return out
