"""Distinguished names (RFC 4514): escape, parse, compare, parent, first RDN, is-under. Pure.

The one place BAS builds and reads DNs, for every mapping (AD, Feide), every LDAP
connector and the Feide checker:

- ``escape`` writes an attribute value for a DN: ``\\ , + " < > ; =`` and every ``#``
  are backslash-escaped, NUL is the hex pair ``\\00``, a leading and a trailing space
  are escaped. Every ``#`` (not only a leading one, which is all RFC 4514 asks for)
  because ldap3's DN parser insists on it; the output is the same as the escaping BAS
  has always written, so stored DNs do not change.
- ``parse`` reads a DN as servers return it (OpenLDAP leaves ``#`` and ``=`` inside a
  value unescaped, AD writes ``\\2C``-style hex pairs, either may put a space after a
  comma): RDNs of (attribute type, value) with the escapes undone; ``,`` and ``;``
  separate RDNs, ``+`` joins the values of a multi-valued RDN.
- ``normalize`` / ``same`` / ``is_under`` compare as the directory does for the
  attributes BAS names entries by (cn, ou, uid, dc, o, norEduOrgUnitUniqueIdentifier;
  all caseIgnoreMatch): attribute types case-insensitively, values with the escapes
  undone, case-folded, and with insignificant spaces (leading, trailing, runs) reduced
  as RFC 4518 does.
- ``rdn`` and ``parent`` cut a DN as written (escapes kept), for modify_dn requests.

A value that starts with an unescaped ``#`` is taken as text, not as RFC 4514's
hex-encoded BER value: no directory BAS talks to writes those for these attributes.
"""

from __future__ import annotations

__all__ = [
    "DNError",
    "Key",
    "clean",
    "escape",
    "is_under",
    "join",
    "normalize",
    "parent",
    "parse",
    "rdn",
    "rdns",
    "same",
    "unescape",
    "within",
]

Pair = tuple[str, str]  # (attribute type, value), escapes undone
Key = tuple[tuple[Pair, ...], ...]  # a DN as normalize returns it

_ESCAPED = frozenset('\\,+"<>;=#')
_HEX = frozenset("0123456789abcdefABCDEF")


class DNError(ValueError):
    """Text that is not a DN (an RDN without ``=``, an empty RDN or attribute type)."""


def escape(value: str) -> str:
    """An attribute value escaped for a DN (see the module docstring); ValueError when empty."""
    if not value:
        raise ValueError("an RDN value cannot be empty")
    out = [("\\" + c) if c in _ESCAPED else ("\\00" if c == "\x00" else c) for c in value]
    if out[0] == " ":
        out[0] = "\\ "
    if out[-1] == " ":
        out[-1] = "\\ "
    return "".join(out)


def unescape(value: str) -> str:
    """One RDN value with RFC 4514 escapes undone (``\\,`` and hex pairs such as ``\\2C``)."""
    if "\\" not in value:
        return value
    out = bytearray()
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            pair = value[i + 1 : i + 3]
            if len(pair) == 2 and pair[0] in _HEX and pair[1] in _HEX:
                out.append(int(pair, 16))  # a UTF-8 byte: a character may take several pairs
                i += 3
                continue
            out.extend(value[i + 1].encode("utf-8"))
            i += 2
            continue
        out.extend(c.encode("utf-8"))
        i += 1
    return out.decode("utf-8", "backslashreplace")


def _cut(text: str, seps: str) -> list[str]:
    """``text`` split at the unescaped separators in ``seps``."""
    parts: list[str] = []
    start = i = 0
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2  # an escaped character (or the first of a hex pair) never separates
            continue
        if c in seps:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def _trim(text: str) -> str:
    """Spaces around an RDN or value dropped, except an escaped trailing one."""
    text = text.lstrip(" ")
    while text.endswith(" "):
        slashes = len(text) - 1 - len(text[:-1].rstrip("\\"))
        if slashes % 2:  # "\ " : the space is part of the value
            break
        text = text[:-1]
    return text


def rdns(dn: str) -> list[str]:
    """The RDNs of a DN as written (escapes kept), leftmost first; [] for the empty DN."""
    if not dn.strip():
        return []
    out = [_trim(part) for part in _cut(dn, ",;")]
    if not all(out):
        raise DNError(f"not a DN (an empty RDN): {dn!r}")
    return out


def _pairs(one_rdn: str, dn: str) -> tuple[Pair, ...]:
    pairs = []
    for ava in _cut(one_rdn, "+"):
        attr, eq, value = ava.partition("=")
        if not eq or not attr.strip():
            raise DNError(f"not a DN: {dn!r}")
        pairs.append((attr.strip(), unescape(_trim(value))))
    return tuple(pairs)


def parse(dn: str) -> tuple[tuple[Pair, ...], ...]:
    """A DN as RDNs of (attribute type, value) with escapes undone; DNError when it is not one."""
    return tuple(_pairs(r, dn) for r in rdns(dn))


def _fold(value: str) -> str:
    return " ".join(value.casefold().split())


def normalize(dn: str) -> Key:
    """A DN in a form for comparing (see the module docstring); DNError when it is not one."""
    return tuple(tuple(sorted((a.lower(), _fold(v)) for a, v in rdn)) for rdn in parse(dn))


def same(a: str, b: str) -> bool:
    """True when two DNs name the same entry."""
    return normalize(a) == normalize(b)


def is_under(dn: str, base: str) -> bool:
    """True when ``dn`` is ``base`` or lies below it."""
    d, b = normalize(dn), normalize(base)
    return len(d) >= len(b) and d[len(d) - len(b) :] == b


def rdn(dn: str) -> str:
    """The first RDN of a DN, as written (still escaped)."""
    found = rdns(dn)
    return found[0] if found else ""


def parent(dn: str) -> str:
    """The DN without its first RDN, as written ("" for a one-RDN DN)."""
    return ",".join(rdns(dn)[1:])


def join(*parts: str) -> str:
    """RDNs and DNs joined with commas, empty parts left out."""
    return ",".join(p for p in parts if p)


def within(rel: str, base: str) -> str:
    """A container setting as a full DN: a relative one (``OU=Grupper``) goes under ``base``."""
    return rel if is_under(rel, base) else join(rel, base)


def clean(dn: str) -> str:
    """A DN as a server returned it, re-escaped the way BAS writes DNs (stored anchors, logs)."""
    return ",".join("+".join(f"{a}={escape(v)}" for a, v in one) for one in parse(dn))
