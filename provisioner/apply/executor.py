"""The executor: applies a plan through connectors, one code path for every target.

Core (identity) changes go first, straight into the state store. Then each target that
is neither held nor plan-only gets its changes one by one through its connector:
transient errors are retried with backoff, a rejected object is recorded and skipped,
a fatal error stops that target (the others go on). Results land in the state store and
the changelog as they happen, in batches, so an interrupted run is consistent. Targets
whose connector is ``process_safe`` (file targets) are applied in worker processes at the
same time (provisioner.apply.workers); each does exactly what it would do in this process.

A file target (``FileTarget``) writes its files only in ``finish``, after the store has
recorded its changes: those are kept as pending exports until the files are durably
written, and a run killed in between leaves them to the next run, which hands them to
the connector again before its own changes (provisioner/state/exports.py). Nothing the
store records as applied is missing from the files for good.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from connectors.base import (
    Applied,
    Connector,
    ConnectorError,
    FatalError,
    FileTarget,
    RejectedError,
    StoredObject,
    TransientError,
)
from provisioner import faults
from provisioner.apply.options import DEFAULT_BATCH, ApplyOptions
from provisioner.apply.workers import Job, StopFlag, Workers, cores
from provisioner.apply.workers import available as workers_available
from provisioner.core.plan import CORE, Change, Op, Plan, TargetPlan
from provisioner.state import exports
from provisioner.state.store import StateStore
from provisioner.state.writer import TargetWriter, apply_core

log = structlog.get_logger("bas.executor")

STOPPED = object()  # yielded by _outcomes when the stop event is set


class Skipped(Exception):
    """A change not sent, because what it depends on failed earlier in this run."""


@dataclass
class TargetResult:
    """How applying one target went."""

    target: str
    status: str  # applied | held | planned | failed | unchanged | interrupted
    ok: int = 0
    rejected: int = 0
    failed: int = 0
    skipped: int = 0  # not sent: depended on a change that failed (planned again next run)
    errors: list[str] = field(default_factory=list)  # the first few, for the summary

    def to_json(self) -> dict:
        """Plain dict for run summaries."""
        return {
            "status": self.status,
            "ok": self.ok,
            "rejected": self.rejected,
            "failed": self.failed,
            "skipped": self.skipped,
            "errors": self.errors[:20],
        }


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff for transient errors."""

    attempts: int = 5
    base_delay: float = 1.0
    max_delay: float = 60.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before the next attempt (Retry-After wins when given)."""
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        return min(self.base_delay * 2**attempt, self.max_delay)


def apply_plan(
    plan: Plan,
    store: StateStore,
    connectors: Mapping[str, Connector],
    *,
    soft_delete: Mapping[str, bool],
    retry: RetryPolicy = RetryPolicy(),
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[int], None] | None = None,
    only: set[str] | None = None,
    stop: threading.Event | None = None,
    options: ApplyOptions | None = None,
) -> dict[str, TargetResult]:
    """Apply every applicable part of a plan; returns a result per target.

    Core first; then targets whose connector is ``process_safe`` may run in worker
    processes while this process applies the others (provisioner.apply.workers).
    ``stop`` (set by the daemon on SIGTERM) is checked between changes: the change in
    flight finishes, what was done is flushed, and the rest is left for the next run.
    ``options``: the state-store batch size, whether workers are used, how they log.
    """
    options = options or ApplyOptions()
    results: dict[str, TargetResult] = {}
    todo: list[TargetPlan] = []
    owed = exports.targets(store)  # file targets a killed run left with changes to write out
    for tp in plan.targets:
        if tp.target == CORE or (only is not None and tp.target not in only):
            continue
        if tp.hold is not None:
            results[tp.target] = TargetResult(tp.target, "held")
        elif tp.dry_run:
            results[tp.target] = TargetResult(tp.target, "planned")
        elif not tp.changes and (tp.target not in owed or tp.target not in connectors):
            results[tp.target] = TargetResult(tp.target, "unchanged")
        elif stop is not None and stop.is_set():
            results[tp.target] = TargetResult(tp.target, "interrupted")
            log.warning("target interrupted", run_id=plan.run_id, target=tp.target, done=0)
        else:
            todo.append(tp)

    forked, local = _split(todo, connectors, store, options)
    with Workers(stop) as workers:
        # Workers start now and load their jobs while the core is written; they apply
        # only after it is committed (go), so no target may hold a username the
        # historic base lacks.
        for tp in forked:
            job = Job(
                tp,
                connectors[tp.target],
                store.url,
                plan.run_id,
                plan.as_of,
                soft_delete.get(tp.target, False),
                retry,
                options,
            )
            workers.start(job)
        core = plan.target(CORE)
        if core is not None and (only is None or CORE in only):
            n = apply_core(store, core.changes, plan.run_id, plan.as_of)
            results[CORE] = TargetResult(CORE, "applied" if n else "unchanged", ok=n)
            faults.point("core:committed")
            if progress:
                progress(n)
        workers.go()
        for tp in local:
            if stop is not None and stop.is_set():
                results[tp.target] = TargetResult(tp.target, "interrupted")
                log.warning("target interrupted", run_id=plan.run_id, target=tp.target, done=0)
                continue
            conn, soft = connectors[tp.target], soft_delete.get(tp.target, False)
            results[tp.target] = apply_target(
                tp,
                store,
                conn,
                plan.run_id,
                plan.as_of,
                soft,
                retry,
                sleep,
                progress,
                stop,
                batch=options.batch,
            )

        def done(target: str, res: TargetResult, changes: int) -> None:
            results[target] = res
            if progress:
                progress(changes)

        workers.wait(done)
    # Core first, then in plan order, as if applied one after the other.
    order = [CORE] + [tp.target for tp in plan.targets if tp.target != CORE]
    return {name: results[name] for name in order if name in results}


def _split(
    todo: list[TargetPlan], connectors: Mapping[str, Connector], store: StateStore, options: ApplyOptions
) -> tuple[list[TargetPlan], list[TargetPlan]]:
    """(targets for worker processes, targets for this process).

    Only connectors marked ``process_safe`` go to workers, at most one per core. This
    process keeps the largest of them when it has nothing else to do: its plan is in
    memory here already, and a worker would hold a second copy of it.
    """
    if len(todo) < 2 or not workers_available(store, options):
        return [], todo
    safe = [tp for tp in todo if getattr(connectors[tp.target], "process_safe", False)]
    local = [tp for tp in todo if tp not in safe]
    if not local and safe:
        largest = max(safe, key=lambda tp: len(tp.changes))
        safe.remove(largest)
        local.append(largest)
    forked = safe[: cores()]
    local += safe[len(forked) :]
    return forked, local


def apply_target(
    tp: TargetPlan,
    store: StateStore,
    conn: Connector,
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
    res = TargetResult(tp.target, "applied")
    tlog = log.bind(run_id=run_id, target=tp.target)
    files = isinstance(conn, FileTarget)
    writer = TargetWriter(store, tp.target, run_id, as_of, soft_delete, export=files)
    writer.preload(tp.changes)
    try:
        try:
            conn.begin(run_id, writer.anchor)
            owed = 0
            if isinstance(conn, FileTarget):
                owed = _hand_over(conn, conn.exported, store, tp.target, run_id, tlog)
        except (FatalError, TransientError, OSError) as exc:
            # The target cannot even start: it fails alone, the other targets go on.
            res.status, res.failed = "failed", len(tp.changes)
            res.errors.append(f"target could not start: {exc}")
            tlog.error("target could not start", error=str(exc))
            return res
        _apply_changes(tp, conn, writer, res, retry, sleep, progress, stop, tlog, batch)
        writer.finish()
        faults.point(f"{tp.target}:committed")
        if progress:
            progress(len(tp.changes) % batch)
        # An interrupted target still finishes: a file target writes out what was applied
        # (the state store now records it), so the target and the store stay in step.
        # Stopped before its first change, with nothing owed, it has nothing new to write.
        if res.status != "failed" and not (res.status == "interrupted" and res.ok == 0 and not owed):
            current = (
                StoredObject(
                    o["kind"], o["key"], o["anchor"], o["status"], o["attrs"], o["members"], o["username"]
                )
                for o in store.iter_objects(tp.target)
            )
            try:
                conn.finish(current)
            except (FatalError, OSError) as exc:
                res.status = "failed"
                res.errors.append(f"finishing failed: {exc}")
                tlog.error("finishing target failed", error=str(exc))
            else:
                faults.point(f"{tp.target}:finished")
                if files:  # the files carrying every recorded change are durably written
                    exports.clear(store, tp.target, run_id)
    finally:
        writer.flush()
        conn.close()
    return res


def _hand_over(
    conn: Connector, exported: Callable[[str], bool], store: StateStore, target: str, run_id: str, tlog: Any
) -> int:
    """Give a file target again what earlier runs recorded but never wrote out; returns how many.

    The target accepted these changes before (the store records them as applied), so they
    are not recorded again: the connector only needs them for this run's delta file.
    """
    owed = exports.claim(store, target, run_id, exported)
    for change in owed:
        try:
            conn.apply(change)
        except ConnectorError as exc:  # accepted once; if refused now, the full file still has it
            tlog.warning("pending export refused", key=change.key, op=change.op.value, error=str(exc))
    if owed:
        tlog.warning("changes a stopped run never wrote out are written now", changes=len(owed))
    return len(owed)


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
    many = getattr(conn, "apply_many", None)
    failed_creates: set[str] = set()
    site = f"{tp.target}:change"  # a test fault-injection point (provisioner/faults.py)
    for i, change, outcome in _outcomes(conn, many, tp.changes, retry, sleep, tlog, stop, failed_creates):
        plog = tlog.bind(person=change.person_id, key=change.key, op=change.op.value)
        if outcome is STOPPED:
            res.status = "interrupted"
            tlog.warning("target interrupted", done=i - 1, remaining=len(tp.changes) - i + 1)
            break
        if (
            isinstance(outcome, ConnectorError)
            and change.op in (Op.CREATE, Op.RESTORE)  # a restore may create the user again
            and change.kind == "person"
        ):
            failed_creates.add(change.key)  # their group adds wait for the next run
        if isinstance(outcome, Skipped):
            res.skipped += 1
            writer.failed(change, "skipped", str(outcome))
            plog.warning("change skipped", reason=str(outcome))
        elif isinstance(outcome, RejectedError):
            res.rejected += 1
            res.errors.append(f"{change.op.value} {change.kind} {change.key}: {outcome}")
            writer.failed(change, "rejected", str(outcome))
            plog.warning("change rejected", error=str(outcome))
        elif isinstance(outcome, TransientError):
            res.failed += 1
            res.errors.append(f"{change.op.value} {change.kind} {change.key}: gave up: {outcome}")
            writer.failed(change, "failed", f"gave up after {retry.attempts} attempts: {outcome}")
            plog.error("change failed after retries", error=str(outcome))
        elif isinstance(outcome, FatalError):
            res.failed += 1
            res.status = "failed"
            res.errors.append(f"target stopped: {outcome}")
            writer.failed(change, "failed", f"fatal: {outcome}")
            tlog.error("target stopped", error=str(outcome), remaining=len(tp.changes) - i)
            break
        else:
            res.ok += 1
            writer.ok(change, outcome.anchor, outcome.note)
        faults.point(site)
        if i % batch == 0:
            writer.flush()
            faults.point(f"{tp.target}:flushed")
            if progress:
                progress(batch)


def _outcomes(
    conn: Connector,
    many: Callable[[Sequence[Change]], list[Applied | ConnectorError]] | None,
    changes: Sequence[Change],
    retry: RetryPolicy,
    sleep: Callable[[float], None],
    tlog: Any,
    stop: StopFlag | None = None,
    failed_creates: set[str] | None = None,
) -> Iterator[tuple[int, Change, Any]]:
    """(position, change, Applied or the error) for every change, in plan order.

    A connector with ``apply_many`` (it batches requests) gets windows of ``conn.window``
    changes and answers each change separately, so per-object isolation holds; changes
    that failed transiently are retried together, with the same backoff as single ones.
    ``stop`` is checked before each change (each window when batching): then STOPPED is
    yielded once. Members whose create or restore failed earlier (``failed_creates``, filled
    by the caller) are left out of group adds, so the state store never records them as added.
    """
    failed = failed_creates if failed_creates is not None else set()
    if many is None:
        for i, change in enumerate(changes, 1):
            if stop is not None and stop.is_set():
                yield i, change, STOPPED
                return
            change, skip = _without_failed_members(change, failed)
            if skip is not None:
                yield i, change, skip
                continue
            plog = tlog.bind(person=change.person_id, key=change.key, op=change.op.value)
            try:
                yield i, change, _with_retries(conn, change, retry, sleep, plog)
            except (RejectedError, TransientError, FatalError) as exc:
                yield i, change, exc
        return
    size = max(1, int(getattr(conn, "window", 1000)))
    for start in range(0, len(changes), size):
        if stop is not None and stop.is_set():
            yield start + 1, changes[start], STOPPED
            return
        prepared = [_without_failed_members(c, failed) for c in changes[start : start + size]]
        send = [c for c, skip in prepared if skip is None]
        answers = iter(_window_outcomes(many, send, retry, sleep, tlog) if send else ())
        for k, (change, skip) in enumerate(prepared):
            outcome = skip if skip is not None else next(answers)
            yield start + k + 1, change, outcome
            if isinstance(outcome, FatalError):
                return


def _window_outcomes(
    many: Callable[[Sequence[Change]], list[Applied | ConnectorError]],
    window: list[Change],
    retry: RetryPolicy,
    sleep: Callable[[float], None],
    tlog: Any,
) -> list[Applied | ConnectorError]:
    """One window through ``apply_many``, transient failures retried together with backoff."""
    try:
        results: list[Applied | ConnectorError] = list(many(window))
    except FatalError as exc:
        return [exc] * len(window)
    for attempt in range(1, retry.attempts):
        again = [k for k, r in enumerate(results) if isinstance(r, TransientError)]
        if not again:
            break
        hint = max((results[k].retry_after or 0.0) for k in again)  # type: ignore[union-attr]
        wait = retry.delay(attempt - 1, hint or None)
        tlog.warning("transient errors, retrying", changes=len(again), attempt=attempt, wait=wait)
        sleep(wait)
        try:
            redo = many([window[k] for k in again])
        except FatalError as exc:
            redo = [exc] * len(again)
        for k, r in zip(again, redo):
            results[k] = r
    return results


def _without_failed_members(change: Change, failed: set[str]) -> tuple[Change, Skipped | None]:
    """A group add without members whose create failed this run; Skipped when none is left."""
    if change.op is not Op.ADD_MEMBERS or not failed:
        return change, None
    kept = tuple(m for m in change.members if m[0] not in failed)
    if len(kept) == len(change.members):
        return change, None
    if not kept:
        return change, Skipped("every member's account could not be created this run; added next run")
    return replace(change, members=kept), None


def _with_retries(
    conn: Connector, change: Change, retry: RetryPolicy, sleep: Callable[[float], None], plog: Any
) -> Applied:
    """Apply one change, retrying transient errors with backoff."""
    for attempt in range(retry.attempts):
        try:
            return conn.apply(change)
        except TransientError as exc:
            if attempt + 1 >= retry.attempts:
                raise
            wait = retry.delay(attempt, exc.retry_after)
            plog.warning("transient error, retrying", error=str(exc), attempt=attempt + 1, wait=wait)
            sleep(wait)
    raise AssertionError("unreachable")
