"""How the executor gets an outcome for each change from a connector: one by one or in windows.

Owns the retry of transient errors (backoff, Retry-After honoured), the windows of a
batching connector (each change still answered on its own, so per-object isolation
holds), the changes decided without the target (a forget; a group change narrowed to
the persons the target really holds, provisioner.apply.absent) and the stop flag checked
between changes. provisioner.apply.target records what comes out.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from connectors.base import Applied, Connector, person_phases
from connectors.errors import ConnectorError, FatalError, PendingError, TransientError
from provisioner.apply.absent import Absent, Skipped, narrowed
from provisioner.core.plan import Change, Op

__all__ = ["DEFAULT_RETRY", "STOPPED", "RetryPolicy", "outcomes"]


class StopFlag(Protocol):
    """What a target's apply loop checks between changes."""

    def is_set(self) -> bool:
        """True when the run should stop."""
        ...


STOPPED = object()  # yielded by outcomes when the stop event is set


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


DEFAULT_RETRY = RetryPolicy()


def outcomes(
    conn: Connector,
    many: Callable[[Sequence[Change]], list[Applied | ConnectorError]] | None,
    changes: Sequence[Change],
    retry: RetryPolicy,
    sleep: Callable[[float], None],
    tlog: Any,
    stop: StopFlag | None = None,
    absent: Absent | None = None,
) -> Iterator[tuple[int, Change, Any]]:
    """(position, change, Applied or the error) for every change, in plan order.

    A connector with a ``window`` (it batches requests) gets windows of ``conn.window``
    changes and answers each change separately, so per-object isolation holds; changes
    that failed transiently are retried together, with the same backoff as single ones.
    ``stop`` is checked before each change (each window when batching): then STOPPED is
    yielded once. Persons whose create or restore failed or is pending (``absent``, filled by
    the caller) are left out of later group changes (provisioner.apply.absent), so the state
    store never records them as members or owners; a window is cut where a group change
    follows person creates (``person_phases``), so their outcomes are known first.
    """
    failed = absent if absent is not None else {}
    if many is None:
        for i, change in enumerate(changes, 1):
            if stop is not None and stop.is_set():
                yield i, change, STOPPED
                return
            change, skip = _decided(change, failed)
            if skip is not None:
                yield i, change, skip
                continue
            plog = tlog.bind(person=change.person_id, key=change.key, op=change.op.value)
            try:
                yield i, change, _with_retries(conn, change, retry, sleep, plog)
            except ConnectorError as exc:
                yield i, change, exc
        return
    size = conn.window
    for start in range(0, len(changes), size):
        if stop is not None and stop.is_set():
            yield start + 1, changes[start], STOPPED
            return
        window = changes[start : start + size]
        for phase in person_phases(window):
            prepared = [_decided(window[k], failed) for k in phase]
            send = [c for c, skip in prepared if skip is None]
            answers = iter(_window_outcomes(many, send, retry, sleep, tlog) if send else ())
            for k, (change, skip) in zip(phase, prepared):
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


def _decided(change: Change, absent: Absent) -> tuple[Change, Applied | Skipped | PendingError | None]:
    """A change with its outcome when it is decided without the target (else None).

    A forget is the state store's alone (the object is gone from the target already):
    it is recorded, never sent.
    """
    if change.op is Op.FORGET:
        return change, Applied(anchor=change.anchor, note="forgotten in the state store")
    return narrowed(change, absent)


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
