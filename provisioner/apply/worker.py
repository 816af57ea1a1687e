"""The worker side of provisioner.apply.workers: what a spawned worker process runs.

``init`` runs once as the worker starts (the pool's initializer): it ignores SIGTERM and
SIGINT (the parent decides when to stop) and keeps the parent's go and stop events.
``run`` takes one ``Job``, waits for go (the core changes are committed), applies
the target with the executor's own ``apply_target`` against its own state-store
connection, and returns the ``TargetResult``. Logs go to stderr, configured and masked
like the parent's.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import wait
from multiprocessing.synchronize import Event

from connectors.base import Connector, Exporter
from provisioner import logs
from provisioner.apply.collector import run_collector
from provisioner.apply.options import ApplyOptions
from provisioner.apply.outcomes import RetryPolicy
from provisioner.apply.result import TargetResult
from provisioner.apply.target import apply_target
from provisioner.core.plan import TargetPlan
from provisioner.core.states import TargetOutcome
from provisioner.state.store import StateStore


@dataclass(frozen=True)
class Job:
    """Everything a worker needs to apply one target (pickled to the worker)."""

    plan: TargetPlan
    connector: Connector | Exporter  # a process_safe connector or exporter, before begin()
    store_url: str
    run_id: str
    as_of: str
    soft_delete: bool
    retry: RetryPolicy
    options: ApplyOptions


@dataclass(frozen=True)
class _Signals:
    go: Event
    stop: Event
    orphaned: threading.Event  # the parent died: stop between changes as on a stop


# The events can reach a spawned process only as it starts (the pool's initializer), not
# with a job: this process keeps them here for the one job it runs.
_signals: list[_Signals] = []


class _Stop:
    """The stop the apply loop checks: the parent's stop, or the parent gone."""

    def __init__(self, signals: _Signals) -> None:
        self._signals = signals

    def is_set(self) -> bool:
        return self._signals.orphaned.is_set() or self._signals.stop.is_set()


def _exit_now() -> None:
    """No interpreter teardown at exit: its job is committed and answered by then.

    Tearing down a spawned interpreter with SQLAlchemy and the connectors loaded takes a
    noticeable part of a second, which the parent would wait for at the end of each apply.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def init(go: Event, stop: Event) -> None:
    """Set up a fresh worker process (the pool's initializer)."""
    # systemd and a terminal signal the whole process group; the parent decides (``stop``).
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    atexit.register(_exit_now)
    orphaned = threading.Event()
    parent = multiprocessing.parent_process()
    if parent is not None:

        def watch() -> None:
            wait([parent.sentinel])
            orphaned.set()

        threading.Thread(target=watch, name="bas-parent-watch", daemon=True).start()
    _signals.append(_Signals(go, stop, orphaned))


def run(job: Job) -> TargetResult:
    """Apply one target once the parent says go; interrupted, applying nothing, on a stop first."""
    (signals,) = _signals
    logs.configure(job.options.log.level, job.options.log.format, stream=sys.stderr)
    stop = _Stop(signals)
    while not signals.go.wait(0.1):
        if stop.is_set():
            return TargetResult(job.plan.target, TargetOutcome.INTERRUPTED)
    store = StateStore(job.store_url, check=False)
    try:
        with run_collector():
            return apply_target(
                job.plan,
                store,
                job.connector,
                job.run_id,
                job.as_of,
                job.soft_delete,
                job.retry,
                time.sleep,
                None,
                stop,
                batch=job.options.batch,
            )
    finally:
        store.close()
