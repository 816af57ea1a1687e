"""Picking the newest PIFU export up from the SIS's export server over SFTP (paramiko).

The login is provisioner/sftp.py's, shared with the itslearning delivery: the server's
host key pinned (in ``known_hosts_file``, or by ``host_key_fingerprint``), never trusted
on first use; a private key or a password from a secret file; no agent, no ~/.ssh keys.

In ``remote_dir`` the newest regular file matching the pattern is the export, chosen as
the local folder is (``sources.pifu.files``): temp and hidden names never count, and one
changed less than ``settle_seconds`` ago (by the server's clock as SFTP reports it) is
still being written: the run waits (SourceError). The export is downloaded into the local
folder under a hidden temp name (0600), its size checked against the listing, fsynced,
given the remote modification time and renamed; a local file of the same name and size
is taken as already downloaded. Then the local folder keeps the ``KEEP`` newest exports
and no more (older ones are deleted: they hold personal data).
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import paramiko
import structlog

from provisioner import sftp as sftp_login
from provisioner.source_config import SftpConfig
from sources.base import SourceError
from sources.pifu.files import atomic_file, is_candidate, newest

log = structlog.get_logger("bas.source.pifu")

KEEP = 3  # exports kept in the local folder: the one read now and two before it, for inspection


def connect(cfg: SftpConfig, base_dir: str) -> paramiko.SSHClient:
    """A logged-in SSH client whose server presented the pinned host key (provisioner/sftp.py)."""
    try:
        return sftp_login.connect(cfg, base_dir, "source.sftp")
    except sftp_login.SftpError as exc:
        raise SourceError(str(exc)) from exc


def pickup(
    cfg: SftpConfig,
    local: Path,
    pattern: str,
    settle_seconds: float,
    base_dir: str,
    *,
    now: float | None = None,
) -> Path:
    """Download the newest settled remote export into ``local`` (unless already there); its local path."""
    local.mkdir(parents=True, exist_ok=True, mode=0o700)
    client = connect(cfg, base_dir)
    try:
        sftp = sftp_login.open_sftp(client, cfg.timeout)
        try:
            return _fetch(sftp, cfg, local, pattern, settle_seconds, now)
        finally:
            sftp.close()
    except (OSError, paramiko.SSHException) as exc:
        raise SourceError(f"SFTP {cfg.host}:{cfg.port}: {cfg.remote_dir}: {exc}") from exc
    finally:
        client.close()


def _fetch(
    sftp: paramiko.SFTPClient, cfg: SftpConfig, local: Path, pattern: str, settle: float, now: float | None
) -> Path:
    entries = [
        (a.filename, float(a.st_mtime or 0), int(a.st_size or 0))
        for a in sftp.listdir_attr(cfg.remote_dir)
        if a.st_mode is not None and stat.S_ISREG(a.st_mode)
    ]
    pick = newest(entries, pattern)
    if pick is None:
        raise SourceError(
            f"SFTP {cfg.host}:{cfg.port}: no export in {cfg.remote_dir} (no file matches {pattern!r})"
        )
    name, mtime, size = pick
    age = (time.time() if now is None else now) - mtime
    if age < settle:
        raise SourceError(
            f"SFTP {cfg.host}:{cfg.port}: the newest export {name} changed {max(age, 0):.0f} s ago, less"
            f" than settle_seconds ({settle:g}): it may still be being written; the run waits for it"
        )
    target = local / name
    if target.is_file() and target.stat().st_size == size:
        log.info("pifu_sftp_already_here", file=name, size=size)
    else:
        remote = f"{cfg.remote_dir.rstrip('/')}/{name}" if cfg.remote_dir else name
        with atomic_file(target) as f:
            sftp.getfo(remote, f)
            got = f.tell()
            if got != size:
                raise SourceError(
                    f"SFTP {cfg.host}:{cfg.port}: {name} changed while it was downloaded"
                    f" ({got} bytes, listed as {size}); the run waits for it"
                )
        os.utime(target, (mtime, mtime))  # the local choice orders by the export's own time
        log.info("pifu_sftp_downloaded", file=name, size=size)
    _prune(local, pattern)
    return target


def _prune(local: Path, pattern: str) -> None:
    """Keep the KEEP newest exports in the local folder; delete the older ones."""
    found = [
        (p.stat().st_mtime, p.name, p)
        for p in local.iterdir()
        if p.is_file() and is_candidate(p.name, pattern)
    ]
    for _, _, p in sorted(found, reverse=True)[KEEP:]:
        p.unlink(missing_ok=True)
