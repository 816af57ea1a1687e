"""A real OpenSSH server (sshd, Debian openssh-server) for the SFTP tests (PIFU pickup, itslearning delivery).

``SshdServer`` makes a temp folder with its own host key (ed25519) and a user key,
writes an sshd_config that listens on 127.0.0.1 only on a free port, lets the current
user in with that key only (the tests run as root: ``PermitRootLogin prohibit-password``),
serves SFTP with ``internal-sftp``, and starts ``sshd -D -e -f CONFIG`` as a child
process. ``known_hosts`` holds the server's real host key; ``wrong_known_hosts`` another
key for the same address. ``stop()`` ends and reaps the process; ``drop()`` kills it with
its open sessions. The SFTP server (OpenSSH's sftp-server, for the key login) logs every open and rename
(``uploads()``, ``renames()``: what reached the server, in order). With ``password_user`` that account
may log in with its password too (``password_user()`` makes one).

``running()`` is the body of a fixture (tests/test_pifu_sftp.py: one server per module).
Skips only when sshd is not installed
(scripts/test.sh installs openssh-server).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SSHD = os.environ.get("BAS_TEST_SSHD", "/usr/sbin/sshd")
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"
SFTP_SERVER = "/usr/lib/openssh/sftp-server"

_CONF = """\
ListenAddress 127.0.0.1
Port {port}
HostKey {tmp}/host_ed25519
PidFile {tmp}/sshd.pid
AuthorizedKeysFile {tmp}/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication {passwords}
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
AllowUsers {users}
Subsystem sftp {sftp}
LogLevel VERBOSE
"""
_RENAME = re.compile(r'rename old "([^"]+)" new "([^"]+)"')
_OPEN_WRITE = re.compile(r'open "([^"]+)" flags [A-Z,]*WRITE')


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


class SshdServer:
    """One sshd on 127.0.0.1 with a throw-away host key and user key."""

    def __init__(self, password_user: str | None = None) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="bas-sshd-"))
        self.port = free_port()
        self.user = getpass.getuser()
        _keygen(self.tmp / "host_ed25519")
        _keygen(self.tmp / "user_ed25519")
        _keygen(self.tmp / "other_ed25519")  # a host key the server does not have
        shutil.copy(self.tmp / "user_ed25519.pub", self.tmp / "authorized_keys")
        self.config = self.tmp / "sshd_config"
        users = " ".join(u for u in (self.user, password_user) if u)
        passwords = "yes" if password_user else "no"
        self.sftp_log = self.tmp / "sftp.log"
        sftp = "internal-sftp"
        if password_user is None and Path(SFTP_SERVER).exists():
            # The SFTP server logs each open and rename to a file of ours: what reached the
            # server, in order. (internal-sftp logs to syslog only; a wrapper runs through the
            # login shell, which the password account has none of.)
            wrapper = self.tmp / "sftp-logged"
            wrapper.write_text(f"#!/bin/sh\nexec {SFTP_SERVER} -e -l INFO 2>>{self.sftp_log}\n")
            wrapper.chmod(0o755)
            sftp = str(wrapper)
        conf = _CONF.format(port=self.port, tmp=self.tmp, users=users, passwords=passwords, sftp=sftp)
        self.config.write_text(conf)
        self.user_key = self.tmp / "user_ed25519"
        self.known_hosts = self.tmp / "known_hosts"
        self.known_hosts.write_text(self._known_line(self.tmp / "host_ed25519.pub"))
        self.wrong_known_hosts = self.tmp / "wrong_known_hosts"
        self.wrong_known_hosts.write_text(self._known_line(self.tmp / "other_ed25519.pub"))
        self.log = self.tmp / "sshd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def _known_line(self, pub: Path) -> str:
        kind, key = pub.read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {key}\n"

    def start(self) -> None:
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
        subprocess.run([SSHD, "-t", "-f", str(self.config)], check=True)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.config)], stdout=out, stderr=out)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {self.log.read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return
            time.sleep(0.05)
        raise RuntimeError(f"sshd did not listen on {self.port}: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def drop(self) -> None:
        """Stop at once, open sessions included, as a server that crashes or loses the network.

        ``stop`` alone leaves the per-connection processes sshd forked serving their
        sessions; these (children of the listener, by /proc) are killed first.
        """
        if self.proc is None:
            return
        for pid in _descendants(self.proc.pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.kill()
        self.proc.wait()
        self.proc = None

    def renames(self) -> list[tuple[str, str]]:
        """(old, new) of every rename the SFTP server logged, in order."""
        return _RENAME.findall(self._sftp_log())

    def uploads(self) -> list[str]:
        """The remote paths the SFTP server opened for writing, in order."""
        return _OPEN_WRITE.findall(self._sftp_log())

    def _sftp_log(self) -> str:
        return self.sftp_log.read_text(errors="replace") if self.sftp_log.exists() else ""

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


def _descendants(pid: int) -> list[int]:
    """The processes below ``pid`` (children first found, then theirs), read from /proc."""
    parents: dict[int, list[int]] = {}
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
            parents.setdefault(int(fields[1]), []).append(int(stat_file.parent.name))
    out, todo = [], [pid]
    while todo:
        kids = parents.get(todo.pop(), [])
        out += kids
        todo += kids
    return out


def password_user() -> Iterator[tuple[str, str]]:
    """A local system account with a random password, for password logins; removed after.

    sshd checks passwords against the system's accounts (``UsePAM no``: /etc/shadow), so
    the test needs a real one: no home, no shell (internal-sftp needs neither). Skips
    unless the tests run as root (they do in CI, scripts/test.sh).
    """
    if os.geteuid() != 0 or not shutil.which("useradd"):
        pytest.skip("password logins need a local account: run the tests as root")
    name, password = "bas-sftp-test", secrets.token_urlsafe(18)
    # An account a killed test run left is reused (its password set again).
    subprocess.run(
        [
            "useradd",
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            name,
        ],
        capture_output=True,
        check=False,
    )
    subprocess.run(["chpasswd"], input=f"{name}:{password}\n", text=True, check=True)
    try:
        yield name, password
    finally:
        subprocess.run(["userdel", name], capture_output=True, check=False)


def remote_folder(tmp: Path) -> Path:
    """The server's folder a test uploads to or downloads from (a fixture's body)."""
    folder = tmp / "remote"
    folder.mkdir()
    return folder


def running(password_user: str | None = None) -> Iterator[SshdServer]:
    """A started server until the generator is closed (for a fixture); skips without sshd."""
    if not Path(SSHD).exists():
        pytest.skip("sshd is not installed (apt-get install openssh-server)")
    server = SshdServer(password_user)
    try:
        server.start()
        yield server
    finally:
        server.cleanup()
