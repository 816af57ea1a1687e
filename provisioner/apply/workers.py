"""Applying file targets in worker processes, so that a run uses more than one core.

Applying a file target (itslearning, Feide LDIF) is CPU-bound Python: state-store rows,
changelog rows, then the full files rendered from the store. In one process the GIL keeps
a whole run on one core. Targets touch only their own rows, so once the core (identity)
changes are committed, the executor hands each target whose connector says
``process_safe = True`` (no session to a remote system, only its own files) to a worker:
one typed ``Job`` run by ``provisioner.apply.worker.run`` in a
``concurrent.futures.ProcessPoolExecutor`` with a spawn context. The worker opens its own
state-store connection, applies the target exactly as the executor would in this process,
and returns the ``TargetResult``.

Why spawn and not fork: a forked worker shares the parent's whole heap (the plan of every
target, ~1.5 GB at Oslo size), and CPython's reference counting writes to every page the
worker reads, so parent and worker together needed ~2.9 GB. A spawned worker holds only
its own target's plan. Each target gets a pool of one process: a worker that dies breaks
only its own pool, never a sibling target in the middle of its changes.

Two events, given to every worker when it starts: ``go`` (the core is committed: apply)
and ``stop`` (stop between changes). Workers ignore SIGTERM and SIGINT (a terminal signals
the whole group): this process relays a stop through the event; a worker whose parent
died stops between changes by itself.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
from concurrent.futures import wait as first_done
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing.context import SpawnContext, SpawnProcess
from multiprocessing.synchronize import Event
from typing import Any

import structlog

from provisioner.apply import worker
from provisioner.apply.options import ApplyOptions
from provisioner.apply.outcomes import StopFlag
from provisioner.apply.result import TargetResult
from provisioner.apply.worker import Job
from provisioner.core.states import TargetOutcome
from provisioner.state.store import StateStore

log = structlog.get_logger("bas.workers")
OnDone = Callable[[str, TargetResult, int], None]  # (target, its result, its changes) as a worker ends


def cores() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def available(store: StateStore, options: ApplyOptions) -> bool:
    """True when targets can be applied in worker processes with this store on this host."""
    if not options.workers or cores() < 2:
        return False
    url = store.engine.url
    # An in-memory SQLite database exists only in this process.
    in_memory = url.get_backend_name() == "sqlite" and (
        url.database in (None, "", ":memory:") or "mode=memory" in str(url)
    )
    return not in_memory


class _Spawn(SpawnContext):
    """The spawn context, keeping the process it starts so that its exit code can be told."""

    def __init__(self) -> None:
        super().__init__()
        self.started: list[SpawnProcess] = []

    def Process(self, *args: Any, **kwargs: Any) -> SpawnProcess:  # type: ignore[override]  # noqa: N802
        p = SpawnProcess(*args, **kwargs)
        self.started.append(p)
        return p


@dataclass(frozen=True)
class _Events:
    go: Event  # the core is committed: workers may apply
    halt: Event  # workers stop between changes


@dataclass
class _Worker:
    target: str
    changes: int
    context: _Spawn
    pool: ProcessPoolExecutor
    future: Future


class Workers:
    """The worker processes of one apply; a context manager, so none outlives the run.

    At most ``at_once`` run at a time; a job started beyond that waits its turn and is
    started as a worker ends. Each worker's memory adds to the run's (at Oslo size
    itslearning's ~550 MB, Feide's ~350 MB), and CPU-bound workers beyond the cores left
    free by this process cannot make the run faster.
    """

    def __init__(self, stop: StopFlag | None, at_once: int | None = None) -> None:
        self._stop = stop
        self._at_once = at_once  # None: every job at once
        self._events: _Events | None = None  # made with the first worker (none: no semaphores)
        self._done = threading.Event()  # every worker ended: the relay ends
        self._relay: threading.Thread | None = None
        self._running: list[_Worker] = []
        self._queued: list[Job] = []  # started beyond at_once: each waits for a worker to end

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        # Leaving early (an error here): ask the workers to stop between changes and wait,
        # so what they did is flushed and no process outlives the run.
        if self._events is not None:
            self._events.halt.set()
        for w in self._running:
            w.pool.shutdown(wait=True, cancel_futures=True)
        self._running, self._queued = [], []
        self._done.set()
        if self._relay is not None:
            self._relay.join()

    def start(self, job: Job) -> None:
        """Start a worker for one target: it loads its job now and applies after ``go()``;
        with ``at_once`` workers running, once one of them ends."""
        if self._at_once is not None and len(self._running) >= self._at_once:
            self._queued.append(job)
            log.info("target waits for a worker process", run_id=job.run_id, target=job.plan.target)
            return
        if self._events is None:
            spawn = multiprocessing.get_context("spawn")
            self._events = _Events(go=spawn.Event(), halt=spawn.Event())
        ctx = _Spawn()
        signals = (self._events.go, self._events.halt)
        pool = ProcessPoolExecutor(1, mp_context=ctx, initializer=worker.init, initargs=signals)
        w = _Worker(job.plan.target, len(job.plan.changes), ctx, pool, pool.submit(worker.run, job))
        self._running.append(w)
        if self._relay is None and self._stop is not None:
            self._relay = threading.Thread(target=self._relay_stop, name="bas-workers-stop", daemon=True)
            self._relay.start()
        pid = ctx.started[0].pid
        log.info("target applied in a worker process", run_id=job.run_id, target=w.target, pid=pid)

    def go(self) -> None:
        """The core is committed: the workers may apply (they loaded their jobs meanwhile)."""
        if self._events is not None:
            self._events.go.set()

    def _relay_stop(self) -> None:
        """This process's stop (SIGTERM to the daemon's run) becomes the workers' stop."""
        assert self._stop is not None and self._events is not None
        while not self._done.wait(0.2):
            if self._stop.is_set():
                self._events.halt.set()
                return

    def wait(self, on_done: OnDone) -> None:
        """Wait for every worker, starting each waiting job as one ends; ``on_done(target,
        result, changes)`` as each ends (a waiting job when a stop came first: interrupted,
        never started).

        A worker's unexpected error is raised here (after all workers ended), as it would
        have been raised by the same target applied in this process.
        """
        errors: list[str] = []
        while self._running:
            ended, _ = first_done([w.future for w in self._running], return_when=FIRST_COMPLETED)
            for w in [w for w in self._running if w.future in ended]:
                self._ended(w, on_done, errors)
                self._running.remove(w)
            while self._queued and (self._at_once is None or len(self._running) < self._at_once):
                job = self._queued.pop(0)
                if self._stop is not None and self._stop.is_set():
                    log.warning("target interrupted", run_id=job.run_id, target=job.plan.target, done=0)
                    on_done(job.plan.target, TargetResult(job.plan.target, TargetOutcome.INTERRUPTED), 0)
                else:
                    self.start(job)
        if errors:
            raise WorkerError("; ".join(errors))

    def _ended(self, w: _Worker, on_done: OnDone, errors: list[str]) -> None:
        """One worker's answer given to ``on_done``, or its failure added to ``errors``."""
        try:
            result = w.future.result()
        except BrokenProcessPool:
            w.pool.shutdown(wait=True)  # joins the dead worker: its exit code is known
            codes = [p.exitcode for p in w.context.started]
            errors.append(f"{w.target}: worker ended without an answer (exit code {codes[0]})")
        except Exception as exc:  # noqa: BLE001 - raised by wait for every worker together
            errors.append(f"{w.target}: {type(exc).__name__}: {exc}{_remote_traceback(exc)}")
        else:
            on_done(w.target, result, w.changes)
        w.pool.shutdown(wait=True)


def _remote_traceback(exc: BaseException) -> str:
    """The worker's traceback, which concurrent.futures keeps as the error's cause."""
    return f"\n{exc.__cause__}" if exc.__cause__ is not None else ""


class WorkerError(RuntimeError):
    """A worker process failed unexpectedly (its traceback is in the message)."""
