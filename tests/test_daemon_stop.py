"""The executor's stop hook and the run lock across processes, on SQLite and PostgreSQL.

A run stopped between changes is recorded "interrupted", keeps what it applied (in the
state store and in the target's files), and the next run applies exactly the rest.
Two processes on one PostgreSQL database never hold the run lock at once, and a holder
killed on another host does not block the next run (the advisory lock dies with it).
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from connectors.base import Applied, Exporter, StoredLookup, StoredObject
from demo import data as demo_data
from provisioner.core.plan import Change
from provisioner.run import runner
from provisioner.state.runs import LockHeld
from provisioner.state.store import StateStore
from tests.sisbuilder import make_config

DAY = dt.date(2025, 10, 1)
SMALL = demo_data.Scale(1, 0, 0, 0, 0, students=40, employees=6, guardians=50, groups=8, memberships=200)


class _StopAfter(Exporter):
    """Wraps a real exporter: sets ``stop`` once ``n`` changes were accepted by it."""

    def __init__(self, inner: Exporter, stop: threading.Event, n: int) -> None:
        self.inner, self.stop, self.n, self.applied = inner, stop, n, 0
        self.target = inner.target

    def begin(self, *a: Any) -> None:
        self.inner.begin(*a)

    def _start(self) -> None:
        """Not called: ``begin`` is the inner exporter's."""

    def accept(self, change: Change) -> Applied:
        out = self.inner.accept(change)
        self.applied += 1
        if self.applied >= self.n:
            self.stop.set()
        return out

    def export(self, stored: Iterable[StoredObject], some: StoredLookup | None = None) -> None:
        self.inner.export(stored, some)

    def exported(self, run_id: str) -> bool:
        return self.inner.exported(run_id)

    def recover(self, run_id: str) -> None:
        self.inner.recover(run_id)

    def close(self) -> None:
        self.inner.close()


def _small_owner(tmp_path: Path, db_url: str, targets: tuple[str, ...]) -> tuple[Any, StateStore]:
    """A small generated SIS and its config with these targets, and the state store."""
    src = f"sqlite:///{tmp_path / 'sis.sqlite'}"
    demo_data.generate(src, SMALL, seed=3, as_of=DAY)
    return make_config(tmp_path, src, db_url, targets=targets), StateStore(db_url)


def _stop_itslearning_after(monkeypatch: pytest.MonkeyPatch, n: int) -> threading.Event:
    """The first run's itslearning exporter sets the returned stop once it accepted ``n`` changes."""
    stop = threading.Event()
    real_build = runner.build_connector
    wrapped: list[_StopAfter] = []

    def build(cfg_: object, name: str) -> object:
        c = real_build(cfg_, name)
        if name == "itslearning" and not wrapped:  # the first run only
            assert isinstance(c, Exporter)
            wrapped.append(_StopAfter(c, stop, n))
            return wrapped[-1]
        return c

    monkeypatch.setattr(runner, "build_connector", build)
    return stop


def test_stop_between_changes_records_interrupted_and_next_run_does_the_rest(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, store = _small_owner(tmp_path, db_url, ("itslearning", "feide"))
    stop = _stop_itslearning_after(monkeypatch, 25)
    try:
        first = runner.sync(cfg, store, as_of=DAY.isoformat(), stop=stop)
        assert (first.status, first.exit_code) == ("interrupted", runner.EXIT_INTERRUPTED)
        planned = len(first.plan.target("itslearning").changes)
        assert first.results["itslearning"].status == "interrupted"
        assert first.results["itslearning"].ok == 25 < planned
        # Feide is applied by a worker process alongside (provisioner.apply.workers): it may have
        # finished before the stop came, or stopped between changes itself.
        feide_planned, feide_done = len(first.plan.target("feide").changes), first.results["feide"]
        assert feide_done.status in ("applied", "interrupted") and feide_done.ok <= feide_planned
        assert (feide_done.status == "applied") == (feide_done.ok == feide_planned)
        assert store.runs.get(first.run_id)["status"] == "interrupted"
        assert len(list(store.objects.iterate("itslearning"))) == 25  # flushed; a batch is 20000
        # The interrupted file target still wrote out what it applied.
        deltas = list((tmp_path / "itslearning").glob("ims-delta-*.xml"))
        assert len(deltas) == 1 and deltas[0].read_text(encoding="utf-8").count("<person") > 0

        stop.clear()
        second = runner.sync(cfg, store, as_of=DAY.isoformat(), stop=stop)
        assert second.status == "done", second.message
        assert len(second.plan.target("itslearning").changes) == planned - 25
        assert second.results["itslearning"].ok == planned - 25
        assert second.results["feide"].ok == feide_planned - feide_done.ok
        third = runner.sync(cfg, store, dry_run=True, as_of=DAY.isoformat(), full=True)
        for t in ("core", "itslearning", "feide"):
            assert third.plan.target(t).changes == (), t
    finally:
        store.close()


def test_a_first_file_run_stopped_before_its_first_person_is_interrupted_not_failed(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No whole itslearning file can be written yet (no full file may be empty): nothing is
    recorded, the target and the run end "interrupted", and the next run does everything."""
    cfg, store = _small_owner(tmp_path, db_url, ("itslearning",))
    stop = _stop_itslearning_after(monkeypatch, 1)
    try:
        first = runner.sync(cfg, store, as_of=DAY.isoformat(), stop=stop)
        planned = first.plan.target("itslearning").changes
        assert planned[0].kind != "person"  # the owner's org unit comes first
        assert (first.status, first.exit_code) == ("interrupted", runner.EXIT_INTERRUPTED), first.message
        res = first.results["itslearning"]
        assert (res.status, res.ok, res.failed, res.errors) == ("interrupted", 0, 0, [])
        assert list(store.objects.iterate("itslearning")) == []
        assert not list((tmp_path / "itslearning").glob("ims-*.xml"))

        stop.clear()
        second = runner.sync(cfg, store, as_of=DAY.isoformat(), stop=stop)
        assert second.status == "done", second.message
        assert second.results["itslearning"].ok == len(planned)
    finally:
        store.close()


def test_stop_while_planning_applies_nothing(db_url: str, tmp_path: Path) -> None:
    src = f"sqlite:///{tmp_path / 'sis.sqlite'}"
    demo_data.generate(src, SMALL, seed=3, as_of=DAY)
    cfg = make_config(tmp_path, src, db_url, targets=("itslearning",))
    store = StateStore(db_url)
    try:
        stop = threading.Event()
        stop.set()
        out = runner.sync(cfg, store, as_of=DAY.isoformat(), stop=stop)
        assert out.status == "interrupted" and store.runs.get(out.run_id)["status"] == "interrupted"
        assert store.identities.all() == {} and list(store.objects.iterate("itslearning")) == []
    finally:
        store.close()


_HOLDER = textwrap.dedent(
    """
    import socket, sys, time
    socket.gethostname = lambda: sys.argv[2]  # pretend to run on another host
    from provisioner.state.store import StateStore
    store = StateStore(sys.argv[1])
    with store.runs.lock("holder-run"):
        print("locked", flush=True)
        time.sleep(120)
    """
)


def test_advisory_lock_across_processes_and_hosts(pg_url: str) -> None:
    store = StateStore(pg_url)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, pg_url, "host-b"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        held = rf"holder-run holds the lock \(pid {holder.pid} on host-b"
        with pytest.raises(LockHeld, match=held), store.runs.lock("mine"):
            pass
        os.kill(holder.pid, signal.SIGKILL)  # dies holding it: no release, its row stays
        holder.wait(timeout=10)
        # The server ends the dead session and its advisory lock; the row of host-b is stale.
        for _ in range(50):
            try:
                with store.runs.lock("mine"):
                    break
            except LockHeld:
                threading.Event().wait(0.1)
        else:
            pytest.fail("the lock of a killed holder on another host was never freed")
    finally:
        if holder.poll() is None:
            holder.kill()
        store.close()


def test_sqlite_keeps_the_row_lock(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    a, b = StateStore(url), StateStore(url)
    try:
        with a.runs.lock("run-a"), pytest.raises(LockHeld, match="run-a"), b.runs.lock("run-b"):
            pass
    finally:
        a.close()
        b.close()
