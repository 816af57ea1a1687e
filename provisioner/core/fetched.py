"""A source read whose records are made only when asked for.

A run whose certificate no longer holds has read every table (it compared their
digests), but a patch (provisioner/run/incremental.py) needs only the persons table
whole and a few hundred rows of the others. Making a model record of every one of
an Oslo-size owner's 1.5 million rows costs about as much as reading them, so a
source may hand over its rows as read and convert them on demand:

- ``table(name)``: one table whole (kept, so asking again costs nothing);
- ``where(name, column, values)``: only the rows whose column holds one of the values,
  in the order read, exactly the records ``table(name)`` filtered would give;
- ``snapshot()``: every table (a full plan), the rows as read freed as they are converted;
- ``person_rows()``: the persons table as tuples in the record's field order, values as
  read, ids as the records hold them: what the patch fingerprints (provisioner.core.patch),
  with no record made;
- ``membership_rows()``: the memberships likewise, what provisioner.core.memberships
  fingerprints;
- ``count(name)`` and ``digest_without(name, columns, persons)``: a table's size, and
  its digest as it was before some persons joined (the SQL source's);
- ``checked()`` and ``assume_checked(known)``: what this read found out about its rows
  that holds for any read of the same digests (the SQL source's key columns that need no
  conversion), and taking that from an earlier read, so that a patch does not pass over
  a million unchanged rows again to find it out.

``Converted`` is the same over a snapshot a source made whole (PIFU, FINT, CSV).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from provisioner.core.model import SourceSnapshot


class Fetched(ABC):
    """One read of the source, its records made on demand."""

    digests: Mapping[str, str]

    @abstractmethod
    def table(self, name: str) -> tuple[Any, ...]:
        """Every record of one table, in the order read."""

    @abstractmethod
    def where(self, name: str, column: str, values: Collection[object]) -> tuple[Any, ...]:
        """The records of one table whose ``column`` is one of ``values``, in the order read."""

    @abstractmethod
    def snapshot(self) -> SourceSnapshot:
        """The whole snapshot (once: the rows as read go as they are converted)."""

    @property
    def spent(self) -> bool:
        """Whether ``snapshot()`` was made and took the rows as read with it: nothing more can
        be asked of this read (a full plan after a wide patch reads the source again)."""
        return False

    @abstractmethod
    def person_rows(self) -> Sequence[tuple[Any, ...]]:
        """The persons in Person's field order, ids as the records hold them, other values as read."""

    @abstractmethod
    def membership_rows(self) -> Sequence[tuple[Any, ...]]:
        """The memberships as plain tuples in GroupMembership's field order, ids as the records
        hold them, other values as read."""

    @abstractmethod
    def count(self, name: str) -> int:
        """How many rows one table has."""

    def digest_without(self, name: str, columns: Sequence[str], persons: Collection[str]) -> str | None:
        """The digest one table would have without the rows that name one of ``persons`` in
        one of ``columns``: the table's digest before those persons joined, when joining is
        all that changed in it. None when this source cannot say (its digests are of
        something else than the rows as read): a patch never takes joiners from it."""
        return None

    def checked(self) -> dict[str, Any]:
        """What this read found out about its tables' rows, by table, as JSON values: true of
        any read whose table has the same digest (none by default)."""
        return {}

    def assume_checked(self, known: Mapping[str, Any]) -> None:  # noqa: B027 - optional, as checked()
        """Take what an earlier read's ``checked()`` found (its tables whose digest is not this
        read's are left out here)."""


class Converted(Fetched):
    """A snapshot already made whole."""

    def __init__(self, snap: SourceSnapshot) -> None:
        self._snap = snap
        self.digests = snap.digests

    def table(self, name: str) -> tuple[Any, ...]:
        return tuple(getattr(self._snap, name))

    def where(self, name: str, column: str, values: Collection[object]) -> tuple[Any, ...]:
        return tuple(r for r in getattr(self._snap, name) if getattr(r, column) in values)

    def snapshot(self) -> SourceSnapshot:
        return self._snap

    def person_rows(self) -> Sequence[tuple[Any, ...]]:
        return self._snap.persons

    def membership_rows(self) -> Sequence[tuple[Any, ...]]:
        return [tuple(m) for m in self._snap.memberships]  # plain tuples: what marshal writes

    def count(self, name: str) -> int:
        return len(getattr(self._snap, name))
