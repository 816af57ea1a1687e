"""Benchmark: the FINT source against the local fake FINT, the reader's memory apart.

A demo- or Oslo-size school owner (demo/data.py, generated into SQLite once per --workdir) is
served as FINT 3.x resources by the fake FINT in a process of its own (tests/fake_fint_serve.py),
and each measurement below runs in a fresh child process, so its peak resident memory
(VmHWM, benchmarks/measure.py's peak_mb) is the reader's alone. Measured, each in this run:

0. baseline: the SQL source reading the same owner from SQLite (``read_snapshot``) in a child:
   the memory of the snapshot itself, the figure the reader's peak is a ratio to;
1. bare: every page of every resource fetched with the FINT client and thrown away (no cache,
   no mapping) — the baseline the full read's time is compared with;
2. a full read (empty cache): requests against the ideal sum over resources of
   ceil(entries / page size) (target: at most 1.05x), bytes, seconds, peak memory, cache size;
3. a quiet incremental read right after: bytes as % of the full read (target: under 1 %);
4. an incremental read after one change (one person renamed).

Usage: PYTHONPATH=. .venv/bin/python benchmarks/bench_fint.py [--scale demo|oslo] [--workdir DIR]
       [--page-size N]
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from measure import peak_mb  # noqa: E402

from sources.fint.mapping import RESOURCES  # noqa: E402


def _child_idle() -> dict[str, Any]:
    """The interpreter with the reader's imports and nothing read: the floor of every child."""
    import sqlalchemy  # noqa: F401

    import sources.fint  # noqa: F401
    import sources.sql  # noqa: F401

    return {"peak_mb": peak_mb()}


def _child_sql(url: str) -> dict[str, Any]:
    import sqlalchemy as sa

    import sources.fint  # noqa: F401  (the same imports as the reader's children)
    from sources.sql import read_snapshot

    engine = sa.create_engine(url)
    t = time.perf_counter()
    snap = read_snapshot(engine)
    secs = time.perf_counter() - t
    engine.dispose()
    return {"secs": secs, "peak_mb": peak_mb(), "rows": sum(snap.counts().values())}


def _child_bare(info: dict[str, Any], page: int) -> dict[str, Any]:
    from sources.fint.client import Credentials, FintClient

    creds = Credentials(info["token_url"], info["client_id"], info["client_secret"], info["username"],
                        info["password"])  # fmt: skip
    client = FintClient(info["url"], creds, ca_file=info["ca_file"])
    t = time.perf_counter()
    n = sum(1 for r in RESOURCES for _ in client.entries(r, page))
    secs = time.perf_counter() - t
    client.close()
    return {"secs": secs, "entries": n, "requests": client.requests, "bytes": client.bytes,
            "peak_mb": peak_mb()}  # fmt: skip


def _child_read(info: dict[str, Any], folder: str, page: int) -> dict[str, Any]:
    from sources.fint import FintSource
    from tests.fintenv import fint_config

    cfg = fint_config(Path(folder), SimpleNamespace(**info), page_size=page)  # type: ignore[arg-type]
    src = FintSource(cfg)
    t = time.perf_counter()
    snap = src.read()
    secs = time.perf_counter() - t
    src.close()
    how = {k.rsplit("/", 1)[-1]: v for k, v in src.last_read.items() if v != "quiet"}
    return {"secs": secs, "requests": src.client.requests, "bytes": src.client.bytes,
            "persons": len(snap.persons), "not_quiet": how, "peak_mb": peak_mb()}  # fmt: skip


def _in_child(fn: Any, *args: Any) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        return pool.apply(fn, args)


def _folder_mb(folder: Path) -> float:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", choices=("demo", "oslo"), default="demo")
    ap.add_argument("--workdir", default="/work/bench-fint")
    ap.add_argument("--page-size", type=int, default=2000)
    args = ap.parse_args()
    work = Path(args.workdir) / args.scale
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "tests.fake_fint_serve", "--workdir", str(work), "--scale", args.scale],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert server.stdin is not None and server.stdout is not None
    try:
        line = server.stdout.readline()
        if not line:
            raise SystemExit("the fake FINT did not start")
        info = json.loads(line)
        sizes: dict[str, int] = info.pop("sizes")
        person = info.pop("person")
        page = args.page_size
        ideal = sum(math.ceil(n / page) for n in sizes.values())
        print(f"scale {args.scale}: fake FINT serving {sum(sizes.values()):,} entries in {len(sizes)}"
              f" resources (ready in {time.perf_counter() - t:.1f} s, in its own process)")  # fmt: skip
        idle = _in_child(_child_idle)
        sql = _in_child(_child_sql, f"sqlite:///{work / 'demo-1.db'}")
        print(f"idle child (imports only): peak {idle['peak_mb']:.0f} MB")
        snap_mb = sql["peak_mb"] - idle["peak_mb"]
        print(
            f"baseline, SQL read_snapshot: {sql['rows']:,} rows, peak {sql['peak_mb']:.0f} MB"
            f" (snapshot ~{snap_mb:.0f} MB over idle), {sql['secs']:.2f} s"
        )
        bare = _in_child(_child_bare, info, page)
        print(
            f"bare pages: {bare['entries']:,} entries, {bare['requests']} requests,"
            f" {bare['bytes'] / 1e6:.1f} MB, {bare['secs']:.2f} s, peak {bare['peak_mb']:.0f} MB"
        )

        cfg_dir = work / "cfg"
        shutil.rmtree(cfg_dir, ignore_errors=True)
        full = _in_child(_child_read, info, str(cfg_dir), page)
        pages_only = full["requests"] - 1 - len(RESOURCES)  # less the token and one /last-updated each
        cache_mb = _folder_mb(cfg_dir / "fint-cache")
        over = (full["peak_mb"] - idle["peak_mb"]) / max(1.0, snap_mb)
        print(
            f"full read: {full['persons']:,} persons, {full['requests']} requests (pages {pages_only});"
            f" ideal sum ceil(items/{page}) = {ideal}; ratio {full['requests'] / ideal:.3f}x"
            f" (pages only {pages_only / ideal:.3f}x; target <= 1.05x); {full['bytes'] / 1e6:.1f} MB;"
            f" {full['secs']:.2f} s ({full['secs'] / bare['secs']:.2f}x the bare pages)"
        )
        print(
            f"full read memory: peak {full['peak_mb']:.0f} MB = {full['peak_mb'] / sql['peak_mb']:.2f}x the"
            f" SQL read's peak ({over:.2f}x over idle); cache on disk {cache_mb:.1f} MB"
            f" ({100 * cache_mb * 1e6 / full['bytes']:.0f} % of the bytes read)"
        )
        quiet = _in_child(_child_read, info, str(cfg_dir), page)
        print(
            f"quiet read: {quiet['requests']} requests, {quiet['bytes']:,} bytes ="
            f" {100 * quiet['bytes'] / full['bytes']:.4f} % of the full read (target < 1 %),"
            f" {quiet['secs']:.2f} s, peak {quiet['peak_mb']:.0f} MB"
            f" ({quiet['peak_mb'] / sql['peak_mb']:.2f}x the SQL read's)"
        )
        server.stdin.write(f"update_person {person} Endretsen\n")
        server.stdin.flush()
        assert server.stdout.readline().strip() == "ok"
        one = _in_child(_child_read, info, str(cfg_dir), page)
        print(
            f"one change: {one['requests']} requests, {one['bytes']:,} bytes ="
            f" {100 * one['bytes'] / full['bytes']:.4f} % of the full read, {one['secs']:.2f} s,"
            f" peak {one['peak_mb']:.0f} MB; not quiet: {one['not_quiet']}"
        )
    finally:
        server.stdin.close()
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
