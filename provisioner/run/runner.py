"""One run, start to end: lock, read the source, gate, derive, diff, hold, apply, record.

``make_plan`` is the pure-ish middle (reads the state store up front, then derives and
diffs without further I/O); ``hold_targets`` then decides each target's hold from the
safety rules. ``sync``, ``apply_saved`` and ``approve`` wrap it with the run lock, the
run record and the executor; ``approve`` applies a held plan only while it is current.
Exit codes are those of the CLI.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path

import structlog

from connectors.base import Connector, Exporter
from mappings.base import MappingContext
from provisioner import faults
from provisioner.apply.collector import paused, release_freed, run_collector
from provisioner.apply.executor import apply_plan
from provisioner.apply.options import ApplyOptions
from provisioner.apply.result import TargetResult
from provisioner.config import Config, ConfigError
from provisioner.core import stored
from provisioner.core.certificate import (
    Certificate,
    certify,
    config_digest,
    inputs_key,
    plan_from,
    predict_after_apply,
)
from provisioner.core.derive import Derivation, derive
from provisioner.core.diff import diff_core, inactive_changes
from provisioner.core.fetched import Fetched
from provisioner.core.model import SourceSnapshot
from provisioner.core.plan import CORE, Plan, TargetPlan
from provisioner.core.pool import Pool
from provisioner.core.safety import (
    SourceRefused,
    present_schools,
)
from provisioner.core.scope import Scope, restrict
from provisioner.core.states import ObjectStatus, PlanBasis, RunStatus, TargetOutcome
from provisioner.kinds import kind_of
from provisioner.logs import LogSettings
from provisioner.run import holds, incremental, patch_check
from provisioner.run import local as local_runs
from provisioner.run.currency import superseded_reason, why_not_current
from provisioner.run.exits import (  # noqa: F401 (re-exported: callers use runner.EXIT_*)
    EXIT_ERRORS,
    EXIT_HELD,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_LOCKED,
    EXIT_OK,
    EXIT_TARGET_FAILED,
    EXIT_USAGE,
)
from provisioner.run.holds import hold_targets
from provisioner.run.prints import Prints
from provisioner.run.records import RunOutcome, finish_run, refused, source_record
from provisioner.run.recovery import settle_exports, tidy_after_killed_runs
from provisioner.run.targets import build_connector, diff_objects, record_applied_config
from provisioner.state import safety_reads
from provisioner.state.common import now_iso
from provisioner.state.nins import nin_seal
from provisioner.state.runs import LockHeld
from provisioner.state.store import StateStore
from sources.base import SourceError
from sources.registry import open_source

log = structlog.get_logger("bas.run")
_LOCK_POLL = 0.2  # seconds between tries while run_lock waits


def new_run_id() -> str:
    """Sortable, unique run id: UTC time plus a random suffix."""
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def valid_day(value: str) -> str:
    """``value`` when it is a real calendar day written YYYY-MM-DD; ValueError naming it otherwise.

    Activity is compared as ISO text: anything else ("tomorrow", "2026-11-31") would give a
    wrong plan on a fresh store, or fail deep inside derive.
    """
    try:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError("not in the form YYYY-MM-DD")
        dt.date.fromisoformat(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a day YYYY-MM-DD ({exc})") from None
    return value


def read_source(cfg: Config) -> SourceSnapshot:
    """Read the configured source once."""
    with open_source(cfg) as src:
        return src.read()


def fetch_source(cfg: Config) -> Fetched:
    """Read the configured source once, its records made as they are asked for."""
    with open_source(cfg) as src:
        return src.fetch()


def make_plan(
    cfg: Config,
    store: StateStore,
    source: SourceSnapshot | Callable[[], SourceSnapshot],
    as_of: str,
    run_id: str,
    *,
    gate: bool = True,
) -> tuple[Plan, Derivation]:
    """Derive and diff every enabled target; raises SourceRefused from the gate.

    ``source`` may be a function that reads the snapshot: then nothing outside this
    function holds the snapshot, and it is freed as soon as derivation is done.
    """
    snap = source() if callable(source) else source
    del source
    # The gate counts the SIS's own rows: local persons join after (provisioner/run/local.py).
    counts, source_digests, schools = snap.counts(), dict(snap.digests), present_schools(snap)
    local_in = local_runs.read_inputs(store)
    snap, local_errors = local_runs.merged(snap, local_in, source_digests)
    derivation = derive(snap, as_of, store.identities.view(), cfg.usernames, cfg.lifecycle)
    del snap  # the rest works from the derivation; an Oslo-size snapshot is ~0.5 GB
    # Its pages go back to the system: the allocator would keep them, and the mapping's small
    # objects cannot use them (Python takes those from pages of its own). At Oslo size the
    # nightly run's peak, later in mapping itslearning, went from ~1,008 to ~920 MB.
    release_freed()
    state = derivation.state
    # Bridged persons keep their accounts (over the summer every pupil's school year has
    # ended and the next one has not begun), and so do persons frozen by a broken record:
    # neither is a fall in the source. Local persons are no SIS population.
    kept = local_runs.sis_count(state.persons, derivation.bridged, derivation.frozen_persons)
    baseline = holds.gate(cfg, store, counts, kept, schools) if gate else None
    cookie = store.versions.current()
    identities = store.identities.all()
    school_names = {sid: s.short_name for sid, s in state.schools.items()}
    config = config_digest(cfg)  # what each target last applied under tells its updates' reasons
    pool = Pool()  # one object per distinct value across the plan's changes
    seal = nin_seal(store)  # NINs in target attributes are planned and stored sealed
    targets: list[TargetPlan] = []
    live: set[str] = set()
    for name, tcfg in cfg.enabled_targets().items():
        kind = kind_of(tcfg.kind)
        # The target's own schools, roles and extra groups; the very state when it has none.
        objs = kind.map_state(restrict(state, Scope.of(tcfg)), MappingContext(cfg.owner, tcfg, as_of, seal))
        index = store.objects.index(name)
        policy = kind.policy(tcfg)
        changes = diff_objects(
            store,
            name,
            kind,
            policy,
            objs,
            index,
            derivation,
            identities=identities,
            school_names=school_names,
            as_of=as_of,
            pool=pool,
            config=config,
        )
        changes = local_runs.with_locks(name, changes, index, local_in, as_of, policy)
        population = sum(1 for r in index.values() if r.status == ObjectStatus.ACTIVE)
        # Held encoded (about a tenth of the memory, provisioner.core.stored): a plan-only
        # target's changes are decoded only if someone reads them, a live target's when applied.
        dry_run = tcfg.mode == "plan"
        pending = stored.encode(changes) if dry_run else stored.pack(changes)
        targets.append(TargetPlan(name, pending, population, dry_run=dry_run))
        live.update(r.person_id for r in index.values() if r.person_id and r.status != ObjectStatus.DELETED)
        del objs, index, changes  # free them before the next target is mapped
        release_freed()  # and give their pages back, as the snapshot's above
    core = diff_core(
        state.persons,
        identities,
        new_usernames=state.new_usernames,
        new_aliases=derivation.new_aliases,
        frozen=derivation.frozen_persons,
        live=live,
        retention_days=cfg.lifecycle.retention_days,
        school_names=school_names,
        as_of=as_of,
        inactive_nins=derivation.inactive_nins,
        bridged=derivation.bridged,
        ended=derivation.ended,
        pool=pool,
    )
    del pool
    plan = Plan(
        run_id=run_id,
        created_at=now_iso(),
        as_of=as_of,
        cookie=cookie,
        targets=(TargetPlan(CORE, stored.pack(core), len(identities)), *targets),
        errors=state.errors + local_errors,
        source_counts=counts,
        active_persons=kept,
        source_digests=source_digests,
        schools=tuple(sorted(schools)),
        config_digest=config_digest(cfg),
    )
    return hold_targets(cfg, store, plan, baseline), derivation


def plan_run(
    cfg: Config, store: StateStore, as_of: str, run_id: str, *, full: bool = False, certify_now: bool = True
) -> Plan:
    """This run's plan: the certified one when no input changed, patched when only some
    persons' names, e-mail or mobile, or some groups' members, did, or some persons
    joined, or their enrollments or employments changed (provisioner/run/incremental.py),
    else a full plan.

    A plan made here is certified for the next run (``certify_now``), or, by a run that
    goes on to apply it, after the apply (the plan it leaves is the one to certify; a
    first run's million changes are then never encoded). ``full`` ignores the
    certificate (a nightly reconciliation, or an admin in doubt). Raises SourceRefused
    from the source gate either way.
    """
    # Reading and planning make millions of objects and no cycles worth collecting: no
    # cyclic collection until the plan is made, and none walks them after (collector.paused).
    with paused():
        return _plan_run(cfg, store, as_of, run_id, full=full, certify_now=certify_now)


def _plan_run(
    cfg: Config, store: StateStore, as_of: str, run_id: str, *, full: bool, certify_now: bool
) -> Plan:
    # The nightly run (``full``) plans in full, and makes the patch the certificate allows too,
    # to check it (patch_check.check).
    cert = _current_certificate(cfg, store, as_of)
    read = None
    if cert is not None and not full:
        with open_source(cfg) as src:
            read = local_runs.read_unless_unchanged(store, src, cert.source)
        if read is None:
            log.info("source, config and state unchanged: the certified plan stands", run_id=run_id)
            plan = plan_from(cert, run_id, now_iso(), store.versions.current())
            baseline = holds.gate(cfg, store, dict(plan.source_counts), plan.active_persons, plan.schools)
            return hold_targets(cfg, store, replace(plan, config_digest=config_digest(cfg)), baseline)
    # In a list: make_plan frees the snapshot once derived.
    fetched = [read if read is not None else fetch_source(cfg)]
    del read
    got = incremental.patched(cfg, store, cert, fetched[0], as_of, run_id) if cert is not None else None
    if got is None or full:
        # The nightly run keeps the patch's plan to check; the rest of it goes first (a wide
        # patch's derived persons and groups, and the pages it freed).
        to_check, got = (got.plan if got is not None else None), None
        spent = fetched[0].spent
        if spent:  # a wide patch took the rows as read: the source is read again
            fetched = [fetch_source(cfg)]
        if spent or to_check is not None:
            release_freed()  # (a run that made no patch has freed nothing worth giving back)
        prints = Prints.of(fetched[0])  # of the rows as read, before make_plan frees them
        plan, derivation = make_plan(cfg, store, lambda: fetched.pop().snapshot(), as_of, run_id)
        if to_check is not None and to_check.source_digests == plan.source_digests:
            patch_check.check(store, to_check, plan)  # (of the same rows: read again, they may differ)
        del to_check
        prints = prints.frozen(derivation.frozen_persons, derivation.frozen_groups)
        started = time.perf_counter()
        written = store.directory.update(
            derivation.state, derivation.frozen_persons, derivation.frozen_groups
        )
        seconds = round(time.perf_counter() - started, 2)
        log.debug("directory updated", run_id=run_id, seconds=seconds, **written.__dict__)
        del derivation
    else:
        fetched.clear()
        baseline = holds.gate(
            cfg, store, dict(got.plan.source_counts), got.plan.active_persons, got.plan.schools
        )
        plan = hold_targets(cfg, store, got.plan, baseline)
        store.directory.update_persons(got.persons)
        store.directory.update_groups(got.groups)
        prints = Prints(
            got.prints,
            got.group_prints,
            got.affiliation_prints,
            carry_from=cert.source if cert is not None else None,
        )
        if got.plan.basis is PlanBasis.CERTIFIED:
            msg = "the source's rows are unchanged (a new export of them): the certified plan stands"
            log.info(msg, run_id=run_id)
        else:
            log.info(
                "plan patched: only these persons' names, e-mail or mobile, or these groups' members,"
                " changed, or these persons joined or their enrollments or employments changed",
                run_id=run_id,
                persons=len(got.persons),
                groups=len(got.groups),
            )
    if plan.source_digests:
        # For the next run's patch; before the certificate, which keeps those of its source.
        prints.save(store, plan.source_digests)
    stored = store.certificates.save(certify(cfg, plan, plan.cookie) if certify_now else None)
    if stored is None:
        return plan  # (not certified now: the apply certifies what it leaves)
    # The same changes, each target's now named by its stored copy: certifying what this
    # run leaves pending (plan-only targets) after apply rewrites none of them.
    return replace(plan, targets=stored.targets)


def _current_certificate(cfg: Config, store: StateStore, as_of: str) -> Certificate | None:
    """The stored certificate when its key (config, state, day, code) holds now."""
    cert = store.certificates.load()  # None also when written by another version: plan in full
    if cert is None or cert.key != inputs_key(cfg, store.versions.current(), as_of):
        return None
    return cert


def _certify_applied(cfg: Config, store: StateStore, plan: Plan, results: dict[str, TargetResult]) -> None:
    """After apply: certify the plan the next run will make, when it can be known."""

    def purges_due(persons: frozenset[str]) -> bool:
        # A plan made now: these persons' identities as recorded, and whether a target holds them.
        live = store.objects.live(persons, cfg.enabled_targets().keys())
        ids = store.identities.all(persons)
        return bool(inactive_changes(ids, live, cfg.lifecycle.retention_days, plan.as_of))

    predicted = predict_after_apply(plan, results, store.objects.populations, purges_due)
    cert = certify(cfg, predicted, store.versions.current()) if predicted is not None else None
    store.certificates.save(cert)


ConnectorFactory = Callable[[Config, str], Connector | Exporter]


def _connectors(cfg: Config, plan: Plan, connect: ConnectorFactory | None) -> dict:
    """Connectors of the targets with changes to apply, and of those delivering files an earlier run wrote."""
    make = connect or build_connector  # looked up now: a test or benchmark may stand in for it

    def wanted(tp: TargetPlan) -> bool:
        if tp.target == CORE or tp.dry_run or tp.hold is not None:
            return False
        tcfg = cfg.targets.get(tp.target)
        return bool(tp.changes) or (tcfg is not None and kind_of(tcfg.kind).capabilities(tcfg).delivers)

    return {tp.target: make(cfg, tp.target) for tp in plan.targets if wanted(tp)}


def _soft_delete(cfg: Config) -> dict[str, bool]:
    return {n: kind_of(t.kind).policy(t).soft_delete for n, t in cfg.targets.items()}


def apply_options(cfg: Config) -> ApplyOptions:
    """How a run started from this config applies its plan (worker processes log as configured)."""
    return ApplyOptions(log=LogSettings(cfg.logging.level, cfg.logging.format))


def _guarded_apply(
    cfg: Config,
    store: StateStore,
    plan: Plan,
    kind: str,
    progress: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
    connect: ConnectorFactory | None = None,
    options: ApplyOptions | None = None,
) -> RunOutcome:
    """Apply a plan and record the run however it ends (a crash leaves no run 'running')."""
    try:
        results = apply_plan(
            plan,
            store,
            _connectors(cfg, plan, connect),
            soft_delete=_soft_delete(cfg),
            progress=progress,
            stop=stop,
            options=options or apply_options(cfg),
        )
    except ConfigError as exc:
        store.runs.finish(plan.run_id, RunStatus.FAILED, error=str(exc))
        log.error("run failed", run_id=plan.run_id, error=str(exc))
        return RunOutcome(plan.run_id, EXIT_USAGE, RunStatus.FAILED, str(exc), plan)
    except BaseException as exc:
        store.certificates.save(None)
        store.runs.finish(plan.run_id, RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
        raise
    in_line = [name for name, r in results.items() if r.ok or r.status is TargetOutcome.UNCHANGED]
    record_applied_config(store, in_line, config_digest(cfg))
    if kind == "approve":
        store.certificates.save(None)  # only the held part was applied: the next run plans in full
    else:
        _certify_applied(cfg, store, plan, results)
    return finish_run(store, plan, results, kind)


def sync(
    cfg: Config,
    store: StateStore,
    *,
    dry_run: bool = False,
    as_of: str | None = None,
    progress: Callable[[int], None] | None = None,
    full: bool = False,
    stop: threading.Event | None = None,
    connect: ConnectorFactory | None = None,
    options: ApplyOptions | None = None,
) -> RunOutcome:
    """Plan and (unless dry_run) apply one run under the run lock (``full``: ignore the certificate).

    ``stop`` set (SIGTERM to the daemon): the run ends between changes as "interrupted".
    ``connect`` builds a target's connector (default ``build_connector``; tests give the Graph
    client a virtual clock). ``options``: how to apply (default ``apply_options(cfg)``).
    """
    day = valid_day(as_of) if as_of is not None else dt.date.today().isoformat()
    run_id = new_run_id()
    rlog = log.bind(run_id=run_id)
    try:
        with _locked(cfg, store, run_id):
            store.runs.start(run_id, "plan" if dry_run else "sync", day)
            try:
                if not dry_run:
                    _reserve_configured(cfg, store)
                # Nothing here keeps the snapshot or the derivation: they are freed before apply.
                plan = plan_run(cfg, store, day, run_id, full=full, certify_now=dry_run)
            except SourceRefused as exc:
                return refused(store, run_id, exc)
            except (SourceError, ConfigError) as exc:
                store.runs.finish(run_id, RunStatus.FAILED, error=str(exc))
                rlog.error("run failed", error=str(exc))
                return RunOutcome(run_id, EXIT_USAGE, RunStatus.FAILED, str(exc))
            except Exception as exc:
                store.runs.finish(run_id, RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
                raise
            faults.point("plan:made")  # a test hook (provisioner/faults.py): nothing here checks the stop
            if dry_run:
                summary = {"plan": plan.summary(), "source": source_record(plan, accept_gone=False)}
                store.runs.finish(
                    run_id, RunStatus.PLANNED, summary=summary, active_persons=plan.active_persons
                )
                # Data errors are per-object errors whether the plan is applied or not: a plan
                # and a sync that changes nothing exit alike on the same data.
                return RunOutcome(
                    run_id, EXIT_ERRORS if plan.errors else EXIT_OK, RunStatus.PLANNED, "", plan
                )
            if stop is not None and stop.is_set():  # asked to stop while planning: apply nothing
                store.runs.finish(run_id, RunStatus.INTERRUPTED, summary={"plan": plan.summary()})
                rlog.warning("run interrupted before apply")
                return RunOutcome(
                    run_id, EXIT_INTERRUPTED, RunStatus.INTERRUPTED, "stopped before apply", plan
                )
            return _guarded_apply(cfg, store, plan, "sync", progress, stop, connect, options)
    except LockHeld as exc:
        return RunOutcome(run_id, EXIT_LOCKED, RunStatus.LOCKED, str(exc))


@contextmanager
def _locked(cfg: Config, store: StateStore, run_id: str) -> Iterator[None]:
    """``run_lock`` for a whole run: its bulk work runs with fewer garbage collections
    (provisioner.apply.collector)."""
    with run_collector(), run_lock(cfg, store, run_id):
        yield


@contextmanager
def run_lock(cfg: Config, store: StateStore, run_id: str, wait: float = 0.0) -> Iterator[None]:
    """The one run lock, waited for up to ``wait`` seconds (LockHeld after); what a killed run
    left (its record, temp files, unrecorded exports) is put right first, as every run does.

    A small write (a password reset, provisioner/run/password.py) takes it directly: it
    leaves the collector's thresholds alone, which the web console's threads share.
    """
    deadline = time.monotonic() + wait
    with ExitStack() as stack:
        while True:
            try:
                abandoned = stack.enter_context(store.runs.lock(run_id))
                break
            except LockHeld:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(_LOCK_POLL)
        tidy_after_killed_runs(cfg, run_id, abandoned)
        settle_exports(cfg, store, run_id, apply_options(cfg))
        yield


def _reserve_configured(cfg: Config, store: StateStore) -> None:
    """Keep usernames listed in [usernames] reserved_files out of reach (idempotent)."""
    from provisioner.core.usernames import read_reserved_csv

    for f in cfg.usernames.reserved_files:
        try:
            names = read_reserved_csv(cfg.path(f))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"usernames.reserved_files: {exc}") from exc
        store.identities.reserve_usernames(names, note=f"reserved in {Path(f).name}")


def _stale(store: StateStore, plan: Plan, targets: list[str]) -> list[str]:
    now = store.versions.current()
    return [t for t in targets if now.get(t, 0) != plan.cookie.get(t, 0)]


def apply_saved(cfg: Config, store: StateStore, plan: Plan) -> RunOutcome:
    """Apply exactly a saved plan, if the state has not changed since it was made."""
    try:
        with _locked(cfg, store, plan.run_id):
            stale = _stale(store, plan, [tp.target for tp in plan.targets])
            if stale:
                return RunOutcome(
                    plan.run_id,
                    EXIT_USAGE,
                    RunStatus.STALE,
                    f"the state of {', '.join(stale)} changed since this plan was made: make a new plan",
                )
            if store.runs.get(plan.run_id) is None:
                store.runs.start(plan.run_id, "apply", plan.as_of)
            return _guarded_apply(cfg, store, plan, "apply")
    except LockHeld as exc:
        return RunOutcome(plan.run_id, EXIT_LOCKED, RunStatus.LOCKED, str(exc))


def approve(cfg: Config, store: StateStore, run_id: str, by: str) -> RunOutcome:
    """Approve one held plan (apply it now) or one source refusal (accept it once).

    A held plan is applied only while it is current: the newest plan of its targets, made
    from the source, config and state as they are now. Otherwise nothing is applied, the
    message says why, and the exit code is 2.
    """
    run = store.runs.get(run_id)
    if run is None:
        return RunOutcome(run_id, EXIT_USAGE, RunStatus.UNKNOWN, f"no run {run_id}")
    if run["approved_at"]:
        return RunOutcome(
            run_id,
            EXIT_USAGE,
            RunStatus(run["status"]),
            f"run {run_id} was already approved at {run['approved_at']}",
        )
    if run["status"] == RunStatus.REFUSED:
        return _approve_refusal(store, run, by)
    if run["status"] != RunStatus.HELD:
        return RunOutcome(
            run_id, EXIT_USAGE, RunStatus(run["status"]), f"run {run_id} is {run['status']}, not held"
        )
    if not run["plan"]:  # dropped when a newer run planned afresh
        newer = safety_reads.newer_run(store, run_id)
        why = superseded_reason(newer) if newer else "its plan is no longer kept"
        return RunOutcome(
            run_id,
            EXIT_USAGE,
            RunStatus.STALE,
            f"run {run_id} cannot be approved: {why}; nothing was applied",
        )
    held = Plan.loads(run["plan"])
    plan = replace(held, targets=tuple(replace(tp, hold=None) for tp in held.targets), schools_gone=())
    try:
        with _locked(cfg, store, run_id):
            why = why_not_current(cfg, store, plan)
            if why:
                return RunOutcome(
                    run_id,
                    EXIT_USAGE,
                    RunStatus.STALE,
                    f"run {run_id} cannot be approved: {why}; nothing was applied",
                )
            store.runs.approve(run_id, by)
            out = _guarded_apply(cfg, store, plan, "approve")
            store.runs.finish(run_id, out.status, plan=None)
            return out
    except LockHeld as exc:
        return RunOutcome(run_id, EXIT_LOCKED, RunStatus.LOCKED, str(exc))


def _approve_refusal(store: StateStore, run: dict, by: str) -> RunOutcome:
    run_id = run["run_id"]
    summary = json.loads(run["summary"]) if run["summary"] else {}
    empty = summary.get("gate", {}).get("empty", [])
    if empty:
        return RunOutcome(
            run_id,
            EXIT_USAGE,
            RunStatus.REFUSED,
            f"run {run_id} was refused for an empty {', '.join(empty)} table: that is never approved;"
            " fix the SIS connection or queries",
        )
    store.runs.approve(run_id, by)
    return RunOutcome(
        run_id,
        EXIT_OK,
        RunStatus.APPROVED,
        f"source refusal approved: the next run accepts {run['active_persons']} active persons",
    )
