"""What every source plug-in is: a reader of one school-admin system into a SourceSnapshot.

A source kind (SQL database, PIFU-IMS export files, the FINT API) turns what its system
holds into the canonical snapshot (``provisioner.core.model``), so everything downstream
(derive, usernames, plans, the safety gate, the plan certificate) is the same whatever
the system. A ``Source`` is opened for one run from the config and offers:

- ``read()``: the whole snapshot, with a digest per table (``table_digest``) and whatever
  keys the kind needs to tell later whether its input changed;
- ``unchanged(digests)``: whether the input is still exactly what those digests were made
  from, as cheaply as the kind can tell (the plan certificate and held plans ask it);
  ``read_unless(digests)``: that, or else the snapshot, from one read where it can;
- ``facts(ids)``: the source rows about some persons, for `bas person show`.

Errors: ``SourceError`` when the source cannot be read as configured (unreachable,
malformed, refused credentials): the run fails and changes nothing. A source that reads
but finds a table empty that must not be raises ``SourceRefused`` (the per-table gate),
as the gate itself would.
"""

from __future__ import annotations

import base64
import hashlib
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any, ClassVar

from provisioner.core.fetched import Converted, Fetched
from provisioner.core.model import SourceSnapshot

# Which column of which table names the person a row is about (for ``facts``).
FACT_TABLES: dict[str, tuple[str, str]] = {
    "person": ("persons", "person_id"),
    "enrollments": ("enrollments", "person_id"),
    "employments": ("employments", "person_id"),
    "guardian_of": ("guardianships", "guardian_id"),
    "guardians": ("guardianships", "student_id"),
    "memberships": ("memberships", "person_id"),
}

_DIGEST_CHUNK = 20_000  # rows per hash update (the digest depends on it: keep it fixed)


class SourceError(Exception):
    """The source cannot be read as configured (connection, credentials, file, query or columns)."""


def digest_text(h: Any) -> str:
    """A hash's digest as text: base64, not hex, whose 11-digit runs masking would take for NINs."""
    return base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()


def table_digest(name: str, rows: Iterable[Any]) -> str:
    """Digest of one table's records in the order read (a source without a native digest)."""
    h = hashlib.sha256(repr(name).encode())
    chunk: list[Any] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == _DIGEST_CHUNK:
            h.update(repr(chunk).encode("utf-8", "surrogatepass"))
            chunk = []
    if chunk:
        h.update(repr(chunk).encode("utf-8", "surrogatepass"))
    return digest_text(h)


def snapshot_digests(snap: SourceSnapshot) -> dict[str, str]:
    """A digest per canonical table of a snapshot."""
    return {name: table_digest(name, getattr(snap, name)) for name in snap.counts()}


class Source(ABC):
    """One configured source, opened for one run (a context manager: ``close`` at the end)."""

    kind: ClassVar[str]

    @abstractmethod
    def read(self) -> SourceSnapshot:
        """The whole snapshot.

        SourceError when it cannot be read; SourceRefused when a table that must not be empty is.
        """

    def fetch(self) -> Fetched:
        """The whole read, its records made as they are asked for (provisioner.core.fetched).

        A kind that reads rows it must convert (the SQL source) converts them then; this
        default reads the snapshot whole.
        """
        return Converted(self.read())

    @abstractmethod
    def unchanged(self, digests: Mapping[str, str]) -> bool:
        """True only when the input is exactly what ``digests`` (from an earlier ``read``) were made from."""

    def read_unless(self, digests: Mapping[str, str]) -> Fetched | None:
        """None when the input is exactly what ``digests`` were made from, else the read.

        A kind that can tell both from one read (the SQL source) does, and converts its
        rows only as they are asked for (provisioner.core.fetched); this default asks
        ``unchanged`` and then reads.
        """
        return None if self.unchanged(digests) else self.fetch()

    def describe(self) -> str:
        """One line for `bas config check`: what this source reads."""
        return self.kind

    def facts(self, sis_ids: set[str]) -> dict[str, list[dict[str, Any]]]:
        """The source's rows about these SIS person ids, per kind of fact (the caller masks NINs)."""
        snap = self.read()
        out: dict[str, list[dict[str, Any]]] = {}
        for label, (table, column) in FACT_TABLES.items():
            out[label] = [r._asdict() for r in getattr(snap, table) if getattr(r, column) in sis_ids]
        return out

    def close(self) -> None:  # noqa: B027 (most sources hold nothing between calls)
        """Release what the source holds (connections, temporary files)."""

    def __enter__(self) -> Source:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
