"""A small, fast LDIF writer (RFC 2849): content records and change records.

Owns the text form only: which values are written plain and which base64, line
folding, and the shape of add / modify / delete / modrdn records. It knows nothing
about Feide or the state store. Values are written as given (``str``; ``int`` as
decimal; ``bool`` as LDAP ``TRUE``/``FALSE``); ``None`` and empty lists write nothing.

Rules applied:

* A value (or DN) is written plain (``attr: value``) only when it is a SAFE-STRING
  (RFC 2849 section "Formal Syntax Definition"): ASCII without NUL, CR or LF, not
  starting with space, ``:`` or ``<``; and, as the RFC recommends, not ending with a
  space. Everything else, including any non-ASCII text like ``æøå``, is written as
  ``attr:: <base64 of the UTF-8 bytes>``.
* Every physical line is at most 76 characters: longer lines are folded, each
  continuation line starting with one space. Because non-ASCII values are base64,
  every line is ASCII, so folding never splits a character.
* Records are separated by one empty line. A file of change records starts with
  ``VERSION_LINE`` (``version: 1``); a file of content records (an export to bulk-load)
  is written without it, because OpenLDAP's slapadd does not read a version line (it
  takes it for an attribute of a record with no dn) while ldapadd loads either.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "FOLD_WIDTH",
    "VERSION_LINE",
    "LineCache",
    "add_record",
    "attr_block",
    "content_record",
    "delete_record",
    "is_attribute_name",
    "is_safe_string",
    "line",
    "modify_record",
    "modrdn_record",
    "values_of",
]

FOLD_WIDTH = 76
VERSION_LINE = "version: 1\n"

# SAFE-INIT-CHAR then SAFE-CHAR* (RFC 2849), and no trailing space (RFC 2849 note 8).
_SAFE = re.compile(r"(?:[\x01-\x09\x0b\x0c\x0e-\x1f\x21-\x39\x3b\x3d-\x7f][\x01-\x09\x0b\x0c\x0e-\x7f]*)?")
# An attribute description: a name or OID, with options (";lang-no", ";binary").
_ATTR = re.compile(r"(?:[A-Za-z][A-Za-z0-9-]*|[0-9]+(?:\.[0-9]+)*)(?:;[A-Za-z0-9-]+)*")


def is_safe_string(value: str) -> bool:
    """True when ``value`` may be written plain after ``attr: `` (else base64)."""
    return _SAFE.fullmatch(value) is not None and not value.endswith(" ")


def is_attribute_name(name: str) -> bool:
    """True for a valid LDIF attribute description (name or OID, with options)."""
    return _ATTR.fullmatch(name) is not None


def _fold(text: str) -> str:
    # First physical line holds FOLD_WIDTH characters, each continuation line one space
    # plus FOLD_WIDTH - 1, so every line is at most FOLD_WIDTH characters long.
    step = FOLD_WIDTH - 1
    if len(text) <= FOLD_WIDTH + step:  # the common case (GO entitlements): two lines
        return text[:FOLD_WIDTH] + "\n " + text[FOLD_WIDTH:]
    rest = text[FOLD_WIDTH:]
    return text[:FOLD_WIDTH] + "".join("\n " + rest[i : i + step] for i in range(0, len(rest), step))


def line(name: str, value: str) -> str:
    """One ``name: value`` (or ``name:: base64``) line, folded, with its newline."""
    if is_safe_string(value):
        text = f"{name}: {value}"
    else:
        text = f"{name}:: {base64.b64encode(value.encode('utf-8')).decode('ascii')}"
    if len(text) > FOLD_WIDTH:
        text = _fold(text)
    return text + "\n"


def values_of(value: Any) -> list[str]:
    """The LDAP string values of one attribute value: [] for None and empty lists."""
    if value is None:
        return []
    if isinstance(value, bool):  # before int: bool is an int
        return ["TRUE" if value else "FALSE"]
    if isinstance(value, str):
        return [value] if value != "" else []
    if isinstance(value, int):
        return [str(value)]
    if isinstance(value, list | tuple):
        out = []
        for v in value:
            out.extend(values_of(v))
        return out
    raise TypeError(f"cannot write a {type(value).__name__} value to LDIF")


LineCache = dict[str, dict[str, str]]  # attribute name -> value -> its rendered line


def attr_block(attrs: Mapping[str, Any], skip: Iterable[str] = (), cache: LineCache | None = None) -> str:
    """The lines of every attribute value (objectClass first, then in mapping order), leaving out ``skip``.

    ``cache`` (one dict kept for a whole file) remembers the rendered lines of values in
    lists: multi-valued attributes such as GO entitlements, affiliations and org unit
    DNs repeat across thousands of entries, and rendering each once is most of the work.
    """
    skipped = frozenset(skip)
    out: list[str] = []
    items: Iterable[tuple[str, Any]] = attrs.items()
    if "objectClass" in attrs:  # by convention first, whatever order the mapping came in
        items = [("objectClass", attrs["objectClass"]), *((k, v) for k, v in items if k != "objectClass")]
    for name, value in items:
        if name in skipped:
            continue
        if isinstance(value, str):
            if value:
                out.append(line(name, value))
        elif isinstance(value, list) and cache is not None:
            seen = cache.get(name)
            if seen is None:
                seen = cache[name] = {}
            try:
                got = [seen.get(v) for v in value]
            except TypeError:  # unhashable values cannot be cached (values_of refuses them below)
                out.extend(line(name, v) for v in values_of(value))
                continue
            if None in got:
                for i, ln in enumerate(got):
                    if ln is None:
                        v = value[i]
                        got[i] = ln = "".join(line(name, x) for x in values_of(v))
                        if isinstance(v, str):
                            seen[v] = ln
            out += [ln for ln in got if ln is not None]  # every one filled in above
        else:
            out.extend(line(name, v) for v in values_of(value))
    return "".join(out)


def content_record(
    dn: str, attrs: Mapping[str, Any], skip: Iterable[str] = (), cache: LineCache | None = None
) -> str:
    """A content record (an entry), ending with the empty line that separates records."""
    return line("dn", dn) + attr_block(attrs, skip, cache) + "\n"


def add_record(
    dn: str, attrs: Mapping[str, Any], skip: Iterable[str] = (), cache: LineCache | None = None
) -> str:
    """A ``changetype: add`` record with every attribute of the entry."""
    return line("dn", dn) + "changetype: add\n" + attr_block(attrs, skip, cache) + "\n"


def delete_record(dn: str) -> str:
    """A ``changetype: delete`` record."""
    return line("dn", dn) + "changetype: delete\n\n"


def modify_record(dn: str, changes: Mapping[str, Any]) -> str:
    """A ``changetype: modify`` record: ``replace`` for each value, ``delete`` for None/empty.

    Returns "" when there is nothing to change.
    """
    parts = []
    for name, value in changes.items():
        vals = values_of(value)
        if vals:
            parts.append(f"replace: {name}\n" + "".join(line(name, v) for v in vals) + "-\n")
        else:
            parts.append(f"delete: {name}\n-\n")
    if not parts:
        return ""
    return line("dn", dn) + "changetype: modify\n" + "".join(parts) + "\n"


def modrdn_record(dn: str, new_rdn: str, new_superior: str | None = None, delete_old_rdn: bool = True) -> str:
    """A ``changetype: modrdn`` record (rename, and move when ``new_superior`` is given)."""
    out = line("dn", dn) + "changetype: modrdn\n" + line("newrdn", new_rdn)
    out += f"deleteoldrdn: {1 if delete_old_rdn else 0}\n"
    if new_superior is not None:
        out += line("newsuperior", new_superior)
    return out + "\n"
