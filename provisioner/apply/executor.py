"""The executor: applies a plan through connectors, one code path for every target.

Core (identity) changes go first, straight into the state store. Then each target that
is neither held nor plan-only gets its changes through its connector or its exporter
(provisioner.apply.target); a fatal error stops that target, the others go on. Targets
whose connector is ``process_safe`` (file targets) are applied in worker processes beside
this one, one per core it leaves free (provisioner.apply.workers); each does exactly what it
would do in this process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

import structlog

from connectors.base import Connector, Exporter
from provisioner import faults
from provisioner.apply.collector import release_freed
from provisioner.apply.options import ApplyOptions
from provisioner.apply.outcomes import DEFAULT_RETRY, RetryPolicy
from provisioner.apply.result import TargetResult
from provisioner.apply.target import apply_target, deliver
from provisioner.apply.worker import Job
from provisioner.apply.workers import Workers, cores
from provisioner.apply.workers import available as workers_available
from provisioner.core.plan import CORE, Plan, TargetPlan
from provisioner.core.states import TargetOutcome
from provisioner.core.stored import at_hand
from provisioner.state.store import StateStore
from provisioner.state.writer import apply_core

log = structlog.get_logger("bas.executor")


def apply_plan(
    plan: Plan,
    store: StateStore,
    connectors: Mapping[str, Connector | Exporter],
    *,
    soft_delete: Mapping[str, bool],
    retry: RetryPolicy = DEFAULT_RETRY,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[int], None] | None = None,
    only: set[str] | None = None,
    stop: threading.Event | None = None,
    options: ApplyOptions | None = None,
) -> dict[str, TargetResult]:
    """Apply every applicable part of a plan; returns a result per target.

    Core first; then targets whose connector is ``process_safe`` may run in worker
    processes while this process applies the others (provisioner.apply.workers).
    ``stop`` (set by the daemon on SIGTERM) is checked between changes: the change in
    flight finishes, what was done is flushed, and the rest is left for the next run.
    ``options``: the state-store batch size, whether workers are used, how they log.
    """
    options = options or ApplyOptions()
    results: dict[str, TargetResult] = {}
    todo: list[TargetPlan] = []
    for tp in plan.targets:
        if tp.target == CORE or (only is not None and tp.target not in only):
            continue
        if tp.hold is not None:
            results[tp.target] = TargetResult(tp.target, TargetOutcome.HELD)
        elif tp.dry_run:
            results[tp.target] = TargetResult(tp.target, TargetOutcome.PLANNED)
        elif not tp.changes:
            exp = connectors.get(tp.target)  # given for a file target that delivers its files
            res = TargetResult(tp.target, TargetOutcome.UNCHANGED)
            if isinstance(exp, Exporter) and not (stop is not None and stop.is_set()):
                try:
                    deliver(exp, res, log.bind(run_id=plan.run_id, target=tp.target))
                finally:
                    exp.close()
            results[tp.target] = res
        elif stop is not None and stop.is_set():
            results[tp.target] = TargetResult(tp.target, TargetOutcome.INTERRUPTED)
            log.warning("target interrupted", run_id=plan.run_id, target=tp.target, done=0)
        else:
            todo.append(tp)

    forked, local = _split(todo, connectors, store, options)
    if forked:
        release_freed()  # what planning freed, given back before workers add their own memory
    # This process applies targets too (``local``): the workers get the other cores.
    with Workers(stop, at_once=max(1, cores() - 1)) as workers:
        # Workers start now and load their jobs while the core is written; they apply
        # only after it is committed (go), so no target may hold a username the
        # historic base lacks.
        for tp in forked:
            job = Job(
                tp,
                connectors[tp.target],
                store.url,
                plan.run_id,
                plan.as_of,
                soft_delete.get(tp.target, False),
                retry,
                options,
            )
            workers.start(job)
        core = plan.target(CORE)
        if core is not None and (only is None or CORE in only):
            n = apply_core(store, at_hand(core.changes), plan.run_id, plan.as_of)
            results[CORE] = TargetResult(CORE, TargetOutcome.APPLIED if n else TargetOutcome.UNCHANGED, ok=n)
            faults.point("core:committed")
            if progress:
                progress(n)
        workers.go()
        for tp in local:
            if stop is not None and stop.is_set():
                results[tp.target] = TargetResult(tp.target, TargetOutcome.INTERRUPTED)
                log.warning("target interrupted", run_id=plan.run_id, target=tp.target, done=0)
                continue
            conn, soft = connectors[tp.target], soft_delete.get(tp.target, False)
            results[tp.target] = apply_target(
                tp,
                store,
                conn,
                plan.run_id,
                plan.as_of,
                soft,
                retry,
                sleep,
                progress,
                stop,
                batch=options.batch,
            )

        def done(target: str, res: TargetResult, changes: int) -> None:
            results[target] = res
            if progress:
                progress(changes)

        workers.wait(done)
    # Core first, then in plan order, as if applied one after the other.
    order = [CORE] + [tp.target for tp in plan.targets if tp.target != CORE]
    return {name: results[name] for name in order if name in results}


def _split(
    todo: list[TargetPlan],
    connectors: Mapping[str, Connector | Exporter],
    store: StateStore,
    options: ApplyOptions,
) -> tuple[list[TargetPlan], list[TargetPlan]]:
    """(targets for worker processes, largest first; targets for this process).

    Only connectors marked ``process_safe`` go to workers. This process keeps the
    largest of them when it has nothing else to do: its plan is in memory here already,
    and a worker would hold a second copy of it. The workers run one per core beside
    this process (``Workers``' ``at_once``), the largest first, so that it is applied
    while this process applies its own; the others wait their turn. At Oslo size, all
    four targets live, this process (AD, Microsoft 365) and workers for itslearning and
    Feide at once on two cores peaked at ~1.4 GB; with one worker at a time beside it,
    and the caches of the derivation gone with it, at ~0.9 GB.
    """
    if len(todo) < 2 or not workers_available(store, options):
        return [], todo
    safe = [tp for tp in todo if connectors[tp.target].process_safe]
    local = [tp for tp in todo if tp not in safe]
    if not local and safe:
        largest = max(safe, key=lambda tp: len(tp.changes))
        safe.remove(largest)
        local.append(largest)
    return sorted(safe, key=lambda tp: len(tp.changes), reverse=True), local
