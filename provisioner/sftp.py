"""Logging in to an SFTP server with its host key pinned (paramiko): shared by sources and targets.

Owns the one way BAS opens an SSH session, whoever asks: the PIFU source picking its
export up (sources/pifu/sftp.py) and the itslearning target delivering its files
(connectors/itslearning/delivery.py). The server's host key is pinned, never trusted on
first use: either it is in ``known_hosts_file`` (paramiko's ``RejectPolicy``: unknown or
changed refuses), or its SHA256 fingerprint is ``host_key_fingerprint`` (as
``ssh-keygen -lf`` prints it). Login with a private key or a password, each from a
secret file (``provisioner.config.read_secret``: systemd credentials first, then
relative to the config's folder); no agent, no ~/.ssh keys.

Errors are ``SftpError`` with ``fatal`` set when trying again cannot help (a changed or
unknown host key, a refused login, a missing or unreadable secret or known_hosts file)
and the message naming the setting (``key`` is the table, e.g. ``source.sftp``); a
refused connection or a timeout is not fatal. Callers turn them into their own layer's
errors.
"""

from __future__ import annotations

import errno
import io
import socket
from pathlib import Path
from typing import Any

import paramiko

from provisioner.config import ConfigError, read_secret
from provisioner.source_config import SftpConfig


class SftpError(Exception):
    """Logging in or talking to the SFTP server failed; ``fatal``: retrying cannot help."""

    def __init__(self, message: str, *, fatal: bool) -> None:
        super().__init__(message)
        self.fatal = fatal


def private_key(text: str, key: str) -> paramiko.PKey:
    """The private key in ``text`` (unencrypted Ed25519, ECDSA or RSA); ``key`` names the setting."""
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(text + "\n"))
        except paramiko.SSHException:
            continue
    raise SftpError(f"{key}: not an unencrypted Ed25519, ECDSA or RSA private key", fatal=True)


def _credentials(cfg: SftpConfig, base_dir: str, key: str) -> dict[str, Any]:
    try:
        if cfg.private_key_file is not None:
            text = read_secret(cfg.private_key_file, base_dir, f"{key}.private_key_file")
            return {"pkey": private_key(text, f"{key}.private_key_file")}
        assert cfg.password_file is not None  # the model requires one of the two
        return {"password": read_secret(cfg.password_file, base_dir, f"{key}.password_file")}
    except ConfigError as exc:
        raise SftpError(str(exc), fatal=True) from exc


class _Fingerprint(paramiko.MissingHostKeyPolicy):
    """Accept only a host key whose SHA256 fingerprint is the pinned one."""

    def __init__(self, pinned: str, key: str) -> None:
        self.pinned = pinned.strip().removeprefix("SHA256:").rstrip("=")
        self.key = key

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        got = key.fingerprint.removeprefix("SHA256:")
        if got != self.pinned:
            raise SftpError(
                f"{hostname}: refused: the server's host key ({key.get_name()} SHA256:{got}) is not the one"
                f" {self.key}.host_key_fingerprint pins (changed key or a man in the middle)",
                fatal=True,
            )


def _pin(client: paramiko.SSHClient, cfg: SftpConfig, base_dir: str, key: str) -> str:
    """Make the client refuse every host key but the pinned one; returns how it is pinned (for messages)."""
    if cfg.host_key_fingerprint is not None:
        client.set_missing_host_key_policy(_Fingerprint(cfg.host_key_fingerprint, key))
        return f"{key}.host_key_fingerprint"
    assert cfg.known_hosts_file is not None  # the model requires one of the two
    known = Path(cfg.known_hosts_file)
    known = known if known.is_absolute() else Path(base_dir) / known
    try:
        client.load_host_keys(str(known))
    except (OSError, paramiko.SSHException) as exc:
        raise SftpError(f"{key}.known_hosts_file: cannot read {known}: {exc}", fatal=True) from exc
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    return f"{key}.known_hosts_file ({known})"


def connect(cfg: SftpConfig, base_dir: str, key: str) -> paramiko.SSHClient:
    """A logged-in SSH client whose server presented the pinned host key; SftpError otherwise."""
    client = paramiko.SSHClient()
    where = f"SFTP {cfg.username}@{cfg.host}:{cfg.port}"
    try:
        pinned = _pin(client, cfg, base_dir, key)
        client.connect(
            cfg.host,
            port=cfg.port,
            username=cfg.username,
            timeout=cfg.timeout,
            banner_timeout=cfg.timeout,
            auth_timeout=cfg.timeout,
            allow_agent=False,
            look_for_keys=False,
            **_credentials(cfg, base_dir, key),
        )
    except SftpError as exc:
        client.close()
        raise SftpError(f"{where}: {exc}", fatal=exc.fatal) from exc
    except paramiko.BadHostKeyException as exc:
        client.close()
        raise SftpError(
            f"{where}: refused: the server's host key ({exc.key.get_name()}) is not the one"
            f" {pinned} has for it (changed key or a man in the middle)",
            fatal=True,
        ) from exc
    except paramiko.AuthenticationException as exc:
        client.close()
        login = f"{key}.private_key_file" if cfg.private_key_file else f"{key}.password_file"
        text = f"{where}: login refused ({exc}); check {key}.username and {login}"
        raise SftpError(text, fatal=True) from exc
    except paramiko.SSHException as exc:
        client.close()
        text = str(exc)
        if "not found in known_hosts" in text:
            text = f"refused: the server's host key is not in {pinned} (add it there after checking it)"
            raise SftpError(f"{where}: {text}", fatal=True) from exc
        raise SftpError(f"{where}: {text}", fatal=False) from exc
    except (OSError, EOFError) as exc:  # refused, unreachable, TimeoutError included
        client.close()
        raise SftpError(f"{where}: cannot connect: {exc}", fatal=False) from exc
    return client


def open_sftp(client: paramiko.SSHClient, timeout: float) -> paramiko.SFTPClient:
    """The SFTP channel of a logged-in client, each request timing out after ``timeout`` seconds."""
    sftp = client.open_sftp()
    sftp.get_channel().settimeout(timeout)
    return sftp


def lost(exc: BaseException) -> bool:
    """True when ``exc`` is the connection failing (dropped, timed out), not the server refusing a request."""
    if isinstance(exc, (EOFError, socket.timeout, ConnectionError, paramiko.SSHException)):
        return True
    return isinstance(exc, OSError) and exc.errno in (None, errno.ETIMEDOUT, errno.ECONNRESET, errno.EPIPE)
