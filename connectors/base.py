"""The connector protocol and its typed errors.

A connector turns one planned change into target operations, idempotently: a create
that finds its own object already there is success, a delete that finds nothing is
success. It reports failures by raising one of three errors, and the executor decides:

- ``TransientError``: try again with backoff (target busy, throttled, connection lost);
- ``RejectedError``: this object is refused; record it, skip it, go on with the rest;
- ``FatalError``: stop this target now (bad credentials, target gone, disk full).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from provisioner.core.drift import LiveView, Recorded
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


class Connector(ABC):
    """What the executor needs from a target; every connector derives from it.

    Its capabilities are typed attributes the executor reads (no probing):

    - ``process_safe``: it holds no session to a remote system and writes only its own
      files, so the executor may apply it in a worker process (``FileTarget`` sets it);
    - ``window``: above 0, the executor hands ``apply_many`` windows of at most that many
      changes, in plan order, instead of calling ``apply`` once per change.
    """

    target: str
    process_safe: bool = False
    window: int = 0

    @abstractmethod
    def begin(self, run_id: str, resolve: AnchorResolver) -> None:
        """Open connections or files for this run."""

    @abstractmethod
    def apply(self, change: Change) -> Applied:
        """Apply one change; raise a typed ConnectorError on failure."""

    def apply_many(self, changes: Sequence[Change]) -> list[Applied | ConnectorError]:
        """Apply a window of changes; one result per change, in order: ``Applied`` or its error.

        A batching connector (``window`` > 0) overrides this to send many at once; this one
        applies them one by one. A fatal error ends the window: it is every later change's
        result too, as the target cannot be used any more.
        """
        out: list[Applied | ConnectorError] = []
        for change in changes:
            try:
                out.append(self.apply(change))
            except FatalError as exc:
                return out + [exc] * (len(changes) - len(out))
            except ConnectorError as exc:
                out.append(exc)
        return out

    @abstractmethod
    def finish(self, current: Iterable[StoredObject]) -> None:
        """Flush after all changes: ``current`` is the target's whole state after apply."""

    @abstractmethod
    def close(self) -> None:
        """Release connections; called even after errors."""


class Reader(ABC):
    """Reads a live target back for a reconcile (provisioner.run.reconcile), never writes.

    ``read`` describes the target in the differ's terms: each recorded object found by its
    anchor, with the values the target holds in the vocabulary BAS recorded
    (``provisioner.core.drift.LiveView``). ``cursor`` is where an incremental reader left
    off last time (None: read everything). A reader owns its connection: ``close`` it.
    """

    @abstractmethod
    def read(self, recorded: Sequence[Recorded], cursor: str | None) -> LiveView:
        """The live target's view of the recorded objects."""

    @abstractmethod
    def close(self) -> None:
        """Release the connection; called even after errors."""

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FileTarget(Connector):
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
