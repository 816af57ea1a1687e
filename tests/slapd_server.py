"""A real OpenLDAP server (slapd) for the Feide LDAP tests, run as a child process.

``SlapdServer`` writes a slapd.conf into a temp folder (core, cosine and inetorgperson
from /etc/ldap/schema; the project's eduPerson, eduOrg and norEdu schemas from
config/schema), loads the suffix entry with slapadd, and starts ``slapd -d 0`` on a
free port of 127.0.0.1 only. It answers on ``url`` as ``ADMIN_DN`` / ``ADMIN_PASSWORD``
(the rootdn). The monitor backend counts operations, so a test can prove on the
server side that a run sent no writes. ``stop()`` ends and reaps the process; a stopped
server can be started again on the same port with its data.

Fixtures: ``slapd`` (one server for the session; each test works under its own base DN
below ``SUFFIX``) and ``slapd_factory`` (private servers a test may stop and start).
Only skips when slapd is not installed (scripts/test.sh installs it).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

SLAPD = os.environ.get("BAS_TEST_SLAPD", "/usr/sbin/slapd")
SLAPADD = os.environ.get("BAS_TEST_SLAPADD", "/usr/sbin/slapadd")
SYSTEM_SCHEMA = Path("/etc/ldap/schema")
PROJECT_SCHEMA = Path(__file__).resolve().parent.parent / "config" / "schema"
MODULE_PATH = "/usr/lib/ldap"

SUFFIX = "dc=test,dc=no"
ADMIN_DN = "cn=admin,dc=test,dc=no"
ADMIN_PASSWORD = "slapd-test-secret"  # a throw-away server on 127.0.0.1 only

_CONF = """\
include {system}/core.schema
include {system}/cosine.schema
include {system}/inetorgperson.schema
include {project}/eduperson.schema
include {project}/eduorg.schema
include {project}/norEdu.schema
pidfile {tmp}/slapd.pid
argsfile {tmp}/slapd.args
{modules}
database monitor

database mdb
suffix "{suffix}"
rootdn "{admin}"
rootpw {password}
directory {tmp}/db
maxsize 268435456
dbnosync
index objectClass eq
index entryUUID eq
index uid eq
"""

_BASE_LDIF = """\
dn: {suffix}
objectClass: top
objectClass: dcObject
objectClass: organization
dc: test
o: BAS test suffix

"""


def slapd_missing() -> str | None:
    """Why the tests cannot run a slapd here, or None when they can."""
    for tool in (SLAPD, SLAPADD):
        if not os.access(tool, os.X_OK):
            return f"{tool} not installed (apt-get install slapd ldap-utils; scripts/test.sh does it)"
    return None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _has_module(name: str) -> bool:
    return Path(MODULE_PATH, f"{name}.la").exists() or Path(MODULE_PATH, f"{name}.so").exists()


class SlapdServer:
    """One slapd child process with an mdb database under ``SUFFIX``."""

    def __init__(self, tmp: Path, tls: bool = False, suffix: str = SUFFIX, load_base: bool = True) -> None:
        """``suffix`` other than SUFFIX (with its rootdn ``cn=admin,<suffix>``) and no base
        entry (``load_base=False``) give an empty database for a test to bulk-load itself."""
        if load_base and suffix != SUFFIX:
            raise ValueError("only SUFFIX has a base entry to load")
        self.tmp = tmp
        self.suffix = suffix
        self.admin = ADMIN_DN if suffix == SUFFIX else f"cn=admin,{suffix}"
        self.port = _free_port()
        self.url = f"ldap://127.0.0.1:{self.port}"
        self.tls_port = _free_port() if tls else None
        self.ldaps_url = f"ldaps://127.0.0.1:{self.tls_port}" if tls else None
        self.ca_file: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        (tmp / "db").mkdir(parents=True, exist_ok=True)
        # back_mdb is a loadable module on Debian; a build with it compiled in needs no line.
        modules = f"modulepath {MODULE_PATH}\nmoduleload back_mdb" if _has_module("back_mdb") else ""
        conf = _CONF.format(
            system=SYSTEM_SCHEMA,
            project=PROJECT_SCHEMA,
            tmp=tmp,
            modules=modules,
            suffix=suffix,
            admin=self.admin,
            password=ADMIN_PASSWORD,
        )
        if tls:
            self.ca_file, cert, key = _make_certs(tmp / "tls")
            tls_conf = (
                f"TLSCACertificateFile {self.ca_file}\n"
                f"TLSCertificateFile {cert}\n"
                f"TLSCertificateKeyFile {key}\n"
            )
            conf = conf.replace("database monitor", tls_conf + "database monitor", 1)
        self.conf = tmp / "slapd.conf"
        self.conf.write_text(conf, encoding="utf-8")
        if load_base:
            self._load_base()

    def _load_base(self) -> None:
        """The suffix entry, added offline with slapadd."""
        base = self.tmp / "base.ldif"
        base.write_text(_BASE_LDIF.format(suffix=SUFFIX), encoding="utf-8")
        out = self.slapadd(base)
        if out.returncode != 0:
            raise RuntimeError(f"slapadd failed ({out.returncode}): {out.stderr.strip()}")

    def slapadd(self, ldif: Path) -> subprocess.CompletedProcess[str]:
        """Load an LDIF file offline into the database (slapd must not be running)."""
        assert self.proc is None, "slapadd needs slapd stopped"
        return subprocess.run(
            [SLAPADD, "-f", str(self.conf), "-b", self.suffix, "-l", str(ldif)],
            capture_output=True,
            text=True,
            timeout=300,
        )

    def start(self, timeout: float = 20.0) -> None:
        """Start slapd in the foreground (-d 0) and wait until it answers on its port."""
        if self.proc is not None:
            return
        self.proc = subprocess.Popen(
            [SLAPD, "-d", "0", "-f", str(self.conf), "-h", " ".join(u + "/" for u in self.urls)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                self.proc = None
                raise RuntimeError(f"slapd exited at start: {err.strip()[-2000:]}")
            if self._answers():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"slapd did not answer on {self.url} within {timeout} s")

    def _answers(self) -> bool:
        """True when an anonymous search of the root DSE succeeds."""
        from ldap3 import BASE, Connection, Server

        try:
            conn = Connection(Server(self.url, connect_timeout=1), receive_timeout=2)
            conn.open()
            ok = conn.search("", "(objectClass=*)", BASE, attributes=["namingContexts"])
            conn.unbind()
            return bool(ok)
        except Exception:
            return False

    def stop(self) -> None:
        """Stop slapd (SIGTERM, then SIGKILL) and reap it; the data stays for a restart."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stderr:
            proc.stderr.close()

    @property
    def client(self) -> dict[str, str | bool]:
        """Feide target settings to reach this server as BAS must: ldap:// with StartTLS."""
        assert self.ca_file is not None, "started without TLS"
        return {"url": self.url, "start_tls": True, "ca_file": str(self.ca_file)}

    @property
    def urls(self) -> list[str]:
        """Every URL slapd listens on (ldap://, and ldaps:// with TLS)."""
        return [self.url, *([self.ldaps_url] if self.ldaps_url else [])]

    @property
    def running(self) -> bool:
        """True while the child process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def connect(self):  # -> ldap3.Connection
        """A bound admin connection (for tests to look at or change the server directly)."""
        from ldap3 import Connection, Server

        return Connection(Server(self.url, connect_timeout=5), self.admin, ADMIN_PASSWORD, auto_bind=True)

    def write_ops(self, ops: tuple[str, ...] = ("Add", "Modify", "Modrdn", "Delete")) -> int:
        """Write operations the server completed (refused ones too) since it started."""
        from ldap3 import BASE, Connection, Server

        conn = Connection(Server(self.url, connect_timeout=5), auto_bind=True)
        total = 0
        for op in ops:
            conn.search(f"cn={op},cn=Operations,cn=Monitor", "(objectClass=*)", BASE, attributes=["+"])
            total += int(conn.entries[0]["monitorOpCompleted"].value)
        conn.unbind()
        return total


def _make_certs(folder: Path, ca_pair: tuple[Path, Path] | None = None) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1 signed by it (openssl CLI).

    ``ca_pair`` (a CA certificate and its key) signs with that CA instead of a new one: a
    browser started once per session trusts one CA, and every server it visits uses it."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, cert = (
        folder / n for n in ("ca.key", "ca.pem", "server.key", "server.csr", "server.pem")
    )
    if ca_pair is not None:
        shutil.copyfile(ca_pair[0], ca)
        shutil.copyfile(ca_pair[1], ca_key)
    ext = folder / "ext.cnf"
    ext.write_text("subjectAltName = IP:127.0.0.1, DNS:localhost\n", encoding="utf-8")
    new_ca = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2",
              "-subj", "/CN=BAS test CA"]  # fmt: skip
    steps = [] if ca_pair is not None else [new_ca]
    steps += [
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=127.0.0.1"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", cert,
         "-days", "2", "-extfile", ext],
    ]  # fmt: skip
    for args in steps:
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True, timeout=60)
    if ca_pair is not None:  # send the whole chain: Chromium's SPKI trust needs the CA in it
        cert.write_text(cert.read_text(encoding="ascii") + ca.read_text(encoding="ascii"), encoding="ascii")
    return ca, cert, key


def https_server(
    folder: Path, handler: type[BaseHTTPRequestHandler], ca_pair: tuple[Path, Path] | None = None
) -> tuple[ThreadingHTTPServer, Path]:
    """An HTTPS server on a free 127.0.0.1 port with a throw-away CA (not yet serving), and the CA file.

    ``ca_pair``: sign the server's certificate with this CA (certificate, key) instead."""
    ca, cert, key = _make_certs(folder, ca_pair)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    return server, ca


@pytest.fixture(scope="session")
def slapd() -> Iterator[SlapdServer]:
    """One slapd for the whole session (tests use their own base DN below SUFFIX)."""
    why = slapd_missing()
    if why:
        pytest.skip(why)
    tmp = Path(tempfile.mkdtemp(prefix="bas-slapd-"))
    server = SlapdServer(tmp, tls=True)  # BAS talks to LDAP only over TLS
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture()
def slapd_factory(tmp_path: Path) -> Iterator[Callable[..., SlapdServer]]:
    """Private slapd servers for one test (to stop and restart); all stopped at the end."""
    why = slapd_missing()
    if why:
        pytest.skip(why)
    made: list[SlapdServer] = []

    def make(tls: bool = True) -> SlapdServer:
        server = SlapdServer(tmp_path / f"slapd{len(made)}", tls=tls)
        made.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        for server in made:
            server.stop()
