"""Delegated password resets: one new password for a person, set through the one write path.

``reset_password`` is what `bas password reset` and the web console call. It generates one
password (connectors.passwords: no look-alike characters, no part of the person's name,
AD's complexity rule), plans one SET_PASSWORD change per enabled live target where the
person has an active account, and applies that plan with the executor under the run lock,
recorded as a run of kind "password"; each change's changelog row names who asked (its
reason). Which targets take a password their kind declares (``Capabilities.password_length``
in provisioner/kinds.py: AD and cloud Microsoft 365); hybrid Microsoft 365 (``users =
"synced"``) gets none, as the password reaches Entra ID from AD by password hash sync;
Feide, itslearning and PIFU hold no passwords.

The password lives in memory only: in the changes' ``secret`` (left out of every plan
JSON, repr and changelog row) and in the outcome returned, for the caller to show once.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace
from typing import Any

import structlog

from connectors import passwords
from provisioner.apply.executor import apply_plan
from provisioner.apply.result import TargetResult
from provisioner.config import Config, ConfigError, TargetBase
from provisioner.core.certificate import config_digest
from provisioner.core.plan import Change, Op, Plan, TargetPlan
from provisioner.core.states import ObjectStatus, RunStatus, TargetOutcome
from provisioner.kinds import kind_of
from provisioner.run import runner
from provisioner.run.targets import build_connector
from provisioner.state.common import now_iso
from provisioner.state.runs import LockHeld
from provisioner.state.store import StateStore

log = structlog.get_logger("bas.password")

RUN_KIND = "password"
MIN_LENGTH = 14  # connectors.passwords.generate's floor (and AD's config minimum)
BUSY = "a run is in progress: try again in a minute"
LOCK_WAIT = 3.0  # seconds a reset waits for the run lock (another reset takes well under one)


@dataclass(frozen=True)
class TargetReset:
    """What the reset did (or why it did nothing) in one target."""

    target: str
    result: str  # ok | rejected | failed | none (no change planned: ``message`` says why)
    message: str = ""


@dataclass(frozen=True)
class PasswordOutcome:
    """A reset's result: the run, the new password (None when no target took it), per target."""

    run_id: str | None  # None: nothing was planned, so no run was recorded
    exit_code: int
    status: RunStatus
    message: str
    password: str | None = field(default=None, repr=False)
    targets: tuple[TargetReset, ...] = ()
    username: str | None = None

    @property
    def ok(self) -> bool:
        """True when at least one target has the new password."""
        return self.password is not None


def via_reason(by: str, via: str) -> str:
    """The changelog reason of a reset: who asked, and through what ("web console", "CLI")."""
    return f"password reset by {by} ({via})"


def _holds_passwords(tcfg: TargetBase) -> tuple[int | None, str]:
    """(the length of the passwords a target of this config takes, or None; why it takes none)."""
    kind = kind_of(tcfg.kind)
    caps = kind.capabilities(tcfg)
    if caps.password_length is None:
        return None, f"{kind.label} {caps.secretless_why or 'holds no passwords'}"
    if tcfg.mode != "apply":
        return None, f'plan only (mode = "plan"): no live {kind.label} account can take a password'
    return caps.password_length, ""


def _plan_changes(
    cfg: Config, store: StateStore, person_id: str, reason: str
) -> tuple[list[Change], list[TargetReset], int]:
    """One SET_PASSWORD per live target with an active account (no secret yet), the targets left
    out with why, and the password length (an AD target's, else Microsoft 365's: AD's is stricter)."""
    changes: list[Change] = []
    left: list[TargetReset] = []
    lengths: list[tuple[int, int]] = []
    for name, tcfg in cfg.enabled_targets().items():
        target_length, why = _holds_passwords(tcfg)
        if target_length is not None:
            row = store.objects.index(name, {person_id}).get(person_id)
            if row is None or row.kind != "person":
                why = "no account there"
            elif row.status != ObjectStatus.ACTIVE:
                why = f"the account is {row.status}: no password set"
            else:
                change = Change(
                    name, Op.SET_PASSWORD, "person", person_id, reason, row.anchor, row.username, person_id
                )
                changes.append(change)
                lengths.append((0 if tcfg.kind == "ad" else 1, target_length))
                continue
        left.append(TargetReset(name, "none", why))
    length = max(MIN_LENGTH, min(lengths)[1]) if lengths else MIN_LENGTH
    return changes, left, length


def _results(plan: Plan, results: dict[str, TargetResult]) -> list[TargetReset]:
    out = []
    for tp in plan.targets:
        r = results.get(tp.target)
        if r is not None and r.ok:
            out.append(TargetReset(tp.target, "ok", "new password set"))
        elif r is not None and r.rejected:
            out.append(TargetReset(tp.target, "rejected", "; ".join(r.errors) or "refused"))
        else:
            errors = "; ".join(r.errors) if r is not None else "not applied"
            out.append(TargetReset(tp.target, "failed", errors or str(r.status if r else "not applied")))
    return out


def _summary(done: list[TargetReset], left: list[TargetReset]) -> str:
    ok = [t.target for t in done if t.result == "ok"]
    parts = [f"new password set in {', '.join(ok)}"] if ok else ["no target took the new password"]
    parts += [f"{t.target}: {t.result}: {t.message}" for t in done if t.result != "ok"]
    parts += [f"{t.target}: {t.message}" for t in left]
    return "; ".join(parts)


def reset_password(
    cfg: Config,
    store: StateStore,
    person_id: str,
    by: str,
    *,
    reason: str | None = None,
    connect: runner.ConnectorFactory | None = None,
    wait: float = LOCK_WAIT,
) -> PasswordOutcome:
    """Set one new, generated password on every live account of a person, under the run lock.

    ``by`` names who asked (the changelog reason); ``reason`` overrides the whole reason
    (default: CLI). ``connect`` builds a target's connector (tests). The outcome holds the
    password only when a target took it; when the run lock stays held for ``wait`` seconds
    (a sync running), nothing is done and the message says to try again.
    """
    reason = reason or via_reason(by, "CLI")
    ident = store.identities.record({person_id}) or {}
    run_id = runner.new_run_id()
    try:
        with runner.run_lock(cfg, store, run_id, wait):
            changes, left, length = _plan_changes(cfg, store, person_id, reason)
            if not changes:
                why = "; ".join(f"{t.target}: {t.message}" for t in left) or "no target is enabled"
                return PasswordOutcome(
                    None,
                    runner.EXIT_USAGE,
                    RunStatus.FAILED,
                    f"no live target can take a password for {person_id} ({why})",
                    targets=tuple(left),
                    username=ident.get("username"),
                )
            avoid = [str(ident.get(k) or "") for k in ("username", "display_name")]
            avoid += [c.username or "" for c in changes]
            secret = passwords.generate(length, avoid)
            return _apply(
                cfg, store, run_id, [replace(c, secret=secret) for c in changes], left, connect, ident
            )
    except LockHeld:
        return PasswordOutcome(
            run_id, runner.EXIT_LOCKED, RunStatus.LOCKED, BUSY, username=ident.get("username")
        )


def _apply(
    cfg: Config,
    store: StateStore,
    run_id: str,
    changes: list[Change],
    left: list[TargetReset],
    connect: runner.ConnectorFactory | None,
    ident: dict[str, Any],
) -> PasswordOutcome:
    """Record the run, apply its plan through the executor, record how it ended (under the lock)."""
    day = dt.date.today().isoformat()
    plan = Plan(
        run_id=run_id,
        created_at=now_iso(),
        as_of=day,
        cookie=store.versions.current(),
        targets=tuple(TargetPlan(c.target, (c,)) for c in changes),
        config_digest=config_digest(cfg),
    )
    store.runs.start(run_id, RUN_KIND, day)
    try:
        make = connect or build_connector
        conns = {tp.target: make(cfg, tp.target) for tp in plan.targets}
        soft = {tp.target: False for tp in plan.targets}  # no change here deletes anything
        results = apply_plan(plan, store, conns, soft_delete=soft, options=runner.apply_options(cfg))
    except ConfigError as exc:
        store.runs.finish(run_id, RunStatus.FAILED, error=str(exc))
        return PasswordOutcome(run_id, runner.EXIT_USAGE, RunStatus.FAILED, str(exc))
    except BaseException as exc:
        store.runs.finish(run_id, RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    done = _results(plan, results)
    bad = sum(r.rejected + r.failed for r in results.values())
    status = RunStatus.of(held=False, outcomes=(r.status for r in results.values()), errors=bad)
    summary = {"plan": plan.summary(), "results": {k: v.to_json() for k, v in results.items()}}
    message = _summary(done, left)
    store.runs.finish(run_id, status, summary=summary, error=None if status == RunStatus.DONE else message)
    took = any(t.result == "ok" for t in done)
    code = runner.EXIT_OK if status == RunStatus.DONE else runner.EXIT_ERRORS
    if any(r.status == TargetOutcome.FAILED for r in results.values()):
        code = runner.EXIT_TARGET_FAILED
    log.info(
        "password reset",
        run_id=run_id,
        person=changes[0].person_id,
        status=status,
        targets={t.target: t.result for t in done},
    )
    return PasswordOutcome(
        run_id,
        code,
        status,
        message,
        password=changes[0].secret if took else None,
        targets=tuple(done + left),
        username=ident.get("username"),
    )
