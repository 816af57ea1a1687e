"""Whether a held plan is still current: the newest plan, from the same source, config and state.

``bas approve`` applies a held plan only then (provisioner.run.runner.approve); otherwise it
applies nothing and says why. Kept apart from the runner: one job, read-only checks.
"""

from __future__ import annotations

from provisioner.config import Config, ConfigError
from provisioner.core.certificate import config_digest
from provisioner.core.plan import Plan
from provisioner.core.states import PlanBasis, RunStatus
from provisioner.run import local as local_runs
from provisioner.state import safety_reads
from provisioner.state.store import StateStore
from sources.base import SourceError
from sources.registry import open_source


def superseded_reason(newer: dict) -> str:
    """Why a held plan that a newer run superseded is not applied."""
    if newer["status"] == RunStatus.HELD and not newer["approved_at"]:
        return (
            f"run {newer['run_id']} planned afresh since and is held too:"
            f" review and approve that one (`bas approve {newer['run_id']}`)"
        )
    return f"run {newer['run_id']} planned afresh since ({newer['status']}); its plan superseded this one"


def why_not_current(cfg: Config, store: StateStore, plan: Plan) -> str:
    """Why a held plan no longer applies ('' when it still does)."""
    newer = safety_reads.newer_run(store, plan.run_id)
    if newer is not None:
        return superseded_reason(newer)
    now = store.versions.current()
    stale = sorted(k for k in set(now) | set(plan.cookie) if now.get(k, 0) != plan.cookie.get(k, 0))
    if stale:
        return f"the state of {', '.join(stale)} changed since; the next run plans afresh"
    if plan.config_digest != config_digest(cfg):
        return "the configuration changed since it was planned; the next run plans afresh"
    if plan.basis is PlanBasis.DRIFT:
        return ""  # a drift repair is planned from the state store and the target, not the source
    try:
        with open_source(cfg) as src:  # a missing SQLite file is not created
            same = local_runs.inputs_unchanged(store, src, plan.source_digests)
    except (SourceError, ConfigError) as exc:
        return f"the source cannot be read to check it is unchanged ({exc})"
    if not same:
        return (
            "the source (or a local person or lock) changed since it was planned; the next run plans afresh"
        )
    return ""
