"""Sealed NINs: what the state store keeps of a NIN outside the historic base.

The historic base (usernames, person_nins, identities) is the one place BAS keeps a whole
NIN. A target attribute that carries one (Feide's norEduPersonNIN) is planned, diffed,
stored, journaled and certified *sealed*: the first six digits (all a masked NIN shows),
``*****~``, then a keyed digest of the whole number (BLAKE2b in its keyed mode, a MAC,
120 bits, written in hex with the letters g-p for the digits 0-9, so a seal holds no
digit after its first six and masking finds nothing in it). One key gives equal seals for
equal NINs, so a plan compares sealed values as it compared whole ones, and a changed NIN
is still a changed value. The number cannot be read back from a seal: only the connector
that writes the target asks for it, from the historic base, as it writes
(provisioner.state.nins).

Why keyed: there are about a thousand NINs per birth date, so an unkeyed digest beside
its first six digits would be undone by trying them all. The key is the store's own
(made once at random, provisioner.state.nins); whoever holds it holds the historic base
beside it too, so the seal keeps NINs out of everything else the store holds (objects,
plans, the export journal) and out of what is copied from those (a support dump, a web
page, a plan printed), not from the store's owner.

Pure: values in, values out.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeGuard

SEALED = re.compile(r"[0-9]{6}\*{5}~[a-p]{30}")
_DIGEST_BYTES = 15  # 120 bits: 30 characters
_PERSON = b"bas-nin-seal"  # BLAKE2's personalization: this digest is for nothing else
# Hex digits as letters: a-f stay, 0-9 become g-p (str.translate: ~0.2 us, base32 ~1.7 us).
_LETTERS = str.maketrans("0123456789", "ghijklmnop")
_DIGITS = str.maketrans("ghijklmnop", "0123456789")


class NinSeal:
    """Seals NINs with one key (the store's)."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("a NIN seal key has at least 16 bytes")
        self._key = key

    def __call__(self, nin: str) -> str:
        """The seal of one NIN (as the SIS gave it: validated, eleven digits)."""
        return f"{nin[:6]}*****~{self.digest(nin).hex().translate(_LETTERS)}"

    def digest(self, nin: str) -> bytes:
        """The keyed digest a seal of ``nin`` shows (``digest_of`` reads it back from the seal)."""
        mac = hashlib.blake2b(nin.encode(), key=self._key, digest_size=_DIGEST_BYTES, person=_PERSON)
        return mac.digest()


def is_sealed(value: object) -> TypeGuard[str]:
    """Whether a value is a seal (not a whole NIN, not anything else); narrows it to text."""
    return isinstance(value, str) and SEALED.fullmatch(value) is not None


def prefix(sealed: str) -> str:
    """The six digits a seal shows: the birth date part of the NIN it seals."""
    return sealed[:6]


def digest_of(sealed: str) -> bytes:
    """The keyed digest a seal shows (15 bytes, where the seal's text takes 42 characters)."""
    return bytes.fromhex(sealed[12:].translate(_DIGITS))


def sealed_attrs(
    attrs: Mapping[str, Any], names: Collection[str], seal: Callable[[str], str]
) -> Mapping[str, Any]:
    """``attrs`` with the whole NINs in ``names`` sealed (``attrs`` itself when there are none).

    A value may be one text or a list of them (as a directory gives values). A value that
    is a seal already, or no NIN at all, is left as it is: a reader that reads what a
    connector wrote gets the whole number back, and compares its seal.
    """
    out: dict[str, Any] | None = None
    for name in names:
        value = attrs.get(name)
        if isinstance(value, str) and _WHOLE.fullmatch(value):
            sealed: Any = seal(value)
        elif isinstance(value, list) and any(isinstance(v, str) and _WHOLE.fullmatch(v) for v in value):
            sealed = [seal(v) if isinstance(v, str) and _WHOLE.fullmatch(v) else v for v in value]
        else:
            continue
        out = dict(attrs) if out is None else out
        out[name] = sealed
    return attrs if out is None else out


_WHOLE = re.compile(r"[0-9]{11}")
