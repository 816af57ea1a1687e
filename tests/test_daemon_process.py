"""`bas daemon` as a real subprocess: scheduled runs, metrics, SIGHUP, SIGTERM mid-run,
a held run's webhook, and two daemons on one PostgreSQL database.

Each daemon runs with an interval of a second or two on a generated school owner;
the tests read its JSON log lines (stdout), scrape its metrics endpoint, query the
state store, and stop it with real signals.
"""

from __future__ import annotations

import datetime as dt
import http.server
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from demo import data as demo_data
from provisioner import faults
from provisioner.state import runs
from tests.sisbuilder import config_toml

BAS = [sys.executable, "-m", "provisioner.cli"]
SMALL = demo_data.Scale(1, 0, 0, 0, 0, students=40, employees=6, guardians=50, groups=8, memberships=200)
NIN_RE = re.compile(r"(?<![0-9])[0-9]{11}(?![0-9])")


class DaemonProc:
    """A `bas daemon` child process and its JSON log lines."""

    def __init__(
        self, conf: Path, *args: str, name: str = "daemon", env: dict[str, str] | None = None
    ) -> None:
        self.log_path = conf.parent / f"{name}.log"
        self.fh = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115 (closed in stop())
        self.proc = subprocess.Popen(
            [*BAS, "--config", str(conf), "daemon", *args],
            stdout=self.fh,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )

    def lines(self) -> list[dict]:
        """Every JSON log line so far (other lines are kept as {'raw': ...})."""
        out = []
        for raw in self.log_path.read_text(encoding="utf-8").splitlines():
            try:
                out.append(json.loads(raw))
            except ValueError:
                out.append({"raw": raw})
        return out

    def events(self, event: str) -> list[dict]:
        """Log lines with this event name."""
        return [x for x in self.lines() if x.get("event") == event]

    def wait_for(self, what: Callable[[], object], timeout: float = 60, desc: str = "") -> object:
        """Poll until ``what()`` is truthy; fail with the log on timeout or if the daemon died."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            got = what()
            if got:
                return got
            if self.proc.poll() is not None:
                pytest.fail(f"daemon exited {self.proc.returncode} waiting for {desc}:\n{self.text()}")
            time.sleep(0.05)
        pytest.fail(f"timed out waiting for {desc}:\n{self.text()}")

    def text(self) -> str:
        """The raw log (the tail)."""
        return self.log_path.read_text(encoding="utf-8")[-6000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Send a signal and wait for the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            self.fh.close()


@pytest.fixture()
def daemons() -> Iterator[list[DaemonProc]]:
    """Daemons started by a test; killed if the test left them running."""
    started: list[DaemonProc] = []
    yield started
    for d in started:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()
        d.fh.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The state store: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.sqlite'}"
    return request.getfixturevalue("pg_url")


def write_config(
    tmp: Path, state: str, extra: str = "", scale: demo_data.Scale = SMALL, **kw: object
) -> Path:
    """A generated SIS (unless there) and a config with itslearning and Feide applied as files."""
    src = f"sqlite:///{tmp / 'sis.sqlite'}"
    if not (tmp / "sis.sqlite").exists():
        demo_data.generate(src, scale, seed=4, as_of=dt.date.today())  # the day the daemon runs
    conf = tmp / "bas.toml"
    text = config_toml(tmp, src, state, targets=("itslearning", "feide"), **kw)
    conf.write_text(text + "\n" + extra, encoding="utf-8")
    return conf


def bas(conf: Path, *args: str, check: int | None = 0) -> subprocess.CompletedProcess:
    """Run one `bas` command."""
    p = subprocess.run([*BAS, "--config", str(conf), *args], capture_output=True, text=True, timeout=300)
    if check is not None:
        assert p.returncode == check, f"{args} -> {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


def metric(text: str, name: str, **labels: str) -> float | None:
    """One sample's value from a Prometheus text exposition."""
    for line in text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        head, value = line.rsplit(" ", 1)
        if head.split("{")[0] != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', head))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return None


def test_daemon_runs_serves_metrics_reloads_and_stops(
    tmp_path: Path, state_url: str, daemons: list[DaemonProc]
) -> None:
    extra = '[daemon]\ninterval_seconds = 2\n[metrics]\nenabled = true\nlisten = "127.0.0.1:0"\n'
    conf = write_config(tmp_path, state_url, extra)
    d = DaemonProc(conf)
    daemons.append(d)
    addr = d.wait_for(lambda: d.events("metrics served"), 30, "metrics endpoint")[0]["address"]
    d.wait_for(lambda: len(d.events("run summary")) >= 2, 60, "two runs")
    first, second = d.events("run summary")[:2]
    assert first["status"] == "done" and first["targets"]["itslearning"]["ok"] > 0, first
    assert second["status"] == "done" and second["targets"]["itslearning"]["ok"] == 0, second

    body = urllib.request.urlopen(f"http://{addr}/metrics", timeout=10).read().decode()
    assert metric(body, "bas_runs_total", outcome="done") >= 2
    assert metric(body, "bas_run_duration_seconds_count", kind="incremental") >= 2
    created = metric(body, "bas_changes_total", target="itslearning", op="create", result="ok")
    assert created is not None and created > 0
    assert metric(body, "bas_held_runs") == 0
    assert metric(body, "bas_failed_objects", target="feide") == 0
    since = metric(body, "bas_seconds_since_last_success", target="itslearning")
    assert since is not None and 0 <= since < 60

    st = bas(conf, "status")
    assert f"pid {d.proc.pid}" in st.stdout and "next incremental run" in st.stdout, st.stdout
    assert "held runs     none" in st.stdout and "failed objects none" in st.stdout
    data = json.loads(bas(conf, "status", "--json").stdout)
    assert data["targets"]["feide"]["last_success_at"] and data["daemons"][0]["next_full_at"]

    # SIGHUP with a broken config: refused, the old one kept, runs go on.
    good = conf.read_text(encoding="utf-8")
    conf.write_text(good.replace("interval_seconds = 2", "interval_seconds = 0"), encoding="utf-8")
    n = len(d.events("run summary"))
    d.proc.send_signal(signal.SIGHUP)
    refused = d.wait_for(lambda: d.events("config reload refused; keeping the old config"), 20, "refusal")
    assert "daemon.interval_seconds" in refused[0]["error"]
    d.wait_for(lambda: len(d.events("run summary")) >= n + 1, 30, "a run after the refused reload")
    # A good config is taken.
    conf.write_text(good.replace("interval_seconds = 2", "interval_seconds = 1"), encoding="utf-8")
    d.proc.send_signal(signal.SIGHUP)
    assert d.wait_for(lambda: d.events("config reloaded"), 20, "reload")[0]["interval_seconds"] == 1

    t0 = time.monotonic()
    assert d.stop() == 0, d.text()
    assert time.monotonic() - t0 < 20
    assert d.events("daemon stopped")
    assert not NIN_RE.search(d.log_path.read_text(encoding="utf-8"))
    assert "stopped" in bas(conf, "status").stdout


def _pg_or_sqlite_rows(url: str, sql: str) -> list[tuple]:
    if url.startswith("sqlite:///"):
        con = sqlite3.connect(url[len("sqlite:///") :])
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()
    eng = sa.create_engine(url)
    try:
        with eng.connect() as c:
            return [tuple(r) for r in c.execute(sa.text(sql))]
    finally:
        eng.dispose()


def test_sigterm_mid_run_leaves_a_consistent_state_and_the_next_run_completes(
    tmp_path: Path, state_url: str, daemons: list[DaemonProc]
) -> None:
    big = demo_data.Scale(
        1, 1, 0, 0, 0, students=8000, employees=800, guardians=8000, groups=300, memberships=40000
    )
    conf = write_config(tmp_path, state_url, "[daemon]\ninterval_seconds = 3600\n", scale=big)
    bas(conf, "db", "upgrade")  # the tables exist before the test polls them
    # Each itslearning and Feide change is held 5 ms (a test hook, provisioner/faults.py), so
    # the targets are surely still applying when the stop comes, however fast this machine is.
    slow = {faults.SLOW_ENV: "itslearning:change@0.005,feide:change@0.005"}
    d = DaemonProc(conf, env=slow)
    daemons.append(d)
    # Core changes are committed first; the target changes follow.
    d.wait_for(
        lambda: _pg_or_sqlite_rows(state_url, "SELECT 1 FROM changelog WHERE target = 'core' LIMIT 1"),
        120,
        "the apply phase",
    )
    # Stop at once: the targets (one in the daemon, one in a worker process) start right
    # after the core commits and take one to two seconds at this size.
    assert d.stop() == 0, d.text()
    (run_id, status, summary), *_ = _pg_or_sqlite_rows(state_url, "SELECT run_id, status, summary FROM runs")
    assert status == "interrupted", d.text()
    planned = json.loads(summary)["plan"]
    done_first = dict(
        _pg_or_sqlite_rows(
            state_url, f"SELECT target, count(*) FROM changelog WHERE run_id = '{run_id}' GROUP BY target"
        )
    )
    total = {t: sum(planned[t].values()) for t in ("itslearning", "feide")}
    assert sum(done_first.get(t, 0) for t in total) < sum(total.values())  # really cut short
    assert d.events("target interrupted")

    d2 = DaemonProc(conf, name="daemon2")
    daemons.append(d2)
    summary2 = d2.wait_for(lambda: d2.events("run summary"), 120, "the next run")[0]
    assert summary2["status"] == "done", summary2
    for t in total:  # the next run did exactly what was left
        assert done_first.get(t, 0) + summary2["targets"][t]["ok"] == total[t], (t, done_first, summary2)
    assert d2.stop() == 0
    plan = json.loads(bas(conf, "plan", "--full", "--json").stdout)
    assert {x["target"]: len(x["changes"]) for x in plan["plan"]["targets"]} == {
        "core": 0,
        "itslearning": 0,
        "feide": 0,
    }


class _Receiver(http.server.BaseHTTPRequestHandler):
    got: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802 (the http.server API)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).got.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_a_held_run_sends_one_webhook_alert(tmp_path: Path, daemons: list[DaemonProc]) -> None:
    state = f"sqlite:///{tmp_path / 'state.sqlite'}"
    conf = write_config(tmp_path, state, safety={"max_deletes": 0, "max_delete_percent": 100.0})
    bas(conf, "sync")
    # Three students leave yesterday: disabling them exceeds max_deletes = 0, so the run is held.
    yesterday = (dt.date.today() - dt.timedelta(days=1)).isoformat()
    con = sqlite3.connect(tmp_path / "sis.sqlite")
    with con:
        con.execute(
            "UPDATE student_enrollment SET end_date = ? WHERE person_id IN (SELECT person_id FROM"
            " student_enrollment WHERE start_date < ? AND end_date IS NULL ORDER BY person_id LIMIT 3)",
            (yesterday, yesterday),
        )
    con.close()
    _Receiver.got = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/hook"
        conf = write_config(
            tmp_path,
            state,
            f'[daemon]\ninterval_seconds = 1\n[alerts]\nwebhook_url = "{url}"\n',
            safety={"max_deletes": 0, "max_delete_percent": 100.0},
        )
        d = DaemonProc(conf)
        daemons.append(d)
        d.wait_for(lambda: len(d.events("run summary")) >= 3, 60, "three runs")
        assert d.stop() == 0
    finally:
        server.shutdown()
    held = [a for a in _Receiver.got if a["kind"] == "held"]
    assert len(held) == 1, _Receiver.got  # one alert per problem, not one per run
    assert held[0]["source"] == "bas" and "bas approve" in held[0]["summary"]
    assert all(s["status"] == "held" for s in d.events("run summary"))
    st = bas(conf, "status").stdout
    # Each run planned afresh and was held again: status names the newest held run, the
    # only one that can be approved (approving the alerted one says to approve that one).
    newest = d.events("run summary")[-1]["run_id"]
    assert "held runs waiting for approval (1)" in st and newest in st
    if held[0]["run_id"] != newest:
        assert held[0]["run_id"] not in st
        refused = bas(conf, "approve", held[0]["run_id"], check=2)
        assert f"bas approve {newest}" in refused.stdout + refused.stderr


def test_two_daemons_on_one_postgresql_never_run_at_once(
    tmp_path: Path, pg_url: str, daemons: list[DaemonProc]
) -> None:
    conf = write_config(tmp_path, pg_url, "[daemon]\ninterval_seconds = 1\n")
    bas(conf, "db", "upgrade")
    # Whether two free-running daemons happen to collide is timing; so the test first holds
    # the run lock itself (as a third BAS would) until both daemons have met it, then lets go.
    engine = sa.create_engine(pg_url)
    holder = engine.connect()
    assert holder.execute(sa.select(sa.func.pg_try_advisory_lock(runs._ADVISORY_KEY))).scalar()
    a, b = DaemonProc(conf, name="a"), DaemonProc(conf, name="b")
    daemons.extend([a, b])
    try:
        for d in (a, b):
            d.wait_for(
                lambda d=d: any(s["status"] == "locked" for s in d.events("run summary")), 60, "locked"
            )
        assert not [s for s in a.events("run summary") + b.events("run summary") if s["status"] == "done"]
    finally:
        holder.execute(sa.select(sa.func.pg_advisory_unlock(runs._ADVISORY_KEY)))
        holder.close()
        engine.dispose()
    both = lambda: a.events("run summary") + b.events("run summary")  # noqa: E731
    a.wait_for(lambda: sum(1 for s in both() if s["status"] == "done") >= 6, 90, "six runs in all")
    assert a.stop() == 0 and b.stop() == 0
    summaries = a.events("run summary") + b.events("run summary")
    # A run in flight at SIGTERM ends "interrupted" (at most the last one of each daemon).
    assert {s["status"] for s in summaries} <= {"done", "locked", "interrupted"}, summaries
    for d in (a, b):
        assert [s["status"] for s in d.events("run summary")][:-1].count("interrupted") == 0
    rows = _pg_or_sqlite_rows(pg_url, "SELECT started_at, finished_at, summary FROM runs ORDER BY started_at")
    # A streak of quiet runs (certified, nothing applied) is kept as one row that counts them.
    counted = [((json.loads(m or "{}").get("quiet") or {}).get("runs", 1)) for _, _, m in rows]
    assert sum(counted) >= 6 and any(n > 1 for n in counted), counted
    rows = [(s, f) for s, f, _ in rows]
    for (s1, f1), (s2, _) in zip(rows, rows[1:], strict=False):
        assert f1 is not None and f1 <= s2, f"runs overlap: {s1}..{f1} and {s2}"
    pids = {r["pid"] for r in a.events("daemon started") + b.events("daemon started")}
    assert len(pids) == 2 and os.getpid() not in pids
