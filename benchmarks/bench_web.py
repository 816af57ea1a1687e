"""Benchmark: the web console's reads on an Oslo-size state store with a year of changelog.

Builds (once; cached under /tmp keyed by size) a state store with 255,000 persons over
about 180 schools (identities, usernames, dir_persons, dir_affiliations) and a year of
changelog: about 10 million rows over about 35,000 runs, with a realistic mix of targets
and operations (person changes carry person_id and username; membership changes list a
few members in a small ``after``). Then times, warm, the median of several repetitions of
the same code the pages call:

- person search by a name fragment (``store.directory.search``), owner and school scope;
- a changelog page (``store.history.page``, 50 rows): by person, by target, by op and
  target, by a school admin's scope (``reach.person_filter()``: the directory's sub-select),
  by a week's time window, and a deep keyset page (``before`` half-way down the table);

each beside the same statement run bare with the driver alone (ratio). The console's target
is 300 ms for each. On PostgreSQL (``--pg URL``) the same at a smaller scale (``--rows``).

Usage: .venv/bin/python benchmarks/bench_web.py [--rows 10000000] [--persons 255000]
       [--rebuild] [--reps 7] [--pg postgresql+psycopg://postgres@127.0.0.1:5432/bas_bench]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402

from demo.names import NORWEGIAN_FAMILY, NORWEGIAN_FEMALE, NORWEGIAN_MALE  # noqa: E402
from provisioner.core.directory import fold  # noqa: E402
from provisioner.state import schema as t  # noqa: E402
from provisioner.state.history import COLUMNS, Filter  # noqa: E402
from provisioner.state.store import StateStore  # noqa: E402

SCHOOLS = 180
RUNS = 35_000
TARGETS = (("core", 12), ("ad", 25), ("m365", 25), ("feide", 18), ("itslearning", 20))
OPS = (
    ("update", 40),
    ("create", 12),
    ("move", 9),
    ("disable", 8),
    ("enable", 4),
    ("delete", 4),
    ("restore", 1),
    ("add_members", 14),
    ("remove_members", 8),
)
YEAR_START = dt.datetime(2025, 12, 1, tzinfo=dt.UTC)
CHUNK = 100_000
# The changelog columns in the order ``_changelog`` writes them (id is the database's).
CHANGELOG_COLUMNS = (
    "run_id", "at", "target", "op", "kind", "key", "person_id", "username",
    "before", "after", "reason", "result", "error",
)  # fmt: skip
TARGET_MS = 300.0


def person_id(i: int) -> str:
    return f"P{i:07d}"


def username(i: int) -> str:
    return f"u{i:06d}"


def _names(rng: random.Random, n: int) -> list[str]:
    given = NORWEGIAN_FEMALE + NORWEGIAN_MALE
    return [f"{rng.choice(given)} {rng.choice(NORWEGIAN_FAMILY)}" for _ in range(n)]


def _persons(rng: random.Random, n: int) -> Iterator[tuple[list[tuple], ...]]:
    """Rows of identities, usernames, dir_persons, dir_affiliations, in chunks."""
    stamp = YEAR_START.isoformat()
    names = _names(rng, n)
    for lo in range(0, n, CHUNK):
        ident: list[tuple] = []
        users: list[tuple] = []
        dperson: list[tuple] = []
        affil: list[tuple] = []
        for i in range(lo, min(n, lo + CHUNK)):
            pid, user, name = person_id(i), username(i), names[i]
            role = "student" if i % 10 < 8 else "employee"
            schools = sorted({i % SCHOOLS} | ({(i * 7) % SCHOOLS} if i % 25 == 0 else set()))
            sids = [f"S{s:03d}" for s in schools]
            nin = f"{(i % 28) + 1:02d}{(i % 12) + 1:02d}10{i % 100000:05d}"
            ident.append((pid, user, nin, name, role, "active", None, stamp, stamp, None))
            users.append((user, pid, nin, "issued", stamp, None))
            dperson.append((pid, user, name, fold(f"{name} {user}"), role, ",".join(sids), True, f"d{i}"))
            affil.extend((pid, s, role) for s in sids)
        yield ident, users, dperson, affil


def _runs(rng: random.Random, rows: int) -> tuple[list[tuple], list[int]]:
    """The runs (every 15 minutes over a year) and how many changelog rows each wrote."""
    weights = [rng.lognormvariate(0, 1.3) for _ in range(RUNS)]
    total = sum(weights)
    counts = [int(w / total * rows) for w in weights]
    counts[-1] += rows - sum(counts)
    step = dt.timedelta(days=365) / RUNS
    runs = []
    for n in range(RUNS):
        at = YEAR_START + step * n
        rid = at.strftime("%Y%m%dT%H%M%SZ") + f"-{n:06x}"
        summary = json.dumps({"data_errors": 0, "plan": {"ad": {"update": counts[n]}}})
        runs.append(
            (rid, "sync", "done", at.isoformat(), at.isoformat(), at.date().isoformat(), 255000, summary)
        )
    return runs, counts


def _changelog(
    rng: random.Random, runs: list[tuple], counts: list[int], persons: int
) -> Iterator[list[tuple]]:
    """The changelog rows, run by run, in chunks."""
    targets, tw = [t for t, _ in TARGETS], [w for _, w in TARGETS]
    ops, ow = [o for o, _ in OPS], [w for _, w in OPS]
    chunk: list[tuple] = []
    for run, n in zip(runs, counts, strict=True):
        rid, at = run[0], run[3]
        for tgt, op in zip(rng.choices(targets, tw, k=n), rng.choices(ops, ow, k=n), strict=True):
            i = rng.randrange(persons)
            if op in ("add_members", "remove_members"):
                members = [[person_id(rng.randrange(persons)), "student"] for _ in range(rng.randint(1, 3))]
                key = f"S{i % SCHOOLS:03d}-2526-G{i % 997:03d}"
                row: tuple = (
                    rid,
                    at,
                    tgt,
                    op,
                    "group",
                    key,
                    None,
                    None,
                    None,
                    json.dumps({"members": members}),
                )
                chunk.append((*row, f"members of {key} in SIS", "ok", None))
            else:
                after = '{"title":"Lærer"}' if op == "update" else None
                ok = rng.random() > 0.002
                row = (rid, at, tgt, op, "person", person_id(i), person_id(i), username(i), None, after)
                chunk.append(
                    (*row, f"{op}: SIS says so", "ok" if ok else "failed", None if ok else "timeout")
                )
            if len(chunk) >= CHUNK:
                yield chunk
                chunk = []
    if chunk:
        yield chunk


def build(path: Path, rows: int, persons: int) -> None:
    """A fresh store at ``path``: schema by StateStore, rows by the driver, indexes after."""
    for p in path.parent.glob(path.name + "*"):
        p.unlink()
    StateStore(f"sqlite:///{path}").close()
    rng = random.Random(14)
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=OFF")
    con.execute("PRAGMA synchronous=OFF")
    # Indexes and the membership trigger are made after the rows: far faster than row by row.
    idx = con.execute(
        "SELECT name, sql FROM sqlite_master WHERE type IN ('index', 'trigger') AND tbl_name='changelog'"
        " AND sql IS NOT NULL ORDER BY type"
    ).fetchall()
    for name, sql in idx:
        con.execute(f"DROP {'TRIGGER' if sql.startswith('CREATE TRIGGER') else 'INDEX'} {name}")
    t0 = time.perf_counter()
    for ident, users, dperson, affil in _persons(rng, persons):
        con.execute("BEGIN")
        con.executemany("INSERT INTO identities VALUES (?,?,?,?,?,?,?,?,?,?)", ident)
        con.executemany("INSERT INTO usernames VALUES (?,?,?,?,?,?)", users)
        con.executemany("INSERT INTO dir_persons VALUES (?,?,?,?,?,?,?,?)", dperson)
        con.executemany("INSERT INTO dir_affiliations VALUES (?,?,?)", affil)
        con.execute("COMMIT")
    con.execute("BEGIN")
    con.executemany(
        "INSERT INTO dir_schools VALUES (?,?)", [(f"S{s:03d}", f"Skole {s}") for s in range(SCHOOLS)]
    )
    runs, counts = _runs(rng, rows)
    con.executemany(
        "INSERT INTO runs (run_id, kind, status, started_at, finished_at, as_of, active_persons, summary)"
        " VALUES (?,?,?,?,?,?,?,?)",
        runs,
    )
    con.execute("COMMIT")
    print(f"  persons and runs           {time.perf_counter() - t0:7.1f} s", flush=True)
    cols = ", ".join(CHANGELOG_COLUMNS)
    done = 0
    for chunk in _changelog(rng, runs, counts, persons):
        con.execute("BEGIN")
        con.executemany(f"INSERT INTO changelog ({cols}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", chunk)
        con.execute("COMMIT")
        done += len(chunk)
        if done % 1_000_000 < CHUNK:
            print(f"  changelog {done:>10,} rows  {time.perf_counter() - t0:7.1f} s", flush=True)
    con.execute(t.CHANGELOG_MEMBERS_BACKFILL["sqlite"])
    print(f"  changelog_members          {time.perf_counter() - t0:7.1f} s", flush=True)
    for name, sql in idx:
        con.execute(sql)
        print(f"  index {name:<28} {time.perf_counter() - t0:7.1f} s", flush=True)
    con.execute("ANALYZE")
    con.execute("PRAGMA journal_mode=WAL")
    con.close()


def median_ms(fn: Callable[[], Any], reps: int) -> tuple[float, Any]:
    """Median wall time of ``fn`` over ``reps`` runs after one warm-up, and its last result."""
    out = fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        out = fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times), out


def bare(engine: sa.Engine, stmt: sa.Select[Any]) -> Callable[[], Any]:
    """The statement run with the driver alone (compiled once, literal values)."""
    sql = str(stmt.compile(engine, compile_kwargs={"literal_binds": True}))

    def run() -> Sequence[Any]:
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute(sql)
            rows = cur.fetchall()
            cur.close()
            return rows
        finally:
            raw.close()

    return run


def page_stmt(store: StateStore, f: Filter, scope: sa.Select[Any] | None) -> sa.Select[Any]:
    """The SELECT ``History.page`` runs for a newest-first page (for the bare baseline)."""
    cl = t.changelog.c
    conds = store.history.conditions(f, scope) or []
    if f.before is not None:
        conds.append(cl.id < f.before)
    return sa.select(*[cl[c] for c in COLUMNS]).where(*conds).order_by(cl.id.desc()).limit(f.limit + 1)


def search_stmt(q: str, schools: list[str] | None) -> sa.Select[Any]:
    """The SELECT ``Directory.search`` runs (for the bare baseline)."""
    dp, a = t.dir_persons.c, t.dir_affiliations.c
    stmt = sa.select(t.dir_persons).where(dp.search.like(f"%{fold(q)}%", escape="\\"))
    if schools is not None:
        stmt = stmt.where(dp.person_id.in_(sa.select(a.person_id).where(a.school_id.in_(schools))))
    return stmt.order_by(dp.active.desc(), dp.display_name, dp.person_id).limit(50)


def _page_rows(store: StateStore, f: Filter, scope: sa.Select[Any] | None) -> list[dict[str, Any]]:
    """One changelog page's rows, as the console's changelog page asks for them."""
    return store.history.page(f, scope).rows


def measure(store: StateStore, persons: int, reps: int) -> list[tuple[str, float, float, int]]:
    """(case, median ms through the console's code, median ms bare, rows) per case."""
    school = ["S017"]
    scope = store.directory.at_schools(school)
    with store.engine.connect() as c:
        top = c.execute(sa.select(sa.func.max(t.changelog.c.id))).scalar() or 0
        mid_run = c.execute(sa.select(t.changelog.c.run_id).where(t.changelog.c.id == top // 2)).scalar()
        week = c.execute(
            sa.select(t.runs.c.started_at).order_by(t.runs.c.started_at).offset(RUNS // 2).limit(1)
        ).scalar()
    since = (week or YEAR_START.isoformat())[:10]
    until = (dt.date.fromisoformat(since) + dt.timedelta(days=6)).isoformat()
    who = username(persons // 2 + 7)
    cases: list[tuple[str, Callable[[], Any], sa.Select[Any]]] = []
    for label, q, schools in (
        ("search 'hansen' (owner)", "hansen", None),
        ("search 'sen' (school)", "sen", school),
    ):
        cases.append((label, partial(store.directory.search, q, schools, 50), search_stmt(q, schools)))
    pages: list[tuple[str, Filter, sa.Select[Any] | None]] = [
        ("changelog by person", Filter(person=who, limit=50), None),
        ("changelog by target", Filter(target="feide", limit=50), None),
        ("changelog by op+target", Filter(op="disable", target="ad", limit=50), None),
        ("changelog school scope", Filter(limit=50), scope),
        ("changelog scope+target", Filter(target="m365", limit=50), scope),
        ("changelog a week", Filter(since=since, until=until, limit=50), None),
        ("changelog one run, a text", Filter(run=mid_run, text="disable", limit=50), None),
        ("changelog deep page", Filter(target="itslearning", before=top // 2, limit=50), None),
        ("changelog person (school)", Filter(person=username(17), limit=50), scope),
    ]
    for label, f, sc in pages:
        cases.append((label, partial(_page_rows, store, f, sc), page_stmt(store, f, sc)))
    out = []
    for label, fn, stmt in cases:
        ms, result = median_ms(fn, reps)
        bare_ms, _ = median_ms(bare(store.engine, stmt), reps)
        out.append((label, ms, bare_ms, len(result)))
    return out


def report(title: str, results: list[tuple[str, float, float, int]]) -> None:
    print(f"\n{title}")
    print(
        f"  {'case':<28} {'console':>9} {'bare':>9} {'ratio':>6} {'rows':>5}  verdict (<= {TARGET_MS:.0f} ms)"
    )
    for label, ms, bare_ms, n in results:
        ratio = ms / bare_ms if bare_ms else float("inf")
        verdict = "OK" if ms <= TARGET_MS else "OVER"
        print(f"  {label:<28} {ms:7.1f}ms {bare_ms:7.1f}ms {ratio:6.2f} {n:>5}  {verdict}")


def build_pg(url: str, rows: int, persons: int) -> StateStore:
    """The same data in PostgreSQL (``url``'s database is emptied first), via COPY-free executemany."""
    eng = sa.create_engine(url)
    with eng.begin() as c:
        c.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
    eng.dispose()
    store = StateStore(url)
    rng = random.Random(14)
    tables = (t.identities, t.usernames, t.dir_persons, t.dir_affiliations)
    with store.engine.begin() as c:
        for chunks in _persons(rng, persons):
            for table, part in zip(tables, chunks, strict=True):
                c.execute(table.insert(), [dict(zip(table.c.keys(), r, strict=True)) for r in part])
        runs, counts = _runs(rng, rows)
        keys = ("run_id", "kind", "status", "started_at", "finished_at", "as_of", "active_persons", "summary")
        c.execute(t.runs.insert(), [dict(zip(keys, r, strict=True)) for r in runs])
    columns = CHANGELOG_COLUMNS
    for chunk in _changelog(rng, runs, counts, persons):
        with store.engine.begin() as c:
            c.execute(t.changelog.insert(), [dict(zip(columns, r, strict=True)) for r in chunk])
    with store.engine.begin() as c:
        c.execute(sa.text("ANALYZE"))
    return store


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--persons", type=int, default=255_000)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--pg", help="also on PostgreSQL at this SQLAlchemy URL (a throw-away database)")
    ap.add_argument("--pg-rows", type=int, default=1_000_000)
    args = ap.parse_args()
    path = Path(f"/tmp/bas-bench-web-v2-{args.persons}-{args.rows}.sqlite")
    if args.rebuild or not path.exists():
        print(f"building {path} ({args.persons:,} persons, {args.rows:,} changelog rows)", flush=True)
        t0 = time.perf_counter()
        build(path, args.rows, args.persons)
        print(f"  built in {time.perf_counter() - t0:.0f} s ({path.stat().st_size / 1e9:.1f} GB)")
    store = StateStore(f"sqlite:///{path}")
    report(
        f"SQLite, {args.rows:,} changelog rows, {args.persons:,} persons",
        measure(store, args.persons, args.reps),
    )
    store.close()
    if args.pg:
        t0 = time.perf_counter()
        pg = build_pg(args.pg, args.pg_rows, args.persons)
        print(f"\nPostgreSQL built in {time.perf_counter() - t0:.0f} s")
        report(f"PostgreSQL, {args.pg_rows:,} changelog rows", measure(pg, args.persons, args.reps))
        pg.close()


if __name__ == "__main__":
    main()
