"""The plan certificate: the same inputs give the same plan, so a no-op need not be recomputed.

A plan is a function of four inputs: the source rows, the configuration, the state
store (its version per target and core: the state cookie) and the day it is made for
(activity and every lifecycle timer count whole days). After a run, the certificate
records a digest of each input together with the plan those inputs give. The next run
reads the source rows and hashes them (no derivation, no mapping, no diff); when every
input matches, the certified plan is the plan, and the run costs little more than the
SELECT. Any difference, even one changed row, and the run plans in full.

Two ways to earn a certificate:

- a full plan is certified as it is (whatever its size: the store keeps each target's
  changes encoded apart, provisioner.core.stored, and a quiet run decodes none of them);
- an apply that did everything its plan asked predicts the next plan: the applied
  targets have nothing left to do, plan-only and held targets keep their changes.
  Removals (a disable, delete or purge) change what one later rule sees: a purge waits
  until no target holds the person. So after removals the prediction is made only when
  no purge falls due for the persons removed (the caller asks the state store after
  the apply: ``purges_due``); the other rules that follow a removal count whole days
  from it, and a new day plans in full. The property tests check prediction = full plan.

Like Kanidm's sync cookie: nothing is trusted that the inputs do not prove.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from provisioner import __version__
from provisioner.config import Config
from provisioner.core.plan import PLAN_FORMAT, Op, Plan, TargetPlan
from provisioner.core.states import PlanBasis, TargetOutcome

REMOVALS = frozenset({Op.DISABLE, Op.DELETE, Op.PURGE})


@dataclass(frozen=True, slots=True)
class Certificate:
    """Digests of a plan's inputs, and the plan they give.

    The state store keeps it (provisioner.state.certificates): each target's changes apart,
    encoded, so a certified plan of any size costs a quiet run only what it reads.
    """

    key: str  # digest of config, state versions, day and code version
    source: Mapping[str, str]  # digest per source query
    plan: Plan


# Settings that never change a plan: editing them leaves a held plan approvable and the
# certificate standing (the web console's roles and login among them).
_NOT_PLANNING = ("logging", "daemon", "metrics", "alerts", "web")


def _planning(cfg: Config) -> dict[str, Any]:
    return {k: v for k, v in cfg.model_dump(mode="json").items() if k not in _NOT_PLANNING}


def config_digest(cfg: Config) -> str:
    """Digest of the configuration a plan depends on (`bas approve` checks it is unchanged)."""
    return hashlib.sha256(json.dumps(_planning(cfg), sort_keys=True).encode()).hexdigest()


def inputs_key(cfg: Config, versions: Mapping[str, int], as_of: str) -> str:
    """Digest of everything but the source that a plan depends on."""
    material = {
        "config": _planning(cfg),
        "versions": {k: versions[k] for k in sorted(versions)},
        "as_of": as_of,
        "code": __version__,
        "format": PLAN_FORMAT,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def certify(cfg: Config, plan: Plan, versions: Mapping[str, int]) -> Certificate | None:
    """A certificate for a plan just made in full (None without source digests)."""
    if not plan.source_digests:
        return None
    return Certificate(
        inputs_key(cfg, versions, plan.as_of), dict(plan.source_digests), replace(plan, basis=PlanBasis.FULL)
    )


def predict_after_apply(
    plan: Plan,
    results: Mapping[str, Any],
    populations: Callable[[], Mapping[str, int]],
    purges_due: Callable[[frozenset[str]], bool] = lambda persons: True,
) -> Plan | None:
    """The plan the next run will make from the same source, or None when it cannot be known.

    ``results`` holds the executor's TargetResult per target; ``populations`` counts the
    active objects per target after apply (the base of the percent thresholds). It is
    called only when a target applied changes, and once: a quiet run has none to count,
    and counting is a tenth of its CPU (~0.3 s at Oslo size, every minute for a daemon).
    ``purges_due``: whether a plan made now would purge (or otherwise change the
    identity of) one of these persons, whose objects or identities the apply removed.
    """
    if not plan.source_digests:
        return None
    counted: list[Mapping[str, int]] = []
    out: list[TargetPlan] = []
    for tp in plan.targets:
        if tp.dry_run or (tp.hold is not None and tp.changes):
            out.append(tp)  # not applied: the same changes (and hold) come again
            continue
        if not tp.changes:
            out.append(tp)
            continue
        r = results.get(tp.target)
        if r is None or r.status == TargetOutcome.FAILED or r.rejected or r.failed or r.ok != len(tp.changes):
            return None  # something is left to retry: only a full plan can tell what
        if tp.ops() & REMOVALS:
            removed = removed_persons(tp)
            if removed is None or purges_due(removed):
                return None
        if not counted:
            counted.append(populations())
        out.append(replace(tp, changes=(), population=counted[0].get(tp.target, 0), hold=None))
    return replace(plan, targets=tuple(out))


def removed_persons(tp: TargetPlan) -> frozenset[str] | None:
    """The persons whose objects (or identities) one target's changes disable, delete or
    purge; None when it removes something else than persons and groups (a school)."""
    removed = [c for c in tp.changes if c.op in REMOVALS]
    if any(c.kind not in ("person", "identity", "group") for c in removed):
        return None
    return frozenset(c.person_id or c.key for c in removed if c.kind != "group")


def plan_from(cert: Certificate, run_id: str, created_at: str, cookie: Mapping[str, int]) -> Plan:
    """The certified plan, as this run's plan."""
    return replace(
        cert.plan, run_id=run_id, created_at=created_at, cookie=dict(cookie), basis=PlanBasis.CERTIFIED
    )
