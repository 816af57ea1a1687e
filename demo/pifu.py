"""Writing a snapshot as a PIFU-IMS 1.2 full export (the demo and tests' PIFU source).

``write_export`` streams the export as text (one record at a time, no DOM, so an
Oslo-size owner takes no more memory than its snapshot) into a 0600 temp file that is
fsynced and renamed into place. The output is valid against the PIFU-IMS 1.2 XSD, and
reading it back with ``sources.pifu`` gives the same snapshot, apart from what PIFU
cannot carry:

- ``enrollment_id`` and ``employment_id``: PIFU has none; the reader makes them from the
  school, the person and the role's place in the file (``school/person/n``);
- ``mobile``: written in PIFU's form, "+" and the digits ("+47 912 34 567" is read back
  as "+4791234567"); a number without digits is left out;
- empty text ("" where SQL has it) is read back as None, and text is trimmed.

How it is written (the reader's mapping, the other way): the owner is a ``skoleeier``
group, each school a ``skole`` group under it; each SIS group (basis, teaching, contact)
a group under its school with its grade and subject as Grep codes; each grade and each
programme (area) taught at a school a ``trinn`` (``utdanningsprogram``,
``programområde``) group under it. Enrollments and employments are roles in the school's
membership (one ``member`` per record, so the reader sees the same records in the same
order); an enrollment's grade and programme are memberships of those groups with the
enrollment's time frame. Guardians are ``pifu_hasContactPerson type="guardian"`` of the
student; the students of an adult-level school are marked ``pupilStatus voksen`` (PIFU has
no school level: the reader derives it). Guardianships of a student who is not in the
snapshot, and values the schema does not allow (an e-mail address without "@", text over
the schema's length) cannot be written: such an e-mail is left out, too long text raises
ValueError.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO
from xml.sax.saxutils import escape

from provisioner.core.model import SourceSnapshot, StudentEnrollment
from sources.pifu import vocabulary as v
from sources.pifu.files import atomic_file
from sources.pifu.mapping import formatted_name

__all__ = ["write_export"]

_BAD_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_EMAIL = re.compile(r".+@.+(\..+)+", re.DOTALL)


def _x(value: str | None, limit: int) -> str:
    """Text content, escaped; ValueError for what XML or the schema cannot hold."""
    text = value or ""
    if len(text) > limit:
        raise ValueError(f"{text[:40]!r}... is longer than the {limit} characters PIFU allows here")
    if _BAD_XML.search(text):
        raise ValueError(f"{text!r} holds a character XML 1.0 cannot carry")
    return escape(text).replace("\r", "&#13;")


class _Writer:
    """The export's text, record by record, into a buffered binary file."""

    def __init__(self, f: IO[bytes], source: str) -> None:
        self.f = f
        self.src = f"<source>{_x(source, 32)}</source>"

    def w(self, text: str) -> None:
        self.f.write(text.encode("utf-8"))

    def sid(self, ident: str) -> str:
        return f"<sourcedid>{self.src}<id>{_x(ident, 256)}</id></sourcedid>"

    def group(
        self,
        gid: str,
        scheme: str,
        typevalue: str,
        short: str,
        long: str | None,
        parent: tuple[str, str],
        *,
        begin: str | None = None,
        end: str | None = None,
        ids: Iterable[tuple[str, str]] = (),
    ) -> None:
        level = v.TREE_LEVEL.get(typevalue, v.GROUP_TREE_LEVEL)
        desc = f"<short>{_x(short, 60)}</short>" + (f"<long>{_x(long, 256)}</long>" if long else "")
        frame = _timeframe(begin, end)
        ext = "".join(
            f'<pifu_id type="{kind}"><pifu_value>{_x(value, 256)}</pifu_value>'
            f"<pifu_scope>{scope}</pifu_scope><pifu_unique>1</pifu_unique></pifu_id>"
            for kind, value, scope in ((k, val, _SCOPES[k]) for k, val in ids)
        )
        self.w(
            f"<group>{self.sid(gid)}<grouptype><scheme>{scheme}</scheme>"
            f'<typevalue level="{level}">{typevalue}</typevalue></grouptype>'
            f"<description>{desc}</description>{frame}"
            f'<relationship relation="1">{self.sid(parent[0])}'
            f"<label>{_x(parent[1], 128)}</label></relationship>"
            + (f"<extension>{ext}</extension>" if ext else "")
            + "</group>\n"
        )

    def membership(self, gid: str, members: Iterable[str]) -> None:
        """One membership element; nothing when there are no members (the schema needs one)."""
        it = iter(members)
        first = next(it, None)
        if first is None:
            return
        self.w(f"<membership>{self.sid(gid)}{first}")
        for m in it:
            self.w(m)
        self.w("</membership>\n")

    def member(
        self, pid: str, roletype: str, begin: str | None = None, end: str | None = None, primary: str = ""
    ) -> str:
        ext = (
            f"<extension><pifu_primaryRelation>{primary}</pifu_primaryRelation></extension>"
            if primary
            else ""
        )
        return (
            f'<member>{self.sid(pid)}<idtype>1</idtype><role roletype="{roletype}"><status>1</status>'
            f"{_timeframe(begin, end)}{ext}</role></member>"
        )


_SCOPES = {"organizationNumber": "brreg", "grepCode": "udir"}


def _timeframe(begin: str | None, end: str | None) -> str:
    if begin is None and end is None:
        return ""
    return (
        "<timeframe>"
        + (f"<begin>{_x(begin, 10)}</begin>" if begin else "")
        + (f"<end>{_x(end, 10)}</end>" if end else "")
        + "</timeframe>"
    )


def _mobile(mobile: str | None) -> str | None:
    digits = "".join(c for c in mobile or "" if c.isdigit() and c.isascii())
    return f"+{digits}" if digits else None


def _persons(w: _Writer, snap: SourceSnapshot) -> None:
    guardians: defaultdict[str, list[str]] = defaultdict(list)
    for g in snap.guardianships:
        guardians[g.student_id].append(g.guardian_id)
    adult_schools = {s.school_id for s in snap.schools if s.level == "adult"}
    adults = {e.person_id for e in snap.enrollments if e.school_id in adult_schools}
    for p in snap.persons:
        parts = [f"<person>{w.sid(p.person_id)}"]
        if p.nin:
            parts.append(f'<userid useridtype="{v.NIN_USERID}">{_x(p.nin, 256)}</userid>')
        fn = formatted_name(p.given_name, p.middle_name, p.family_name)
        parts.append(
            f"<name><fn>{_x(fn, 256)}</fn><n><family>{_x(p.family_name, 256)}</family>"
            f"<given>{_x(p.given_name, 256)}</given></n></name>"
        )
        if p.birth_date:
            parts.append(f"<demographics><bday>{_x(p.birth_date, 10)}</bday></demographics>")
        if p.email and _EMAIL.fullmatch(p.email):
            parts.append(f"<email>{_x(p.email, 256)}</email>")
        if (mobile := _mobile(p.mobile)) is not None and len(mobile) <= 32:
            parts.append(f'<tel teltype="{v.MOBILE_TELTYPE}">{mobile}</tel>')
        ext = []
        if p.person_id in adults:
            ext.append(f'<pifu_status type="pupilStatus">{v.ADULT_PUPIL}</pifu_status>')
        ext.extend(
            f'<pifu_hasContactPerson type="{v.GUARDIAN_CONTACT}">{w.sid(g)}</pifu_hasContactPerson>'
            for g in guardians.get(p.person_id, ())
        )
        if ext:
            parts.append("<extension>" + "".join(ext) + "</extension>")
        parts.append("</person>\n")
        w.w("".join(parts))


def _placement_groups(snap: SourceSnapshot) -> dict[tuple[str, str, str], str]:
    """(school, typevalue, Grep value) -> the id of the trinn / programme group written for it."""
    out: dict[tuple[str, str, str], str] = {}
    per_type: Counter[tuple[str, str]] = Counter()
    for e in snap.enrollments:
        for tv, value in _placements(e):
            key = (e.school_id, tv, value)
            if key not in out:
                per_type[key[:2]] += 1
                out[key] = f"{e.school_id}:{tv}:{per_type[key[:2]]}"
    return out


def _placements(e: StudentEnrollment) -> Iterator[tuple[str, str]]:
    if isinstance(e.grade, int) and 1 <= e.grade <= 13:
        yield v.GRADE_GROUP, v.code_of_grade(e.grade)
    if e.programme:
        yield v.PROGRAMME_GROUP, e.programme
    if e.programme_area:
        yield v.PROGRAMME_AREA_GROUP, e.programme_area


def _groups(
    w: _Writer, snap: SourceSnapshot, owner: tuple[str, str], places: dict[tuple[str, str, str], str]
) -> None:
    shorts = {s.school_id: s.short_name or s.school_id for s in snap.schools}
    for s in snap.schools:
        w.group(
            s.school_id, v.SCHEME_ORG, v.SCHOOL, s.short_name, s.name, owner,
            ids=[("organizationNumber", s.org_number)],
        )  # fmt: skip
    for (school, tv, value), gid in places.items():
        name = value.rsplit("/", 1)[-1][:60]
        w.group(
            gid, v.SCHEME_GRP, tv, name, None, (school, shorts.get(school, school)), ids=[("grepCode", value)]
        )
    for g in snap.groups:
        codes = ([v.code_of_grade(g.grade)] if isinstance(g.grade, int) and 1 <= g.grade <= 13 else []) + (
            [g.subject_code] if g.subject_code else []
        )
        w.group(
            g.group_id, v.SCHEME_GRP, v.KIND_TYPEVALUES[g.kind], g.name, None,
            (g.school_id, shorts.get(g.school_id, g.school_id)), begin=g.start_date, end=g.end_date,
            ids=[("grepCode", c) for c in codes],
        )  # fmt: skip


def _memberships(w: _Writer, snap: SourceSnapshot, places: dict[tuple[str, str, str], str]) -> None:
    at_school: defaultdict[str, list[str]] = defaultdict(list)
    placed: defaultdict[str, list[str]] = defaultdict(list)
    for e in snap.enrollments:
        primary = "1" if e.main_school else "0"
        at_school[e.school_id].append(
            w.member(e.person_id, v.ROLE_STUDENT, e.start_date, e.end_date, primary)
        )
        for tv, value in _placements(e):
            gid = places[(e.school_id, tv, value)]
            placed[gid].append(w.member(e.person_id, v.ROLE_STUDENT, e.start_date, e.end_date))
    for m in snap.employments:
        roletype = v.EMPLOYMENT_ROLETYPES.get(m.role, v.ROLE_MEMBER)
        at_school[m.school_id].append(w.member(m.person_id, roletype, m.start_date, m.end_date))
    for school, members in at_school.items():
        w.membership(school, members)
    for gid, members in placed.items():
        w.membership(gid, members)
    in_group: defaultdict[str, list[str]] = defaultdict(list)
    for gm in snap.memberships:
        group_role = v.GROUP_ROLETYPES.get(gm.role)
        if group_role is not None:
            in_group[gm.group_id].append(w.member(gm.person_id, group_role))
    for gid, members in in_group.items():
        w.membership(gid, members)


def write_export(
    snap: SourceSnapshot,
    path: Path,
    *,
    owner_name: str,
    owner_org_number: str,
    as_of: str,
    source: str = "BAS-demo",
) -> Path:
    """Write ``snap`` as a PIFU-IMS 1.2 full export at ``path`` (0600, atomically); the path."""
    path = Path(path)
    with atomic_file(path) as f:
        w = _Writer(f, source)
        w.w(f'<?xml version="1.0" encoding="UTF-8"?>\n<enterprise xmlns="{v.NS}">\n')
        w.w(
            f'<properties lang="nob"><datasource>{_x(source, 256)}</datasource><type>full</type>'
            f"<datetime>{_x(as_of, 32)}</datetime></properties>\n"
        )
        _persons(w, snap)
        owner_id = f"{v.OWNER}:{owner_org_number}"
        owner = (owner_id, owner_name[:128])
        w.group(
            owner_id, v.SCHEME_ORG, v.OWNER, owner_name[:60], owner_name[:256], owner,
            ids=[("organizationNumber", owner_org_number)],
        )  # fmt: skip
        places = _placement_groups(snap)
        _groups(w, snap, owner, places)
        _memberships(w, snap, places)
        w.w("</enterprise>\n")
    return path
