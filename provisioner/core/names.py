"""Person names: cleaning for display and ASCII folding for usernames.

Owns the rules for turning a name as the SIS holds it into (a) the display form every
target shows and (b) the folded a-z0-9 form usernames are built from. Pure functions,
no I/O; ``fold`` is on the hot path (every person, every run) and is table-driven.
"""

from __future__ import annotations

import unicodedata

__all__ = ["clean", "display_name", "fold", "is_usable"]

# Letters NFKD does not decompose to ASCII, or that Norwegian convention spells out
# (å -> aa, not a). Keys are lowercase; fold() lowercases before looking up.
_SPECIAL = {
    "æ": "ae",
    "ø": "o",
    "å": "aa",
    "ß": "ss",
    "ð": "d",
    "þ": "th",
    "ł": "l",
    "đ": "d",  # Sami
    "ŋ": "n",  # Sami
    "ŧ": "t",  # Sami
    "œ": "oe",
    "ı": "i",  # dotless i (Turkish)
    "ĸ": "k",  # kra (old Greenlandic)
}

_ASCII_KEEP = frozenset("abcdefghijklmnopqrstuvwxyz0123456789")


def _fold_char(ch: str) -> str:
    """How one character folds: a-z0-9 text, or "" to drop it."""
    out = []
    for lower in ch.lower():  # lower() may yield two characters (İ -> i + dot)
        special = _SPECIAL.get(lower)
        if special is not None:
            out.append(special)
            continue
        for c in unicodedata.normalize("NFKD", lower):
            if c in _ASCII_KEEP:
                out.append(c)
            elif c in _SPECIAL:  # NFKD can expose a special letter (rare compatibility forms)
                out.append(_SPECIAL[c])
    return "".join(out)


class _FoldTable(dict[int, str]):
    """A str.translate table that fills itself: each code point is worked out once."""

    def __missing__(self, codepoint: int) -> str:
        value = self[codepoint] = _fold_char(chr(codepoint))
        return value


_FOLD_TABLE = _FoldTable()
for _c in _ASCII_KEEP:
    _FOLD_TABLE[ord(_c)] = _c
for _c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
    _FOLD_TABLE[ord(_c)] = _c.lower()


def fold(text: str | None) -> str:
    """ASCII-fold to lowercase a-z0-9: æ->ae, ø->o, å->aa, é->e, Sami letters; all else dropped."""
    if not text:
        return ""
    if not text.isascii():
        # Compose first so a decomposed å (a + ring) folds to "aa" like the composed one.
        text = unicodedata.normalize("NFC", text)
    return text.translate(_FOLD_TABLE)


def _drop_invisible(text: str) -> str:
    # Control and format characters (zero-width space, BOM, soft hyphen, bidi marks) come
    # from copy-paste into the SIS; they are invisible and break LDAP/AD values.
    return "".join(c for c in text if c.isspace() or unicodedata.category(c) not in ("Cc", "Cf"))


def clean(value: str | None) -> str:
    """NFC, invisible characters removed, whitespace trimmed and runs collapsed to one space; None -> ""."""
    if not value:
        return ""
    if not value.isascii():
        value = unicodedata.normalize("NFC", value)
    if not value.isprintable():  # only then can it hold tabs, NBSP, control or format chars
        value = _drop_invisible(value)
    return " ".join(value.split())


def is_usable(value: str | None) -> bool:
    """True when a name part has something left after clean() (a missing-name check)."""
    return bool(clean(value))


def display_name(given: str | None, middle: str | None, family: str | None) -> str:
    """The cleaned name parts joined with single spaces, empty parts left out."""
    return " ".join(p for p in (clean(given), clean(middle), clean(family)) if p)
