"""Tiny hand-written PIFU-IMS 1.2 documents for the PIFU source tests.

Each helper returns the XML text of one record (valid against the XSD when its values
are); ``doc`` wraps records in an ``enterprise`` with full-export properties, and
``owner_and_school`` gives the owner group and one school group most documents need.
"""

from __future__ import annotations

from pathlib import Path
from xml.sax.saxutils import escape

from sources.pifu.vocabulary import NS

OWNER_ORG = "964000000"  # tests/sisbuilder.py's owner


def doc(*records: str, export_type: str = "full", head: str = "") -> str:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n{head}<enterprise xmlns="{NS}">\n'
        f'<properties lang="nob"><datasource>test</datasource><type>{export_type}</type>'
        f"<datetime>2025-10-01</datetime></properties>\n" + "\n".join(records) + "\n</enterprise>\n"
    )


def sid(ident: str) -> str:
    return f"<sourcedid><source>test</source><id>{escape(ident)}</id></sourcedid>"


def person(
    pid: str,
    given: str = "Ola",
    family: str = "Nordmann",
    *,
    fn: str | None = None,
    nin: str | None = None,
    bday: str | None = None,
    email: str | None = None,
    tels: tuple[tuple[str, str], ...] = (),
    ext: str = "",
) -> str:
    parts = [f"<person>{sid(pid)}"]
    if nin is not None:
        parts.append(f'<userid useridtype="personNIN">{nin}</userid>')
    parts.append(
        f"<name><fn>{escape(fn if fn is not None else f'{given} {family}')}</fn>"
        f"<n><family>{escape(family)}</family><given>{escape(given)}</given></n></name>"
    )
    if bday:
        parts.append(f"<demographics><bday>{bday}</bday></demographics>")
    if email:
        parts.append(f"<email>{email}</email>")
    parts += [f'<tel teltype="{t}">{n}</tel>' for t, n in tels]
    if ext:
        parts.append(f"<extension>{ext}</extension>")
    return "".join(parts) + "</person>"


def guardian_of(gid: str) -> str:
    return f'<pifu_hasContactPerson type="guardian">{sid(gid)}</pifu_hasContactPerson>'


def group(
    gid: str,
    typevalue: str,
    parent: str,
    *,
    short: str | None = None,
    long: str | None = None,
    codes: tuple[str, ...] = (),
    org: str | None = None,
    begin: str | None = "2025-08-15",
    end: str | None = "2026-06-20",
    scheme: str | None = None,
) -> str:
    scheme = scheme or ("pifu-ims-go-org" if typevalue in ("skole", "skoleeier") else "pifu-ims-go-grp")
    desc = f"<short>{escape(short or gid)}</short>" + (f"<long>{escape(long)}</long>" if long else "")
    frame = ""
    if begin or end:
        frame = (
            "<timeframe>"
            + (f"<begin>{begin}</begin>" if begin else "")
            + (f"<end>{end}</end>" if end else "")
        )
        frame += "</timeframe>"
    ids = [("organizationNumber", org)] if org else []
    ids += [("grepCode", c) for c in codes]
    ext = "".join(
        f'<pifu_id type="{k}"><pifu_value>{escape(val)}</pifu_value><pifu_scope>x</pifu_scope>'
        f"<pifu_unique>1</pifu_unique></pifu_id>"
        for k, val in ids
    )
    return (
        f'<group>{sid(gid)}<grouptype><scheme>{scheme}</scheme><typevalue level="2">{typevalue}</typevalue>'
        f"</grouptype><description>{desc}</description>{frame}"
        f'<relationship relation="1">{sid(parent)}<label>x</label></relationship>'
        + (f"<extension>{ext}</extension>" if ext else "")
        + "</group>"
    )


def role(
    roletype: str,
    *,
    status: str = "1",
    begin: str | None = None,
    end: str | None = None,
    primary: str | None = None,
) -> str:
    frame = ""
    if begin or end:
        frame = (
            "<timeframe>"
            + (f"<begin>{begin}</begin>" if begin else "")
            + (f"<end>{end}</end>" if end else "")
        )
        frame += "</timeframe>"
    ext = f"<extension><pifu_primaryRelation>{primary}</pifu_primaryRelation></extension>" if primary else ""
    return f'<role roletype="{roletype}"><status>{status}</status>{frame}{ext}</role>'


def member(pid: str, *roles: str) -> str:
    return f"<member>{sid(pid)}<idtype>1</idtype>{''.join(roles)}</member>"


def membership(gid: str, *members: str) -> str:
    return f"<membership>{sid(gid)}{''.join(members)}</membership>"


def owner_and_school(school: str = "NORD", org: str = "974000001") -> list[str]:
    return [
        group("OWNER", "skoleeier", "OWNER", org=OWNER_ORG, short="Eksempel kommune"),
        group(school, "skole", "OWNER", org=org, short=f"{school}BY", long=f"{school}by skole"),
    ]


def write(tmp: Path, text: str, name: str = "export.xml") -> Path:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path
