"""How the pipeline benchmarks time a run (benchmarks/bench_pipeline.py, bench_realtime.py).

Each run is its own forked process, as in production (the systemd unit starts one process
per run), so each peak memory figure is that run's own: the larger of the run process's
peak RSS and the sampled peak of the summed PSS of the run process and the worker
processes it starts to apply file targets. Short runs are the fastest of three; the
baseline is a bare SELECT of the same rows with the sqlite3 driver, also the fastest of
three; `bas --help` is the median of seven.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from provisioner.run import runner

ROOT = Path(__file__).resolve().parents[1]


def peak_mb() -> float:
    """This process's peak RSS in MB (VmHWM: after an exec, as in a spawned child,
    ru_maxrss would still hold the peak from before it; a forked child starts afresh)."""
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmHWM:", 1)[1].split()[0]) / 1024  # kB; Linux, as the PSS below


def bare_select(db: Path, times: int = 3) -> tuple[float, int]:
    """Seconds and rows to SELECT every source table with the driver alone.

    The fastest of ``times`` reads: one slow moment of the machine must not make every
    ratio of the run look better than it is (a smaller baseline only makes them larger).
    """
    # Here, not at the top: bench_fint and bench_pifu import this module for peak_mb in
    # every child they measure, which need not load the SQL source for that.
    from sources.sql import DEFAULT_QUERIES

    best, n = float("inf"), 0
    for _ in range(times):
        t0 = time.perf_counter()
        con = sqlite3.connect(db)
        n = 0
        for q in DEFAULT_QUERIES.values():
            n += len(con.execute(q).fetchall())
        con.close()
        best = min(best, time.perf_counter() - t0)
    return best, n


def cli_startup(runs: int = 7) -> tuple[float, float]:
    """Median seconds of `bas --help` and of a bare `python -c pass` (benchmarks/bench_cli_startup.py)."""
    import statistics

    def median(cmd: list[str]) -> float:
        times = []
        for _ in range(runs):
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    return median([sys.executable, "-m", "provisioner.cli", "--help"]), median([sys.executable, "-c", "pass"])


class PssSampler:
    """Peak memory of a run and its worker processes together: the sum of their PSS.

    PSS shares each page among the processes mapping it, so forked workers are counted
    for what they add, not again for the parent's pages they share (RSS would).
    """

    def __init__(self, pid: int, every: float = 0.5) -> None:
        self.pid, self.every, self.peak = pid, every, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(self.every):
            self.peak = max(self.peak, sum(_pss_kb(p) for p in process_tree(self.pid)))

    def stop(self) -> float:
        """Stop sampling; the peak in MB."""
        self._done.set()
        self._thread.join()
        return self.peak / 1024


def process_tree(pid: int) -> list[int]:
    """A process and its descendants, as /proc lists them now."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            with contextlib.suppress(OSError):  # the process just ended
                todo.extend(int(c) for c in task.read_text().split())
    return out


def _pss_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def best_of(
    run: Callable[[], runner.RunOutcome], times: int = 3, before: Callable[[], object] | None = None
) -> dict:
    """The fastest of ``times`` runs, each in its own process (``before`` runs before each
    but the first: the caller made the first change); its peak is the largest of them all."""
    got = []
    for i in range(times):
        if before is not None and i:
            before()
        got.append(in_child(run))
    best = min(got, key=lambda r: r["seconds"])
    return {
        **best,
        "peak_mb": max(r["peak_mb"] for r in got),
        "samples": "/".join(f"{r['seconds']:.2f}" for r in got),
    }


def in_child(run: Callable[[], runner.RunOutcome]) -> dict:
    """Run one sync in a forked process, as each run is in production (the systemd unit
    starts a process per run), and return its figures: seconds, peak RSS, plan summary."""
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()

    def child() -> None:
        t0 = time.perf_counter()
        out = run()
        secs = time.perf_counter() - t0
        plan = out.plan
        q.put(
            {
                "seconds": secs,
                "peak_mb": peak_mb(),
                "status": out.status,
                "changes": sum(len(tp.changes) for tp in plan.targets) if plan else 0,
                "basis": plan.basis if plan else None,
                "run_id": plan.run_id if plan else None,
                "summary": plan.summary() if plan else {},
            }
        )

    proc = ctx.Process(target=child)
    proc.start()
    assert proc.pid is not None  # started
    sampler = PssSampler(proc.pid)
    result = q.get()
    proc.join()
    result["pss_mb"] = sampler.stop()
    result["peak_mb"] = max(result["peak_mb"], result["pss_mb"])
    if proc.exitcode != 0:
        raise SystemExit(f"benchmark run failed in its process (exit {proc.exitcode})")
    return result
