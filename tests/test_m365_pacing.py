"""Write pacing (connectors/m365/pacing.py): table-driven on a fake clock, then against the local Graph."""

from __future__ import annotations

import math
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from connectors.m365.graph import GraphClient, Req, TokenSource, make_session
from connectors.m365.pacing import POLL, Budget, WritePacer
from tests.fake_graph import FakeGraph, VirtualClock

# Each step: ("reserve", n, now, expected wait) | ("settle", n, sent, now, accepted)
#          | ("throttled", sent, now, retry_after, expected budget or None).
Step = tuple[Any, ...]
SCENARIOS: dict[str, tuple[Budget | None, list[Step]]] = {
    "no budget: nothing is ever held back": (
        None,
        [("reserve", 20, 0.0, 0.0), ("reserve", 20, 0.0, 0.0), ("reserve", 5000, 0.1, 0.0)],
    ),
    "no Retry-After: nothing to learn": (
        None,
        [
            ("reserve", 20, 0.0, 0.0),
            ("settle", 20, 0.0, 1.0, 20),
            ("throttled", 1.0, 1.5, None, None),
            ("reserve", 20, 1.5, 0.0),
        ],
    ),
    "learned from the first 429: window back to the first write, budget what was accepted": (
        None,
        [
            ("reserve", 20, 10.0, 0.0),
            ("reserve", 20, 10.0, 0.0),
            ("settle", 20, 10.0, 11.0, 20),
            ("settle", 20, 10.0, 12.0, 20),
            ("reserve", 20, 20.0, 0.0),
            ("settle", 20, 20.0, 21.0, 15),  # 5 of this batch were refused
            ("throttled", 20.0, 21.0, 139.0, Budget(55, 150.0)),
            # Full: the batch answered at 11.0 leaves the window at 161.0.
            ("reserve", 20, 21.0, 140.0),
            ("reserve", 20, 160.9, pytest.approx(0.1)),
            # 20 freed at 161.0 and 20 more reserved: 35 + 20 = 55, full again until 162.0.
            ("reserve", 20, 161.0, 0.0),
            ("reserve", 20, 161.5, 0.5),
        ],
    ),
    "a batch in flight when the budget was learned raises it if accepted": (
        None,
        [
            ("reserve", 20, 0.0, 0.0),
            ("reserve", 20, 0.0, 0.0),  # in flight across the 429
            ("settle", 20, 0.0, 1.0, 20),
            ("throttled", 0.0, 1.0, 149.0, Budget(20, 150.0)),
            ("throttled", 0.0, 1.2, 148.8, None),  # sent before: says nothing new
            ("settle", 20, 0.0, 1.5, 20),
            ("reserve", 20, 2.0, 149.0),  # 40 accepted, budget 40: full until 151.0
            ("reserve", 20, 151.0, 0.0),
        ],
    ),
    "a 429 while pacing cuts the budget by a tenth, never below one batch": (
        Budget(100, 10.0),
        [
            ("reserve", 100, 0.0, 0.0),
            ("settle", 100, 0.0, 1.0, 100),
            ("throttled", 0.5, 1.0, 9.0, Budget(90, 10.0)),
            ("throttled", 0.9, 1.1, 9.0, None),  # sent before the cut
            ("throttled", 2.0, 2.0, 9.0, Budget(81, 10.0)),
            ("settle", 0, 0.0, 11.5, 0),  # the window empties
            ("throttled", 12.0, 12.0, 1.0, Budget(20, 10.0)),
        ],
    ),
    "a batch bigger than the whole budget goes when nothing is held": (
        Budget(10, 5.0),
        [("reserve", 20, 0.0, 0.0), ("reserve", 1, 0.0, POLL), ("settle", 20, 0.0, 0.5, 20)]
        + [("reserve", 1, 1.0, 4.5), ("reserve", 1, 5.5, 0.0)],
    ),
    "budget held by writes still in flight: poll": (
        Budget(40, 10.0),
        [("reserve", 20, 0.0, 0.0), ("reserve", 20, 0.0, 0.0), ("reserve", 20, 0.1, POLL)],
    ),
    "a refused or failed batch holds nothing once answered": (
        Budget(40, 10.0),
        [
            ("reserve", 40, 0.0, 0.0),
            ("settle", 40, 0.0, 1.0, 0),
            ("reserve", 40, 1.0, 0.0),
        ],
    ),
    "the learned window is at most the horizon": (
        None,
        [
            ("reserve", 20, 0.0, 0.0),
            ("settle", 20, 0.0, 1.0, 20),
            ("reserve", 20, 500.0, 0.0),
            ("settle", 20, 500.0, 501.0, 20),
            ("throttled", 500.0, 501.0, 300.0, Budget(40, 600.0)),
        ],
    ),
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_pacer_steps(name: str) -> None:
    budget, steps = SCENARIOS[name]
    p = WritePacer(budget, floor=20)
    for i, step in enumerate(steps):
        kind, *args = step
        if kind == "reserve":
            n, now, want = args
            assert p.reserve(n, now) == want, (name, i, step)
        elif kind == "settle":
            p.settle(*args)
        else:
            sent, now, ra, want = args
            assert p.throttled(sent, now, ra) == want, (name, i, step)
            if want is not None:
                assert p.budget == want


def simulate(writes: int, limit: int, window: float, latency: float) -> tuple[float, int]:
    """One sender, batches of 20, against a sliding-window limit on a virtual clock: (end, 429s)."""
    pacer = WritePacer(floor=20)
    admitted: deque[float] = deque()
    now, refused, todo = 0.0, 0, writes
    while todo:
        n = min(20, todo)
        wait = pacer.reserve(n, now)
        while wait > 0:
            now += wait
            wait = pacer.reserve(n, now)
        sent, at = now, now + latency / 2  # the server handles the batch halfway
        while admitted and admitted[0] <= at - window:
            admitted.popleft()
        ok = min(n, limit - len(admitted))
        admitted.extend([at] * ok)
        now += latency
        pacer.settle(n, sent, now, ok)
        todo -= ok
        if ok < n:
            refused += n - ok
            retry_after = admitted[0] + window - at
            pacer.throttled(sent, now, retry_after)
            now = max(now, at + retry_after)  # Retry-After is honoured as well
    return now, refused


@pytest.mark.parametrize(
    ("writes", "limit", "window", "latency"),
    [(11500, 3000, 150.0, 0.2), (11500, 3000, 150.0, 0.05), (5000, 1000, 20.0, 0.1), (700, 100, 10.0, 0.02)],
)
def test_paced_sender_keeps_within_a_tenth_of_the_limit_and_is_not_refused_again(
    writes: int, limit: int, window: float, latency: float
) -> None:
    floor = (math.ceil(writes / limit) - 1) * window  # the last write cannot go earlier
    service = (writes - limit * (math.ceil(writes / limit) - 1)) / 20 * latency  # sending the rest
    end, refused = simulate(writes, limit, window, latency)
    assert floor <= end <= 1.1 * (floor + service)
    assert refused <= 20  # only the batch that met the limit first


class WindowedGraph:
    """A scripted requests session: $batch answers, writes limited per sliding window, a fake clock."""

    def __init__(self, limit: int, window: float, latency: float) -> None:
        self.limit, self.window, self.latency = limit, window, latency
        self.now = 0.0
        self.accepted: deque[float] = deque()
        self.refused = 0
        self.refuse_reads = range(0)  # the reads (by number) that answer 429
        self.reads = 0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def request(self, method: str, url: str, json: Any = None, **_: Any) -> Any:
        self.now += self.latency / 2
        out = []
        for r in json["requests"]:
            if r["method"] == "GET":
                self.reads += 1
                if self.reads in self.refuse_reads:
                    out.append({"id": r["id"], "status": 429, "headers": {"Retry-After": "5"}})
                else:
                    out.append({"id": r["id"], "status": 200, "body": {"value": []}})
                continue
            while self.accepted and self.accepted[0] <= self.now - self.window:
                self.accepted.popleft()
            if len(self.accepted) < self.limit:
                self.accepted.append(self.now)
                out.append({"id": r["id"], "status": 204})
            else:
                self.refused += 1
                wait = self.accepted[0] + self.window - self.now
                out.append({"id": r["id"], "status": 429, "headers": {"Retry-After": f"{wait:.3f}"}})
        self.now += self.latency / 2
        return _Answer({"responses": out})

    def close(self) -> None:
        return None


class _Answer:
    status_code = 200
    headers: dict[str, str] = {}
    content = b"{}"

    def __init__(self, body: dict[str, Any]) -> None:
        self._body = body

    def json(self) -> dict[str, Any]:
        return self._body


def scripted_client(graph: WindowedGraph) -> GraphClient:
    return GraphClient(
        "https://graph.invalid/v1.0",
        lambda: "token",
        session=graph,  # type: ignore[arg-type]
        concurrency=1,
        attempts=20,
        max_delay=600.0,
        sleep=graph.sleep,
        clock=graph.clock,
    )


def test_client_paces_after_the_first_429_on_a_fake_clock() -> None:
    graph = WindowedGraph(limit=200, window=60.0, latency=0.5)
    client = scripted_client(graph)
    answers = client.send_all([Req("PATCH", f"/users/u{i}", {"jobTitle": "x"}) for i in range(1000)])
    assert all(a.status == 204 for a in answers) and len(graph.accepted) <= 200
    assert client.pacer.budget is not None and client.pacer.budget.limit == 200
    assert 60.0 <= client.pacer.budget.window <= 61.0  # errs long by at most a round trip
    assert graph.refused <= 20  # one batch met the limit; after that, none
    assert client.stats.paced > 0
    # 1,000 writes at 200 per 60 s: the last 200 cannot go before 240 s.
    assert 240.0 <= graph.now <= 1.1 * (240.0 + 10 * 0.5)


def test_throttled_reads_teach_no_write_budget() -> None:
    graph = WindowedGraph(limit=10**6, window=60.0, latency=0.5)
    graph.refuse_reads = range(31, 41)
    client = scripted_client(graph)
    assert all(a.status == 204 for a in client.send_all([Req("DELETE", f"/users/d{i}") for i in range(40)]))
    answers = client.send_all([Req("GET", f"/users/u{i}") for i in range(60)])
    assert all(a.status == 200 for a in answers)
    assert client.stats.throttled > 0 and client.pacer.budget is None


def test_client_learns_the_budget_from_the_local_graph_and_stops_being_refused(tmp_path: Path) -> None:
    clock = VirtualClock()  # shared: time passes only when the client waits
    fake = FakeGraph(tmp_path / "g", clock=clock)
    fake.throttle(100, 10.0)
    session = make_session(str(fake.ca_file))
    tokens = TokenSource(
        fake.tenant, fake.client_id, secret=fake.client_secret, authority_host=fake.url, session=session
    )
    client = GraphClient(
        fake.graph_url,
        tokens,
        session=session,
        concurrency=1,  # one sender: the same requests in the same order on every run
        attempts=20,
        sleep=clock.sleep,
        clock=clock.now,
    )
    try:
        reqs = [
            Req(
                "POST",
                "/users",
                {
                    "accountEnabled": True,
                    "displayName": f"Elev {i}",
                    "mailNickname": f"e{i}",
                    "userPrincipalName": f"e{i}@skole.eksempel.no",
                    "passwordProfile": {"password": f"Xy-{i}-secret-Pw9"},
                },
            )
            for i in range(400)
        ]
        answers = client.send_all(reqs)
        assert [a.status for a in answers] == [201] * 400
        assert len(fake.directory.users) == 400
        budget = client.pacer.budget
        # Learned from the first 429: 10 s, plus at most the Retry-After's rounding up to a second.
        assert budget is not None and budget.limit == 100 and 10.0 <= budget.window <= 11.0
        # Refused only at the first limit: the one batch that met it.
        assert fake.counts["throttled"] == 20
        assert client.stats.paced > 0
        assert fake.sim_time() >= 30.0  # 400 writes at 100 per 10 s: the fourth 100 after 30 s
    finally:
        client.close()
        fake.close()
