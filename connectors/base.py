"""The connector protocol.

A connector turns one planned change into target operations, idempotently: a create
that finds its own object already there is success, a delete that finds nothing is
success. It reports failures by raising the typed errors of connectors.errors
(transient, rejected, fatal; pending is no failure), and the executor decides.

File targets are not connectors but ``Exporter``s: they accept changes, then write their
files from those and the stored state; only then are the changes recorded as applied.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from connectors import files
from connectors.errors import ConnectorError, FatalError
from connectors.nins import NinReader, NinWriter
from provisioner.core.drift import LiveView, Recorded
from provisioner.core.plan import Change, Op
from provisioner.core.quickinit import quick_init
from provisioner.core.rows import ObjectRow
from provisioner.core.states import ObjectStatus
from provisioner.core.transitions import transition


@quick_init
@dataclass(frozen=True, slots=True)
class Applied:
    """What a connector reports after applying one change successfully."""

    anchor: str | None = None  # the target's immutable id (new for creates)
    note: str | None = None  # e.g. "already existed" for an idempotent create
    extra: Mapping[str, Any] = field(default_factory=dict)  # target facts worth storing


@quick_init
@dataclass(frozen=True, slots=True)
class StoredObject:
    """A target object as the state store holds it (what exporters write their full files from)."""

    kind: str
    key: str
    anchor: str | None
    status: ObjectStatus
    attrs: Mapping[str, Any]
    members: tuple[tuple[str, str], ...] | None
    username: str | None


class StoredLookup(Protocol):
    """The stored objects with these keys (of one target), in the store's (kind, key) order:
    what a delta file needs, read without the whole target (``Exporter.export``)."""

    def __call__(self, keys: Collection[str]) -> Iterable[StoredObject]: ...


def lookup_in(stored: Iterable[StoredObject]) -> StoredLookup:
    """A lookup over objects at hand (held in a list once): for an exporter given no lookup."""
    held = list(stored)

    def some(keys: Collection[str]) -> list[StoredObject]:
        return [o for o in held if o.key in keys]

    return some


class AnchorResolver(Protocol):
    """Looks up the anchor the state store holds for an object of this target."""

    def __call__(self, kind: str, key: str) -> str | None: ...


class Connector(NinWriter, ABC):
    """What the executor needs from a target; every connector derives from it.

    Its capabilities are typed attributes the executor reads (no probing):

    - ``process_safe``: it holds no session to a remote system and writes only its own
      files, so the executor may apply it in a worker process (``FileTarget`` sets it);
    - ``window``: above 0, the executor hands ``apply_many`` windows of at most that many
      changes, in plan order, instead of calling ``apply`` once per change;
    - ``peers``: targets whose stored anchors it reads (``use_peers``);
    - ``nin_attrs``: attributes that carry a NIN, planned sealed and written whole
      (``use_nin_book``, connectors.nins).
    """

    target: str
    process_safe: bool = False
    window: int = 0
    # Other targets whose stored anchors this connector reads: the executor hands it
    # their resolvers (``use_peers``) before ``begin``. Hybrid Microsoft 365 finds a synced
    # user by the objectGUID its AD target recorded.
    peers: tuple[str, ...] = ()

    def use_peers(self, resolvers: Mapping[str, AnchorResolver]) -> None:  # noqa: B027 (most have no peers)
        """Take the anchor resolvers of the ``peers`` targets (called only when there are peers)."""

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


class Reader(NinReader, ABC):
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


class Exporter(NinWriter, ABC):
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
    output_dir: Path
    temp_glob: str  # the temp files a crashed run of this exporter leaves in ``output_dir``
    _run_id: str | None
    _resolve: AnchorResolver | None
    written: list[Path]  # files the last export() wrote, for logs and tests

    def begin(self, run_id: str, resolve: AnchorResolver) -> None:
        """Start a run: make the output directory (a crashed run's temp files go) and forget the
        last run's changes; ``resolve`` gives anchors the store holds."""
        files.prepare_dir(self.output_dir, self.temp_glob, self.target)
        self._run_id, self._resolve = run_id, resolve
        self.written = []
        self._start()

    @abstractmethod
    def _start(self) -> None:
        """Reset what the exporter keeps for one run (its accepted changes)."""

    @abstractmethod
    def accept(self, change: Change) -> Applied:
        """Check one change and remember it for the files; raise RejectedError to refuse it."""

    @abstractmethod
    def export(self, stored: Iterable[StoredObject], some: StoredLookup | None = None) -> None:
        """Write the delta and full files from the accepted changes and ``stored`` (the state before them).

        ``stored`` is iterated only for a full file: a delta alone reads the objects it
        names through ``some`` (without it, from ``stored``), so that a run which changed
        a few objects does not read the whole target. Returns once every file is durably
        in place; raises FatalError when they cannot be written.
        """

    @abstractmethod
    def exported(self, run_id: str) -> bool:
        """True when run ``run_id`` durably wrote its delta file (so its changes are in the files)."""

    @abstractmethod
    def recover(self, run_id: str) -> None:
        """Finish what run ``run_id``, killed after its delta file, left undone (the latest-full link)."""

    def deliver(self) -> int:
        """Ship the written files not yet delivered, in order; returns how many went.

        For a target that delivers its files somewhere (itslearning over SFTP); the others
        deliver nothing. Called after the files are recorded, and in runs without changes:
        TransientError when the receiver cannot be reached this run, FatalError when it refuses.
        """
        return 0

    def waiting(self) -> int:
        """How many written files wait for delivery (0 for a target that does not deliver)."""
        return 0

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


# What a file target records: its objects are written or left out, never disabled.
_FILE_OPS = frozenset({Op.CREATE, Op.UPDATE, Op.MOVE, Op.DELETE, Op.ADD_MEMBERS, Op.REMOVE_MEMBERS})


def _applied(obj: StoredObject | None, pairs: Sequence[tuple[Change, str | None]]) -> StoredObject | None:
    """One object after its changes, in plan order (``transition``, as the store will record
    them); None when it ends deleted or never existed."""
    row = None
    if obj is not None:
        members = None if obj.members is None else frozenset(obj.members)
        status = ObjectStatus(obj.status)
        row = ObjectRow(obj.kind, obj.anchor, status, None, None, obj.username, obj.attrs, members)
    for c, anchor in pairs:
        if c.op not in _FILE_OPS:
            raise ValueError(f"a file target does not {c.op.value} ({c.kind}:{c.key})")
        if row is None and c.op is not Op.CREATE:
            continue  # a change to an object neither stored nor created: nothing to show
        row = transition(row, c, as_of="", anchor=anchor)
    if row is None:
        return None
    members_out = None if row.members is None else tuple(sorted(row.members))
    key = obj.key if obj is not None else pairs[0][0].key
    return StoredObject(row.kind, key, row.anchor, row.status, row.attrs, members_out, row.username)


def person_phases(changes: Sequence[Change]) -> list[list[int]]:
    """Positions of ``changes`` split where a group change may need a person created or restored before it.

    Each phase's person creates and restores are answered before the next phase's group
    changes are looked at: the executor then knows whose account is missing (failed, or
    pending) before it sends a group change naming them, and a connector knows the new ids.
    """
    out: list[list[int]] = [[]]
    persons_pending = False
    for i, c in enumerate(changes):
        needs_persons = c.kind == "group" and c.op in (Op.CREATE, Op.UPDATE, Op.ADD_MEMBERS)
        if needs_persons and persons_pending:
            out.append([])
            persons_pending = False
        if c.kind == "person" and c.op in (Op.CREATE, Op.RESTORE):
            persons_pending = True
        out[-1].append(i)
    return [s for s in out if s]
