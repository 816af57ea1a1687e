"""Safety through runner.sync on SQLite SISes: member and window holds, the per-table gate,
schools that disappear, approving only a current held plan, refused runs in `bas status`."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from provisioner.config import parse
from provisioner.core.plan import CORE, Op
from provisioner.core.safety import HoldRule
from provisioner.run import runner
from provisioner.run.runner import EXIT_HELD, EXIT_OK, EXIT_USAGE, RunOutcome
from provisioner.service import status
from provisioner.state import safety_reads
from provisioner.state import schema as t
from provisioner.state.store import StateStore
from sources.sql import DEFAULT_QUERIES
from tests.sisbuilder import Sis, config_toml, make_config, small_sis

DAY1, DAY2 = "2025-10-01", "2025-10-02"
FILES = ("itslearning", "feide")


class Env:
    """A SIS, its config and state store; ``sync`` writes the SIS and runs."""

    def __init__(self, tmp: Path, sis: Sis, **cfg: Any) -> None:
        self.tmp, self.sis = tmp, sis
        self.src = f"sqlite:///{tmp / 'sis.db'}"
        self.store = StateStore(f"sqlite:///{tmp / 'state.db'}")
        self.configure(**cfg)

    def configure(self, queries: dict[str, str] | None = None, **cfg: Any) -> None:
        self.cfg = make_config(self.tmp, self.src, self.store.url, targets=FILES, **cfg)
        if queries:  # a [source.queries] table after the rest (valid TOML)
            text = config_toml(self.tmp, self.src, self.store.url, targets=FILES, **cfg)
            text += "\n[source.queries]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in queries.items())
            self.cfg = parse(text, base_dir=str(self.tmp))

    def sync(self, as_of: str = DAY2) -> RunOutcome:
        self.sis.write(self.src)
        return runner.sync(self.cfg, self.store, as_of=as_of)

    def persons(self, target: str) -> set[str]:
        return {o["key"] for o in self.store.objects.iterate(target) if o["kind"] == "person"}

    def members(self, target: str) -> int:
        return sum(
            len(o["members"] or ()) for o in self.store.objects.iterate(target) if o["kind"] == "group"
        )

    def applied(self, run_id: str) -> int:
        with self.store.engine.connect() as c:
            q = t.changelog.select().where(t.changelog.c.run_id == run_id, t.changelog.c.target != CORE)
            return len(c.execute(q).all())


def done(out: RunOutcome) -> RunOutcome:
    assert (out.exit_code, out.status) == (EXIT_OK, "done"), (out.status, out.message)
    return out


@pytest.fixture()
def env(tmp_path: Path):  # noqa: ANN201
    e = Env(tmp_path, small_sis())
    done(e.sync(DAY1))
    yield e
    e.store.close()


def test_an_emptied_memberships_view_is_held_and_an_empty_one_refused(env: Env) -> None:
    before = {tg: env.members(tg) for tg in FILES}
    keep = env.sis.memberships[:1]
    env.sis.memberships = keep  # 8 of 9 memberships gone; the gate let through (100 %)
    env.configure(safety={"max_member_removal_percent": 10.0, "max_source_drop_percent": 100.0})
    out = env.sync()
    assert (out.exit_code, out.status) == (EXIT_HELD, "held"), out.message
    # itslearning's groups hold members (AD and Microsoft 365 too); Feide lists them in person attributes.
    hold = out.plan.target("itslearning").hold
    assert hold is not None and hold.rule == HoldRule.MAX_MEMBER_REMOVAL_PERCENT, hold
    assert "8 of 23 memberships" in hold.message
    assert env.members("itslearning") == before["itslearning"]  # not one membership removed
    assert f"`bas approve {out.run_id}`" in out.message
    # Empty: refused before any diff, and that is never approved.
    env.sis.memberships = []
    refused = env.sync()
    assert (refused.exit_code, refused.status) == (EXIT_HELD, "refused")
    assert "memberships table(s) are empty" in refused.message and refused.plan is None
    again = runner.approve(env.cfg, env.store, refused.run_id, "admin")
    assert again.exit_code == EXIT_USAGE and "never approved" in again.message
    assert env.sync().status == "refused"
    assert env.members("itslearning") == before["itslearning"]


def test_empty_enrollments_are_refused_and_cannot_be_approved(env: Env) -> None:
    env.sis.enrollments = []  # the employees stay active: the source as a whole is not empty
    out = env.sync()
    assert (out.exit_code, out.status) == (EXIT_HELD, "refused")
    assert "enrollments" in out.message and "fix the source" in out.message
    assert "bas approve" not in out.message
    assert runner.approve(env.cfg, env.store, out.run_id, "admin").exit_code == EXIT_USAGE
    assert env.store.runs.get(out.run_id)["approved_at"] is None


def test_a_table_that_shrank_is_refused_against_the_largest_good_run(env: Env) -> None:
    env.sis.groups = [g for g in env.sis.groups if g.group_id != "NORD-MAT"]
    env.sis.memberships = [m for m in env.sis.memberships if m.group_id != "NORD-MAT"]
    out = env.sync()
    assert out.status == "refused"
    assert "groups fell from 3 to 2" in out.message and "memberships fell from 9 to 6" in out.message
    assert f"`bas approve {out.run_id}` accepts it once" in out.message
    assert runner.approve(env.cfg, env.store, out.run_id, "admin").exit_code == EXIT_OK
    assert env.sync().status in ("done", "held")


def decline_sis(n: int = 100) -> Sis:
    s = Sis().school("NORD", "974000001", "NORDBY")
    for i in range(n):
        s.student(f"S{i:03}", "NORD")
    s.employee("T1", "NORD")
    return s


def test_a_slow_decline_is_held_by_the_window_and_an_approval_starts_it_afresh(tmp_path: Path) -> None:
    e = Env(tmp_path, decline_sis(), safety={"max_delete_percent": 10.0, "max_source_drop_percent": 100.0})
    try:
        done(e.sync(DAY1))
        start = len(e.persons("itslearning"))
        outs = []
        for _run in range(12):  # each run loses 9 % of who is left
            left = sorted(p for p in e.persons("itslearning") if p.startswith("S"))
            active = [p for p in left if not any(x.person_id == p and x.end_date for x in e.sis.enrollments)]
            for pid in active[: max(1, len(active) * 9 // 100)]:
                e.sis.end_enrollments(pid, DAY1)
            outs.append(e.sync())
        assert outs[0].status == "done"  # 9 % alone is under the 10 % limit
        assert all(o.status == "held" for o in outs[1:]), [o.status for o in outs]
        hold = outs[1].plan.target("itslearning").hold
        assert hold.rule == HoldRule.WINDOW_DELETES and "within 24 h" in hold.message
        assert start - len(e.persons("itslearning")) <= start // 10  # not 281 of 420: at most the limit
        # The admin approves the newest held plan: applied, and the window starts afresh.
        newest = outs[-1]
        assert done(runner.approve(e.cfg, e.store, newest.run_id, "admin")).status == "done"
        e.sis.end_enrollments(next(p for p in sorted(e.persons("itslearning")) if p.startswith("S")), DAY1)
        after = done(e.sync())
        assert [c.op for c in after.plan.target("itslearning").changes if c.op == Op.DELETE] == [Op.DELETE]
        window = safety_reads.window_removals(e.store, ["itslearning", "feide"], 24)
        deleted = {c.key for c in after.plan.target("itslearning").changes if c.op == Op.DELETE}
        assert {k for _, k in window["itslearning"].objects} == deleted  # only what came after the approval
        # An old window is forgotten: with the changelog aged past 24 h nothing counts.
        with e.store.engine.begin() as c:
            c.execute(t.changelog.update().values(at="2020-01-01T00:00:00.000000+00:00"))
            c.execute(t.runs.update().values(finished_at="2020-01-01T00:00:00.000000+00:00"))
        assert safety_reads.window_removals(e.store, ["itslearning"], 24)["itslearning"].objects == set()
    finally:
        e.store.close()


def schools_sis() -> Sis:
    s = Sis()
    for i in range(1, 7):
        s.school(f"SK{i}", f"97400000{i}")
        s.student(f"S{i}a", f"SK{i}").student(f"S{i}b", f"SK{i}").employee(f"T{i}", f"SK{i}")
    return s


def test_a_school_filtered_out_holds_every_target_until_approved(tmp_path: Path) -> None:
    e = Env(tmp_path, schools_sis())
    try:
        done(e.sync(DAY1))
        before = {tg: e.persons(tg) for tg in FILES}
        filtered = {
            k: DEFAULT_QUERIES[k] + " WHERE school_id <> 'SK6'" for k in ("enrollments", "employments")
        }
        e.configure(queries=filtered)
        out = e.sync()
        assert (out.exit_code, out.status) == (EXIT_HELD, "held"), out.message
        for tg in FILES:
            assert out.plan.target(tg).hold.rule == HoldRule.SCHOOL_GONE
            assert "SK6" in out.plan.target(tg).hold.message
            assert e.persons(tg) == before[tg]
        assert f"`bas approve {out.run_id}`" in out.message
        again = e.sync()  # still gone: still held (a held run does not accept it)
        assert again.status == "held" and again.plan.target("feide").hold.rule == HoldRule.SCHOOL_GONE
        assert done(runner.approve(e.cfg, e.store, again.run_id, "admin"))
        assert not {"S6a", "S6b", "T6"} & e.persons("feide")
        done(e.sync())  # accepted
    finally:
        e.store.close()


def _held(env: Env) -> RunOutcome:
    env.configure(safety={"max_deletes": 1, "max_source_drop_percent": 50.0})
    for pid in ("S2", "S3", "S5"):
        env.sis.end_enrollments(pid, DAY1)
    out = env.sync()
    assert out.status == "held", out.message
    assert re.search(rf"`bas approve {re.escape(out.run_id)}` applies this plan", out.message)
    return out


def test_approve_of_a_superseded_held_run_applies_nothing(env: Env) -> None:
    first = _held(env)
    second = env.sync()
    assert second.status == "held"
    # The superseded plan is not kept (it holds NINs and can never be applied); status
    # names only the held run that can be approved.
    assert env.store.runs.get(first.run_id)["plan"] is None
    assert env.store.runs.get(second.run_id)["plan"]
    assert [h["run_id"] for h in status.collect(env.store, FILES).held] == [second.run_id]
    before = {tg: env.persons(tg) for tg in FILES}
    out = runner.approve(env.cfg, env.store, first.run_id, "admin")
    assert out.exit_code == EXIT_USAGE, out.message
    assert f"run {second.run_id} planned afresh since and is held too" in out.message
    assert f"`bas approve {second.run_id}`" in out.message
    assert {tg: env.persons(tg) for tg in FILES} == before and env.applied(first.run_id) == 0
    assert env.store.runs.get(first.run_id)["approved_at"] is None
    done(runner.approve(env.cfg, env.store, second.run_id, "admin"))
    assert not {"S2", "S3", "S5"} & env.persons("feide")


def test_approve_after_the_source_changed_applies_nothing(env: Env) -> None:
    held = _held(env)
    env.sis.enroll("S2", "NORD", start=DAY1)  # S2 is back: deleting them now would be wrong
    env.sis.write(env.src)
    out = runner.approve(env.cfg, env.store, held.run_id, "admin")
    assert out.exit_code == EXIT_USAGE and "the source (or a local person or lock) changed" in out.message
    assert "S2" in env.persons("feide") and env.applied(held.run_id) == 0


def test_approve_after_the_config_or_state_changed_applies_nothing(env: Env) -> None:
    held = _held(env)
    env.configure(
        safety={"max_deletes": 1, "max_source_drop_percent": 50.0},
        target_settings={"feide": {"base_dn": "dc=annet,dc=no"}},
    )
    out = runner.approve(env.cfg, env.store, held.run_id, "admin")
    assert out.exit_code == EXIT_USAGE and "the configuration changed" in out.message
    env.configure(safety={"max_deletes": 1, "max_source_drop_percent": 50.0})
    with env.store.engine.begin() as c:
        env.store.versions.bump(c, "feide")
    out = runner.approve(env.cfg, env.store, held.run_id, "admin")
    assert out.exit_code == EXIT_USAGE and "the state of feide changed" in out.message
    assert "S2" in env.persons("feide") and env.applied(held.run_id) == 0


def test_status_lists_refused_runs_beside_held_ones(env: Env) -> None:
    held = _held(env)
    env.sis.enrollments = []
    refused = env.sync()
    env.sis.groups = env.sis.groups[:1]
    env.sis.enrollments = small_sis().enrollments
    dropped = env.sync()
    assert (refused.status, dropped.status) == ("refused", "refused"), dropped.message
    health = status.collect(env.store, FILES)
    assert [x["run_id"] for x in health.held] == [held.run_id]
    assert [(x["run_id"], x["approvable"]) for x in health.refused] == [
        (dropped.run_id, True),
        (refused.run_id, False),
    ]
    text = status.render_text(health)
    assert f"{dropped.run_id}  groups fell from 3 to 1" in text and f"-> bas approve {dropped.run_id}" in text
    assert "refused runs (the source gate) (2)" in text and "-> fix the source" in text
    assert health.to_json()["refused"][0]["run_id"] == dropped.run_id
    assert runner.approve(env.cfg, env.store, dropped.run_id, "admin").exit_code == EXIT_OK
    assert [x["run_id"] for x in status.collect(env.store, FILES).refused] == [refused.run_id]


def test_approve_after_a_newer_sync_went_through_applies_nothing(env: Env) -> None:
    """The 788-user incident: a held plan approved after the next sync had set things right."""
    held = _held(env)
    for pid in ("S2", "S3", "S5"):  # the SIS is fixed: they never left
        env.sis.enrollments = [
            e._replace(end_date=None) if e.person_id == pid else e for e in env.sis.enrollments
        ]
    newer = done(env.sync())
    out = runner.approve(env.cfg, env.store, held.run_id, "admin")
    assert out.exit_code == EXIT_USAGE
    assert f"run {newer.run_id} planned afresh since (done); its plan superseded this one" in out.message
    assert {"S2", "S3", "S5"} <= env.persons("feide") and env.applied(held.run_id) == 0
