"""Health of the service, read from the state store: for `bas status`, metrics and alerts.

What an admin needs to see the same day: the last run per target and its last success,
held runs waiting for approval and runs the source gate refused, objects that failed
and wait for the next run's retry, and when the daemon runs next (``daemon_status``,
written by the daemon itself).
"""

from __future__ import annotations

import datetime as dt
import json
import socket
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa

from provisioner.core.nin import mask_text
from provisioner.service.changelog import table
from provisioner.state import schema as t
from provisioner.state.store import StateStore, now_iso

_SCAN = 500  # recent runs read to find each target's last success
_APPLYING = ("sync", "apply", "approve")
_OK_RESULTS = ("applied", "unchanged", "planned")  # a target that did its job this run
_STALE_HEARTBEAT = 300  # seconds: a daemon silent for longer is probably not running


@dataclass
class TargetHealth:
    """One target's last run and last success."""

    last_run: str | None = None
    last_status: str | None = None
    last_at: str | None = None
    last_success_at: str | None = None


@dataclass
class Health:
    """Everything `bas status` shows."""

    last_run: dict[str, Any] | None
    targets: dict[str, TargetHealth]
    held: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    failed_counts: dict[str, int]
    daemons: list[dict[str, Any]] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)  # source refusals not approved

    def to_json(self) -> dict[str, Any]:
        """Plain dict (NINs in errors masked)."""
        return json.loads(mask_text(json.dumps(asdict(self), ensure_ascii=False)))


def iso_to_epoch(value: str | None) -> float | None:
    """An ISO timestamp as seconds since the epoch (None stays None)."""
    return dt.datetime.fromisoformat(value).timestamp() if value else None


def collect(store: StateStore, targets: Iterable[str], failed_limit: int = 50) -> Health:
    """Read the service's health from the state store."""
    r = t.runs.c
    cols = [r.run_id, r.kind, r.status, r.started_at, r.finished_at, r.summary, r.error, r.approved_at]
    with store.engine.connect() as c:
        recent = [
            dict(x)
            for x in c.execute(
                sa.select(*cols)
                .where(r.kind.in_(_APPLYING))
                .order_by(r.started_at.desc(), r.run_id.desc())
                .limit(_SCAN)
            ).mappings()
        ]
        daemons = [dict(x) for x in c.execute(sa.select(t.daemon_status)).mappings()]
    health = Health(
        last_run=_brief(recent[0]) if recent else None,
        targets={name: TargetHealth() for name in targets},
        held=_held(recent),
        failed=[],
        failed_counts={},
        daemons=daemons,
        refused=_refused(recent),
    )
    for run in recent:
        results = json.loads(run["summary"]).get("results", {}) if run["summary"] else {}
        for name, th in health.targets.items():
            res = results.get(name)
            if res is None:
                continue
            if th.last_run is None:
                th.last_run, th.last_status, th.last_at = run["run_id"], res["status"], run["started_at"]
            if th.last_success_at is None and res["status"] in _OK_RESULTS:
                th.last_success_at = run["finished_at"] or run["started_at"]
    applied = next((x for x in recent if x["status"] not in ("running", "refused", "planned")), None)
    if applied is not None:
        health.failed, health.failed_counts = _failed(store, applied["run_id"], failed_limit)
    return health


def _brief(run: dict[str, Any]) -> dict[str, Any]:
    return {k: run[k] for k in ("run_id", "kind", "status", "started_at", "finished_at", "error")}


def _held(recent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Held runs not approved since the last run that went through."""
    out = []
    for run in recent:
        if run["status"] in ("done", "done_with_errors"):
            break  # a later good run planned afresh: older holds are history
        if run["status"] == "held" and not run["approved_at"]:
            summary = json.loads(run["summary"]) if run["summary"] else {}
            held = [k for k, v in summary.get("results", {}).items() if v.get("status") == "held"]
            out.append({"run_id": run["run_id"], "started_at": run["started_at"], "targets": held})
            break  # only the newest held plan can be approved: the older ones it superseded
    return out


def _refused(recent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Source refusals not approved since the last run that went through (newest first)."""
    out = []
    for run in recent:
        if run["status"] in ("done", "done_with_errors", "held"):
            break  # a later run passed the gate: older refusals are history
        if run["status"] == "refused" and not run["approved_at"]:
            summary = json.loads(run["summary"] or "null") or {}
            empty = summary.get("gate", {}).get("empty", [])
            out.append(
                {
                    "run_id": run["run_id"],
                    "started_at": run["started_at"],
                    "error": run["error"],
                    "approvable": not empty,
                }
            )
    return out


def _failed(store: StateStore, run_id: str, limit: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Changes the last applying run could not make: the next run plans them again."""
    cl = t.changelog.c
    bad = sa.and_(cl.run_id == run_id, cl.result != "ok")
    with store.engine.connect() as c:
        counts = dict(c.execute(sa.select(cl.target, sa.func.count()).where(bad).group_by(cl.target)).all())
        rows = c.execute(
            sa.select(cl.target, cl.op, cl.kind, cl.key, cl.username, cl.result, cl.error)
            .where(bad)
            .order_by(cl.id)
            .limit(limit)
        ).mappings()
        return [dict(x) for x in rows], counts


def run_change_counts(store: StateStore, run_id: str) -> list[tuple[str, str, str, int]]:
    """(target, op, result, count) of one run's changelog."""
    cl = t.changelog.c
    q = (
        sa.select(cl.target, cl.op, cl.result, sa.func.count())
        .where(cl.run_id == run_id)
        .group_by(cl.target, cl.op, cl.result)
    )
    with store.engine.connect() as c:
        return [tuple(x) for x in c.execute(q).all()]


def write_daemon_status(store: StateStore, **values: Any) -> None:
    """Upsert this host's daemon_status row (pid, started_at, next_run_at, state ...)."""
    host = socket.gethostname()
    values = {**values, "host": host, "heartbeat_at": now_iso()}
    with store.engine.begin() as c:
        c.execute(t.daemon_status.delete().where(t.daemon_status.c.host == host))
        c.execute(t.daemon_status.insert().values(**values))


def render_text(h: Health, now: float | None = None) -> str:
    """The human view of `bas status`."""
    now = now if now is not None else dt.datetime.now(dt.UTC).timestamp()
    lines = []
    lr = h.last_run
    lines.append(
        f"last run      {lr['run_id']} {lr['kind']} {lr['status']} at {lr['started_at'][:19]}"
        + (f": {lr['error']}" if lr["error"] else "")
        if lr
        else "last run      none"
    )
    rows = []
    for name, th in h.targets.items():
        ok = iso_to_epoch(th.last_success_at)
        ago = f"{(now - ok) / 3600:.1f} h ago" if ok is not None else "never"
        rows.append([name, th.last_status or "-", (th.last_at or "-")[:19], ago, th.last_run or "-"])
    lines.append(table(["target", "last result", "at", "last success", "run"], rows))
    if h.held:
        lines.append(f"held runs waiting for approval ({len(h.held)}):")
        for x in h.held:
            lines.append(f"  {x['run_id']}  {', '.join(x['targets'])}   -> bas approve {x['run_id']}")
    else:
        lines.append("held runs     none")
    if h.refused:
        lines.append(f"refused runs (the source gate) ({len(h.refused)}):")
        for x in h.refused:
            todo = f"-> bas approve {x['run_id']}" if x["approvable"] else "-> fix the source"
            lines.append(mask_text(f"  {x['run_id']}  {(x['error'] or '')[:160]}   {todo}"))
    else:
        lines.append("refused runs  none")
    total = sum(h.failed_counts.values())
    if total:
        per = ", ".join(f"{k} {v}" for k, v in sorted(h.failed_counts.items()))
        lines.append(f"failed objects waiting for retry: {total} ({per})")
        for f in h.failed[:20]:
            who = f["username"] or f["key"]
            lines.append(
                mask_text(f"  {f['target']:<12} {f['op']:<14} {who:<22} {f['result']}: {f['error']}")
            )
    else:
        lines.append("failed objects none")
    if not h.daemons:
        lines.append("daemon        no `bas daemon` has reported to this state store")
    for d in h.daemons:
        beat = iso_to_epoch(d["heartbeat_at"]) or 0
        quiet = " (no heartbeat for a while: not running?)" if now - beat > _STALE_HEARTBEAT else ""
        nxt = (
            f"next {d['next_run_kind']} run {d['next_run_at'][:19]}"
            if d["next_run_at"]
            else "no run scheduled"
        )
        full = f", next full {d['next_full_at'][:19]}" if d["next_full_at"] else ""
        lines.append(f"daemon        {d['host']} pid {d['pid']} {d['state']}: {nxt}{full}{quiet}")
    return "\n".join(lines)
