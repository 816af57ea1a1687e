"""Benchmark: reading a PIFU-IMS export against a bare lxml iterparse of the same file (not a test).

Builds the demo owner as a PIFU export (``--scale demo``: ~3,000 persons; ``--scale oslo``:
255,000 persons, ~1,000,000 memberships) through the SQL demo generator and
``demo.pifu.write_export``, cached in ``--workdir``. Then, each in a fresh child process
(so every peak RSS is its own):

- ``bare``: ``lxml.etree.iterparse`` over the file touching every element and clearing it
  (and its finished siblings): the baseline;
- ``schema``: the same with the PIFU XSD attached (libxml2 validates while parsing);
- ``pifu``: ``sources.pifu.reader.read_export`` (validation, mapping, digests): the reader;
- ``xmlschema`` (demo scale only, or ``--xmlschema``): ``xmlschema`` lazy validation.

Prints seconds, MB/s and peak RSS of each, the reader's throughput as a ratio of the
baseline's (target >= 0.8), and the reader's memory beyond its snapshot (peak RSS minus
the RSS the snapshot keeps once read), the figure that must stay flat as files grow.

Usage::

    .venv/bin/python benchmarks/bench_pifu.py [--scale demo|oslo] [--workdir DIR] [--repeat N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from measure import peak_mb  # noqa: E402

OWNER_ORG = "958935420"
AS_OF = dt.date(2025, 10, 1)


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def child(mode: str, path: str) -> dict[str, float]:
    """One measurement in this (fresh) process."""
    from lxml import etree

    from sources.pifu.reader import read_export
    from sources.pifu.schema import pifu_schema, safe_parser_options

    schema = pifu_schema()  # compiled before the clock starts, as the reader's cache has it
    gc.collect()
    base = _rss_mb()
    t0 = time.perf_counter()
    out: dict[str, float] = {}
    if mode in ("bare", "schema"):
        n = 0
        kw = {"schema": schema} if mode == "schema" else {}
        for _, el in etree.iterparse(path, events=("end",), **safe_parser_options(), **kw):
            n += 1
            el.clear(keep_tail=False)
            while el.getprevious() is not None:
                del el.getparent()[0]
        out["elements"] = n
    elif mode == "pifu":
        snap, _info = read_export(Path(path), owner_org=OWNER_ORG)
        out.update({k: float(v) for k, v in snap.counts().items()})
    elif mode == "xmlschema":
        import xmlschema

        from sources.pifu.schema import xsd_path

        xs = xmlschema.XMLSchema10(str(xsd_path()))
        t0 = time.perf_counter()  # the schema's own build is not the validation
        errors = sum(1 for _ in xs.iter_errors(xmlschema.XMLResource(path, lazy=True)))
        out["errors"] = errors
    out["seconds"] = time.perf_counter() - t0
    gc.collect()
    out["base_mb"] = base
    out["peak_mb"] = peak_mb()
    out["kept_mb"] = _rss_mb() - base  # what the result keeps (the snapshot, for pifu)
    return out


def run_child(mode: str, path: Path) -> dict[str, float]:
    res = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(path)],
        check=True,
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    return json.loads(res.stdout.strip().splitlines()[-1])


def build(scale: str, work: Path) -> Path:
    """The cached export of this scale (generated through SQL and written by demo.pifu)."""
    export = work / f"pifu-{scale}.xml"
    if export.exists():
        return export
    import sqlalchemy as sa

    from demo import data
    from demo.pifu import write_export
    from sources.sql import read_snapshot

    db = work / f"sis-{scale}.sqlite"
    if not db.exists():
        t0 = time.perf_counter()
        data.generate(f"sqlite:///{db}", getattr(data, scale.upper()), seed=1, as_of=AS_OF)
        print(f"generate SIS ({scale}):   {time.perf_counter() - t0:7.1f} s  (set-up)")
    engine = sa.create_engine(f"sqlite:///{db}")
    snap = read_snapshot(engine)
    engine.dispose()
    t0 = time.perf_counter()
    write_export(snap, export, owner_name="Oslo kommune", owner_org_number=OWNER_ORG, as_of=AS_OF.isoformat())
    print(f"write PIFU export ({scale}): {time.perf_counter() - t0:7.1f} s  (demo.pifu.write_export)")
    return export


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", default="demo", choices=["demo", "oslo"])
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--repeat", type=int, default=1, help="runs per measurement; the fastest counts")
    ap.add_argument("--xmlschema", action="store_true", help="also time xmlschema at Oslo scale (slow)")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bas-bench-pifu-"))
    work.mkdir(parents=True, exist_ok=True)
    export = build(args.scale, work)
    size_mb = export.stat().st_size / 2**20
    print(f"export: {export} ({size_mb:.1f} MB)")
    modes = ["bare", "schema", "pifu"]
    if args.scale == "demo" or args.xmlschema:
        modes.append("xmlschema")
    results: dict[str, dict[str, float]] = {}
    # Interleaved (bare, schema, pifu, bare, ...): a load that comes and goes in the middle of
    # the run weighs on every mode alike, and the fastest of each counts.
    every: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    for i in range(args.repeat):
        for mode in modes:
            if mode != "xmlschema" or i == 0:
                every[mode].append(run_child(mode, export))
    for mode in modes:
        runs = every[mode]
        results[mode] = min(runs, key=lambda r: r["seconds"])
    for mode, r in results.items():
        print(
            f"{mode:10s} {r['seconds']:8.2f} s  {size_mb / r['seconds']:7.1f} MB/s"
            f"  peak RSS {r['peak_mb']:7.1f} MB  (start {r['base_mb']:.0f} MB, kept {r['kept_mb']:.0f} MB)"
        )
    p, b = results["pifu"], results["bare"]
    counts = {k: int(v) for k, v in p.items() if k not in ("seconds", "base_mb", "peak_mb", "kept_mb")}
    print(f"counts: {counts}")
    ratio = b["seconds"] / p["seconds"]
    print(f"throughput PIFU reader / bare iterparse: {ratio:.2f}x  (target >= 0.80)")
    print(f"throughput iterparse+schema / bare iterparse: {b['seconds'] / results['schema']['seconds']:.2f}x")
    beyond = p["peak_mb"] - p["base_mb"] - p["kept_mb"]
    print(
        f"memory: bare iterparse peak {b['peak_mb'] - b['base_mb']:.0f} MB over start; reader peak"
        f" {p['peak_mb'] - p['base_mb']:.0f} MB over start, of which the snapshot keeps"
        f" {p['kept_mb']:.0f} MB:"
        f" {beyond:.0f} MB beyond the snapshot ({beyond / size_mb:.2f} MB per MB of file)"
    )
    if "xmlschema" in results:
        xs = results["xmlschema"]
        print(f"xmlschema lazy validation / bare iterparse: {b['seconds'] / xs['seconds']:.3f}x")


if __name__ == "__main__":
    main()
