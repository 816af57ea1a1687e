"""Pacing of Microsoft Graph writes: keeping within the tenant's write budget instead of bursting.

Owns ``WritePacer``, the bookkeeping ``connectors.m365.graph.GraphClient`` consults
before it sends writes. Graph limits writes per app and tenant over a sliding window
(e.g. 3,000 per 150 s). A client that bursts until it is refused and then waits out
``Retry-After`` is told, each time, only when the *first* slot frees; the requests it
then sends are mostly refused again, and each refusal costs the tenant's time and the
client's. The pacer instead keeps its own sliding window of the writes Graph accepted
and lets a write go only while that window has room, so after the first 429 the
client sends exactly as fast as old writes leave the window.

The budget (``limit`` writes per ``window`` seconds) is given, or learned from the
first 429: the window is taken to reach back to the client's first write still in its
log (``window = now + Retry-After - first write sent``: conservative, it errs long), and
the budget is the number of writes Graph accepted in it, raised by the writes that were
already in flight when the 429 came and turn out accepted. A later 429 for a write sent
while pacing means the budget was too generous (someone else's writes count too, or
Graph has another limit): it is cut by a tenth. The pacer only ever adds waits:
``Retry-After`` is honoured by the client all the same.

Times are the caller's clock (``time.monotonic`` in the client); accepted writes are
logged at the time their answer came, which is never earlier than Graph counted them,
so the pacer's window never frees a slot before Graph's does.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol

POLL = 0.05  # seconds to wait when the budget is held by writes still in flight
HORIZON = 600.0  # longest window learned; log entries older than this are forgotten
CUT = 0.9  # a 429 while pacing: the budget becomes this share of what the window held


class Clock(Protocol):
    """Where the Graph client reads the time and waits: the system's, or a test's virtual one."""

    def now(self) -> float:
        """Seconds on a monotonic scale."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic`` and ``time.sleep``."""

    def now(self) -> float:
        """Seconds since an arbitrary point (monotonic)."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds``."""
        time.sleep(seconds)


@dataclass(frozen=True, slots=True)
class Budget:
    """At most ``limit`` writes in any ``window`` seconds."""

    limit: int
    window: float


class WritePacer:
    """A sliding window of accepted writes, checked before each send (thread-safe)."""

    def __init__(self, budget: Budget | None = None, *, floor: int = 20, horizon: float = HORIZON) -> None:
        self.budget = budget
        self.floor = max(1, floor)  # a learned budget never goes below one full $batch
        self.horizon = horizon
        self._log: deque[tuple[float, float, int]] = deque()  # (sent, answered, accepted writes)
        self._count = 0  # accepted writes in _log
        self._inflight = 0  # writes reserved and not yet answered
        self._changed_at: float | None = None  # when the budget was last learned or cut
        self._learned_at: float | None = None  # when it was learned; None once cut
        self._lock = threading.Lock()

    def reserve(self, n: int, now: float) -> float:
        """Reserve ``n`` writes and return 0.0, or return the seconds to wait before asking again."""
        if n <= 0:
            return 0.0
        with self._lock:
            self._trim(now)
            b = self.budget
            used = self._count + self._inflight
            # Nothing held: always let one request go, even one larger than the budget.
            if b is None or used + n <= b.limit or used == 0:
                self._inflight += n
                return 0.0
            need, freed = used + n - b.limit, 0
            for _, answered, accepted in self._log:
                freed += accepted
                if freed >= need:
                    return max(answered + b.window - now, 1e-3)
            return POLL  # what holds the budget is still in flight

    def settle(self, n: int, sent: float, now: float, accepted: int) -> None:
        """``n`` reserved writes sent at ``sent`` were answered at ``now``; ``accepted`` took effect."""
        with self._lock:
            self._inflight = max(0, self._inflight - n)
            if accepted > 0:
                self._log.append((sent, now, accepted))
                self._count += accepted
            self._trim(now)
            b = self.budget
            if b is not None and self._learned_at is not None and sent < self._learned_at:
                # In flight when the budget was learned, and accepted: Graph counted it too.
                self.budget = Budget(max(b.limit, self._count), b.window)

    def throttled(self, sent: float, now: float, retry_after: float | None) -> Budget | None:
        """Learn from a 429 for a write sent at ``sent``; the new budget when it changed, else None."""
        with self._lock:
            self._trim(now)
            b = self.budget
            if b is None:
                if retry_after is None or not self._log:
                    return None  # nothing to learn from: the client's backoff alone
                first = min(s for s, _, _ in self._log)
                window = min(now + retry_after - first, self.horizon)
                self.budget = Budget(max(self.floor, self._count), max(window, 1e-3))
                self._learned_at = now
            elif self._changed_at is not None and sent < self._changed_at:
                return None  # sent before the budget last changed: says nothing new about it
            else:
                self.budget = Budget(max(self.floor, int(min(b.limit, self._count) * CUT)), b.window)
                self._learned_at = None  # a cut is not undone by writes still in flight
            self._changed_at = now
            return self.budget

    def _trim(self, now: float) -> None:
        keep = self.budget.window if self.budget is not None else self.horizon
        while self._log and self._log[0][1] <= now - keep:
            self._count -= self._log.popleft()[2]
