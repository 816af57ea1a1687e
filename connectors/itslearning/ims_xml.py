"""IMS Enterprise 1.1 XML writing: escaping, record rendering, atomic files.

Owns the element structure of ``ims_epv1p1.xsd`` (element order, required elements,
attribute values) and the text escaping, so ``connectors.itslearning.connector`` only decides
what goes into a file. Written as strings onto a buffered stream rather than as an
ElementTree: an Oslo-size full file has over a million memberships, and a tree of it
would cost gigabytes and minutes; the member line is the hot path and is built from
pre-escaped pieces.

Every text value goes through :func:`text`, which escapes ``& < >`` (and ``"`` for
attribute values), keeps every other character (emoji, leading and trailing spaces),
writes ``\\r`` as a character reference so it survives parsing, and drops what XML 1.0
cannot carry at all (most C0 controls, lone surrogates, U+FFFE/U+FFFF).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

# The namespace of the XSD the files are validated against (VigoBAS's copy of IMS
# Enterprise 1.1, see shared/schemas/ims_epv1p1.xsd).
NAMESPACE = "http://tempuri.org/ims_epv1p1"

RECSTATUS_ADD = "1"
RECSTATUS_UPDATE = "2"
RECSTATUS_DELETE = "3"

# IMS idtype of a membership member: 1 person, 2 group.
IDTYPE_PERSON = "1"

# Label and relation of the guardian -> student link written in a person's extension.
# relation 2 = "the referenced object is my child" (IMS 1.1: 1 parent, 2 child, 3 alias).
CHILD_RELATION = "2"
CHILD_LABEL = "Child"

_SPECIAL = re.compile("[&<>\r\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_SPECIAL_ATTR = re.compile('[&<>"\r\n\t\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]')
_REPLACE = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\r": "&#13;", "\n": "&#10;", "\t": "&#9;"}


def _sub(m: re.Match[str]) -> str:
    return _REPLACE.get(m.group(), "")


def text(value: Any) -> str:
    """Escape a value for element content; None is the empty string."""
    if value is None:
        return ""
    s = value if isinstance(value, str) else str(value)
    # The search is the fast path: most names need no escaping at all.
    return _SPECIAL.sub(_sub, s) if _SPECIAL.search(s) else s


def attr(value: Any) -> str:
    """Escape a value for a double-quoted attribute."""
    s = "" if value is None else str(value)
    return _SPECIAL_ATTR.sub(_sub, s) if _SPECIAL_ATTR.search(s) else s


class ImsWriter:
    """Writes one ``<enterprise>`` document record by record onto a text stream.

    Records must come in the XSD's order: properties, persons, groups, memberships.
    ``recstatus=None`` writes no recstatus (full files: every record is current).
    """

    def __init__(self, out: TextIO, source: str) -> None:
        self._w = out.write
        self._src = f"<sourcedid><source>{text(source)}</source><id>"
        self._role_tails: dict[tuple[str, str | None], str] = {}

    def _sourcedid(self, sid: str, sourcedidtype: str | None = None) -> str:
        if sourcedidtype:
            head = self._src.replace("<sourcedid>", f'<sourcedid sourcedidtype="{sourcedidtype}">', 1)
            return f"{head}{text(sid)}</id></sourcedid>"
        return f"{self._src}{text(sid)}</id></sourcedid>"

    def start(self, datasource: str, datetime: str) -> None:
        """XML declaration, root element and properties."""
        self._w(
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<enterprise xmlns="{NAMESPACE}">\n'
            f'<properties lang="no"><datasource>{text(datasource)}</datasource>'
            f"<datetime>{text(datetime)}</datetime></properties>\n"
        )

    def end(self) -> None:
        """Close the root element."""
        self._w("</enterprise>\n")

    def person(
        self,
        sourcedid: str,
        attrs: Mapping[str, Any],
        recstatus: str | None = None,
        old_sourcedid: str | None = None,
        children: Sequence[str] = (),
    ) -> None:
        """A person record; ``children`` are the sourcedids of a guardian's students."""
        rs = f' recstatus="{recstatus}"' if recstatus else ""
        if old_sourcedid is not None and old_sourcedid != sourcedid:
            ids = self._sourcedid(old_sourcedid, "Old") + self._sourcedid(sourcedid, "New")
        else:
            ids = self._sourcedid(sourcedid)
        parts = [f"<person{rs}>", ids]
        userid = attrs.get("userid")
        if userid:
            parts.append(f"<userid>{text(userid)}</userid>")
        parts.append(
            f"<name><fn>{text(attrs.get('fn'))}</fn>"
            f"<n><family>{text(attrs.get('family'))}</family><given>{text(attrs.get('given'))}</given></n></name>"
        )
        email = attrs.get("email")
        if email:
            parts.append(f"<email>{text(email)}</email>")
        role = attrs.get("institutionrole")
        if role:
            parts.append(f'<institutionrole primaryrole="Yes" institutionroletype="{attr(role)}"/>')
        if children:
            parts.append("<extension>")
            for child in children:
                parts.append(
                    f'<relationship relation="{CHILD_RELATION}">{self._sourcedid(child)}'
                    f"<label>{CHILD_LABEL}</label></relationship>"
                )
            parts.append("</extension>")
        parts.append("</person>\n")
        self._w("".join(parts))

    def deleted_person(self, sourcedid: str) -> None:
        """A recstatus 3 person: the sourcedid and the (empty) name the XSD requires."""
        self._w(f'<person recstatus="3">{self._sourcedid(sourcedid)}<name><fn></fn></name></person>\n')

    def group(
        self,
        sourcedid: str,
        attrs: Mapping[str, Any],
        level: int,
        parent: str | None,
        recstatus: str | None = None,
        old_sourcedid: str | None = None,
    ) -> None:
        """A group (owner, school or group) with its parent relationship."""
        rs = f' recstatus="{recstatus}"' if recstatus else ""
        if old_sourcedid is not None and old_sourcedid != sourcedid:
            ids = self._sourcedid(old_sourcedid, "Old") + self._sourcedid(sourcedid, "New")
        else:
            ids = self._sourcedid(sourcedid)
        grouptype = attrs.get("grouptype") or "Gruppe"
        parts = [
            f"<group{rs}>",
            ids,
            f'<grouptype><scheme>BAS</scheme><typevalue level="{level}">{text(grouptype)}</typevalue>'
            "</grouptype>",
            f"<description><short>{text(attrs.get('name'))}</short>",
        ]
        if attrs.get("subject_code"):
            parts.append(f"<long>{text(attrs['subject_code'])}</long>")
        parts.append("</description>")
        if attrs.get("org_number"):
            parts.append(
                f"<org><orgname>{text(attrs.get('name'))}</orgname><id>{text(attrs['org_number'])}</id></org>"
            )
        start, end = attrs.get("start"), attrs.get("end")
        if start or end:
            parts.append("<timeframe>")
            if start:
                parts.append(f"<begin>{text(start)}</begin>")
            if end:
                parts.append(f"<end>{text(end)}</end>")
            parts.append("</timeframe>")
        if parent is not None:
            parts.append(
                f'<relationship relation="1">{self._sourcedid(parent)}'
                f"<label>{text(grouptype)}</label></relationship>"
            )
        parts.append("</group>\n")
        self._w("".join(parts))

    def deleted_group(self, sourcedid: str) -> None:
        """A recstatus 3 group: the sourcedid and the (empty) description the XSD requires."""
        self._w(
            f'<group recstatus="3">{self._sourcedid(sourcedid)}'
            "<description><short></short></description></group>\n"
        )

    def _role_tail(self, roletype: str, recstatus: str | None) -> str:
        key = (roletype, recstatus)
        tail = self._role_tails.get(key)
        if tail is None:
            rs = f' recstatus="{recstatus}"' if recstatus else ""
            status = "0" if recstatus == RECSTATUS_DELETE else "1"
            tail = (
                f'</id></sourcedid><idtype>{IDTYPE_PERSON}</idtype><role{rs} roletype="{attr(roletype)}">'
                f"<status>{status}</status></role></member>\n"
            )
            self._role_tails[key] = tail
        return tail

    def membership(self, group_sourcedid: str, members: Iterable[tuple[str, str, str | None]]) -> None:
        """One group's members: (escaped person sourcedid, roletype, recstatus or None).

        The member sourcedids must already be escaped with :func:`text` (callers escape
        each person once and reuse it across all of that person's memberships).
        """
        head = self._src.replace("<sourcedid>", "<member><sourcedid>", 1)
        tail = self._role_tail
        lines = [head + esc + tail(role, rs) for esc, role, rs in members]
        if lines:  # the XSD wants at least one member per membership
            self._w(f"<membership>{self._sourcedid(group_sourcedid)}\n{''.join(lines)}</membership>\n")
