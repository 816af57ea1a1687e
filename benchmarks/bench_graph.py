"""Benchmark: onboarding 10,000 users and 500 groups of 30 members through the M365 connector.

Runs against the local Graph (tests/fake_graph.py) over HTTPS, through the executor's
batching path (``apply_many``), and prints HTTP requests against the minimum possible
with 20 requests per $batch, and wall time: once unthrottled, once with Graph's write
limit (3,000 per 150 s). The throttled run uses the fake's time scale (its clock runs
``--scale`` times the wall clock; Retry-After is scaled alike) and reports simulated and
real time against what the limit allows at best: ``(ceil(writes / 3000) - 1) * 150`` s,
the moment a sliding window of 3,000 writes per 150 s lets the last write through when
each window's writes go out at its very start (11,500 writes: 450 s). That bound leaves
out the time the sending itself takes (scaled up with the clock), so no client reaches
it; a steady ``writes / 3000 * 150`` s (575 s) would flatter the client instead.

Then every create is replayed (a run that died before recording them): each finds its
object and nothing differs, so zero writes. (A real second run plans nothing at all;
tests/test_m365_*.py check that it sends zero writes.)

    .venv/bin/python -m benchmarks.bench_graph [--users 10000] [--groups 500] [--scale 10]
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from pathlib import Path
from typing import Any

from connectors.m365.connector import M365Connector
from connectors.m365.graph import GraphClient, Stats, TokenSource, make_session
from provisioner.config import M365Config
from provisioner.core.plan import Change, Op
from provisioner.target_config import LicenseConfig
from tests.fake_graph import FakeGraph

SKU = "314c4481-f395-4525-be8b-2ec4bb1e9d91"
CONCURRENCY = 4  # $batch requests in flight (the M365 target's default)


def plan(users: int, groups: int, size: int) -> list[Change]:
    """Creates of users (teachers every 30th), then groups (owner: a teacher), then members."""
    out = []
    for i in range(users):
        pid = f"P{i:06d}"
        attrs = {
            "userPrincipalName": f"u{i:06d}@skole.eksempel.no",
            "mailNickname": f"u{i:06d}",
            "displayName": f"Elev {i}",
            "givenName": "Elev",
            "surname": str(i),
            "employeeId": pid,
            "usageLocation": "NO",
            "department": "Nord skole",
            "jobTitle": "teacher" if i % 30 == 0 else "student",
        }
        out.append(Change("m365", Op.CREATE, "person", pid, "bench", username=f"u{i:06d}", attrs=attrs))
    for g in range(groups):
        owner = f"P{(g * size) % users:06d}"  # the group's first member
        group_attrs: dict[str, Any] = {
            "displayName": f"NORD {g}",
            "mailNickname": f"NORD-{g}",
            "description": "bench",
            "groupType": "security",
            "securityEnabled": True,
            "mailEnabled": False,
            "owners": [owner],
        }
        out.append(Change("m365", Op.CREATE, "group", f"G{g}", "bench", attrs=group_attrs))
    for g in range(groups):
        members = tuple((f"P{(g * size + k) % users:06d}", "") for k in range(size))
        out.append(Change("m365", Op.ADD_MEMBERS, "group", f"G{g}", "bench", members=members))
    return out


def run(fake: FakeGraph, changes: list[Change], licences: bool) -> tuple[float, int, int, int, Stats]:
    """Apply in executor-sized windows; (seconds, failed changes, http requests, writes, client stats)."""
    cfg = M365Config(
        mode="plan",
        licenses={"student": (LicenseConfig(sku_id=SKU),), "teacher": (LicenseConfig(sku_id=SKU),)}
        if licences
        else {},
        initial_passwords=False,
    )
    session = make_session(str(fake.ca_file))
    tokens = TokenSource(
        fake.tenant, fake.client_id, secret=fake.client_secret, authority_host=fake.url, session=session
    )
    client = GraphClient(
        fake.graph_url, tokens, session=session, attempts=50, concurrency=CONCURRENCY, max_delay=600
    )
    conn = M365Connector(cfg, client, password_dir=None)
    anchors: dict[str, str] = {}
    conn.begin("bench", lambda kind, key: anchors.get(key))
    fake.reset_counts()
    t0 = time.perf_counter()
    failed = 0
    for start in range(0, len(changes), conn.window):
        window = changes[start : start + conn.window]
        for c, r in zip(window, conn.apply_many(window)):
            if isinstance(r, Exception):
                failed += 1
                if failed <= 3:
                    print("  failed:", c.op.value, c.key, r)
            elif r.anchor:
                anchors[c.key] = r.anchor
    took = time.perf_counter() - t0
    conn.close()
    return took, failed, fake.counts["http"], fake.writes, client.stats


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--users", type=int, default=10000)
    ap.add_argument("--groups", type=int, default=500)
    ap.add_argument("--size", type=int, default=30)
    ap.add_argument("--scale", type=float, default=10.0)
    ap.add_argument("--licences", action="store_true", help="also assign a licence per user")
    args = ap.parse_args()
    changes = plan(args.users, args.groups, args.size)
    writes = args.users * (2 if args.licences else 1) + args.groups * (1 + math.ceil(args.size / 20))
    minimum = math.ceil(writes / 20)
    print(f"plan: {args.users} users, {args.groups} groups x {args.size} members; {writes} writes")
    print(f"minimum HTTP requests with 20 per $batch: {minimum}")
    with tempfile.TemporaryDirectory() as tmp:
        fake = FakeGraph(Path(tmp) / "a", skus=(SKU,), page_size=999)
        took, failed, http, sent, _ = run(fake, changes, args.licences)
        print(
            f"unthrottled: {took:.1f} s, {http} HTTP requests ({http / minimum:.3f} x minimum, token"
            f" and lookups included), {sent} writes, {failed} failed"
        )
        creates = [c for c in changes if c.op is Op.CREATE]  # a lost run's creates, replayed
        took2, failed2, http2, sent2, _ = run(fake, creates, args.licences)
        print(
            f"replayed creates (each finds its object): {sent2} writes,"
            f" {http2} HTTP requests, {failed2} failed"
        )
        fake.close()
        fake = FakeGraph(Path(tmp) / "b", skus=(SKU,), page_size=999)
        fake.throttle(3000, 150.0, time_scale=args.scale)
        took, failed, http, sent, stats = run(fake, changes, args.licences)
        floor = (math.ceil(writes / 3000) - 1) * 150.0
        sim = took * args.scale
        print(
            f"throttled (3,000 writes / 150 s, time scale {args.scale:g}): real {took:.1f} s,"
            f" simulated {sim:.0f} s; the limit allows {floor:.0f} s at best"
            f" ({sim / max(floor, 1e-9):.3f}x);"
            f" {http} HTTP requests ({http / minimum:.3f} x minimum), {fake.counts['throttled']}"
            f" answers 429, {failed} failed;"
            f" senders' waits (simulated, summed over {CONCURRENCY} threads):"
            f" {stats.paced * args.scale:.0f} s pacing, {stats.waited * args.scale:.0f} s Retry-After"
        )
        fake.close()


if __name__ == "__main__":
    main()
