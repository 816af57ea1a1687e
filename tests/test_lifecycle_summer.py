"""The school year through runner.sync: the summer bridge, and clocks from the SIS end date.

A pupil finishes 7th grade at NORD on 20 June and starts 8th grade at SOR on 15 August.
Across the summer nothing of theirs is disabled, moved or deleted in any target; the
changelog says "bridged until 2026-08-15"; in August they move to SOR. If the new
enrollment is removed from the SIS meanwhile, they are stopped as anyone else, counted
from their SIS end date.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.core.plan import CORE, Op
from provisioner.run.runner import RunOutcome
from provisioner.service import explain
from tests.m365test import M365Env
from tests.sisbuilder import Sis, small_sis
from tests.test_pipeline import Env, ok

JUNE, END, START = "2026-06-01", "2026-06-20", "2026-08-15"
SUMMER = ("2026-06-21", "2026-07-01", "2026-07-15", "2026-08-01", "2026-08-14")
TARGETS = ("itslearning", "feide", "ad", "m365")
STOPS = (Op.DISABLE, Op.DELETE, Op.MOVE, Op.PURGE)


def switcher_sis() -> Sis:
    """The small SIS plus the pupil P who changes school over the summer, and P's guardian G."""
    s = small_sis()
    s.student("P", "NORD", "Pia", "Bytter", grade=7, start="2025-08-15", end=END)
    s.enroll("P", "SOR", grade=8, start=START)
    s.guardian("G", ["P"], "Gro", "Bytter")
    return s


def stops_of(out: RunOutcome, *pids: str) -> list[tuple[str, str, str]]:
    """Disables, deletes, moves and purges of these persons in every target of the plan."""
    return [
        (c.target, c.op.value, c.key)
        for c in out.plan.changes()
        if c.kind in ("person", "identity") and c.person_id in pids and c.op in STOPS
    ]


@pytest.fixture()
def env(tmp_path: Path):  # noqa: ANN201
    e = Env(tmp_path, switcher_sis())
    ok(e.sync(JUNE))
    yield e
    e.store.close()


def test_pupil_changing_school_is_bridged_over_the_summer(env: Env) -> None:
    before = {t: env.persons(t)["P"]["attrs"] for t in ("itslearning", "feide")}
    assert ok(env.sync(END)).plan.target(CORE).changes == ()  # the last school day: still active
    first = ok(env.sync(SUMMER[0]))
    assert stops_of(first, "P", "G") == []
    bridge = [c for c in first.plan.target(CORE).changes if c.key in ("P", "G")]
    assert {(c.key, c.op, c.attrs["bridged_until"]) for c in bridge} == {
        ("P", Op.UPDATE, START),
        ("G", Op.UPDATE, START),
    }
    logged = [r for r in env.changelog(first.run_id) if r["target"] == CORE and r["person_id"] == "P"]
    assert len(logged) == 1 and logged[0]["reason"].startswith(
        f"bridged until {START}: ended in SIS on {END}"
    )
    # The old school's groups end as they end: P leaves NORD's school-wide group.
    removed = {
        (c.target, c.key)
        for c in first.plan.changes()
        if c.op == Op.REMOVE_MEMBERS and any(m[0] == "P" for m in c.members)
    }
    assert ("itslearning", "school:NORD:students") in removed
    for day in SUMMER[1:]:
        out = ok(env.sync(day))
        assert stops_of(out, "P", "G") == [], day
        assert not [c for c in out.plan.changes() if c.person_id == "P" and c.kind != "group"], day
        for t in ("itslearning", "feide"):
            obj = env.persons(t)["P"]
            assert (obj["status"], obj["attrs"]) == ("active", before[t]), (day, t)
    ident = env.store.identities.all()["P"]
    assert (ident.status, ident.bridged_until) == ("active", START)
    shown = explain.render_text(explain.explain(env.cfg, env.store, "P"))
    assert f"status active, bridged until {START}" in shown

    back = ok(env.sync(START))
    assert stops_of(back, "P", "G") == []
    core = {c.key: c for c in back.plan.target(CORE).changes}
    assert core["P"].op == Op.UPDATE and core["P"].attrs["bridged_until"] is None
    assert core["P"].reason.startswith("bridge over: active in SIS: student at SORBY")
    assert env.store.identities.all()["P"].bridged_until is None
    assert env.persons("feide")["P"]["attrs"] != before["feide"]  # now at SOR
    assert "974000002" in env.persons("feide")["P"]["attrs"]["eduPersonPrimaryOrgUnitDN"]
    again = ok(env.sync(START)).plan
    assert [again.target(t).changes for t in (CORE, "itslearning", "feide")] == [(), (), ()]


def test_bridged_pupil_whose_new_enrollment_is_removed_is_stopped_from_the_sis_end_date(env: Env) -> None:
    ok(env.sync("2026-06-25"))
    assert env.store.identities.all()["P"].bridged_until == START
    env.sis.enrollments = [
        e for e in env.sis.enrollments if not (e.person_id == "P" and e.school_id == "SOR")
    ]
    out = ok(env.sync("2026-07-10"))
    assert ("itslearning", "delete", "P") in stops_of(out, "P") and ("feide", "delete", "P") in stops_of(
        out, "P"
    )
    core = next(c for c in out.plan.target(CORE).changes if c.key == "P")
    assert (core.op, core.attrs["inactive_since"]) == (Op.DISABLE, END)
    assert f"since {END} (SIS end date)" in core.reason
    feide = next(c for c in out.plan.target("feide").changes if c.key == "P")
    assert f"since {END} (SIS end date)" in feide.reason
    ident = env.store.identities.all()["P"]
    assert (ident.status, ident.inactive_since, ident.bridged_until) == ("inactive", END, None)
    assert "G" not in env.persons("itslearning")  # the guardian of no active student goes too


def test_plan_as_of_a_summer_day_shows_the_bridge_and_nothing_to_disable(env: Env) -> None:
    env.sis.write(env.src)
    for day in ("2026-06-21", "2026-07-20", "2026-08-14"):
        p = subprocess.run(
            [
                sys.executable,
                "-m",
                "provisioner.cli",
                "--config",
                str(env.tmp / "bas.toml"),
                "plan",
                "--as-of",
                day,
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert p.returncode == 0, p.stderr
        plan = json.loads(p.stdout)["plan"]
        changes = [c for t in plan["targets"] for c in t["changes"]]
        mine = [c for c in changes if c.get("person_id") in ("P", "G")]
        assert not [c for c in mine if c["op"] in ("disable", "delete", "move", "purge")], day
        bridge = [c for c in mine if c["target"] == CORE]
        assert {c["key"] for c in bridge} == {"P", "G"}
        assert all(c["reason"].startswith(f"bridged until {START}") for c in bridge)


def test_m365_user_stays_enabled_over_the_summer(tmp_path: Path) -> None:
    m = M365Env(tmp_path, switcher_sis())
    try:
        ok(m.sync(JUNE))
        anchor = m.objects()["P"]["anchor"]
        for day in (SUMMER[0], SUMMER[2], SUMMER[-1], START):
            out = ok(m.sync(day))
            assert stops_of(out, "P") == [], day
            user = m.graph.directory.users.get(anchor)
            assert user is not None and user["accountEnabled"] is True, day
        assert m.objects()["P"]["anchor"] == anchor  # the same user (and OneDrive), not re-created
        assert m.objects()["P"]["status"] == "active"
    finally:
        m.close()


def test_every_pupil_bridged_between_school_years_is_no_fall_in_the_source(tmp_path: Path) -> None:
    """Enrollments per school year: on 21 June every pupil is between two; the gate lets the run go."""
    s = small_sis()
    s.enrollments = [e._replace(end_date=END) for e in s.enrollments]
    for e in list(s.enrollments):
        s.enroll(e.person_id, e.school_id, grade=(e.grade or 0) + 1, start=START)
    e = Env(tmp_path, s)
    try:
        ok(e.sync(JUNE))
        out = ok(e.sync(SUMMER[0]))
        pupils = {p.person_id for p in s.persons if p.person_id.startswith(("S", "G"))}
        assert stops_of(out, *pupils) == []
        assert {c.key for c in out.plan.target(CORE).changes if "bridged_until" in c.attrs} == pupils
        assert out.plan.active_persons == len(s.persons)
    finally:
        e.store.close()
