"""A real Samba AD domain controller for the AD connector tests.

``start_dc`` gives a running DC on 127.0.0.1 (LDAP 389, LDAPS 636) in a folder of its
own. Provisioning a domain takes ~15 s, so a provisioned template (started once, so
its self-signed TLS CA and certificate exist too) is cached in
``$BAS_SAMBA_CACHE`` (default /var/tmp/bas-test-samba) per Samba version, and each
session copies it and rewrites the paths in its smb.conf (the databases hold no
absolute paths). Samba runs as a child process (``samba -i -M single``) with only the
LDAP service, and is stopped and reaped by ``stop``.

Samba always listens on 389 and 636, so only one DC can run on a machine: ``start_dc``
fails clearly when something else holds those ports. Strong authentication stays at
Samba's default (simple binds only over TLS), and clients validate the server
certificate against the DC's CA: its certificate names the DC's host name
(``<NETBIOS>.<realm>``), not 127.0.0.1, so clients pass that name as the expected
name (``tls_server_name``).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import ssl
import stat
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

REALM = "BAS.TEST"
DOMAIN = "BAS"
HOST = "dc1"
DOMAIN_DN = "DC=bas,DC=test"
ADMIN_DN = f"CN=Administrator,CN=Users,{DOMAIN_DN}"
ADMIN_PASSWORD = "Adm1n-Pass-Word!"  # noqa: S105 (a throw-away test domain)
LDAP_PORTS = (389, 636)


class SambaUnavailable(Exception):
    """Samba cannot run here (not installed, not root); the tests skip with this reason."""


@dataclass
class SambaDC:
    """A running DC and what clients need to reach it."""

    directory: Path
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    tls_name: str = f"{HOST}.{REALM.lower()}"
    url: str = "ldaps://127.0.0.1:636"
    domain_dn: str = DOMAIN_DN
    admin_dn: str = ADMIN_DN
    admin_password: str = ADMIN_PASSWORD
    started_in: float = 0.0
    provisioned_in: float | None = None  # seconds, when this session had to build the template
    _stopped: bool = field(default=False, repr=False)

    @property
    def ca_file(self) -> Path:
        """The DC's self-signed CA certificate."""
        return self.directory / "private" / "tls" / "ca.pem"

    def stop(self) -> None:
        """Stop samba and reap it (SIGTERM, then SIGKILL after 15 s)."""
        if self._stopped or self.proc is None:
            return
        self._stopped = True
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def check_can_run() -> None:
    """Raise SambaUnavailable when samba is missing or we are not root."""
    for tool in ("samba", "samba-tool"):
        if shutil.which(tool) is None and not Path("/usr/sbin", tool).exists():
            raise SambaUnavailable(f"{tool} is not installed (apt-get install samba samba-ad-dc)")
    if os.geteuid() != 0:
        raise SambaUnavailable("a Samba DC needs root (it binds ports 389/636)")


def _tool(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


def ports_in_use() -> list[int]:
    """The LDAP ports on 127.0.0.1 something already listens on."""
    busy = []
    for port in LDAP_PORTS:
        with socket.socket() as s:
            s.settimeout(1)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                busy.append(port)
    return busy


def _samba_version() -> str:
    out = subprocess.run([_tool("samba"), "--version"], capture_output=True, text=True, timeout=30)
    return "".join(ch if ch.isalnum() or ch in ".-" else "_" for ch in out.stdout.strip()) or "unknown"


def _conf(directory: Path) -> Path:
    return directory / "etc" / "smb.conf"


def _provision(target: Path) -> None:
    target.mkdir(parents=True)
    empty = target / "empty.conf"
    empty.write_text("", encoding="utf-8")
    cmd = [
        _tool("samba-tool"),
        "domain",
        "provision",
        "-s",
        str(empty),
        f"--realm={REALM}",
        f"--domain={DOMAIN}",
        f"--host-name={HOST}",
        "--server-role=dc",
        "--dns-backend=NONE",
        f"--targetdir={target}",
        f"--adminpass={ADMIN_PASSWORD}",
        "--option=interfaces=127.0.0.1",
        "--option=bind interfaces only=yes",
        "--option=server services=ldap",
    ]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        raise RuntimeError(f"samba-tool domain provision failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")


def _start(directory: Path, log_path: Path, wait: float = 90) -> subprocess.Popen:
    busy = ports_in_use()
    if busy:
        raise RuntimeError(
            f"cannot start the test Samba DC: port(s) {busy} on 127.0.0.1 are in use by another "
            "process (another Samba or slapd?); only one DC can run on this machine"
        )
    logf = open(log_path, "ab")  # noqa: SIM115 (kept open for the child's lifetime)
    proc = subprocess.Popen(
        [_tool("samba"), "-i", "-M", "single", "-s", str(_conf(directory))],
        stdout=logf,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
    logf.close()
    deadline = time.monotonic() + wait
    ca = directory / "private" / "tls" / "ca.pem"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"samba exited with {proc.returncode}; log:\n{_tail(log_path)}")
        if ca.exists() and _ldaps_answers(ca):
            return proc
        time.sleep(0.3)
    proc.terminate()
    proc.wait(timeout=15)
    raise RuntimeError(
        f"samba did not answer LDAPS on 127.0.0.1:636 within {wait:.0f} s; log:\n{_tail(log_path)}"
    )


def _ldaps_answers(ca: Path) -> bool:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = False  # only "does it answer TLS with this CA": names are checked by clients
    try:
        with (
            socket.create_connection(("127.0.0.1", 636), timeout=2) as raw,
            ctx.wrap_socket(raw) as s,
        ):
            return s.version() is not None
    except (OSError, ssl.SSLError):
        return False


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return "(no log)"


def _template(cache: Path) -> tuple[Path, float | None]:
    """The cached provisioned template (built under a file lock when missing)."""
    cache.mkdir(parents=True, exist_ok=True)
    tpl = cache / f"template-{_samba_version()}"
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (tpl / ".complete").exists():
            return tpl, None
        shutil.rmtree(tpl, ignore_errors=True)
        t0 = time.monotonic()
        _provision(tpl)
        # Start once so Samba makes its TLS CA and certificate; copies reuse them.
        proc = _start(tpl, cache / "template.log")
        proc.terminate()
        proc.wait(timeout=30)
        (tpl / ".complete").write_text("ok\n", encoding="utf-8")
        return tpl, time.monotonic() - t0


def _sockets(folder: str, names: list[str]) -> set[str]:
    """Unix sockets a stopped Samba left behind: not copied (each DC makes its own)."""
    out = set()
    for n in names:
        with contextlib.suppress(OSError):
            if stat.S_ISSOCK(os.lstat(os.path.join(folder, n)).st_mode):
                out.add(n)
    return out


def start_dc(workdir: Path) -> SambaDC:
    """A running DC in ``workdir`` (copied from the cached template)."""
    check_can_run()
    cache = Path(os.environ.get("BAS_SAMBA_CACHE", "/var/tmp/bas-test-samba"))
    tpl, built = _template(cache)
    target = workdir / "dc"
    shutil.copytree(tpl, target, symlinks=True, ignore=_sockets)
    conf = _conf(target)
    text = conf.read_text(encoding="utf-8").replace(str(tpl), str(target))
    # A replaced password stops working at once (Samba, like AD, otherwise accepts the
    # previous one for an hour: the password reset tests prove the old one is refused).
    text = text.replace("[global]\n", "[global]\n\told password allowed period = 0\n", 1)
    conf.write_text(text, encoding="utf-8")
    t0 = time.monotonic()
    log_path = workdir / "samba.log"
    proc = _start(target, log_path)
    return SambaDC(target, proc, log_path, started_in=time.monotonic() - t0, provisioned_in=built)
