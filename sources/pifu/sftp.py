"""Picking the newest PIFU export up from the SIS's export server over SFTP (paramiko).

The server's host key must be in ``known_hosts_file``: an unknown or changed key refuses
the connection (``RejectPolicy``), never trusted on first use. Login with a private key
or a password, each from a secret file (``provisioner.config.read_secret``: systemd
credentials first, then relative to the config's folder); no agent, no ~/.ssh keys.

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

import io
import os
import stat
import time
from pathlib import Path
from typing import Any

import paramiko
import structlog

from provisioner.config import ConfigError, read_secret
from provisioner.source_config import SftpConfig
from sources.base import SourceError
from sources.pifu.files import atomic_file, is_candidate, newest

log = structlog.get_logger("bas.source.pifu")

KEEP = 3  # exports kept in the local folder: the one read now and two before it, for inspection


def _private_key(text: str) -> paramiko.PKey:
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(text + "\n"))
        except paramiko.SSHException:
            continue
    raise SourceError("source.sftp.private_key_file: not an unencrypted Ed25519, ECDSA or RSA private key")


def _credentials(cfg: SftpConfig, base_dir: str) -> dict[str, Any]:
    try:
        if cfg.private_key_file is not None:
            key = read_secret(cfg.private_key_file, base_dir, "source.sftp.private_key_file")
            return {"pkey": _private_key(key)}
        assert cfg.password_file is not None
        return {"password": read_secret(cfg.password_file, base_dir, "source.sftp.password_file")}
    except ConfigError as exc:
        raise SourceError(str(exc)) from exc


def connect(cfg: SftpConfig, base_dir: str) -> paramiko.SSHClient:
    """A logged-in SSH client whose server presented the host key known_hosts_file has for it."""
    known = Path(cfg.known_hosts_file)
    known = known if known.is_absolute() else Path(base_dir) / known
    client = paramiko.SSHClient()
    try:
        client.load_host_keys(str(known))
    except (OSError, paramiko.SSHException) as exc:
        raise SourceError(f"source.sftp.known_hosts_file: cannot read {known}: {exc}") from exc
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    where = f"{cfg.username}@{cfg.host}:{cfg.port}"
    try:
        client.connect(
            cfg.host,
            port=cfg.port,
            username=cfg.username,
            timeout=cfg.timeout,
            banner_timeout=cfg.timeout,
            auth_timeout=cfg.timeout,
            allow_agent=False,
            look_for_keys=False,
            **_credentials(cfg, base_dir),
        )
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise SourceError(
            f"SFTP {where}: refused: the server's host key ({exc.key.get_name()}) is not the one"
            f" {known} has for it (changed key or a man in the middle)"
        ) from exc
    except paramiko.AuthenticationException as exc:
        client.close()
        raise SourceError(f"SFTP {where}: login refused ({exc})") from exc
    except paramiko.SSHException as exc:
        client.close()
        text = str(exc)
        if "not found in known_hosts" in text:
            text = f"refused: the server's host key is not in {known} (add it there after checking it)"
        raise SourceError(f"SFTP {where}: {text}") from exc
    except OSError as exc:  # TimeoutError included
        client.close()
        raise SourceError(f"SFTP {where}: cannot connect: {exc}") from exc
    return client


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
        sftp = client.open_sftp()
        sftp.get_channel().settimeout(cfg.timeout)
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
