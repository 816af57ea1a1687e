"""`bas --help` start-up against a bare `python -c pass`, in one run (issue 15: at most 0.3 s).

Every CLI call pays the start-up; the ratio to the bare interpreter is the figure that
does not depend on the machine. Usage: python benchmarks/bench_cli_startup.py [--runs N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def _median(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    """Print the medians and the ratio."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    bare = _median([sys.executable, "-c", "pass"], args.runs)
    rows = {
        "bas --help": [sys.executable, "-m", "provisioner.cli", "--help"],
        "bas --version": [sys.executable, "-m", "provisioner.cli", "--version"],
        "bas plan --help": [sys.executable, "-m", "provisioner.cli", "plan", "--help"],
    }
    print(f"{'bare python -c pass':<22} {bare * 1000:7.0f} ms   1.0x")
    for name, cmd in rows.items():
        t = _median(cmd, args.runs)
        print(f"{name:<22} {t * 1000:7.0f} ms {t / bare:5.1f}x")


if __name__ == "__main__":
    main()
