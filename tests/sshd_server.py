"""A real OpenSSH server (sshd, Debian openssh-server) for the PIFU SFTP pickup tests.

``SshdServer`` makes a temp folder with its own host key (ed25519) and a user key,
writes an sshd_config that listens on 127.0.0.1 only on a free port, lets the current
user in with that key only (the tests run as root: ``PermitRootLogin prohibit-password``),
serves SFTP with ``internal-sftp``, and starts ``sshd -D -e -f CONFIG`` as a child
process. ``known_hosts`` holds the server's real host key; ``wrong_known_hosts`` another
key for the same address. ``stop()`` ends and reaps the process.

``running()`` is the body of a fixture (tests/test_pifu_sftp.py: one server per module).
Skips only when sshd is not installed
(scripts/test.sh installs openssh-server).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SSHD = os.environ.get("BAS_TEST_SSHD", "/usr/sbin/sshd")
SSH_KEYGEN = shutil.which("ssh-keygen") or "/usr/bin/ssh-keygen"

_CONF = """\
ListenAddress 127.0.0.1
Port {port}
HostKey {tmp}/host_ed25519
PidFile {tmp}/sshd.pid
AuthorizedKeysFile {tmp}/authorized_keys
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
AllowUsers {user}
Subsystem sftp internal-sftp
LogLevel VERBOSE
"""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _keygen(path: Path) -> None:
    subprocess.run([SSH_KEYGEN, "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)


class SshdServer:
    """One sshd on 127.0.0.1 with a throw-away host key and user key."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="bas-sshd-"))
        self.port = free_port()
        self.user = getpass.getuser()
        _keygen(self.tmp / "host_ed25519")
        _keygen(self.tmp / "user_ed25519")
        _keygen(self.tmp / "other_ed25519")  # a host key the server does not have
        shutil.copy(self.tmp / "user_ed25519.pub", self.tmp / "authorized_keys")
        self.config = self.tmp / "sshd_config"
        self.config.write_text(_CONF.format(port=self.port, tmp=self.tmp, user=self.user))
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

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)


def running() -> Iterator[SshdServer]:
    """A started server until the generator is closed (for a fixture); skips without sshd."""
    if not Path(SSHD).exists():
        pytest.skip("sshd is not installed (apt-get install openssh-server)")
    server = SshdServer()
    try:
        server.start()
        yield server
    finally:
        server.cleanup()
