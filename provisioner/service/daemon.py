"""`bas daemon`: incremental runs every minute (by default) and a nightly full reconciliation.

APScheduler (3.x) fires two jobs into a one-thread executor, so runs of this daemon
never overlap; each run is a child process of its own (provisioner.service.runchild), so
the memory a run needs goes back to the operating system when it ends. The nightly full
run is a sync planned in full, then (in the same child) a read of every live target that
repairs drift within the safety limits (provisioner.run.reconcile.repair_drift). The
state store's run lock (a PostgreSQL advisory lock, or the SQLite row) keeps runs apart
across processes and hosts. Jobs coalesce, and a run missed by less than
``misfire_grace_seconds`` still runs once, also a nightly full run missed while the
daemon was down (found from ``daemon.last_full_at`` in the meta table).

Signals: SIGTERM/SIGINT are forwarded to the run in flight as SIGTERM; it stops between
changes and ends "interrupted" with its work flushed, and the daemon exits 0. A run that
has not stopped after ``stop_timeout_seconds`` is killed (the next run records it
aborted). SIGHUP reloads the config; a config that does not validate is refused and the
old one kept.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import sys
import threading
import time
from typing import Any

import sqlalchemy as sa
import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from provisioner import config as config_mod
from provisioner import logs
from provisioner.core.nin import mask_text
from provisioner.core.states import RUNS_DONE, DaemonState, RunStatus
from provisioner.logs import LogSettings
from provisioner.run import patch_check, runner
from provisioner.run.targets import check_targets
from provisioner.service import notify, status
from provisioner.service.alerts import Alerter
from provisioner.service.metrics import Metrics
from provisioner.service.runchild import Crashed, RunProcess
from provisioner.state.common import now_iso
from provisioner.state.migrate import SchemaError
from provisioner.state.runs import LockHeld
from provisioner.state.store import StateStore

log = structlog.get_logger("bas.daemon")

HEARTBEAT = 30.0  # seconds between daemon_status heartbeats (and signal handling latency bound)
_LAST_FULL = "daemon.last_full_at"  # meta key: when the last full run went through


def previous_fire(trigger: CronTrigger, now: dt.datetime) -> dt.datetime | None:
    """The trigger's last fire time at or before ``now`` (looking back at most 8 days)."""
    prev, nxt = None, trigger.get_next_fire_time(None, now - dt.timedelta(days=8))
    while nxt is not None and nxt <= now:
        prev, nxt = nxt, trigger.get_next_fire_time(nxt, nxt + dt.timedelta(seconds=1))
    return prev


def heartbeat_seconds(watchdog: float | None) -> float:
    """Seconds between the main loop's heartbeats, which feed systemd's watchdog.

    At least twice per ``WatchdogSec=`` (``watchdog``), and never slower than HEARTBEAT;
    it does not depend on ``interval_seconds``: runs go on in the scheduler's thread and
    their own process, so a run longer than the watchdog never silences the loop.
    """
    return min(HEARTBEAT, watchdog / 2) if watchdog else HEARTBEAT


def _cron(cfg: config_mod.Config) -> CronTrigger:
    return CronTrigger.from_crontab(cfg.daemon.full_cron, timezone=cfg.daemon.timezone)


class Daemon:
    """One `bas daemon` process."""

    def __init__(self, config_path: str, interval: int | None = None) -> None:
        self.config_path, self.interval_override = config_path, interval
        self.cfg = config_mod.load(config_path)
        check_targets(self.cfg)
        self.store: StateStore | None = None
        self.stop = threading.Event()  # SIGTERM: no new run; the one in flight is told to stop
        self._wake = threading.Event()
        self._reload = False
        self._idle = threading.Event()
        self._idle.set()
        self._busy = threading.Lock()
        self._child: RunProcess | None = None  # the run in flight
        self._child_lock = threading.Lock()  # a run starts, or the stop reaches it: never neither
        self._drift: dict[str, int] | None = None  # what the last full run found drifted, per target
        self.metrics = Metrics()
        self.alerter = Alerter(self.cfg.alerts, self.cfg.base_dir, self.cfg.owner.name)
        self.started = time.time()
        self.scheduler: BackgroundScheduler | None = None

    def interval(self) -> int:
        """Seconds between incremental runs (the CLI override wins)."""
        return self.interval_override or self.cfg.daemon.interval_seconds

    # ---- the process -----------------------------------------------------------------------
    def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns the exit code."""
        try:
            self.store = StateStore(self.cfg.sqlalchemy_url(self.cfg.state.url))
        except SchemaError as exc:
            log.error("cannot start", error=str(exc))
            return runner.EXIT_USAGE
        signal.signal(signal.SIGTERM, self._on_stop)
        signal.signal(signal.SIGINT, self._on_stop)
        signal.signal(signal.SIGHUP, self._on_hup)
        self._close_abandoned()
        server = None
        if self.cfg.metrics.enabled:
            server, where = self.metrics.serve(self.cfg.metrics.listen)
            log.info("metrics served", address=where, path="/metrics")
        self._refresh_health()
        self.scheduler = self._start_scheduler()
        log.info(
            "daemon started",
            pid=os.getpid(),
            interval_seconds=self.interval(),
            full_cron=self.cfg.daemon.full_cron,
            state=self.store.engine.url.render_as_string(hide_password=True),
        )
        self._write_status()
        notify.ready(self._status_line())
        beat = heartbeat_seconds(notify.watchdog_seconds())
        while not self.stop.is_set():
            self._wake.wait(beat)
            self._wake.clear()
            if self._reload and not self.stop.is_set():
                self._reload = False
                self._do_reload()
            self._write_status()
            notify.watchdog(self._status_line())
        return self._shutdown(server)

    def _status_line(self) -> str:
        """One line for `systemctl status`: what the daemon does now."""
        with self._child_lock:
            child = self._child
        if child is not None:
            return f"running a sync (pid {child.pid})"
        return f"idle; incremental runs every {self.interval()} s"

    def _on_stop(self, signum: int, _frame: Any) -> None:
        self.stop.set()
        self._wake.set()

    def _on_hup(self, _signum: int, _frame: Any) -> None:
        self._reload = True
        self._wake.set()

    def _shutdown(self, server: Any) -> int:
        log.info("stopping: letting the change in flight finish", busy=not self._idle.is_set())
        notify.stopping()
        assert self.scheduler is not None and self.store is not None
        self.scheduler.shutdown(wait=False)
        with self._child_lock:
            if self._child is not None:
                self._child.stop()  # SIGTERM forwarded: it stops between changes
        if not self._idle.wait(self.cfg.daemon.stop_timeout_seconds):
            log.error(
                "the run in flight did not stop in time; killing it (the next run records it aborted)",
                timeout=self.cfg.daemon.stop_timeout_seconds,
            )
            with self._child_lock:
                if self._child is not None:
                    self._child.kill()
            self._idle.wait(30)
        self._write_status(DaemonState.STOPPED)
        if server is not None:
            server.shutdown()
        self.store.close()
        log.info("daemon stopped")
        return 0

    def _close_abandoned(self) -> None:
        """Runs left 'running' by a process that died are recorded aborted (by taking the lock)."""
        assert self.store is not None
        try:
            with self.store.runs.lock(f"daemon-start-{os.getpid()}") as abandoned:
                for run_id in abandoned:
                    log.warning("run left running by a process that ended: recorded aborted", run_id=run_id)
        except LockHeld:
            pass  # a run is going on elsewhere: its records are its own

    # ---- scheduling ------------------------------------------------------------------------
    def _start_scheduler(self) -> BackgroundScheduler:
        cfg = self.cfg
        sched = BackgroundScheduler(
            executors={"default": ThreadPoolExecutor(1)},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": cfg.daemon.misfire_grace_seconds,
            },
            timezone=cfg.daemon.timezone or None,
        )
        now = dt.datetime.now(dt.UTC)
        catch_up = self._missed_full(now)
        first = now + dt.timedelta(seconds=self.interval()) if catch_up else now
        sched.add_job(
            self._job,
            IntervalTrigger(seconds=self.interval()),
            args=[False],
            id="incremental",
            next_run_time=first,
        )
        sched.add_job(self._job, _cron(cfg), args=[True], id="full")
        if catch_up:
            log.info("the nightly full run was missed while the daemon was down: running it now")
            sched.add_job(self._job, args=[True], id="full-catch-up", next_run_time=now)
        sched.start()
        return sched

    def _missed_full(self, now: dt.datetime) -> bool:
        assert self.store is not None
        prev = previous_fire(_cron(self.cfg), now)
        last = self.store.meta.get(_LAST_FULL)
        if prev is None or last is None:
            return False  # never ran a full one: the first run plans in full anyway
        late = (now - prev).total_seconds()
        return dt.datetime.fromisoformat(last) < prev and late <= self.cfg.daemon.misfire_grace_seconds

    def _write_status(self, state: DaemonState | None = None) -> None:
        assert self.store is not None
        nxt: list[tuple[dt.datetime, str]] = []
        full_at = None
        if self.scheduler is not None and self.scheduler.running:
            for job in self.scheduler.get_jobs():
                if job.next_run_time is not None:
                    kind = "incremental" if job.id == "incremental" else "full"
                    nxt.append((job.next_run_time, kind))
                    if job.id == "full":
                        full_at = job.next_run_time
        first = min(nxt) if nxt else None
        try:
            self.store.daemons.report(
                pid=os.getpid(),
                started_at=dt.datetime.fromtimestamp(self.started, dt.UTC).isoformat(),
                next_run_at=first[0].astimezone(dt.UTC).isoformat() if first else None,
                next_run_kind=first[1] if first else None,
                next_full_at=full_at.astimezone(dt.UTC).isoformat() if full_at else None,
                state=state or (DaemonState.IDLE if self._idle.is_set() else DaemonState.RUNNING),
            )
        except sa.exc.SQLAlchemyError as exc:  # the database may be away for a moment
            log.error("cannot write daemon status", error=str(exc))

    # ---- config reload ---------------------------------------------------------------------
    def _do_reload(self) -> None:
        try:
            new = config_mod.load(self.config_path)
            check_targets(new)
            if new.sqlalchemy_url(new.state.url) != self.cfg.sqlalchemy_url(self.cfg.state.url):
                raise config_mod.ConfigError("state.url changed: restart the daemon to switch state stores")
        except config_mod.ConfigError as exc:
            log.error(
                "config reload refused; keeping the old config", config=self.config_path, error=str(exc)
            )
            return
        old, self.cfg = self.cfg, new
        logs.configure(new.logging.level, "json", stream=sys.stdout)
        self.alerter = Alerter(new.alerts, new.base_dir, new.owner.name)
        if new.metrics != old.metrics:
            log.warning("metrics settings changed: they take effect when the daemon restarts")
        assert self.scheduler is not None
        if self.interval_override is None and new.daemon.interval_seconds != old.daemon.interval_seconds:
            self.scheduler.reschedule_job("incremental", trigger=IntervalTrigger(seconds=self.interval()))
        if new.daemon.full_cron != old.daemon.full_cron or new.daemon.timezone != old.daemon.timezone:
            self.scheduler.reschedule_job("full", trigger=_cron(new))
        log.info("config reloaded", config=self.config_path, interval_seconds=self.interval())

    # ---- one run ---------------------------------------------------------------------------
    def _job(self, full: bool) -> None:
        """One scheduled run, then metrics, health and alerts."""
        if self.stop.is_set() or not self._busy.acquire(blocking=False):
            return
        self._idle.clear()
        kind = "full" if full else "incremental"
        try:
            cfg, store = self.cfg, self.store
            assert store is not None
            self._write_status(DaemonState.RUNNING)
            t0 = time.monotonic()
            out = self._run_child(cfg, full)
            if out is None:  # stopping: no run started
                return
            if isinstance(out, Crashed):  # recorded failed by the runner; the daemon goes on
                log.error("run crashed", kind=kind, error=out.message)
                self.metrics.observe_run("crashed", kind, time.monotonic() - t0, [])
                return
            seconds = time.monotonic() - t0
            if full and out.status in RUNS_DONE:
                store.meta.set(_LAST_FULL, now_iso())
            if full and _patch_differed(store, out.run_id):
                self.metrics.patch_mismatches.inc()
            if self._drift is not None:  # SPEC "Operations": the nightly run repaired drift
                self.metrics.observe_drift(self._drift)
            changes = store.history.change_counts(out.run_id) if out.status != RunStatus.LOCKED else []
            self.metrics.observe_run(out.status, kind, seconds, changes)
            self._refresh_health()
            # Last: once the summary is logged, the metrics and health already count the run.
            self._summarise(out, kind, seconds)
        except Exception as exc:  # bookkeeping must never stop the schedule
            log.exception("after-run bookkeeping failed", error=str(exc))
        finally:
            self._idle.set()
            self._busy.release()
            if not self.stop.is_set():
                self._write_status()

    def _run_child(self, cfg: config_mod.Config, full: bool) -> runner.RunOutcome | Crashed | None:
        """One sync in a child process; None when the daemon is stopping and none was started."""
        with self._child_lock:
            if self.stop.is_set():
                return None
            self._drift = None
            child = RunProcess(cfg, full, LogSettings(cfg.logging.level, "json"))
            child.start()
            self._child = child
        log.info("run started in its own process", kind="full" if full else "incremental", pid=child.pid)
        try:
            out = child.result()
            self._drift = child.drift
            return out
        finally:
            with self._child_lock:
                self._child = None

    def _summarise(self, out: runner.RunOutcome, kind: str, seconds: float) -> None:
        targets = {
            name: {
                "status": r.status,
                "ok": r.ok,
                "rejected": r.rejected,
                "failed": r.failed,
                "pending": r.pending,
            }
            for name, r in out.results.items()
        }
        fields = {
            "run_id": out.run_id,
            "kind": kind,
            "status": out.status,
            "exit_code": out.exit_code,
            "seconds": round(seconds, 3),
            "targets": targets,
        }
        if out.message:
            fields["message"] = mask_text(out.message)
        bad = out.status in (RunStatus.FAILED, RunStatus.REFUSED, RunStatus.HELD)
        (log.error if bad else log.info)("run summary", **fields)

    def _refresh_health(self) -> None:
        assert self.store is not None
        health = status.collect(self.store, self.cfg.enabled_targets())
        self.metrics.update_health(health)
        self.alerter.evaluate(health, self.started)


def _patch_differed(store: StateStore, run_id: str) -> bool:
    """Whether this full run found its plan different from the patch of the same inputs."""
    raw = store.meta.get(patch_check.CHECK_KEY)
    if not raw:
        return False
    got = json.loads(raw)
    return bool(got.get("run_id") == run_id and got.get("same") is False)
