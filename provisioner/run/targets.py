"""Building what a run needs of each configured target, through the target-kind registry,
and diffing a target's mapped objects against the state store (a full plan and a patch alike)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from connectors.base import Connector, Exporter, Reader
from provisioner.config import Config, ConfigError
from provisioner.core.derive import Derivation
from provisioner.core.diff import compared, diff_target
from provisioner.core.lifecycle import Policy
from provisioner.core.model import TargetObject
from provisioner.core.plan import CORE, Change
from provisioner.core.pool import Pool
from provisioner.core.rows import IdentityRow, IndexRow
from provisioner.kinds import TargetKind, kind_of
from provisioner.state.store import StateStore


def build_connector(cfg: Config, name: str) -> Connector | Exporter:
    """The connector (a file target's exporter) of a target in apply mode; ConfigError when it has none."""
    tcfg = cfg.targets[name]
    kind = kind_of(tcfg.kind)
    if kind.connector is None:
        raise ConfigError(
            f'targets.{name}.mode: this version can only plan {tcfg.kind} changes; set mode = "plan"'
        )
    return kind.connector(cfg, name)


def build_reader(cfg: Config, name: str) -> Reader:
    """The reader of a live target (reconciliation); ConfigError when its kind has none."""
    tcfg = cfg.targets[name]
    kind = kind_of(tcfg.kind)
    if kind.reader is None or not kind.capabilities(tcfg).live:
        raise ConfigError(f"targets.{name}: a {kind.label} target of this configuration cannot be read back")
    return kind.reader(cfg, name)


def check_targets(cfg: Config) -> None:
    """Fail early, naming the key, for a target that is set to apply but cannot.

    The kind's own check runs first (for every enabled target); then the connector of a
    live target in apply mode is built, which reads its secrets and CA files now.
    """
    for name, tcfg in cfg.enabled_targets().items():
        kind = kind_of(tcfg.kind)
        if kind.check is not None:
            kind.check(cfg, name)
        if tcfg.mode == "apply" and (kind.connector is None or kind.capabilities(tcfg).live):
            build_connector(cfg, name)


def diff_objects(
    store: StateStore,
    name: str,
    kind: TargetKind,
    policy: Policy,
    objs: Iterable[TargetObject],
    index: Mapping[str, IndexRow],
    d: Derivation,
    *,
    identities: Mapping[str, IdentityRow],
    school_names: Mapping[str, str],
    as_of: str,
    pool: Pool | None = None,
    config: str | None = None,
) -> list[Change]:
    """One target's changes: these mapped objects against the stored rows in ``index``.

    ``index`` holds every stored object of the target for a full plan, or only those of
    the patched persons' keys for a patch (provisioner/run/incremental.py). The persons
    are the derivation's own, not the target's scope: one out of scope is "still active".
    ``pool``: the plan's shared values (provisioner.core.pool). ``config``: the digest of
    the config the plan is made under, which names where updates come from (``changed_in``).
    """
    # Only a stored object has a digest to compare with; a new one is created whatever
    # its digest is (the writer computes it once from the JSON it stores anyway). The
    # objects are compared as the mapping yields them, and only the changed ones kept.
    got = compared(objs, index, pool)
    return diff_target(
        name,
        got.desired,
        got.digests,
        index,
        store.objects.details(name, got.stored),
        policy=policy,
        placement=kind.placement,
        links=kind.links,
        persons=d.state.persons,
        identities=identities,
        frozen=d.frozen_persons | d.frozen_groups,
        school_names=school_names,
        as_of=as_of,
        bridged=d.bridged,
        ended=d.ended,
        unchanged=got.unchanged,
        changed_in=changed_in(store, name, config),
    )


# Meta key per target: the digest of the config its changes were last applied under.
_APPLIED_CONFIG = "applied_config:"


def changed_in(store: StateStore, target: str, config: str | None) -> str:
    """Where a target's updated and moved objects get their new values, as their reasons say.

    "SIS or config" when the target's stored objects were last brought in line under
    another config than ``config``: a new value may be the config's doing (``role_domains``
    set: every pupil's e-mail), not the SIS's. "SIS" when they were under this one, and
    when it is not known (``config`` None; a target never applied, such as a plan-only
    one, or a store from before this was recorded). Recorded only by an apply, so every
    plan made in between, patched or full, says the same.
    """
    if config is None:
        return "SIS"
    applied = store.meta.get(_APPLIED_CONFIG + target)
    return "SIS" if applied in (None, config) else "SIS or config"


def record_applied_config(store: StateStore, targets: Iterable[str], config: str) -> None:
    """After an apply: these targets' stored objects are now in line with ``config`` (they
    applied changes under it, or had none to apply). The core takes no reasons from it."""
    for target in targets:
        # Read first: a quiet run (every target unchanged, each minute) writes nothing.
        if target != CORE and store.meta.get(_APPLIED_CONFIG + target) != config:
            store.meta.set(_APPLIED_CONFIG + target, config)
