"""Applying one target's changes: through its connector, or through its exporter's files.

A connector gets the changes one by one: transient errors are retried with backoff, a
rejected object is recorded and skipped, a fatal error stops the target. Results land in
the state store and the changelog as they happen, in batches, so an interrupted run is
consistent. The executor (provisioner.apply.executor) calls ``apply_target`` for the
targets it applies in its own process, and a worker process (provisioner.apply.worker)
for the one it was given: the same code path either way.

A file target (an ``Exporter``) takes another path with the same outcomes: it accepts
or rejects each change, then writes its files from the accepted changes and the stored
state, and only once they are durable are the changes recorded as applied. They are
journaled before the files are written, so a run killed in between is settled by the
next one (provisioner/state/exports.py): nothing the store records as applied is
missing from the files, and nothing is written to them twice. A file target that
delivers its files (itslearning over SFTP) then ships what waits, this run's files and
any an earlier run could not deliver, also in a run without changes for it; a failed
delivery fails the target for the run (``Exporter.deliver``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import replace
from typing import Any

import structlog

from connectors.base import AnchorResolver, Applied, Connector, Exporter, StoredLookup, StoredObject
from connectors.errors import ConnectorError, FatalError, PendingError, RejectedError, TransientError
from provisioner import faults
from provisioner.apply.absent import Absent, Skipped, narrowed, note_absent
from provisioner.apply.options import DEFAULT_BATCH
from provisioner.apply.outcomes import STOPPED, RetryPolicy, StopFlag, outcomes
from provisioner.apply.result import TargetResult
from provisioner.core.plan import Change, TargetPlan
from provisioner.core.states import ChangeResult, TargetOutcome
from provisioner.core.stored import at_hand
from provisioner.state import exports
from provisioner.state.nins import NinBook
from provisioner.state.store import StateStore
from provisioner.state.writer import TargetWriter

log = structlog.get_logger("bas.executor")


def apply_target(
    tp: TargetPlan,
    store: StateStore,
    conn: Connector | Exporter,
    run_id: str,
    as_of: str,
    soft_delete: bool,
    retry: RetryPolicy,
    sleep: Callable[[float], None],
    progress: Callable[[int], None] | None,
    stop: StopFlag | None = None,
    *,
    batch: int = DEFAULT_BATCH,
) -> TargetResult:
    """Apply one target's changes through its connector (or exporter) and record the outcomes."""
    # Packed until now (provisioner.core.stored): unpacked once here, freed when it returns.
    tp = replace(tp, changes=at_hand(tp.changes))
    if isinstance(conn, Exporter):
        return apply_export(tp, store, conn, run_id, as_of, soft_delete, progress, stop, batch=batch)
    res, tlog, writer = _open(tp, store, run_id, as_of, soft_delete)
    try:
        if conn.peers:
            conn.use_peers({p: _peer_resolver(store, p) for p in conn.peers})
        if not _begun(conn, tp, run_id, writer, res, tlog):
            return res
        _apply_changes(tp, conn, writer, res, retry, sleep, progress, stop, tlog, batch)
        writer.finish()
        faults.point(f"{tp.target}:committed")
        if progress:
            progress(len(tp.changes) % batch)
        stopped_at_once = res.status == TargetOutcome.INTERRUPTED and res.ok == 0
        if res.status != TargetOutcome.FAILED and not stopped_at_once:
            try:
                conn.finish(_stored(store, tp.target))
            except (FatalError, OSError) as exc:
                res.status = TargetOutcome.FAILED
                res.errors.append(f"finishing failed: {exc}")
                tlog.error("finishing target failed", error=str(exc))
            else:
                faults.point(f"{tp.target}:finished")
    finally:
        writer.flush()
        conn.close()
    return res


def _open(
    tp: TargetPlan, store: StateStore, run_id: str, as_of: str, soft_delete: bool
) -> tuple[TargetResult, Any, TargetWriter]:
    """A target's result so far, its logger and its writer (the stored rows it changes read)."""
    writer = TargetWriter(store, tp.target, run_id, as_of, soft_delete)
    writer.preload(tp.changes)
    return TargetResult(tp.target, TargetOutcome.APPLIED), log.bind(run_id=run_id, target=tp.target), writer


def _begun(
    target: Connector | Exporter,
    tp: TargetPlan,
    run_id: str,
    writer: TargetWriter,
    res: TargetResult,
    tlog: Any,
) -> bool:
    """Start the target; False when it cannot even start: it fails alone, the other targets go on."""
    if target.nin_attrs:  # it writes NINs the plan holds sealed: whole from the historic base
        target.use_nin_book(NinBook(writer.store))
    try:
        target.begin(run_id, writer.anchor)
    except (FatalError, TransientError, OSError) as exc:
        res.status, res.failed = TargetOutcome.FAILED, len(tp.changes)
        res.errors.append(f"target could not start: {exc}")
        tlog.error("target could not start", error=str(exc))
        return False
    return True


def _peer_resolver(store: StateStore, target: str) -> AnchorResolver:
    """The anchors another target's objects have in the store, read once at the first question
    (after the targets applied before this one have committed)."""
    index: dict[str, Any] | None = None

    def resolve(kind: str, key: str) -> str | None:
        nonlocal index
        if index is None:
            index = store.objects.index(target)
        row = index.get(key)
        return row.anchor if row is not None and row.kind == kind else None

    return resolve


def _stored(store: StateStore, target: str) -> Iterator[StoredObject]:
    """The target's objects as the state store holds them now."""
    return map(_as_stored, store.objects.iterate(target))


def _lookup(store: StateStore, target: str) -> StoredLookup:
    """The target's stored objects with the given keys (what a delta file alone needs)."""

    def some(keys: Collection[str]) -> list[StoredObject]:
        return list(map(_as_stored, store.objects.some(target, keys)))

    return some


def _as_stored(o: Mapping[str, Any]) -> StoredObject:
    """One row of ``Objects.iterate`` or ``Objects.some`` as an exporter reads it."""
    return StoredObject(
        o["kind"], o["key"], o["anchor"], o["status"], o["attrs"], o["members"], o["username"]
    )


def apply_export(
    tp: TargetPlan,
    store: StateStore,
    exp: Exporter,
    run_id: str,
    as_of: str,
    soft_delete: bool,
    progress: Callable[[int], None] | None,
    stop: StopFlag | None = None,
    *,
    batch: int = DEFAULT_BATCH,
) -> TargetResult:
    """A file target: accept the changes, journal them, write the files, then record them as applied.

    A stop between changes exports and records what was accepted so far. When the files
    cannot be written, nothing is recorded as applied (the changes are failed, planned
    again next run), unless the delta file carrying them is in place after all.
    """
    res, tlog, writer = _open(tp, store, run_id, as_of, soft_delete)
    try:
        if not _begun(exp, tp, run_id, writer, res, tlog):
            return res
        accepted = _accept_all(tp, exp, writer, res, stop, tlog)
        if res.status == TargetOutcome.FAILED or (res.status == TargetOutcome.INTERRUPTED and not accepted):
            return res  # nothing to write; what was accepted is planned again
        if accepted:
            exports.journal(store, tp.target, run_id, accepted)
        try:
            exp.export(_stored(store, tp.target), _lookup(store, tp.target))
        except (FatalError, OSError) as exc:
            accepted = _not_exported(tp, store, exp, run_id, writer, res, accepted, exc, tlog)
        else:
            faults.point(f"{tp.target}:finished")
        exports.record(writer, accepted, batch)
        res.ok += len(accepted)
        writer.finish()
        faults.point(f"{tp.target}:committed")
        if not (stop is not None and stop.is_set()):
            deliver(exp, res, tlog)
        if progress:
            progress(len(tp.changes))
    finally:
        writer.flush()
        exp.close()
    return res


def _not_exported(
    tp: TargetPlan,
    store: StateStore,
    exp: Exporter,
    run_id: str,
    writer: TargetWriter,
    res: TargetResult,
    accepted: list[exports.Accepted],
    exc: Exception,
    tlog: Any,
) -> list[exports.Accepted]:
    """The files could not be written: what stays accepted (the changes a delta file carries).

    A run stopped part-way may have accepted too little for whole files (a first itslearning
    run stopped before its first person: no full file may be empty). That is the stop's
    doing, not a failure: the target stays interrupted and every change is planned again,
    as when nothing was accepted.
    """
    if exp.exported(run_id):  # a delta file carries them: applied after all, the full file failed
        _export_failed(res, exc, tlog)
        return accepted
    if accepted:
        exports.drop(store, tp.target, run_id)
    if res.status == TargetOutcome.INTERRUPTED:
        tlog.warning("files not written; the target was stopped before they could be whole", error=str(exc))
        return []
    _export_failed(res, exc, tlog)
    for change, _, _ in accepted:  # not applied: planned again next run
        writer.failed(change, ChangeResult.FAILED, f"files not written: {exc}")
    res.failed += len(accepted)
    return []


def _export_failed(res: TargetResult, exc: Exception, tlog: Any) -> None:
    res.status = TargetOutcome.FAILED
    res.errors.append(f"files not written: {exc}")
    tlog.error("writing the files failed", error=str(exc))


def deliver(exp: Exporter, res: TargetResult, tlog: Any) -> None:
    """Ship what the exporter has written and not delivered (oldest first); a failure fails the target.

    The changes stay recorded as applied: they are in the files, which wait in
    ``output_dir`` and go first in the next run, whether it has changes or not.
    """
    try:
        res.delivered = exp.deliver()
    except (ConnectorError, OSError) as exc:
        res.status = TargetOutcome.FAILED
        res.errors.append(f"delivery failed: {exc}")
        tlog.error("delivering the files failed", error=str(exc))
    try:
        res.waiting = exp.waiting()
    except (ConnectorError, OSError) as exc:
        res.errors.append(f"cannot count the files waiting for delivery: {exc}")
    if res.delivered or res.waiting:
        tlog.info("files delivered", delivered=res.delivered, waiting=res.waiting)


def _accept_all(
    tp: TargetPlan, exp: Exporter, writer: TargetWriter, res: TargetResult, stop: StopFlag | None, tlog: Any
) -> list[exports.Accepted]:
    """Offer every change to the exporter, in plan order; returns the accepted ones with their anchors."""
    accepted: list[exports.Accepted] = []
    absent: Absent = {}
    site = f"{tp.target}:change"  # a test fault-injection point (provisioner/faults.py)
    for i, planned in enumerate(tp.changes, 1):
        if stop is not None and stop.is_set():
            res.status = TargetOutcome.INTERRUPTED
            tlog.warning("target interrupted", done=i - 1, remaining=len(tp.changes) - i + 1)
            break
        change, skip = narrowed(planned, absent)
        outcome: Applied | ConnectorError | Skipped
        try:
            outcome = skip if skip is not None else exp.accept(change)
        except ConnectorError as exc:
            outcome = exc
        if isinstance(outcome, Applied):
            accepted.append((change, outcome.anchor, outcome.note))
        elif _not_applied(change, outcome, res, writer, absent, tlog, len(tp.changes) - i, 1):
            break
        faults.point(site)
    return accepted


def _apply_changes(
    tp: TargetPlan,
    conn: Connector,
    writer: TargetWriter,
    res: TargetResult,
    retry: RetryPolicy,
    sleep: Callable[[float], None],
    progress: Callable[[int], None] | None,
    stop: StopFlag | None,
    tlog: Any,
    batch: int,
) -> None:
    """Send every change of the plan and record each outcome (flushed every ``batch`` changes)."""
    many = conn.apply_many if conn.window > 0 else None
    absent: Absent = {}
    site = f"{tp.target}:change"  # a test fault-injection point (provisioner/faults.py)
    for i, change, outcome in outcomes(conn, many, tp.changes, retry, sleep, tlog, stop, absent):
        if outcome is STOPPED:
            res.status = TargetOutcome.INTERRUPTED
            tlog.warning("target interrupted", done=i - 1, remaining=len(tp.changes) - i + 1)
            break
        if isinstance(outcome, Applied):
            res.ok += 1
            writer.ok(change, outcome.anchor, outcome.note)
        elif _not_applied(change, outcome, res, writer, absent, tlog, len(tp.changes) - i, retry.attempts):
            break
        faults.point(site)
        if i % batch == 0:
            writer.flush()
            faults.point(f"{tp.target}:flushed")
            if progress:
                progress(batch)


def _not_applied(
    change: Change,
    outcome: ConnectorError | Skipped,
    res: TargetResult,
    writer: TargetWriter,
    absent: Absent,
    tlog: Any,
    remaining: int,
    attempts: int,
) -> bool:
    """Record a change the target did not take (skipped, pending, rejected, failed); True: stop the target."""
    plog = tlog.bind(person=change.person_id, key=change.key, op=change.op.value)
    if isinstance(outcome, ConnectorError):  # its group changes leave the person out this run
        pending = isinstance(outcome, PendingError)
        note_absent(absent, change, ChangeResult.PENDING if pending else ChangeResult.FAILED)
    if isinstance(outcome, PendingError):
        res.pending += 1
        writer.failed(change, ChangeResult.PENDING, str(outcome))
        plog.info("change pending", reason=str(outcome))
    elif isinstance(outcome, Skipped):
        res.skipped += 1
        writer.failed(change, ChangeResult.SKIPPED, str(outcome))
        plog.warning("change skipped", reason=str(outcome))
    elif isinstance(outcome, RejectedError):
        res.rejected += 1
        res.errors.append(f"{change.op.value} {change.kind} {change.key}: {outcome}")
        writer.failed(change, ChangeResult.REJECTED, str(outcome))
        plog.warning("change rejected", error=str(outcome))
    elif isinstance(outcome, FatalError):
        res.failed += 1
        res.status = TargetOutcome.FAILED
        res.errors.append(f"target stopped: {outcome}")
        writer.failed(change, ChangeResult.FAILED, f"fatal: {outcome}")
        tlog.error("target stopped", error=str(outcome), remaining=remaining)
        return True
    else:  # transient to the end
        res.failed += 1
        res.errors.append(f"{change.op.value} {change.kind} {change.key}: gave up: {outcome}")
        writer.failed(change, ChangeResult.FAILED, f"gave up after {attempts} attempts: {outcome}")
        plog.error("change failed after retries", error=str(outcome))
    return False
