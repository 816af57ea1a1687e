"""A reconcile run: read a live target, plan the drift repair, and (on request) apply it.

Reconcile = the target's reader (``connectors/<kind>/reader.py``) → the pure drift diff
(``provisioner.core.drift.diff_drift``: what BAS recorded against what the target
holds) → a plan whose changes carry drift reasons → the executor. It is a run like any
other: under the run lock, recorded in `bas runs`, every repair a changelog row (NINs
masked), and a repair beyond the safety limits held until `bas approve RUN` applies it.
Without ``repair`` the plan is only reported. ``repair_drift`` is the daemon's nightly
entry point: every live target, read whole and repaired within the limits.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from connectors.base import Connector
from connectors.errors import ConnectorError
from provisioner.apply.executor import apply_plan
from provisioner.apply.result import TargetResult
from provisioner.config import Config, ConfigError
from provisioner.core.certificate import config_digest
from provisioner.core.drift import LiveView, Note, Recorded, diff_drift, drift_attrs, drift_kind
from provisioner.core.nin import mask_text
from provisioner.core.plan import Change, Plan, TargetPlan
from provisioner.core.states import ObjectStatus, PlanBasis, RunStatus, TargetOutcome
from provisioner.kinds import kind_of
from provisioner.run import runner
from provisioner.run.targets import build_connector, build_reader
from provisioner.state.common import now_iso
from provisioner.state.nins import nin_seal
from provisioner.state.runs import LockHeld
from provisioner.state.store import StateStore

log = structlog.get_logger("bas.reconcile")


@dataclass
class DriftItem:
    """One line of a reconcile report: a planned repair or a note."""

    kind: str  # a DriftKind value
    object_kind: str
    key: str | None
    where: str  # anchor, DN, userPrincipalName or id
    detail: str  # the change's reason, or the note
    attrs: dict[str, Any] = field(default_factory=dict)  # attr -> {expected, actual}
    op: str | None = None  # the planned operation (None for a note)
    repaired: bool = False

    def to_json(self) -> dict[str, Any]:
        """Plain dict for JSON output."""
        return dict(self.__dict__)


@dataclass
class Reconciled:
    """What one reconcile run found and did."""

    run_id: str
    target: str
    status: RunStatus  # done | drift | held | failed
    exit_code: int
    plan: Plan
    notes: list[Note]
    applied: set[tuple[str, str]] = field(default_factory=set)  # (op, key) applied ok
    result: TargetResult | None = None
    message: str = ""

    def changes(self) -> tuple[Change, ...]:
        """The planned repairs."""
        return tuple(self.plan.targets[0].changes)

    def drift(self) -> list[DriftItem]:
        """Every planned repair (marked when applied), then every note."""
        out = [
            DriftItem(
                drift_kind(c).value,
                c.kind,
                c.key,
                c.anchor or "",
                f"{c.kind} {c.key}: {c.reason}",
                drift_attrs(c),
                c.op.value,
                (c.op.value, c.key) in self.applied,
            )
            for c in self.changes()
        ]
        out += [DriftItem(n.kind.value, n.object_kind, n.key, n.where, n.detail) for n in self.notes]
        return out

    def drifted(self) -> int:
        """Objects found drifted (repaired or not), unmanaged ones included (the metric)."""
        return len({(c.kind, c.key) for c in self.changes()}) + len(self.notes)


def reconcile(
    cfg: Config,
    store: StateStore,
    name: str,
    *,
    repair: bool,
    full: bool = False,
    as_of: str | None = None,
    stop: threading.Event | None = None,
    connect: Callable[[Config, str], Connector] | None = None,
) -> Reconciled:
    """Reconcile one target. Raises LockHeld, ConfigError and ConnectorError (the run recorded failed).

    ``full``: an incremental reader (Microsoft 365) reads everything instead of what
    changed since the last reconcile. ``connect`` builds the connector (tests).
    """
    day = runner.valid_day(as_of) if as_of is not None else dt.date.today().isoformat()
    run_id = runner.new_run_id()
    with runner._locked(cfg, store, run_id):
        store.runs.start(run_id, "reconcile", day)
        try:
            plan, view = _plan(cfg, store, name, run_id, day, full)
            tp = plan.targets[0]
            result, applied = None, set()
            if repair and tp.changes and tp.hold is None:
                conn = (connect or build_connector)(cfg, name)
                soft = {name: kind_of(cfg.targets[name].kind).policy(cfg.targets[name]).soft_delete}
                result = apply_plan(plan, store, {name: conn}, soft_delete=soft, stop=stop)[name]
                applied = store.history.applied(run_id, name)
            if view.cursor and all((c.op.value, c.key) in applied for c in tp.changes):
                store.meta.set(_cursor_key(name), view.cursor)  # else the drift is read again next time
        except BaseException as exc:
            store.runs.finish(run_id, RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
            raise
        return _finish(store, plan, view.notes, result, applied, repair)


def _cursor_key(name: str) -> str:
    return f"reconcile_cursor:{name}"


def _plan(
    cfg: Config, store: StateStore, name: str, run_id: str, day: str, full: bool
) -> tuple[Plan, LiveView]:
    """The drift repair plan of one target (its hold decided), and the live view it came from."""
    tcfg = cfg.targets[name]
    index = store.objects.index(name)
    details = store.objects.details(name, list(index))
    recorded = []
    for key, row in index.items():
        attrs, members = details.get(key, ({}, None))
        mem = None if members is None else tuple((p, r) for p, r in members)
        recorded.append(
            Recorded(row.kind, key, row.anchor, row.status, attrs, mem, row.person_id, row.username)
        )
    del details
    cursor = None if full else store.meta.get(_cursor_key(name))
    with build_reader(cfg, name) as reader:
        if reader.nin_attrs:  # it reads whole NINs: sealed as recorded before they are compared
            reader.use_nin_seal(nin_seal(store))
        view = reader.read(recorded, cursor)
    kind = kind_of(tcfg.kind)
    changes = diff_drift(
        name, recorded, view, policy=kind.policy(tcfg), placement=kind.placement, links=kind.links, as_of=day
    )
    population = sum(1 for r in index.values() if r.status == ObjectStatus.ACTIVE)
    plan = Plan(
        run_id=run_id,
        created_at=now_iso(),
        as_of=day,
        cookie=store.versions.current(),
        targets=(TargetPlan(name, tuple(changes), population),),
        basis=PlanBasis.DRIFT,
        config_digest=config_digest(cfg),
    )
    return runner.hold_targets(cfg, store, plan, None), view


def _finish(
    store: StateStore,
    plan: Plan,
    notes: list[Note],
    result: TargetResult | None,
    applied: set[tuple[str, str]],
    repair: bool,
) -> Reconciled:
    """Record how the run ended; the run's status and exit code."""
    tp = plan.targets[0]
    held = repair and tp.hold is not None and bool(tp.changes)
    left = [c for c in tp.changes if (c.op.value, c.key) not in applied]
    if result is not None and result.status == TargetOutcome.FAILED:
        status, code = RunStatus.FAILED, runner.EXIT_TARGET_FAILED
    elif held:
        status, code = RunStatus.HELD, runner.EXIT_HELD
    elif left or notes:
        status, code = RunStatus.DRIFT, runner.EXIT_ERRORS
    else:
        status, code = RunStatus.DONE, runner.EXIT_OK
    kinds = Counter(drift_kind(c).value for c in tp.changes) + Counter(n.kind.value for n in notes)
    summary: dict[str, Any] = {"drift": dict(kinds), "plan": plan.summary()}
    if result is not None:
        summary["results"] = {tp.target: result.to_json()}
    # A held repair keeps the state versions as they are now: `bas approve` applies it
    # only while nothing changed since (provisioner.run.currency).
    kept = replace(plan, cookie=store.versions.current()).dumps() if held else None
    store.runs.finish(plan.run_id, status, summary=summary, plan=kept)
    message = ""
    if held and tp.hold is not None:
        message = (
            f"{tp.target} held: {tp.hold.message}. Nothing was repaired: if this is right,"
            f" `bas approve {plan.run_id}` applies this repair"
        )
    # The CLI prints the run itself (its --json output must stay clean); the daemon logs it.
    log.debug("reconcile finished", run_id=plan.run_id, target=tp.target, status=status, drift=dict(kinds))
    return Reconciled(plan.run_id, tp.target, status, code, plan, notes, applied, result, message)


def live_targets(cfg: Config) -> list[str]:
    """The enabled targets that apply changes to a live system BAS can read back."""
    out = []
    for name, tcfg in cfg.enabled_targets().items():
        kind = kind_of(tcfg.kind)
        if tcfg.mode == "apply" and kind.reader is not None and kind.capabilities(tcfg).live:
            out.append(name)
    return out


def repair_drift(cfg: Config, store: StateStore, *, stop: threading.Event | None = None) -> dict[str, int]:
    """The nightly drift repair: every live target read whole and repaired within the limits.

    Returns the objects found drifted per target read (for ``bas_drift_objects``). A
    target that cannot be read is logged and skipped; the others go on.
    """
    out: dict[str, int] = {}
    for name in live_targets(cfg):
        if stop is not None and stop.is_set():
            break
        try:
            r = reconcile(cfg, store, name, repair=True, full=True, stop=stop)
        except (ConnectorError, ConfigError, LockHeld) as exc:
            log.error("drift repair skipped", target=name, error=str(exc))
            continue
        out[name] = r.drifted()
        fields = {"target": name, "run_id": r.run_id, "status": r.status, "drifted": out[name]}
        if r.message:
            log.error("drift repair held", message=mask_text(r.message), **fields)
        else:
            log.info("drift repair", **fields)
    return out
