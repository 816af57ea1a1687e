"""Applying file targets in worker processes, so that a run uses more than one core.

Applying a file target (itslearning, Feide LDIF) is CPU-bound Python: state-store rows,
changelog rows, then the full files rendered from the store. In one process the GIL keeps
a whole run on one core. Targets touch only their own rows, so once the core (identity)
changes are committed, the executor hands each target whose connector says
``process_safe = True`` (no session to a remote system, only its own files) to a worker:
a fresh ``python -m provisioner.apply.worker`` that gets the pickled connector and target plan
on stdin, opens its own state-store connection, applies the target exactly as the
executor would in this process, and pickles the ``TargetResult`` back on stdout.

Why a fresh interpreter and not fork: a forked worker shares the parent's whole heap (the
plan of every target, ~1.5 GB at Oslo size), and CPython's reference counting writes to
every page the worker reads, so parent and worker together needed ~2.9 GB. A fresh worker
holds only its own target's plan. Workers ignore SIGTERM and SIGINT (systemd and a
terminal signal the whole group): the parent relays a stop as one byte on the worker's
stdin, and the worker stops between changes and flushes what it did, as a target in this
process does.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import structlog

from provisioner import logs
from provisioner.core.plan import TargetPlan
from provisioner.state.store import StateStore

log = structlog.get_logger("bas.workers")

# Set False to apply every target in this process (tests comparing both ways use it).
ENABLED = True


class StopFlag(Protocol):
    """What a target's apply loop checks between changes."""

    def is_set(self) -> bool:
        """True when the run should stop."""
        ...


@dataclass(frozen=True)
class Job:
    """Everything a worker needs to apply one target (pickled to its stdin)."""

    plan: TargetPlan
    connector: Any  # a process_safe connector, before begin()
    store_url: str
    run_id: str
    as_of: str
    soft_delete: bool
    retry: Any  # executor.RetryPolicy
    batch: int = 20000  # changes per state-store transaction (executor.BATCH)
    log_level: str = "info"
    log_format: str = "console"


def cores() -> int:
    """CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def available(store: StateStore) -> bool:
    """True when targets can be applied in worker processes with this store on this host."""
    if not ENABLED or cores() < 2:
        return False
    url = store.engine.url
    # An in-memory SQLite database exists only in this process.
    in_memory = url.get_backend_name() == "sqlite" and (
        url.database in (None, "", ":memory:") or "mode=memory" in str(url)
    )
    return not in_memory


@dataclass
class _Worker:
    target: str
    changes: int
    proc: subprocess.Popen
    thread: threading.Thread | None = None  # feeds the job, relays a stop, reads the answer
    out: dict[str, Any] = field(default_factory=dict)


class Workers:
    """The worker processes of one apply; a context manager, so none outlives the run."""

    def __init__(self, stop: StopFlag | None) -> None:
        self._stop = stop
        self._leaving = threading.Event()  # the parent failed: stop the workers too
        self._go = threading.Event()  # the core is committed: workers may apply
        self._running: list[_Worker] = []

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        # Leaving early (an error here): ask the workers to stop between changes and wait,
        # so what they did is flushed and no process outlives the run.
        self._leaving.set()
        for w in self._running:
            if w.thread is not None:
                w.thread.join()
        self._running = []

    def start(self, job: Job) -> None:
        """Start a worker for one target: it loads its job now and applies after ``go()``."""
        level, fmt = logs.settings()
        data = pickle.dumps(replace(job, log_level=level, log_format=fmt), protocol=pickle.HIGHEST_PROTOCOL)
        proc = subprocess.Popen(
            [sys.executable, "-m", "provisioner.apply.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,
        )
        w = _Worker(job.plan.target, len(job.plan.changes), proc)
        # The job goes in a box the thread empties: else the thread's own arguments would
        # keep the pickled plan (tens of MB) alive until the worker ends.
        w.thread = thread = threading.Thread(
            target=self._talk, args=(w, [data]), name=f"bas-{w.target}", daemon=True
        )
        del data
        thread.start()
        self._running.append(w)
        log.info("target applied in a worker process", run_id=job.run_id, target=w.target, pid=proc.pid)

    def go(self) -> None:
        """The core is committed: the workers may apply (they loaded their jobs meanwhile)."""
        self._go.set()

    def _stopping(self) -> bool:
        return self._leaving.is_set() or (self._stop is not None and self._stop.is_set())

    def _talk(self, w: _Worker, box: list[bytes]) -> None:
        """Feed the job, say go (or stop), relay a later stop, collect the answer.

        One thread per worker. The job is written while the worker reads it (pipe writes
        release the GIL). Stdin then stays open: ``g`` lets the worker apply, once the
        core is committed; any other byte, or the end of stdin (this process gone), asks
        it to stop between changes.
        """
        data = box.pop()
        try:
            w.proc.stdin.write(data)  # type: ignore[union-attr]
            w.proc.stdin.flush()  # type: ignore[union-attr]
        except BrokenPipeError:
            pass  # the worker is gone: its exit code tells why
        del data
        while not self._go.wait(0.1) and not self._stopping():
            pass
        go = not self._stopping()
        self._say(w, b"g" if go else b"s")
        watcher = threading.Thread(target=self._relay_stop, args=(w,), daemon=True)
        if go:
            watcher.start()
        raw = w.proc.stdout.read()  # type: ignore[union-attr]  # until the worker exits
        w.proc.wait()
        if go:
            watcher.join()
        with contextlib.suppress(BrokenPipeError):
            w.proc.stdin.close()  # type: ignore[union-attr]
        try:
            w.out["answer"] = pickle.loads(raw) if raw else None  # noqa: S301 - our own child
        except (pickle.UnpicklingError, EOFError, ValueError) as exc:
            w.out["answer"] = ("error", f"unreadable answer: {exc}")

    @staticmethod
    def _say(w: _Worker, byte: bytes) -> None:
        with contextlib.suppress(BrokenPipeError, ValueError):
            w.proc.stdin.write(byte)  # type: ignore[union-attr]
            w.proc.stdin.flush()  # type: ignore[union-attr]

    def _relay_stop(self, w: _Worker) -> None:
        while w.proc.poll() is None:
            if self._stopping():
                self._say(w, b"s")
                return
            time.sleep(0.2)

    def wait(self, on_done: Any) -> None:
        """Wait for every worker; ``on_done(target, result, changes)`` as each ends.

        A worker's unexpected error is raised here (after all workers ended), as it would
        have been raised by the same target applied in this process.
        """
        errors: list[str] = []
        for w in list(self._running):
            if w.thread is not None:
                w.thread.join()
            self._running.remove(w)
            answer = w.out.get("answer")
            if answer is None:
                errors.append(f"{w.target}: worker ended without an answer (exit code {w.proc.returncode})")
            elif answer[0] == "ok":
                on_done(w.target, answer[1], w.changes)
            else:
                errors.append(f"{w.target}: {answer[1]}")
        if errors:
            raise WorkerError("; ".join(errors))


class WorkerError(RuntimeError):
    """A worker process failed unexpectedly (its traceback is in the message)."""
