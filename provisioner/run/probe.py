"""`bas config check` reaching every live target: the same connection a run would open, read-only.

A config can validate and still point at a server that is down, a base DN that does not
exist, a secret Graph refuses or a folder BAS cannot write. Each enabled target is
probed the way its connector would start, nothing written:

- AD (mode apply): connect over TLS, bind as the service account, read ``base_dn``.
- Feide with ``url``: the connector's own start (bind; ``base_dn`` or its parent exists).
- Microsoft 365 (mode apply): get a token and read one user (what BAS needs to read).
- File targets (itslearning, Feide LDIF) in apply mode: ``output_dir`` is (or can be made) a
  writable folder.

Targets in plan mode are not reached: nothing would be applied to them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from connectors.base import ConnectorError
from provisioner.config import (
    ADConfig,
    Config,
    ConfigError,
    FeideConfig,
    ItslearningConfig,
    M365Config,
    TargetBase,
)
from provisioner.run.targets import build_connector


@dataclass(frozen=True, slots=True)
class Probe:
    """How reaching one target went: ``ok`` and a one-line detail (what was reached, or why not)."""

    target: str
    ok: bool
    detail: str


def probe_targets(cfg: Config) -> list[Probe]:
    """Probe every enabled target; one result each, in file order (never raises for one target)."""
    out = []
    for name, tcfg in cfg.enabled_targets().items():
        try:
            out.append(Probe(name, True, _probe(cfg, name, tcfg)))
        except (ConnectorError, ConfigError, OSError) as exc:
            out.append(Probe(name, False, str(exc)))
    return out


def _probe(cfg: Config, name: str, tcfg: TargetBase) -> str:
    if isinstance(tcfg, FeideConfig) and tcfg.url:
        return _feide(cfg, name, tcfg)
    if tcfg.mode != "apply":
        return "plan only: not reached"
    if isinstance(tcfg, ADConfig):
        return _ad(cfg, tcfg)
    if isinstance(tcfg, M365Config):
        return _m365(cfg, tcfg)
    if isinstance(tcfg, ItslearningConfig | FeideConfig):
        return _folder(cfg.path(tcfg.output_dir), f"targets.{name}.output_dir")
    raise ConfigError(f"targets.{name}: no probe for kind {tcfg.kind}")


def _ad(cfg: Config, tcfg: ADConfig) -> str:
    from connectors.ad.connector import link_from_config

    link = link_from_config(cfg, tcfg)
    try:
        link.open()
        if link.read(tcfg.base_dn, ["objectClass"], what=f"read base_dn {tcfg.base_dn}") is None:
            raise ConfigError(f"targets.{cfg.target_key(tcfg)}.base_dn: {tcfg.base_dn} does not exist")
    finally:
        link.close()
    return f"{tcfg.url}: bound as {tcfg.bind_dn}, base {tcfg.base_dn} found"


def _feide(cfg: Config, name: str, tcfg: FeideConfig) -> str:
    # The connector's own start: bind, then the base DN, its parent or the server's naming
    # context must exist (a run creates the owner's entry there); it reads, never writes.
    conn = build_connector(cfg, name)
    try:
        conn.begin("config-check", lambda kind, key: None)
    finally:
        conn.close()
    return f"{tcfg.url}: bound as {tcfg.bind_dn or 'anonymous'}, base {tcfg.base_dn} usable"


def _m365(cfg: Config, tcfg: M365Config) -> str:
    from connectors.m365.connector import client_from_config

    client = client_from_config(cfg, tcfg)
    client.attempts = 1  # a check reports at once; a run retries
    try:
        resp = client.call("GET", "/users?$top=1&$select=id")
    finally:
        client.close()
    if not resp.ok:
        raise ConfigError(f"targets.{cfg.target_key(tcfg)}: Graph refused reading users: {resp.describe()}")
    return f"{tcfg.graph_url}: token for app {tcfg.client_id}, users readable"


def _folder(path: Path, key: str) -> str:
    """A folder BAS can write files in: it exists (or its nearest existing parent) and is writable."""
    existing = path
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{key}: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}: {existing} is not writable by this user")
    return f"{path}: writable" + ("" if existing == path else f" (created on the first run under {existing})")
