"""One scheduled run of `bas daemon` in its own child process (multiprocessing, forkserver).

The daemon keeps only its scheduler, metrics and health in its own process; each sync is
a process of its own that ends with the run, so the memory a run needed (the plan, the
derivation, up to ~1.5 GB at Oslo size) goes back to the operating system every time.
The processes are forked from multiprocessing's fork server, a clean single-threaded
process that imported the run's code once (``_PRELOAD``): a run starts without importing
it again (~0.6 s of CPU a run, which at one run a minute was a tenth of the daemon's
quiet CPU), and inherits neither the daemon's threads nor its memory.

The daemon forwards SIGTERM to the child, which sets the stop event the executor checks
between changes: the run ends "interrupted" at a safe point, as a run in the daemon's own
process did. SIGTERM and SIGINT stay blocked from before the child starts until its
handlers are in place, so a stop that comes while the child boots is not lost (a signal's
default action would kill the child mid-start). SIGHUP is the daemon's (config reload).
The child answers with the run's outcome, without its plan, on a pipe. A nightly full
run then reads every live target and repairs drift within the limits in the same child
(provisioner.run.reconcile.repair_drift, SPEC "Operations"), so a SIGTERM reaches it too;
the objects found drifted per target come back with the outcome (``bas_drift_objects``).
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
import threading
from dataclasses import dataclass, replace
from multiprocessing import resource_tracker
from multiprocessing.connection import Connection, wait

import structlog

from provisioner import logs
from provisioner.apply.options import ApplyOptions
from provisioner.config import Config
from provisioner.core.states import RunStatus
from provisioner.logs import LogSettings
from provisioner.run import reconcile, runner
from provisioner.state.store import StateStore

log = structlog.get_logger("bas.daemon")

_STOP_SIGNALS = {signal.SIGTERM, signal.SIGINT}


@dataclass(frozen=True)
class Crashed:
    """The run's process failed: an unexpected error, or it ended without an answer."""

    message: str


def child_main(cfg: Config, full: bool, log_settings: LogSettings, answer: Connection) -> None:
    """The child process: one sync under the run lock, its outcome sent back on ``answer``."""
    stop = threading.Event()

    def on_stop(_signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)  # a stop sent meanwhile lands now
    logs.configure(log_settings.level, log_settings.format, stream=sys.stdout)
    kind = "full" if full else "incremental"
    try:
        store = StateStore(cfg.sqlalchemy_url(cfg.state.url))
        drift: dict[str, int] | None = None
        try:
            out = runner.sync(cfg, store, full=full, stop=stop, options=ApplyOptions(log=log_settings))
            if full and out.status != RunStatus.LOCKED and not stop.is_set():
                drift = reconcile.repair_drift(cfg, store, stop=stop)
        finally:
            store.close()
        answer.send((replace(out, plan=None), drift))  # the daemon needs the outcome, not the plan
    except Exception as exc:  # recorded failed by the runner; the daemon goes on
        log.exception("run crashed", kind=kind, error=str(exc))
        answer.send(Crashed(f"{type(exc).__name__}: {exc}"))
    finally:
        answer.close()


# What the fork server imports once, for every run it forks: this module imports the runner,
# the reconciliation and through them the sources, mappings and connectors.
_PRELOAD = [__name__]


def _context() -> multiprocessing.context.ForkServerContext:
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(_PRELOAD)
    return ctx


class RunProcess:
    """The daemon's handle on one run's child process."""

    def __init__(self, cfg: Config, full: bool, log_settings: LogSettings) -> None:
        ctx = _context()
        self._answer, theirs = ctx.Pipe(duplex=False)
        self._proc = ctx.Process(
            target=child_main, args=(cfg, full, log_settings, theirs), name="bas-run", daemon=False
        )
        self._theirs = theirs
        # Objects found drifted per target by a full run's drift repair (None: not read).
        self.drift: dict[str, int] | None = None

    @property
    def pid(self) -> int | None:
        """The child's process id (once started)."""
        return self._proc.pid

    def start(self) -> None:
        """Start the child with SIGTERM/SIGINT blocked until its own handlers are set."""
        # multiprocessing starts its resource tracker with the first child and unblocks
        # SIGTERM/SIGINT in this thread after that: so it is started before they are blocked.
        resource_tracker.ensure_running()
        # The fork server, by contrast, is started with them blocked (below, with the first
        # child): its children inherit its mask, so each one starts with a stop held back
        # until child_main has its handlers in place, as a spawned child did.
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
        try:
            self._proc.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        self._theirs.close()  # the child holds the writing end now: its exit ends the pipe

    def stop(self) -> None:
        """Ask the run to stop between changes (SIGTERM)."""
        if self._proc.is_alive():
            self._proc.terminate()

    def kill(self) -> None:
        """End the run at once (it did not stop in time); the next run records it aborted."""
        if self._proc.is_alive():
            self._proc.kill()

    def result(self) -> runner.RunOutcome | Crashed:
        """Wait for the child to end; its outcome, or why there is none."""
        got: runner.RunOutcome | Crashed | None = None
        wait([self._answer, self._proc.sentinel])
        if self._answer.poll():
            try:
                answer = self._answer.recv()
            except EOFError:
                answer = None  # the child died before answering
            if isinstance(answer, tuple):
                got, self.drift = answer
            else:
                got = answer
        self._proc.join()
        self._answer.close()
        if got is None:
            got = Crashed(f"the run's process ended without an answer (exit code {self._proc.exitcode})")
        return got
