"""Building the connector for each configured target that applies changes."""

from __future__ import annotations

from connectors.base import Connector
from provisioner.config import Config, ConfigError, FeideConfig, read_secret


def build_connector(cfg: Config, name: str) -> Connector:
    """The live connector of a target in apply mode; ConfigError when it has none."""
    tcfg = cfg.targets[name]
    if tcfg.kind == "itslearning":
        from connectors.itslearning.connector import ItslearningConnector

        return ItslearningConnector(tcfg, cfg.owner, cfg.path(tcfg.output_dir))
    if tcfg.kind == "feide":
        if tcfg.url:  # live writes to the LDAP server; without a url, LDIF files
            from connectors.feide.ldap import FeideLdapConnector

            return FeideLdapConnector(tcfg, cfg.owner, feide_session(cfg, tcfg))
        from connectors.feide.ldif import FeideLdifConnector

        return FeideLdifConnector(tcfg, cfg.owner, cfg.path(tcfg.output_dir))
    if tcfg.kind == "ad":
        from connectors.ad.connector import ADConnector

        return ADConnector.from_config(cfg, name)
    if tcfg.kind == "m365":
        from connectors.m365.connector import M365Connector

        return M365Connector.from_config(cfg, name)
    raise ConfigError(
        f'targets.{name}.mode: this version can only plan {tcfg.kind} changes; set mode = "plan"'
    )


def feide_session(cfg: Config, tcfg: FeideConfig):  # -> connectors.ldap.link.LdapLink
    """The LDAP link of a live Feide target (password read from its secret file now)."""
    from connectors.feide.ldap import link_from_config

    return link_from_config(cfg, tcfg)


def check_targets(cfg: Config) -> None:
    """Fail early, naming the key, for a target that is set to apply but cannot."""
    for name, tcfg in cfg.enabled_targets().items():
        if tcfg.mode == "apply" and tcfg.kind not in ("itslearning", "feide"):
            build_connector(cfg, name)
        if isinstance(tcfg, FeideConfig) and tcfg.url:
            if tcfg.password_file:
                try:
                    read_secret(tcfg.password_file, cfg.base_dir)
                except ConfigError as exc:
                    raise ConfigError(f"targets.{name}.password_file: {exc}") from exc
            if tcfg.ca_file and not cfg.path(tcfg.ca_file).is_file():
                raise ConfigError(f"targets.{name}.ca_file: {cfg.path(tcfg.ca_file)} is not a file")
