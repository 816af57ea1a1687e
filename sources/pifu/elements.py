"""The PIFU-IMS 1.2 elements as the reader walks them: tag names and small accessors.

Tag names are lxml's Clark notation (``{namespace}name``). The accessors walk children and
compare tags: ``find`` parses a path and ``iterchildren(tag)`` builds a tag matcher on every
call, several times slower at a million members. Positions (a sourcedid's id is its second
child) are safe because the reader validates against the schema in the same pass: a record
that does not have them fails validation, and the whole file is refused.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from sources.pifu import vocabulary as v


def q(name: str) -> str:
    return f"{{{v.NS}}}{name}"


ENTERPRISE, PROPERTIES, PERSON, GROUP, MEMBERSHIP = map(
    q, ("enterprise", "properties", "person", "group", "membership")
)
SOURCEDID, ID, USERID, NAME, FN, N, GIVEN, FAMILY = map(
    q, ("sourcedid", "id", "userid", "name", "fn", "n", "given", "family")
)
DEMOGRAPHICS, BDAY, EMAIL, TEL, EXTENSION = map(q, ("demographics", "bday", "email", "tel", "extension"))
PIFU_STATUS, CONTACT, PRIMARY = map(q, ("pifu_status", "pifu_hasContactPerson", "pifu_primaryRelation"))
GROUPTYPE, SCHEME, TYPEVALUE, DESCRIPTION, SHORT, LONG = map(
    q, ("grouptype", "scheme", "typevalue", "description", "short", "long")
)
TIMEFRAME, BEGIN, END, RELATIONSHIP, PIFU_ID, PIFU_VALUE = map(
    q, ("timeframe", "begin", "end", "relationship", "pifu_id", "pifu_value")
)
MEMBER, ROLE, STATUS, TYPE, DATETIME = map(q, ("member", "role", "status", "type", "datetime"))
COMMENTS = q("comments")


def text(el: Any) -> str | None:
    """An element's text trimmed; None for no element, no text or only blanks."""
    if el is None:
        return None
    t = el.text
    if t is None:
        return None
    t = t.strip()
    return t or None


def child(el: Any, tag: str) -> Any:
    """The first child with this tag, or None."""
    for c in el:
        if c.tag == tag:
            return c
    return None


def find(el: Any, tag: str) -> str | None:
    return text(child(el, tag))


def sourcedid(el: Any) -> str | None:
    """The record's id: its first sourcedid that is not marked Old (else its first)."""
    first = None
    for c in el:
        tag = c.tag
        if tag == SOURCEDID:
            sid = text(c[1])  # sourcedid: (source, id)
            if c.get("sourcedidtype") != "Old":
                return sid
            first = first or sid
        elif tag != COMMENTS:
            break  # the sourcedids come first
    return first


def timeframe(tf: Any) -> tuple[str | None, str | None]:
    """(begin, end) of a timeframe element."""
    begin = end = None
    for d in tf:
        tag = d.tag
        if tag == BEGIN:
            begin = text(d)
        elif tag == END:
            end = text(d)
    return begin, end


def role_parts(r: Any) -> tuple[str | None, str | None, str | None, str | None]:
    """(status, begin, end, pifu_primaryRelation) of a role element."""
    status = begin = end = primary = None
    for c in r:
        tag = c.tag
        if tag == STATUS:
            status = c.text
        elif tag == TIMEFRAME:
            begin, end = timeframe(c)
        elif tag == EXTENSION:
            primary = find(c, PRIMARY)
    return status, begin, end, primary


def xpath(path: str) -> Any:
    return etree.XPath(path, namespaces={"p": v.NS}, smart_strings=False)


# A group's members in three C-level queries (a million members at Oslo size): used when
# every member has exactly one role with a roletype and a status, the shape exports have.
MEMBER_IDS = xpath("p:member/p:sourcedid[1]/p:id/text()")
MEMBER_ROLETYPES = xpath("p:member/p:role/@roletype")
MEMBER_STATUSES = xpath("p:member/p:role/p:status/text()")
MEMBER_COUNT = xpath("count(p:member)")


def status_of(r: Any) -> str | None:
    for c in r:
        if c.tag == STATUS:
            return c.text
    return None
