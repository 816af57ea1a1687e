"""Building what a run needs of each configured target, through the target-kind registry."""

from __future__ import annotations

from connectors.base import Connector, Exporter, Reader
from provisioner.config import Config, ConfigError
from provisioner.kinds import kind_of


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
