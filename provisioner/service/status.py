"""Health of the service, read from the state store: for `bas status`, metrics and alerts.

What an admin needs to see the same day: the last run per target, its last success, the
error it failed with and the files it wrote that still wait for delivery (itslearning
over SFTP), held runs waiting for approval and runs the source gate refused, objects
that failed and wait for the next run's retry, the drift the last reconcile found, and
when the daemon runs next (``daemon_status``, written by the daemon itself). Everything is
read through the store's repositories; nothing here writes.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from provisioner.core.nin import mask_text
from provisioner.core.states import RUNS_DONE, RUNS_THROUGH, TARGET_OK, RunStatus, TargetOutcome
from provisioner.service.changelog import table
from provisioner.state.store import StateStore

_SCAN = 500  # recent runs read to find each target's last success
_APPLYING = ("sync", "apply", "approve")
# Runs that applied nothing (yet): the failed objects are those of the last run that did.
_NOT_APPLIED = (RunStatus.RUNNING, RunStatus.REFUSED, RunStatus.PLANNED)
_STALE_HEARTBEAT = 300  # seconds: a daemon silent for longer is probably not running


@dataclass
class TargetHealth:
    """One target's last run and last success."""

    last_run: str | None = None
    last_status: str | None = None
    last_at: str | None = None
    last_success_at: str | None = None
    last_error: str | None = None  # the first error of the last run, when it failed there
    waiting: int = 0  # files written and not yet delivered after the last run (delivering file targets)
    drift_checked_at: str | None = None  # the last reconcile (`bas reconcile`, the nightly repair)
    drift_run: str | None = None
    drifted: int | None = None  # objects found drifted then (None: never checked)


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
    recent = store.runs.recent(_APPLYING, _SCAN)
    health = Health(
        last_run=_brief(recent[0]) if recent else None,
        targets={name: TargetHealth() for name in targets},
        held=_held(recent),
        failed=[],
        failed_counts={},
        daemons=store.daemons.all(),
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
                th.waiting = res.get("waiting", 0)
                if res["status"] == TargetOutcome.FAILED and res.get("errors"):
                    th.last_error = res["errors"][0]
            if th.last_success_at is None and res["status"] in TARGET_OK:
                th.last_success_at = run["finished_at"] or run["started_at"]
    _drift(store, health.targets)
    applied = next((x for x in recent if x["status"] not in _NOT_APPLIED), None)
    if applied is not None:
        # Changes the last applying run could not make: the next run plans them again.
        health.failed, health.failed_counts = store.history.failed(applied["run_id"], failed_limit)
    return health


def _drift(store: StateStore, targets: dict[str, TargetHealth]) -> None:
    """Each target's last drift check: when, which run, how many objects had drifted."""
    for run in store.runs.recent(("reconcile",), _SCAN):
        summary = json.loads(run["summary"]) if run["summary"] else {}
        for name in summary.get("plan", {}):  # a reconcile plans exactly one target
            th = targets.get(name)
            if th is not None and th.drift_checked_at is None and "drift" in summary:
                th.drift_checked_at, th.drift_run = run["started_at"], run["run_id"]
                th.drifted = sum(summary["drift"].values())
        if all(th.drift_checked_at is not None for th in targets.values()):
            break


def _brief(run: dict[str, Any]) -> dict[str, Any]:
    return {k: run[k] for k in ("run_id", "kind", "status", "started_at", "finished_at", "error")}


def _held(recent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Held runs not approved since the last run that went through."""
    out = []
    for run in recent:
        if run["status"] in RUNS_DONE:
            break  # a later good run planned afresh: older holds are history
        if run["status"] == RunStatus.HELD and not run["approved_at"]:
            summary = json.loads(run["summary"]) if run["summary"] else {}
            held = [k for k, v in summary.get("results", {}).items() if v.get("status") == TargetOutcome.HELD]
            out.append({"run_id": run["run_id"], "started_at": run["started_at"], "targets": held})
            break  # only the newest held plan can be approved: the older ones it superseded
    return out


def _refused(recent: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Source refusals not approved since the last run that went through (newest first)."""
    out = []
    for run in recent:
        if run["status"] in RUNS_THROUGH:
            break  # a later run passed the gate: older refusals are history
        if run["status"] == RunStatus.REFUSED and not run["approved_at"]:
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
        drift = "-" if th.drifted is None else f"{th.drifted} ({(th.drift_checked_at or '')[:10]})"
        rows.append([name, th.last_status or "-", (th.last_at or "-")[:19], ago, th.last_run or "-", drift])
    lines.append(table(["target", "last result", "at", "last success", "run", "drift"], rows))
    for name, th in h.targets.items():
        if th.waiting:
            lines.append(f"  {name}: {th.waiting} file{'s' if th.waiting != 1 else ''} waiting for delivery")
        if th.last_error:
            lines.append(mask_text(f"  {name}: last error: {th.last_error[:300]}"))
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
        # Pending ones (a synced user still to come) are no failure, but wait for the next run too.
        lines.append(f"failed objects waiting for retry: {total} ({per}; pending ones are no error)")
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
