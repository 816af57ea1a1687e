"""File targets applied in worker processes: the same outcome as in one process, errors
raised, a stop relayed, nothing left running (provisioner.apply.workers, provisioner.apply.worker)."""

from __future__ import annotations

import datetime as dt
import os
import re
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import sqlalchemy as sa

from demo import data as demo_data
from provisioner.apply import executor, worker, workers
from provisioner.apply.options import ApplyOptions
from provisioner.core.plan import CORE, Change, Op, Plan, TargetPlan
from provisioner.run import runner
from provisioner.state import schema as t
from provisioner.state.store import StateStore
from tests.sisbuilder import make_config, same_seal_key
from tests.workerconn import Recording

DAY = dt.date(2025, 10, 1)
SMALL = demo_data.Scale(1, 0, 0, 0, 0, students=60, employees=8, guardians=70, groups=10, memberships=300)

pytestmark = pytest.mark.skipif(workers.cores() < 2, reason="worker processes are used with 2 or more cores")


def _plan(*targets: tuple[str, int]) -> Plan:
    tps = [
        TargetPlan(
            name,
            tuple(
                Change(name, Op.CREATE, "person", f"P{i:04d}", "test", person_id=f"P{i:04d}", attrs={"n": i})
                for i in range(n)
            ),
        )
        for name, n in targets
    ]
    return Plan(
        run_id="r1", created_at="2025-10-01T00:00:00+00:00", as_of="2025-10-01", cookie={}, targets=(*tps,)
    )


def _notes(store: StateStore, target: str) -> set[str]:
    return set(_notes_all(store, target))


def _notes_all(store: StateStore, target: str) -> list[str]:
    with store.engine.connect() as c:
        rows = c.execute(sa.select(t.changelog.c.error).where(t.changelog.c.target == target)).all()
    return [r[0] for r in rows]


def _stopped_after(seconds: float, plan: Plan, store: StateStore, conns: dict) -> dict:
    """The plan applied, with a stop (SIGTERM to the daemon's run) ``seconds`` after it began."""
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    timer.start()
    try:
        return executor.apply_plan(plan, store, conns, soft_delete={}, stop=stop)
    finally:
        timer.cancel()


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    s = StateStore(f"sqlite:///{tmp_path / 'state.sqlite'}")
    yield s
    s.close()


def test_a_process_safe_target_is_applied_in_another_process(store: StateStore) -> None:
    plan = _plan(("local", 30), ("safe", 40))
    conns = {"local": Recording("local", process_safe=False), "safe": Recording("safe", process_safe=True)}
    res = executor.apply_plan(plan, store, conns, soft_delete={})
    assert [res[n].ok for n in ("local", "safe")] == [30, 40]
    assert _notes(store, "local") == {f"pid {os.getpid()}"}
    (note,) = _notes(store, "safe")  # one other process applied every change
    assert note != f"pid {os.getpid()}"
    assert len(list(store.objects.iterate("safe"))) == 40
    assert list(res) == ["local", "safe"]  # in plan order, as if applied one after the other


def test_this_process_keeps_the_largest_when_it_has_nothing_else(store: StateStore) -> None:
    plan = _plan(("small", 10), ("large", 50))
    conns = {n: Recording(n, process_safe=True) for n in ("small", "large")}
    executor.apply_plan(plan, store, conns, soft_delete={})
    assert _notes(store, "large") == {f"pid {os.getpid()}"}
    assert _notes(store, "small") != {f"pid {os.getpid()}"}


def test_workers_take_the_cores_this_process_leaves_largest_first_one_after_another(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two cores: this process applies its own target, so one worker at a time beside it
    # (three at once, each with its own target's plan, made the run larger, not faster).
    monkeypatch.setattr(executor, "cores", lambda: 2)
    plan = _plan(("local", 5), ("small", 10), ("large", 30), ("middle", 20))
    conns = {"local": Recording("local", process_safe=False)}
    conns |= {
        n: Recording(n, process_safe=True, delay=0.01, stamp=True) for n in ("small", "large", "middle")
    }
    res = executor.apply_plan(plan, store, conns, soft_delete={})
    assert [res[n].ok for n in ("local", "small", "large", "middle")] == [5, 10, 30, 20]
    assert list(res) == ["local", "small", "large", "middle"]  # in plan order all the same
    spans = {}
    for name in ("small", "large", "middle"):
        notes = [n.split() for n in _notes_all(store, name)]  # "pid N at T"
        (pid,) = {n[1] for n in notes}
        assert pid != str(os.getpid())
        times = [float(n[3]) for n in notes]
        spans[name] = (min(times), max(times), pid)
    assert len({pid for _, _, pid in spans.values()}) == 3  # a process of its own each
    order = sorted(spans, key=lambda n: spans[n][0])
    assert order == ["large", "middle", "small"]
    for first, then in zip(order, order[1:]):
        assert spans[first][1] < spans[then][0]  # never two at once


def test_a_stop_while_a_target_waits_for_a_worker_leaves_it_untouched(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(executor, "cores", lambda: 2)
    plan = _plan(("local", 1), ("first", 400), ("waits", 10))
    conns = {
        "local": Recording("local", process_safe=False),
        "first": Recording("first", process_safe=True, delay=0.02),  # 8 s unstopped
        "waits": Recording("waits", process_safe=True),
    }
    res = _stopped_after(1.5, plan, store, conns)
    assert res["first"].status == "interrupted" and res["first"].ok < 400
    assert res["waits"].status == "interrupted" and res["waits"].ok == 0
    assert list(store.objects.iterate("waits")) == []  # planned again by the next run
    assert list(res) == ["local", "first", "waits"]


def test_an_in_memory_store_or_a_single_target_stays_in_this_process(tmp_path: Path) -> None:
    mem = StateStore("sqlite://")
    assert not workers.available(mem, ApplyOptions())
    mem.close()
    s = StateStore(f"sqlite:///{tmp_path / 's.sqlite'}")
    try:
        executor.apply_plan(
            _plan(("only", 5)), s, {"only": Recording("only", process_safe=True)}, soft_delete={}
        )
        assert _notes(s, "only") == {f"pid {os.getpid()}"}
        assert workers.available(s, ApplyOptions())
        assert not workers.available(s, ApplyOptions(workers=False))
    finally:
        s.close()


@pytest.mark.parametrize(
    ("fail", "message"),
    [("raise", "RuntimeError: boom in safe"), ("exit", "worker ended without an answer (exit code 3)")],
)
def test_a_failing_worker_fails_the_apply_after_this_process_finished_its_own(
    store: StateStore, fail: str, message: str
) -> None:
    plan = _plan(("local", 20), ("safe", 20))
    conns = {
        "local": Recording("local", process_safe=False),
        "safe": Recording("safe", process_safe=True, fail=fail),
    }
    with pytest.raises(workers.WorkerError, match=re.escape(message)):
        executor.apply_plan(plan, store, conns, soft_delete={})
    assert len(list(store.objects.iterate("local"))) == 20
    assert list(store.objects.iterate("safe")) == []


def test_a_stop_reaches_the_worker_which_keeps_what_it_did(store: StateStore) -> None:
    plan = _plan(("local", 1), ("safe", 400))
    conns = {
        "local": Recording("local", process_safe=False),
        "safe": Recording("safe", process_safe=True, delay=0.02),  # 8 s unstopped
    }
    res = _stopped_after(1.5, plan, store, conns)
    safe = res["safe"]
    assert safe.status == "interrupted" and safe.ok < 400
    assert len(list(store.objects.iterate("safe"))) == safe.ok  # flushed when stopped
    assert res["local"].ok == 1


def test_sync_with_workers_gives_the_same_state_and_files_as_without(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = f"sqlite:///{tmp_path / 'sis.sqlite'}"
    demo_data.generate(src, SMALL, seed=5, as_of=DAY)
    started: list[str] = []
    real_start = workers.Workers.start

    def start(self: workers.Workers, job: worker.Job) -> None:
        started.append(job.plan.target)
        real_start(self, job)

    monkeypatch.setattr(workers.Workers, "start", start)
    outcome = {}
    for mode in ("workers", "one-process"):
        cfg = make_config(tmp_path / mode, src, f"sqlite:///{tmp_path / mode / 'state.sqlite'}")
        same_seal_key(cfg.sqlalchemy_url(cfg.state.url))  # the two stores seal Feide's NINs alike
        store = StateStore(cfg.sqlalchemy_url(cfg.state.url))
        options = replace(runner.apply_options(cfg), workers=mode == "workers")
        try:
            out = runner.sync(cfg, store, as_of=DAY.isoformat(), options=options)
            assert out.status == "done", out.message
            objects = {n: sorted(map(repr, store.objects.iterate(n))) for n in ("itslearning", "feide")}
            with store.engine.connect() as c:
                log = sorted(
                    c.execute(
                        sa.select(
                            t.changelog.c.target, t.changelog.c.op, t.changelog.c.key, t.changelog.c.result
                        )
                    ).all()
                )
            files = {
                "ldif": (tmp_path / mode / "feide" / "latest-full.ldif").read_text(encoding="utf-8"),
                "ims": re.sub(
                    r"<datetime>[^<]*</datetime>",
                    "",
                    (tmp_path / mode / "itslearning" / "latest-full.xml").read_text(encoding="utf-8"),
                ),
            }
            again = runner.sync(cfg, store, dry_run=True, as_of=DAY.isoformat(), full=True)
            for name in (CORE, "itslearning", "feide"):  # AD and M365 are plan-only here
                assert again.plan.target(name).changes == (), name
            outcome[mode] = (
                {k: (v.status, v.ok) for k, v in out.results.items() if k != CORE},
                objects,
                log,
                files,
            )
        finally:
            store.close()
    assert started == ["feide"]  # the smaller target went to a worker, once
    assert outcome["workers"] == outcome["one-process"]


def test_workers_wait_for_the_core_and_apply_nothing_when_it_fails(
    store: StateStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    core = TargetPlan(CORE, (Change(CORE, Op.CREATE, "person", "P0000", "test", attrs={"username": "u"}),))
    plan = _plan(("local", 5), ("safe", 5))
    plan = Plan(plan.run_id, plan.created_at, plan.as_of, {}, (core, *plan.targets))

    def broken(*_a: object, **_k: object) -> int:
        raise RuntimeError("state store gone")

    monkeypatch.setattr(executor, "apply_core", broken)
    conns = {"local": Recording("local", process_safe=False), "safe": Recording("safe", process_safe=True)}
    with pytest.raises(RuntimeError, match="state store gone"):
        executor.apply_plan(plan, store, conns, soft_delete={})
    assert list(store.objects.iterate("safe")) == [] and list(store.objects.iterate("local")) == []
