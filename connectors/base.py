"""The connector protocol and its typed errors.

A connector turns one planned change into target operations, idempotently: a create
that finds its own object already there is success, a delete that finds nothing is
success. It reports failures by raising one of three errors, and the executor decides:

- ``TransientError``: try again with backoff (target busy, throttled, connection lost);
- ``RejectedError``: this object is refused; record it, skip it, go on with the rest;
- ``FatalError``: stop this target now (bad credentials, target gone, disk full).

File targets are not connectors but ``Exporter``s: they accept changes, then write their
files from those and the stored state; only then are the changes recorded as applied.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from provisioner.core.plan import Change, Op


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
    """A target object as the state store holds it (what exporters write their full files from)."""

    kind: str
    key: str
    anchor: str | None
    status: str  # active | disabled | deleted
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


class Exporter(ABC):
    """A file target: writes the run's delta and full files instead of talking to a system.

    Nothing leaves the process before ``export``. ``accept`` checks one planned change (a
    RejectedError refuses it) and names the anchor its object has: the stable id the files
    carry (itslearning's sourcedid, the Feide entry's DN). ``export`` then writes the files
    from the accepted changes and the target's stored state as it was before them, durably
    (fsync, atomic rename, 0600), and returns only once they are. The executor records the
    accepted changes as applied only after that: the store never records a change its files
    lack. A run killed between the files and that record is finished by the next run, which
    asks ``exported`` whether the killed run's delta file is in place (provisioner/state/exports.py).
    An exporter holds no session to a remote system, so it may run in a worker process.
    """

    process_safe = True
    target: str

    @abstractmethod
    def begin(self, run_id: str, resolve: AnchorResolver) -> None:
        """Start a run: make the output directory; ``resolve`` gives anchors the store holds."""

    @abstractmethod
    def accept(self, change: Change) -> Applied:
        """Check one change and remember it for the files; raise RejectedError to refuse it."""

    @abstractmethod
    def export(self, stored: Iterable[StoredObject]) -> None:
        """Write the delta and full files from the accepted changes and ``stored`` (the state before them).

        Returns once every file is durably in place; raises FatalError when they cannot be written.
        """

    @abstractmethod
    def exported(self, run_id: str) -> bool:
        """True when run ``run_id`` durably wrote its delta file (so its changes are in the files)."""

    @abstractmethod
    def recover(self, run_id: str) -> None:
        """Finish what run ``run_id``, killed after its delta file, left undone (the latest-full link)."""

    @abstractmethod
    def close(self) -> None:
        """Release what the run held; safe to call twice."""


def after_apply(
    stored: Iterable[StoredObject], accepted: Sequence[tuple[Change, str | None]]
) -> Iterator[StoredObject]:
    """The target's objects once ``accepted`` (change, anchor) pairs are applied to ``stored``.

    File targets know create, update, move, delete and member changes; the result is what
    the state store will hold after recording them (provisioner/state/writer.py), in the
    order of ``stored`` (the store's (kind, key) order) with new objects merged in sorted.
    """
    by_key: dict[str, list[tuple[Change, str | None]]] = {}
    for pair in accepted:
        by_key.setdefault(pair[0].key, []).append(pair)
    # Created objects, to merge in where the store will hold them (popped from the end).
    new = sorted(((ps[0][0].kind, k) for k, ps in by_key.items() if ps[0][0].op is Op.CREATE), reverse=True)
    for obj in stored:
        while new and new[-1] < (obj.kind, obj.key):
            if (made := _applied(None, by_key.pop(new.pop()[1], ()))) is not None:
                yield made
        if obj.key in by_key:
            if new and new[-1][1] == obj.key:
                new.pop()
            if (changed := _applied(obj, by_key.pop(obj.key))) is not None:
                yield changed
        else:
            yield obj
    while new:
        if (made := _applied(None, by_key.pop(new.pop()[1], ()))) is not None:
            yield made


def _applied(obj: StoredObject | None, pairs: Sequence[tuple[Change, str | None]]) -> StoredObject | None:
    """One object after its changes, in plan order; None when it ends deleted or never existed."""
    for c, anchor in pairs:
        op = c.op
        if op is Op.CREATE:
            members = () if c.kind == "group" else None
            obj = StoredObject(c.kind, c.key, anchor or c.anchor, "active", c.attrs, members, c.username)
        elif obj is None:
            continue  # a change to an object neither stored nor created: nothing to show
        elif op is Op.DELETE:
            obj = None
        elif op is Op.UPDATE or op is Op.MOVE:
            obj = _replace(obj, anchor, attrs={**obj.attrs, **c.attrs})
        elif op is Op.ADD_MEMBERS or op is Op.REMOVE_MEMBERS:
            have = set(obj.members or ())
            have = have | set(c.members) if op is Op.ADD_MEMBERS else have - set(c.members)
            obj = _replace(obj, anchor, members=tuple(sorted(have)))
        else:
            raise ValueError(f"a file target does not {op.value} ({c.kind}:{c.key})")
    return obj


def _replace(obj: StoredObject, anchor: str | None, **fields: Any) -> StoredObject:
    return dataclasses.replace(obj, anchor=anchor or obj.anchor, **fields)


class BatchingConnector(Connector, Protocol):
    """A connector that applies many changes at once (e.g. Graph $batch); optional.

    The executor hands it windows of at most ``window`` changes, in plan order, and
    records one result per change: ``Applied`` or the typed error of that change alone.
    """

    window: int

    def apply_many(self, changes: Sequence[Change]) -> list[Applied | ConnectorError]:
        """Apply a window of changes; one result per change, in order."""
