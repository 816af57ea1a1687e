"""Reads of the state store for the safety rules: memberships held, the sliding window, newer runs.

Kept apart from ``store`` (one job each): the runner calls these while planning and
when an admin approves a held plan; ``provisioner.core.safety`` decides from the values.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from provisioner.core.plan import REMOVING_OPS, Op
from provisioner.core.safety import Removals
from provisioner.core.states import RUNS_THROUGH, ChangeResult, ObjectStatus, RunStatus
from provisioner.state import schema as t
from provisioner.state.common import iso_ago, population_key
from provisioner.state.store import StateStore


def member_populations(store: StateStore, targets: Iterable[str]) -> dict[str, int]:
    """Memberships (person, role pairs) the groups of these targets hold (the member thresholds' base).

    Counting them reads every group object's members (at Oslo size about a million a
    target, in every target with groups: ~9 s), and a quiet run whose certified plan
    removes members (a plan-only target's pending removals) asks every time. So a
    target's count is kept in meta (``population_key``), and every write of its objects
    deletes it in the same transaction (TargetWriter.flush): a kept count is the count
    of what is stored.
    """
    targets = list(targets)
    keys = {population_key(k): k for k in targets}
    m, o = t.meta.c, t.objects.c
    with store.engine.connect() as c:
        kept = c.execute(sa.select(m.key, m.value).where(m.key.in_(list(keys)))).all()
        out = {keys[k]: int(v) for k, v in kept if v.isdigit()}
        todo = [k for k in targets if k not in out]
        if not todo:
            return out
        members = sa.cast(o.members, sa.JSON) if store.engine.dialect.name == "postgresql" else o.members
        q = (
            sa.select(o.target, sa.func.sum(sa.func.json_array_length(members)))
            .where(o.target.in_(todo), o.members.is_not(None), o.status != ObjectStatus.DELETED)
            .group_by(o.target)
        )
        counted = {k: int(v or 0) for k, v in c.execute(q).all()}
    out.update({k: counted.get(k, 0) for k in todo})
    with store.engine.begin() as c:  # runs hold the run lock: no write of these targets meanwhile
        c.execute(t.meta.delete().where(m.key.in_([population_key(k) for k in todo])))
        c.execute(t.meta.insert(), [{"key": population_key(k), "value": str(out[k])} for k in todo])
    return out


def window_removals(store: StateStore, targets: Iterable[str], hours: float) -> dict[str, Removals]:
    """What each target had taken away (ok in the changelog) within the last hours.

    An approved plan is what an admin accepted: a target's window starts afresh when
    the last approved run that applied to it finished, so what it applied (and what
    came before) does not hold the runs after it.
    """
    since = iso_ago(hours)
    r, cl = t.runs.c, t.changelog.c
    starts = dict.fromkeys(targets, since)
    with store.engine.connect() as c:
        approved = c.execute(
            sa.select(r.finished_at, r.summary).where(
                r.approved_at.is_not(None), r.status != RunStatus.REFUSED, r.finished_at >= since
            )
        ).all()
        for finished, summary in approved:
            for target in (json.loads(summary) or {}).get("results", {}) if summary else ():
                if target in starts and finished > starts[target]:
                    starts[target] = finished
        if not starts:
            return {}
        # One pass over the window's removals for every target (per-target queries each
        # scanned the whole window: the day of a first run holds a million rows).
        q = sa.select(cl.target, cl.op, cl.kind, cl.key, cl.after, cl.at).where(
            cl.target.in_(list(starts)),
            cl.result == ChangeResult.OK,
            cl.at >= min(starts.values()),
            cl.op.in_(sorted(REMOVING_OPS)),
        )
        objects: dict[str, set[tuple[str, str]]] = {k: set() for k in starts}
        members = dict.fromkeys(starts, 0)
        for target, op, kind, key, after, at in c.execute(q):
            if at < starts[target]:
                continue
            if op == Op.REMOVE_MEMBERS:
                members[target] += len(json.loads(after).get("members", ())) if after else 0
            else:
                objects[target].add((kind, key))
        out = {k: Removals(frozenset(objects[k]), members[k], start) for k, start in starts.items()}
    return out


def newer_run(store: StateStore, run_id: str) -> dict[str, Any] | None:
    """The newest sync or apply run after this one that made a plan (held or applied), if any."""
    r = t.runs.c
    started = sa.select(r.started_at).where(r.run_id == run_id).scalar_subquery()
    q = (
        sa.select(r.run_id, r.status, r.approved_at)
        .where(
            r.started_at > started,
            r.run_id != run_id,
            r.kind.in_(("sync", "apply")),
            r.status.in_(sorted(RUNS_THROUGH)),
        )
        .order_by(r.started_at.desc(), r.run_id.desc())
        .limit(1)
    )
    with store.engine.connect() as c:
        row = c.execute(q).mappings().first()
    return dict(row) if row else None


def drop_superseded_plans(store: StateStore, run_id: str) -> int:
    """Forget the held plans of runs older than ``run_id``, which planned afresh.

    Such a plan can no longer be approved (only the newest held plan can), and it holds
    personal data (NINs in Feide attributes): it is not kept any longer than it can be used.
    The run records stay, their status too; returns how many plans were dropped.
    """
    r = t.runs.c
    started = sa.select(r.started_at).where(r.run_id == run_id).scalar_subquery()
    with store.engine.begin() as c:
        done = c.execute(
            t.runs.update()
            .where(
                r.status == RunStatus.HELD,
                r.plan.is_not(None),
                r.approved_at.is_(None),
                r.run_id != run_id,
                r.started_at <= started,
            )
            .values(plan=None)
        )
    return done.rowcount or 0
