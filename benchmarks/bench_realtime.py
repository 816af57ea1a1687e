"""Benchmark: near-real-time polling (issue 15): the daemon's quiet CPU and a new pupil's latency.

The goal: at Oslo size, with `bas daemon` polling every 60 seconds, a new pupil committed
to the SIS has accounts in every live target within 2 minutes, and the daemon's quiet-run
CPU stays under 5 % of one core.

What it does, in a work folder (``--workdir``):

1. generates an Oslo-size SIS (``demo.data.generate(..., OSLO, seed=1, as_of=today)``, as
   benchmarks/bench_pipeline.py does) and times the bare SELECT of every source table
   (``bench_pipeline.bare_select``: the sqlite3 driver alone, fastest of three), the baseline;
2. writes a config like bench_pipeline's: itslearning and Feide (file targets) apply, AD
   and Microsoft 365 stay in ``mode = "plan"`` (as owners roll BAS out), ``[daemon]
   interval_seconds`` as given (60) and a ``full_cron`` that does not fire during the run
   (29 February, 03:00);
3. the first run: ``bas sync`` through the CLI, in its own process, timed;
4. starts the real daemon (``python -m provisioner.cli --config ... daemon``) and waits for
   its first run (the one it starts with) to end;
5. quiet CPU: utime+stime of the daemon and of its reaped children (``/proc/PID/stat``
   fields 14-17), plus those of its live descendants (a run in flight, the multiprocessing
   resource tracker), over ``--quiet-intervals`` (3) intervals, as a percent of one core
   over the wall time; the daemon log says how many runs fell in the window, how long
   they took and how many reused the certified plan;
6. new-pupil latency: commits one new pupil (person with a valid NIN, enrollment, and a
   membership in a basis group of the pupil's school, as bench_pipeline's churn does for
   joiners) to the SIS in one transaction, then polls (every 0.2 s) until the pupil is
   in every live target: a person object of itslearning and of Feide in the state store
   and the membership on itslearning's group, and the pupil in a delta file written since
   the commit in each output folder (the IMS XML ``<person>``, the LDIF ``uid:``); it
   prints the seconds from the commit to then;
7. a leaver: ends one pupil's enrollment (yesterday) in one transaction, then polls until
   the pupil is gone from every live target (no active person object of itslearning or
   Feide in the state store, and the pupil in a delta file written since the commit in
   each output folder); prints the seconds from the commit to then, and whether the run
   after the one that removed them reused the certified plan (removals are predicted
   unless a purge falls due) or planned in full, and how long it took;
8. stops the daemon with SIGTERM, whatever happened (killed if it has not stopped after
   ``stop_timeout_seconds`` plus a margin).

What it simplifies: AD and Microsoft 365 are in plan mode, so "every live target" is the
two file targets; their live connectors at Oslo size would need a Samba DC preloaded with
~250,000 accounts and a Graph stand-in holding a tenant of that size, which this script
does not set up. Their plans are still computed by every run that is not certified, so
their cost is in the CPU figure. Files are "delivered" when written: itslearning's upload
(``[targets.itslearning.delivery]``) is not configured. The SIS is the SQLite reference
schema on local disk (no network in the SELECT), and the state store is SQLite.

Usage: .venv/bin/python benchmarks/bench_realtime.py [--workdir DIR] [--scale oslo|demo]
       [--interval 60] [--quiet-intervals 3] [--full-every-hours 0]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_pipeline import CONFIG  # noqa: E402
from measure import bare_select, process_tree  # noqa: E402
from sis_edits import commit_pupil, leave, pick_leaver  # noqa: E402

# Fires only on 29 February: never during a benchmark run (and no catch-up: the daemon
# has recorded no full run in this state store).
NEVER_CRON = "0 3 29 2 *"
PUPIL = "RT0000001"
TICK = os.sysconf("SC_CLK_TCK")


def generate(work: Path, scale: str, as_of: dt.date) -> Path:
    """A fresh SIS database in the work folder (in its own process, as bench_pipeline)."""
    db = work / "sis.sqlite"
    code = (
        "import datetime as dt; from demo import data as d;"
        f"print(d.generate('sqlite:///{db}', d.{scale.upper()}, seed=1,"
        f" as_of=dt.date.fromisoformat('{as_of}')))"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
    return db


def write_config(work: Path, interval: int, full_every_hours: int = 0) -> Path:
    """bench_pipeline's config (AD and M365 plan-only) plus the daemon's schedule, and the
    file targets' ``full_every_hours`` (0: a full file every run that exports)."""
    text = CONFIG.format(ad_mode="plan")
    for folder in ("out/itslearning", "out/feide"):
        line = f'output_dir = "{folder}"\n'
        text = text.replace(line, f"{line}full_every_hours = {full_every_hours}\n")
    text += (
        f'[daemon]\ninterval_seconds = {interval}\nfull_cron = "{NEVER_CRON}"\n'
        '[logging]\nlevel = "info"\nformat = "json"\n'
    )
    path = work / "bas.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _bas(conf: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "provisioner.cli", "--config", str(conf), *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def first_run(work: Path, conf: Path) -> float:
    """`bas sync` in its own process; its seconds (its output goes to first-run.log)."""
    t0 = time.perf_counter()
    with open(work / "first-run.log", "wb") as out:
        p = subprocess.run(_bas(conf, "sync"), cwd=work, env=_env(), stdout=out, stderr=subprocess.STDOUT)
    secs = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"the first run failed (exit {p.returncode}); see {work / 'first-run.log'}")
    return secs


def cpu_seconds(pid: int) -> float:
    """CPU seconds of a process, its reaped children and its live descendants."""
    total = 0
    for p in process_tree(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue  # it just ended: its time is in its parent's cutime/cstime now
        fields = stat[stat.rindex(")") + 2 :].split()  # field 3 (state) onwards: comm may hold spaces
        total += sum(int(f) for f in fields[11:15])  # fields 14-17: utime stime cutime cstime
    return total / TICK


class DaemonLog:
    """The daemon's JSON log lines (its runs' lines too: they share its stdout)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def events(self, start: int = 0) -> list[dict]:
        """The JSON events from byte offset ``start``."""
        out = []
        with open(self.path, "rb") as f:
            f.seek(start)
            for line in f:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    continue  # a line of a traceback, or one being written
        return out

    def size(self) -> int:
        """The log's length now (an offset for ``events``)."""
        return self.path.stat().st_size

    def summaries(self, start: int = 0) -> list[dict]:
        """The daemon's "run summary" events from ``start``."""
        return [e for e in self.events(start) if e.get("event") == "run summary"]


def wait_for(what: str, check, timeout: float, proc: subprocess.Popen) -> None:  # noqa: ANN001
    """Poll ``check`` until it holds; fail if the daemon ends or ``timeout`` passes."""
    end = time.monotonic() + timeout
    while not check():
        if proc.poll() is not None:
            raise SystemExit(f"the daemon ended (exit {proc.returncode}) while waiting for {what}")
        if time.monotonic() > end:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def measure_quiet(proc: subprocess.Popen, log: DaemonLog, args: argparse.Namespace) -> dict:
    """CPU of the daemon (and its runs) from the end of one run to the end of the
    ``--quiet-intervals``-th run after it: whole runs and their bookkeeping, nothing cut."""
    start, done = log.size(), len(log.summaries())
    c0, w0 = cpu_seconds(proc.pid), time.monotonic()
    wait_for(
        f"{args.quiet_intervals} quiet runs",
        lambda: len(log.summaries()) >= done + args.quiet_intervals,
        args.timeout + args.interval * args.quiet_intervals,
        proc,
    )
    c1, w1 = cpu_seconds(proc.pid), time.monotonic()
    events = log.events(start)
    runs = [e for e in events if e.get("event") == "run summary"][: args.quiet_intervals]
    return {
        "cpu": c1 - c0,
        "wall": w1 - w0,
        "runs": len(runs),
        "run_seconds": [e.get("seconds") for e in runs],
        "statuses": sorted({str(e.get("status")) for e in runs}),
        "certified": sum(1 for e in events if "certified plan stands" in str(e.get("event"))),
    }


def basis_group(db: Path) -> tuple[str, str]:
    """(school, group): the first basis group of the SIS, the new pupil's class."""
    con = sqlite3.connect(db)
    try:
        return con.execute(
            "SELECT school_id, group_id FROM school_group WHERE kind = 'basis' ORDER BY group_id LIMIT 1"
        ).fetchone()
    finally:
        con.close()


class _Watch:
    """What a benchmark waits for in the live targets: the state store's active person
    objects of one person, and the delta files written since it began to watch."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.dirs = {"itslearning": work / "out" / "itslearning", "feide": work / "out" / "feide"}
        self.before = {t: set(d.iterdir()) if d.exists() else set() for t, d in self.dirs.items()}
        self.found: dict[str, float] = {}  # what -> seconds after the commit it was first seen

    def _query(self, sql: str, *args: object) -> list[tuple] | None:
        """Rows of the state store (read-only); None while a writer holds it locked."""
        con = sqlite3.connect(f"file:{self.work / 'state.sqlite'}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute(sql, args).fetchall()
        except sqlite3.OperationalError:
            return None
        finally:
            con.close()

    def _active(self, pid: str) -> dict[str, str] | None:
        """The attributes (JSON) of a person's active objects, by target; None while locked."""
        rows = self._query(
            "SELECT target, attrs FROM objects WHERE person_id = ? AND kind = 'person' AND status = 'active'",
            pid,
        )
        return None if rows is None else dict(rows)

    def _in_new_file(self, target: str, needle: bytes) -> bool:
        for f in set(self.dirs[target].iterdir()) - self.before[target]:
            if "delta" in f.name and needle in f.read_bytes():
                return True
        return False

    def _seen(self, seen: dict[str, bool], since: float) -> bool:
        """Notes when each place was first reached; True once all are."""
        for what, ok in seen.items():
            if ok and what not in self.found:
                self.found[what] = time.monotonic() - since
        return all(seen.values())


class Arrival(_Watch):
    """Where the new pupil has arrived: the state store's objects and the new delta files."""

    def __init__(self, work: Path, group: str) -> None:
        super().__init__(work)
        self.group = group

    def check(self, since: float) -> bool:
        """True once the pupil is everywhere; notes when each place was first reached."""
        active = self._active(PUPIL)
        member = self._query(
            "SELECT 1 FROM objects WHERE target = 'itslearning' AND key = ? AND members LIKE ?",
            self.group,
            f'%"{PUPIL}"%',
        )
        if active is None or member is None:
            return False  # the store is locked by a writer for the moment
        uid = json.loads(active["feide"]).get("uid") if "feide" in active else None
        return self._seen(
            {
                "itslearning object": "itslearning" in active,
                "feide object": "feide" in active,
                "itslearning membership": bool(member),
                "itslearning delta file": self._in_new_file(
                    "itslearning", f"<id>{PUPIL}</id></sourcedid><userid>".encode()
                ),
                "feide delta file": uid is not None
                and self._in_new_file("feide", f"\nuid: {uid}\n".encode()),
            },
            since,
        )


class Departure(_Watch):
    """Where a leaver is gone from: the state store's active objects, and the new delta files."""

    def __init__(self, work: Path, pid: str, uid: str) -> None:
        super().__init__(work)
        self.pid, self.uid = pid, uid

    def check(self, since: float) -> bool:
        """True once the leaver is gone everywhere; notes when each place was first reached."""
        active = self._active(self.pid)
        if active is None:
            return False  # the store is locked by a writer for the moment
        return self._seen(
            {
                "itslearning object": "itslearning" not in active,
                "feide object": "feide" not in active,
                "itslearning delta file": self._in_new_file("itslearning", f"<id>{self.pid}</id>".encode()),
                "feide delta file": self._in_new_file("feide", f"uid={self.uid},".encode()),
            },
            since,
        )


def feide_uid(work: Path, pid: str) -> str:
    """The uid of a person's Feide object, as stored."""
    con = sqlite3.connect(f"file:{work / 'state.sqlite'}?mode=ro", uri=True, timeout=30)
    try:
        (attrs,) = con.execute(
            "SELECT attrs FROM objects WHERE target = 'feide' AND person_id = ? AND kind = 'person'", (pid,)
        ).fetchone()
    finally:
        con.close()
    return json.loads(attrs)["uid"]


def stop_daemon(proc: subprocess.Popen, grace: float = 90.0) -> int | None:
    """SIGTERM the daemon and wait; SIGKILL it (by its pid) if it has not ended in ``grace``."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def run_daemon(work: Path, conf: Path, db: Path, args: argparse.Namespace, bare: float) -> None:
    """Start the daemon, take the quiet and latency figures, and stop it."""
    log = DaemonLog(work / "daemon.log")
    with open(log.path, "wb") as out:
        proc = subprocess.Popen(
            _bas(conf, "daemon"), cwd=work, env=_env(), stdout=out, stderr=subprocess.STDOUT
        )
    try:
        t0 = time.monotonic()
        wait_for("the daemon's first run", lambda: log.summaries(), args.timeout, proc)
        first = log.summaries()[0]
        print(
            f"daemon started, its first run ended:     {time.monotonic() - t0:7.1f} s"
            f"  (run {first.get('seconds')} s, status {first.get('status')})"
        )
        report_quiet(measure_quiet(proc, log, args), bare)
        report_latency(work, db, proc, log, args, bare)
        report_departure(work, db, proc, log, args)
    finally:
        code = stop_daemon(proc)
        print(f"daemon stopped (SIGTERM): exit {code}; its log: {log.path}")


def report_quiet(q: dict, bare: float) -> None:
    """Print the quiet-CPU figures."""
    pct = 100 * q["cpu"] / q["wall"]
    per_run = q["cpu"] / q["runs"] if q["runs"] else float("nan")
    print(
        f"quiet CPU over {q['wall']:.0f} s:                {pct:7.2f} % of one core"
        f"  ({q['cpu']:.1f} CPU s; target < 5 %: {'OK' if pct < 5 else 'OVER'})"
    )
    print(
        f"   {q['runs']} runs ({q['certified']} certified; status {', '.join(q['statuses']) or '-'});"
        f" seconds {q['run_seconds']}; CPU per run {per_run:.2f} s = {per_run / bare:.2f} x bare SELECT"
    )


def report_latency(
    work: Path, db: Path, proc: subprocess.Popen, log: DaemonLog, args: argparse.Namespace, bare: float
) -> None:
    """Commit the new pupil and print how long it takes to reach every live target."""
    school, group = basis_group(db)
    arrival = Arrival(work, group)  # the output folders as they were before the commit
    start = log.size()
    commit_pupil(db, PUPIL, (school, group), dt.date.today(), ("Nora", "Sanntid"))  # one transaction
    since, since_wall = time.monotonic(), time.time()
    wait_for("the new pupil in every live target", lambda: arrival.check(since), args.timeout, proc)
    secs = time.monotonic() - since
    print(
        f"new pupil in every live target:          {secs:7.1f} s after the commit"
        f"  (target <= 120 s: {'OK' if secs <= 120 else 'OVER'}; {secs / args.interval:.2f} x the interval,"
        f" {secs / bare:.1f} x bare SELECT; school {school}, group {group})"
    )
    found = sorted(arrival.found.items(), key=lambda kv: kv[1])
    print("   first seen: " + ", ".join(f"{k} {v:.1f} s" for k, v in found))
    # The run that carried the pupil: the first to start after the commit. The latency is
    # the wait for it (0 to one interval, by when the commit falls) plus its length.
    started = [e for e in log.events(start) if e.get("event") == "run started in its own process"]
    carried = [e for e in started if _at(e) > since_wall]
    if carried:
        at = _at(carried[0])
        wait, length = at - since_wall, secs - (at - since_wall)
        print(
            f"   waited {wait:.1f} s for the next run, which took {length:.1f} s to reach the targets;"
            f" worst case (commit just after a run started) about {args.interval + length:.0f} s"
        )


def report_departure(
    work: Path, db: Path, proc: subprocess.Popen, log: DaemonLog, args: argparse.Namespace
) -> None:
    """Commit a leaver; print how long until they are gone from every live target, and
    what the run after the one that removed them did."""
    pid = pick_leaver(db, 0)
    departure = Departure(work, pid, feide_uid(work, pid))  # the output folders as they were
    start = log.size()
    leave(db, pid, dt.date.today())  # one transaction
    since, since_wall = time.monotonic(), time.time()
    wait_for("the leaver gone from every live target", lambda: departure.check(since), args.timeout, proc)
    secs = time.monotonic() - since
    print(f"a leaver gone from every live target:    {secs:7.1f} s after the commit  (pupil {pid})")
    found = sorted(departure.found.items(), key=lambda kv: kv[1])
    print("   first seen: " + ", ".join(f"{k} {v:.1f} s" for k, v in found))

    def done_runs() -> list[list[dict]]:
        return [r for r in _runs_since(log, start, since_wall) if r[-1].get("event") == "run summary"]

    # The first run started after the commit removed them; the one after it shows whether
    # the apply's prediction held (a certified plan) or the run planned in full.
    wait_for("the run after it", lambda: len(done_runs()) >= 2, args.timeout + 2 * args.interval, proc)
    removed, after = done_runs()[:2]
    print(f"   the run that removed them: {_how(removed)}, {removed[-1].get('seconds')} s")
    print(
        f"   the run after it: {_how(after)}, {after[-1].get('seconds')} s (status {after[-1].get('status')})"
    )


def _runs_since(log: DaemonLog, start: int, since_wall: float) -> list[list[dict]]:
    """The events of each run started after ``since_wall``, from its start to its summary."""
    runs: list[list[dict]] = []
    for e in log.events(start):
        if e.get("event") == "run started in its own process" and _at(e) > since_wall:
            runs.append([e])
        elif runs and runs[-1][-1].get("event") != "run summary":
            runs[-1].append(e)
    return runs


def _at(event: dict) -> float:
    return dt.datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00")).timestamp()


def _how(run: list[dict]) -> str:
    """How a run came by its plan, by its log."""
    said = " ".join(str(e.get("event")) for e in run)
    if "certified plan stands" in said:
        return "certified"
    return "patched" if "plan patched" in said else "planned in full"


def main() -> None:
    """Set up, run the daemon, print the figures."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--scale", default="oslo", choices=["oslo", "demo"])
    ap.add_argument("--interval", type=int, default=60, help="[daemon] interval_seconds")
    ap.add_argument("--quiet-intervals", type=int, default=3, help="intervals the quiet CPU is measured over")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds to wait for a run or the pupil")
    ap.add_argument(
        "--full-every-hours", type=int, default=0, help="the file targets' full_every_hours (0: every run)"
    )
    args = ap.parse_args()
    if args.quiet_intervals < 3:
        ap.error("--quiet-intervals: at least 3")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bas-bench-rt-"))
    work.mkdir(parents=True, exist_ok=True)
    for f in [*work.glob("*.sqlite*"), *work.glob("out/*/*")]:
        f.unlink()
    as_of = dt.date.today()
    t0 = time.perf_counter()
    db = generate(work, args.scale, as_of)
    print(f"generate SIS ({args.scale}):                {time.perf_counter() - t0:7.1f} s  (set-up)")
    bare, rows = bare_select(db)
    print(f"bare SELECT ({rows:,} rows, sqlite3):      {bare:7.2f} s")
    conf = write_config(work, args.interval, args.full_every_hours)
    print(f"file targets' full_every_hours:          {args.full_every_hours}")
    secs = first_run(work, conf)
    print(f"first run (bas sync, 4 targets):         {secs:7.1f} s  ({secs / bare:.1f} x bare SELECT)")
    run_daemon(work, conf, db, args, bare)


if __name__ == "__main__":
    main()
