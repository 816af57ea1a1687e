"""The connector protocol and its typed errors.

A connector turns one planned change into target operations, idempotently: a create
that finds its own object already there is success, a delete that finds nothing is
success. It reports failures by raising one of three errors, and the executor decides:

- ``TransientError``: try again with backoff (target busy, throttled, connection lost);
- ``RejectedError``: this object is refused; record it, skip it, go on with the rest;
- ``FatalError``: stop this target now (bad credentials, target gone, disk full).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from provisioner.core.plan import Change
from provisioner.core.states import ObjectStatus


class ConnectorError(Exception):
    """Base of the typed connector errors."""


class TransientError(ConnectorError):
    """Temporary failure: the same change may succeed if retried later."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RejectedError(ConnectorError):
    """The target refuses this object; skip it and record why."""


class FatalError(ConnectorError):
    """The target cannot be used at all this run."""


@dataclass(frozen=True, slots=True)
class Applied:
    """What a connector reports after applying one change successfully."""

    anchor: str | None = None  # the target's immutable id (new for creates)
    note: str | None = None  # e.g. "already existed" for an idempotent create
    extra: Mapping[str, Any] = field(default_factory=dict)  # target facts worth storing


@dataclass(frozen=True, slots=True)
class StoredObject:
    """A target object as the state store holds it after apply (for full exports)."""

    kind: str
    key: str
    anchor: str | None
    status: ObjectStatus
    attrs: Mapping[str, Any]
    members: tuple[tuple[str, str], ...] | None
    username: str | None


class AnchorResolver(Protocol):
    """Looks up the anchor the state store holds for an object of this target."""

    def __call__(self, kind: str, key: str) -> str | None: ...


class Connector(Protocol):
    """What the executor needs from a target.

    A connector class may set ``process_safe = True`` when it holds no session to a remote
    system and writes only its own files: the executor may then apply it in a worker process.
    """

    target: str

    def begin(self, run_id: str, resolve: AnchorResolver) -> None:
        """Open connections or files for this run."""

    def apply(self, change: Change) -> Applied:
        """Apply one change; raise a typed ConnectorError on failure."""

    def finish(self, current: Iterable[StoredObject]) -> None:
        """Flush after all changes: ``current`` is the target's whole state after apply."""

    def close(self) -> None:
        """Release connections; called even after errors."""


class FileTarget:
    """Base of the file connectors: ``apply`` only records a change, ``finish`` writes the files.

    Every change such a target records as applied is also kept in the state store as a
    pending export until ``finish`` has durably written the files carrying it; a run
    killed in between leaves the next run to write them (provisioner/state/exports.py).
    A file target holds no session to a remote system, so it may run in a worker process.
    """

    process_safe = True

    def exported(self, run_id: str) -> bool:
        """True when run ``run_id`` durably wrote its delta file (so its changes were written)."""
        raise NotImplementedError


class BatchingConnector(Connector, Protocol):
    """A connector that applies many changes at once (e.g. Graph $batch); optional.

    The executor hands it windows of at most ``window`` changes, in plan order, and
    records one result per change: ``Applied`` or the typed error of that change alone.
    """

    window: int

    def apply_many(self, changes: Sequence[Change]) -> list[Applied | ConnectorError]:
        """Apply a window of changes; one result per change, in order."""
