"""The daemon's process model: sd_notify over a real AF_UNIX datagram socket, each run in a
child process of its own (stopped by a forwarded SIGTERM, gone when the run ends), and the
process and platform metrics (provisioner.service.notify, runchild, metrics)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from demo import data as demo_data
from provisioner import faults
from provisioner.logs import LogSettings
from provisioner.run import runner
from provisioner.service import notify
from provisioner.service.metrics import Metrics
from provisioner.service.runchild import Crashed, RunProcess
from provisioner.state.store import StateStore
from tests.sisbuilder import make_config
from tests.test_daemon_process import DaemonProc, metric, write_config

SMALL = demo_data.Scale(1, 0, 0, 0, 0, students=40, employees=6, guardians=50, groups=8, memberships=200)


class Listener:
    """A datagram socket standing in for systemd's notify socket; a thread reads it as systemd does."""

    def __init__(self, address: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(address)
        self.sock.settimeout(0.1)
        self.got: list[dict[str, str]] = []
        self._closed = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                data = self.sock.recv(4096).decode("utf-8")
            except TimeoutError:
                continue
            self.got.append(dict(line.split("=", 1) for line in data.split("\n")))

    def receive(self, timeout: float = 5.0) -> dict[str, str] | None:
        """The oldest datagram not taken yet, as a dict of its KEY=value lines (None on timeout)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.got:
                return self.got.pop(0)
            time.sleep(0.01)
        return None

    def until(self, key: str, timeout: float) -> dict[str, str]:
        """Take datagrams until one has ``key``."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            msg = self.receive(max(0.1, end - time.monotonic()))
            if msg is not None and key in msg:
                return msg
        pytest.fail(f"no {key} within {timeout} s")

    def close(self) -> None:
        """Stop reading and close the socket."""
        self._closed.set()
        self._reader.join()
        self.sock.close()


@pytest.fixture()
def listener(tmp_path: Path) -> Iterator[Listener]:
    lst = Listener(str(tmp_path / "notify.sock"))
    yield lst
    lst.close()


def test_notify_sends_ready_watchdog_and_stopping_as_datagrams(tmp_path: Path, listener: Listener) -> None:
    env = {"NOTIFY_SOCKET": str(tmp_path / "notify.sock")}
    assert notify.ready("idle", env=env)
    assert listener.receive() == {"READY": "1", "STATUS": "idle", "MAINPID": str(os.getpid())}
    assert notify.watchdog("running a sync\n(pid 7)", env=env)
    assert listener.receive() == {"WATCHDOG": "1", "STATUS": "running a sync (pid 7)"}
    assert notify.stopping(env=env)
    assert listener.receive()["STOPPING"] == "1"


def test_notify_reaches_an_abstract_socket_and_is_a_no_op_without_one() -> None:
    name = f"bas-test-{os.getpid()}-{time.monotonic_ns()}"
    lst = Listener("\0" + name)
    try:
        assert notify.watchdog("idle", env={"NOTIFY_SOCKET": "@" + name})
        assert lst.receive() == {"WATCHDOG": "1", "STATUS": "idle"}
    finally:
        lst.close()
    assert notify.ready("idle", env={}) is False
    # A receiver that never reads: the queue fills, and the daemon is not stalled.
    path = f"/tmp/bas-test-{os.getpid()}-{time.monotonic_ns()}.sock"
    deaf = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    deaf.bind(path)
    try:
        t0 = time.monotonic()
        sent = [notify.watchdog("idle", env={"NOTIFY_SOCKET": path}) for _ in range(2000)]
        assert time.monotonic() - t0 < 30 and sent[0] and not sent[-1]
    finally:
        deaf.close()
        os.unlink(path)
    # systemd gone (socket removed): logged and dropped, never raised
    assert notify.watchdog("idle", env={"NOTIFY_SOCKET": "/nonexistent/notify.sock"}) is False


def test_watchdog_interval_comes_from_systemd() -> None:
    assert notify.watchdog_seconds({"WATCHDOG_USEC": "120000000"}) == 120.0
    assert notify.watchdog_seconds({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": str(os.getpid())}) == 2.0
    assert notify.watchdog_seconds({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"}) is None
    assert notify.watchdog_seconds({"WATCHDOG_USEC": "0"}) is None
    assert notify.watchdog_seconds({}) is None


def test_metrics_have_the_process_and_platform_collectors() -> None:
    body = generate_latest(Metrics().registry).decode()
    rss = metric(body, "process_resident_memory_bytes")
    assert rss is not None and rss > 10_000_000  # a Python process with its libraries loaded
    assert metric(body, "process_open_fds") is not None
    assert "python_info{" in body


def _cfg(tmp_path: Path) -> object:
    src = f"sqlite:///{tmp_path / 'sis.sqlite'}"
    demo_data.generate(src, SMALL, seed=3, as_of=dt.date.today())
    return make_config(
        tmp_path, src, f"sqlite:///{tmp_path / 'state.sqlite'}", targets=("itslearning", "feide")
    )


def test_a_run_process_answers_with_its_outcome_and_ends(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    child = RunProcess(cfg, False, LogSettings("warning", "json"))
    child.start()
    assert child.pid not in (None, os.getpid())
    out = child.result()
    assert isinstance(out, runner.RunOutcome), out
    assert out.status == "done" and out.results["itslearning"].ok > 0 and out.plan is None
    with pytest.raises(ProcessLookupError):  # ended and reaped: its memory is the system's again
        os.kill(child.pid, 0)
    store = StateStore(cfg.sqlalchemy_url(cfg.state.url))
    try:
        assert store.runs.get(out.run_id)["status"] == "done"
    finally:
        store.close()


def test_a_stop_sent_while_the_run_process_starts_is_not_lost(tmp_path: Path) -> None:
    """SIGTERM right after start (before the child set its handler) stops the run, never kills it."""
    cfg = _cfg(tmp_path)
    child = RunProcess(cfg, False, LogSettings("warning", "json"))
    child.start()
    child.stop()
    out = child.result()
    assert not isinstance(out, Crashed), out.message
    assert out.status == "interrupted" and out.exit_code == runner.EXIT_INTERRUPTED


def test_a_killed_run_process_is_a_crash_with_its_exit_code(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    child = RunProcess(cfg, False, LogSettings("warning", "json"))
    child.start()
    child.kill()
    out = child.result()
    assert isinstance(out, Crashed) and f"exit code {-signal.SIGKILL}" in out.message


def test_daemon_notifies_systemd_runs_in_children_and_serves_process_metrics(
    tmp_path: Path, listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = '[daemon]\ninterval_seconds = 1\n[metrics]\nenabled = true\nlisten = "127.0.0.1:0"\n'
    conf = write_config(tmp_path, f"sqlite:///{tmp_path / 'state.sqlite'}", extra)
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify.sock"))
    monkeypatch.setenv("WATCHDOG_USEC", "1000000")  # pings every half second
    d = DaemonProc(conf)
    try:
        _notified_ran_and_measured(d, listener)
        assert d.stop() == 0, d.text()
        assert listener.until("STOPPING", 5)["STOPPING"] == "1"
    finally:
        d.stop(signal.SIGKILL)


def _notified_ran_and_measured(d: DaemonProc, listener: Listener) -> None:
    ready = listener.until("READY", 30)
    assert ready["MAINPID"] == str(d.proc.pid) and ready["STATUS"]
    pings = [listener.until("WATCHDOG", 5) for _ in range(3)]
    assert all(p["STATUS"] for p in pings)

    addr = d.wait_for(lambda: d.events("metrics served"), 30, "metrics endpoint")[0]["address"]
    d.wait_for(lambda: len(d.events("run summary")) >= 2, 60, "two runs")
    started = d.events("run started in its own process")
    pids = [s["pid"] for s in started[:2]]
    assert d.proc.pid not in pids and len(set(pids)) == 2, started  # a fresh process per run
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)  # the first run's process is gone
    assert d.events("run summary")[0]["status"] == "done"

    body = urllib.request.urlopen(f"http://{addr}/metrics", timeout=10).read().decode()
    assert (metric(body, "process_resident_memory_bytes") or 0) > 10_000_000
    assert metric(body, "process_cpu_seconds_total") is not None
    assert metric(body, "bas_runs_total", outcome="done") >= 2


def test_a_run_that_does_not_stop_in_time_is_killed_and_the_daemon_exits(tmp_path: Path) -> None:
    """No os._exit: the daemon kills its run's process after stop_timeout_seconds and ends cleanly."""
    state = f"sqlite:///{tmp_path / 'state.sqlite'}"
    extra = "[daemon]\ninterval_seconds = 3600\nstop_timeout_seconds = 0.2\n"
    conf = write_config(tmp_path, state, extra, SMALL)
    # The run is held 60 s once its plan is made, where it does not look at the stop (a test
    # hook, provisioner/faults.py): it cannot stop in time, however fast this machine plans.
    d = DaemonProc(conf, env={faults.SLOW_ENV: "plan:made@60"})
    try:
        started = d.wait_for(lambda: d.events("run started in its own process"), 60, "the run")[0]
        time.sleep(0.5)
        t0 = time.monotonic()
        assert d.stop() == 0, d.text()
        assert time.monotonic() - t0 < 15
        killed = "the run in flight did not stop in time; killing it (the next run records it aborted)"
        assert d.events(killed), d.text()
        assert d.events("daemon stopped")
        with pytest.raises(ProcessLookupError):
            os.kill(started["pid"], 0)
    finally:
        d.stop(signal.SIGKILL)
