"""A small LDIF reader (RFC 2849) for content records: the entries of an LDIF export.

Owns reading only: folded lines, comments, ``attr: value`` and ``attr:: base64``
(UTF-8) values, the optional ``version: 1`` line. Entries are yielded one at a time,
so a file of any size is read in constant memory. Change records (``changetype:``)
and URL values (``attr:< file://...``) are refused with ValueError naming the line:
what is read here is a catalog, and a reader that fetches files named in its input is
a hole.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator

Entry = tuple[str, dict[str, list[str]]]  # (dn, {attribute name: [values]})


def _logical_lines(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    """(line number, unfolded line); "" between records; comments dropped."""
    cur: str | None = None
    start = 0
    in_comment = False
    for no, raw in enumerate(lines, 1):
        ln = raw.rstrip("\r\n")
        if ln.startswith(" "):
            if in_comment:
                continue
            if cur is None:
                raise ValueError(f"line {no}: continuation line with nothing to continue")
            cur += ln[1:]
            continue
        if cur is not None:
            yield start, cur
            cur = None
        in_comment = ln.startswith("#")
        if in_comment:
            continue
        if ln == "":
            yield no, ""
            continue
        cur, start = ln, no
    if cur is not None:
        yield start, cur


def _pair(no: int, ln: str) -> tuple[str, str]:
    name, sep, rest = ln.partition(":")
    if not sep or not name:
        raise ValueError(f"line {no}: not an 'attribute: value' line: {ln[:60]!r}")
    if rest.startswith(":"):
        try:
            return name, base64.b64decode(rest[1:].strip(), validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError) as exc:
            raise ValueError(f"line {no}: bad base64 value of {name}: {exc}") from exc
    if rest.startswith("<"):
        raise ValueError(f"line {no}: URL values ({name}:<) are not read")
    return name, rest.lstrip(" ")


def read_entries(lines: Iterable[str]) -> Iterator[Entry]:
    """The content records of an LDIF text, one (dn, attributes) at a time."""
    dn: str | None = None
    attrs: dict[str, list[str]] = {}
    first = True
    for no, ln in _logical_lines(lines):
        if ln == "":
            if dn is not None:
                yield dn, attrs
            dn, attrs = None, {}
            continue
        name, value = _pair(no, ln)
        if first and name.lower() == "version":
            first = False
            if value.strip() != "1":
                raise ValueError(f"line {no}: unsupported LDIF version {value!r}")
            continue
        first = False
        if dn is None:
            if name.lower() != "dn":
                raise ValueError(f"line {no}: a record must start with dn:, found {name}:")
            dn = value
            continue
        if name.lower() == "changetype":
            raise ValueError(f"line {no}: change records are not a catalog (a delta file?)")
        attrs.setdefault(name, []).append(value)
    if dn is not None:
        yield dn, attrs
