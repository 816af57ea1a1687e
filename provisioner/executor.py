"""The executor: applies a plan through connectors, one code path for every target.

Core (identity) changes go first, straight into the state store. Then each target that
is neither held nor plan-only gets its changes one by one through its connector:
transient errors are retried with backoff, a rejected object is recorded and skipped,
a fatal error stops that target (the others go on). Results land in the state store and
the changelog as they happen, in batches, so an interrupted run is consistent.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog

from connectors.base import Applied, Connector, FatalError, RejectedError, StoredObject, TransientError
from provisioner.plan import CORE, Change, Plan, TargetPlan
from provisioner.state.store import StateStore
from provisioner.state.writer import TargetWriter, apply_core

log = structlog.get_logger("bas.executor")

BATCH = 20000  # changes per state-store transaction


@dataclass
class TargetResult:
    """How applying one target went."""

    target: str
    status: str  # applied | held | planned | failed | unchanged
    ok: int = 0
    rejected: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)  # the first few, for the summary

    def to_json(self) -> dict:
        """Plain dict for run summaries."""
        return {
            "status": self.status,
            "ok": self.ok,
            "rejected": self.rejected,
            "failed": self.failed,
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
) -> dict[str, TargetResult]:
    """Apply every applicable part of a plan; returns a result per target."""
    results: dict[str, TargetResult] = {}
    core = plan.target(CORE)
    if core is not None and (only is None or CORE in only):
        n = apply_core(store, core.changes, plan.run_id, plan.as_of)
        results[CORE] = TargetResult(CORE, "applied" if n else "unchanged", ok=n)
        if progress:
            progress(n)
    for tp in plan.targets:
        if tp.target == CORE or (only is not None and tp.target not in only):
            continue
        if tp.hold is not None:
            results[tp.target] = TargetResult(tp.target, "held")
        elif tp.dry_run:
            results[tp.target] = TargetResult(tp.target, "planned")
        elif not tp.changes:
            results[tp.target] = TargetResult(tp.target, "unchanged")
        else:
            results[tp.target] = _apply_target(
                tp,
                store,
                connectors[tp.target],
                plan.run_id,
                plan.as_of,
                soft_delete.get(tp.target, False),
                retry,
                sleep,
                progress,
            )
    return results


def _apply_target(
    tp: TargetPlan,
    store: StateStore,
    conn: Connector,
    run_id: str,
    as_of: str,
    soft_delete: bool,
    retry: RetryPolicy,
    sleep: Callable[[float], None],
    progress: Callable[[int], None] | None,
) -> TargetResult:
    res = TargetResult(tp.target, "applied")
    tlog = log.bind(run_id=run_id, target=tp.target)
    writer = TargetWriter(store, tp.target, run_id, as_of, soft_delete)
    writer.preload(tp.changes)
    try:
        try:
            conn.begin(run_id, writer.anchor)
        except (FatalError, TransientError, OSError) as exc:
            # The target cannot even start: it fails alone, the other targets go on.
            res.status, res.failed = "failed", len(tp.changes)
            res.errors.append(f"target could not start: {exc}")
            tlog.error("target could not start", error=str(exc))
            return res
        for i, change in enumerate(tp.changes, 1):
            plog = tlog.bind(person=change.person_id, key=change.key, op=change.op.value)
            try:
                applied = _with_retries(conn, change, retry, sleep, plog)
            except RejectedError as exc:
                res.rejected += 1
                res.errors.append(f"{change.op.value} {change.kind} {change.key}: {exc}")
                writer.failed(change, "rejected", str(exc))
                plog.warning("change rejected", error=str(exc))
            except TransientError as exc:
                res.failed += 1
                res.errors.append(f"{change.op.value} {change.kind} {change.key}: gave up: {exc}")
                writer.failed(change, "failed", f"gave up after {retry.attempts} attempts: {exc}")
                plog.error("change failed after retries", error=str(exc))
            except FatalError as exc:
                res.failed += 1
                res.status = "failed"
                res.errors.append(f"target stopped: {exc}")
                writer.failed(change, "failed", f"fatal: {exc}")
                tlog.error("target stopped", error=str(exc), remaining=len(tp.changes) - i)
                break
            else:
                res.ok += 1
                writer.ok(change, applied.anchor, applied.note)
            if i % BATCH == 0:
                writer.flush()
                if progress:
                    progress(BATCH)
        writer.finish()
        if progress:
            progress(len(tp.changes) % BATCH)
        if res.status != "failed":
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
    finally:
        writer.flush()
        conn.close()
    return res


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
