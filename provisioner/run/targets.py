"""Building the connector for each configured target that applies changes."""

from __future__ import annotations

from connectors.base import Connector, Exporter
from provisioner.config import Config, ConfigError, FeideConfig, read_secret


def build_connector(cfg: Config, name: str) -> Connector | Exporter:
    """The connector (a file target's exporter) of a target in apply mode; ConfigError when it has none."""
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


def feide_session(cfg: Config, tcfg: FeideConfig):  # -> connectors.ldap.session.LdapSession
    """The LDAP session of a live Feide target (password read from its secret file now)."""
    from connectors.ldap.session import LdapSession

    key = f"targets.{cfg.target_key(tcfg)}"
    if not tcfg.url:
        raise ConfigError(f"{key}.url: not set (the target writes LDIF files)")
    password = None
    if tcfg.password_file:
        password = read_secret(tcfg.password_file, cfg.base_dir, f"{key}.password_file")
    return LdapSession(
        tcfg.url,
        tcfg.bind_dn,
        password,
        ca_file=str(cfg.path(tcfg.ca_file)) if tcfg.ca_file else None,
        start_tls=tcfg.start_tls,
        timeout=tcfg.timeout,
    )


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
