"""`bas config check` reaching every live target: the same connection a run would open, read-only.

A config can validate and still point at a server that is down, a base DN that does not
exist, a secret Graph refuses or a folder BAS cannot write. Each enabled target is
probed the way its connector would start, nothing written:

- AD (mode apply): connect over TLS, bind as the service account, read ``base_dn``.
- Feide with ``url``: the connector's own start (bind; ``base_dn`` or its parent exists).
- Microsoft 365 (mode apply): get a token and read one user (what BAS needs to read).
- File targets (itslearning, Feide LDIF) in apply mode: ``output_dir`` is (or can be made) a
  writable folder; itslearning with ``sftp``: also log in to the SFTP server (host key
  pinned) and list ``remote_dir``.

Targets in plan mode are not reached (nothing would be applied to them), except those
whose kind says a checker reads them (Feide with ``url``). How a live target is reached
is its kind's ``probe`` (provisioner/kinds.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from connectors.errors import ConnectorError
from provisioner.config import Config, ConfigError, TargetBase
from provisioner.kinds import kind_of


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
    kind = kind_of(tcfg.kind)
    caps = kind.capabilities(tcfg)
    if tcfg.mode != "apply" and not caps.reached_in_plan:
        return "plan only: not reached"
    if caps.live and kind.probe is not None:
        return kind.probe(cfg, name)
    if caps.output_dir is not None:
        folder = _folder(cfg.path(caps.output_dir), f"targets.{name}.output_dir")
        if caps.delivers and kind.probe is not None:  # and where its files go (itslearning's SFTP)
            return f"{folder}; {kind.probe(cfg, name)}"
        return folder
    raise ConfigError(f"targets.{name}: no probe for kind {tcfg.kind}")


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
