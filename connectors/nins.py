"""Targets that carry NINs: they plan and store them sealed, and write them whole.

A plan holds a NIN in a target attribute only sealed (provisioner.core.nin_seal). A
connector or exporter that writes such an attribute to its target names it in
``nin_attrs``; the executor then hands it a ``NinLookup`` (``use_nin_book``, before
``begin``) that gives back the whole NIN a seal stands for, from the historic base, and
the connector asks it (``whole_attrs``) only for what it is about to write (``NinWriter``,
the base of connectors and exporters). A reader of such a target (``NinReader``) is given
the store's seal instead (``use_nin_seal``) and seals what it reads, so that it compares
with what was recorded; it never gets the book.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from connectors.errors import RejectedError
from provisioner.core.nin_seal import is_sealed, sealed_attrs


class NinLookup(Protocol):
    """The whole NIN a seal stands for (None: the historic base has none that seals so)."""

    def __call__(self, sealed: str) -> str | None: ...


class NinAttrs:
    """The attributes of a target that carry a NIN (none by default): planned and stored sealed."""

    # Feide: norEduPersonNIN. The executor and a reconcile look here for what to hand over.
    nin_attrs: frozenset[str] = frozenset()


class NinWriter(NinAttrs):
    """The NIN capability of a connector or exporter: it writes NINs whole, from the book."""

    _nin_book: NinLookup | None = None

    def use_nin_book(self, book: NinLookup) -> None:
        """Take what gives sealed NINs back whole (called only when ``nin_attrs`` is set)."""
        self._nin_book = book

    def whole_attrs(self, attrs: Mapping[str, Any]) -> Mapping[str, Any]:
        """``attrs`` with every sealed NIN whole, as the target is to hold it.

        RejectedError when a seal is not in the historic base (it always is for a NIN a
        run planned: identities are committed before any target), or when no book was given.
        """
        wholes = self._wholes(attrs)
        return {**attrs, **wholes} if wholes else attrs

    def check_nins(self, attrs: Mapping[str, Any]) -> None:
        """RejectedError unless every sealed NIN in ``attrs`` can be made whole (keeps no copy:
        an exporter checks a change as it accepts it and makes it whole as it writes it)."""
        self._wholes(attrs)

    def _wholes(self, attrs: Mapping[str, Any]) -> dict[str, str]:
        out: dict[str, str] = {}
        for name in self.nin_attrs:
            sealed = attrs.get(name)
            if not is_sealed(sealed):
                continue
            whole = self._nin_book(sealed) if self._nin_book is not None else None
            if whole is None:
                raise RejectedError(f"{name}: the historic base has no NIN for {sealed[:17]}")
            out[name] = whole
        return out


class NinReader(NinAttrs):
    """The NIN capability of a reader: it seals the NINs it reads, as the store records them."""

    _nin_seal: Callable[[str], str] | None = None

    def use_nin_seal(self, seal: Callable[[str], str]) -> None:
        """Take the store's seal, for what a reader reads (called only when ``nin_attrs`` is set)."""
        self._nin_seal = seal

    def sealed_live(self, attrs: Mapping[str, Any]) -> Mapping[str, Any]:
        """What a reader read, its whole NINs sealed as the store records them."""
        if not self.nin_attrs or self._nin_seal is None:
            return attrs
        return sealed_attrs(attrs, self.nin_attrs, self._nin_seal)
