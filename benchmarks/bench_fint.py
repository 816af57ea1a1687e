"""Benchmark: the FINT source against the local fake FINT (tests/fake_fint.py).

A demo- or Oslo-size school owner (demo/data.py, generated into SQLite once per --workdir and
read by the SQL source) is served by the fake FINT as FINT 3.x resources. Measured, each in
this run:

1. bare: every page of every resource fetched with the FINT client and thrown away (no
   cache, no mapping) — the baseline the full read is compared with;
2. a full read (empty cache): requests against the ideal sum over resources of
   ceil(entries / page size) (target: at most 1.05x), bytes, seconds;
3. a quiet incremental read right after: bytes as % of the full read (target: under 1 %);
4. an incremental read after one change (one person renamed).

Usage: PYTHONPATH=. .venv/bin/python benchmarks/bench_fint.py [--scale demo|oslo] [--workdir DIR]
       [--page-size N]
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from demo.data import DEMO, OSLO  # noqa: E402
from sources.fint import FintSource  # noqa: E402
from sources.fint.client import Credentials, FintClient  # noqa: E402
from sources.fint.mapping import RESOURCES  # noqa: E402
from tests.fake_fint import FakeFint  # noqa: E402
from tests.fintenv import demo_snapshot, fint_config  # noqa: E402


def _read(cfg: object, fake: FakeFint) -> tuple[float, int, int, int, FintSource]:
    fake.reset_counts()
    src = FintSource(cfg)  # type: ignore[arg-type]
    t = time.perf_counter()
    snap = src.read()
    secs = time.perf_counter() - t
    src.close()
    return secs, src.client.requests, fake.bytes_sent, len(snap.persons), src


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", choices=("demo", "oslo"), default="demo")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--page-size", type=int, default=2000)
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bas-bench-fint-"))
    work.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    _url, snap = demo_snapshot(work, OSLO if args.scale == "oslo" else DEMO)
    print(f"scale {args.scale}: {snap.counts()} (generated/read in {time.perf_counter() - t:.1f} s)")
    t = time.perf_counter()
    fake = FakeFint(work / "tls", snap)
    sizes = fake.total_entries()
    print(
        f"fake FINT serving {sum(sizes.values()):,} entries in {len(sizes)} resources"
        f" ({time.perf_counter() - t:.1f} s)"
    )
    page = args.page_size
    ideal = sum(math.ceil(n / page) for n in sizes.values())
    try:
        # 1. bare: the pages only
        creds = Credentials(fake.token_url, fake.client_id, fake.client_secret, fake.username, fake.password)
        bare = FintClient(fake.url, creds, ca_file=str(fake.ca_file))
        fake.reset_counts()
        t = time.perf_counter()
        n = sum(1 for r in RESOURCES for _ in bare.entries(r, page))
        bare_s, bare_req, bare_bytes = time.perf_counter() - t, bare.requests, fake.bytes_sent
        bare.close()
        print(f"bare pages: {n:,} entries, {bare_req} requests, {bare_bytes / 1e6:.1f} MB, {bare_s:.2f} s")

        cache = work / "cfg" / "fint-cache"
        shutil.rmtree(cache, ignore_errors=True)
        cfg = fint_config(work / "cfg", fake, page_size=page)
        # 2. full read
        full_s, full_req, full_bytes, persons, _ = _read(cfg, fake)
        pages_only = full_req - 1 - len(RESOURCES)  # less the token and one /last-updated per resource
        print(
            f"full read: {persons:,} persons, {full_req} requests (token 1, last-updated {len(RESOURCES)},"
            f" pages {pages_only}); ideal sum ceil(items/{page}) = {ideal};"
            f" ratio {full_req / ideal:.3f}x (pages only {pages_only / ideal:.3f}x; target <= 1.05x);"
            f" {full_bytes / 1e6:.1f} MB; {full_s:.2f} s ({full_s / bare_s:.2f}x the bare pages)"
        )
        # 3. quiet incremental read
        q_s, q_req, q_bytes, _, _ = _read(cfg, fake)
        print(
            f"quiet read: {q_req} requests, {q_bytes:,} bytes = {100 * q_bytes / full_bytes:.4f} %"
            f" of the full read (target < 1 %), {q_s:.2f} s"
        )
        # 4. one change
        fake.update_person(snap.persons[len(snap.persons) // 2].person_id, family_name="Endretsen")
        c_s, c_req, c_bytes, _, src = _read(cfg, fake)
        how = {k.rsplit("/", 1)[-1]: v for k, v in src.last_read.items() if v != "quiet"}
        print(
            f"one change: {c_req} requests, {c_bytes:,} bytes = {100 * c_bytes / full_bytes:.4f} %"
            f" of the full read, {c_s:.2f} s; not quiet: {how}"
        )
    finally:
        fake.close()


if __name__ == "__main__":
    main()
