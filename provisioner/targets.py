"""Building the connector for each configured target that applies changes."""

from __future__ import annotations

from connectors.base import Connector
from provisioner.config import Config, ConfigError


def build_connector(cfg: Config, name: str) -> Connector:
    """The live connector of a target in apply mode; ConfigError when it has none."""
    tcfg = cfg.targets[name]
    if tcfg.kind == "itslearning":
        from connectors.itslearning import ItslearningConnector

        return ItslearningConnector(tcfg, cfg.owner, cfg.path(tcfg.output_dir))
    if tcfg.kind == "feide":
        from connectors.feide_ldif import FeideLdifConnector

        return FeideLdifConnector(tcfg, cfg.owner, cfg.path(tcfg.output_dir))
    raise ConfigError(
        f'targets.{name}.mode: this version can only plan {tcfg.kind} changes; set mode = "plan"'
    )


def check_targets(cfg: Config) -> None:
    """Fail early, naming the key, for a target that is set to apply but cannot."""
    for name, tcfg in cfg.enabled_targets().items():
        if tcfg.mode == "apply" and tcfg.kind not in ("itslearning", "feide"):
            build_connector(cfg, name)
