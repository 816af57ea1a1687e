"""A running `bas web` on the demo's state, and the local OpenID Connect provider it logs in through.

Shared by the console's tests (tests/test_web*.py, tests/test_browser_web*.py). ``start_console``
runs `bas demo` into a folder, adds a ``[web]`` table with these users' roles, and starts
`bas web` as a subprocess on a free 127.0.0.1 port with its own TLS; requests (``Console.login``)
or a real browser (tests/browser.py) then log in through tests/fake_oidc.py.

The users (their ``sub`` is the user id the roles name; the teacher's is
``<BAS username>@demo.kommune.no``, as Feide's eduPersonPrincipalName):

- ``OWNER``: an owner admin (everything).
- ``SCHOOL``: school admin of ``SCHOOL_ID`` (the demo's first school); ``OTHER_SCHOOL``: of
  ``OTHER_SCHOOL_ID`` only. Tests use the two to try each other's persons and runs.
- ``TEACHER``: a demo teacher who teaches at least one group with pupils (found in the
  demo's state), matched as a teacher by ``eduPersonAffiliation`` = faculty.
- ``STRANGER``: logs in at the provider but has no role in BAS.

``ca_pair`` (tests/browser.py's ``test_ca``) signs both servers' certificates with the CA
the browser trusts.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
import sqlalchemy as sa

from tests.fake_oidc import FakeOidc
from tests.slapd_server import _make_certs
from tests.test_cli import bas

OWNER, SCHOOL, OTHER_SCHOOL, TEACHER, STRANGER = "ola.owner", "siri.school", "per.other", "teacher", "ukjent"
SCHOOL_ID, OTHER_SCHOOL_ID = "SK001", "SK002"
REALM = "demo.kommune.no"
PASSWORD = "pw"


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Console:
    """A running `bas web`, the provider it logs in through, and the demo folder behind it."""

    url: str
    ca: Path  # the CA that signed the console's certificate
    fake: FakeOidc
    cfg: Path  # the demo's bas.toml, with [web]
    demo: Path  # the demo folder (state.sqlite, sis.sqlite)
    teacher_username: str  # the BAS username of TEACHER

    @property
    def state_url(self) -> str:
        """The demo state store's SQLAlchemy URL."""
        return f"sqlite:///{self.demo / 'state.sqlite'}"

    def client(self) -> requests.Session:
        """A requests session that trusts the console's CA and ignores proxy settings."""
        s = requests.Session()
        s.trust_env = False
        s.verify = str(self.ca)
        return s

    def authorize(self, s: requests.Session, user: str | None) -> tuple[str, requests.Response]:
        """GET /login and the provider's /authorize: the authorize URL and the provider's redirect."""
        r = s.get(self.url + "/login", allow_redirects=False)
        assert r.status_code == 303, r.text
        auth_url = r.headers["location"]
        self.fake.preselect(user)
        r2 = s.get(auth_url, allow_redirects=False, verify=str(self.fake.ca_file))
        return auth_url, r2

    def login(self, user: str) -> tuple[requests.Session, requests.Response]:
        """Log ``user`` in; (the session, the console's answer to the callback)."""
        s = self.client()
        _, r = self.authorize(s, user)
        assert r.status_code in (302, 303), r.text
        back = s.get(r.headers["location"], allow_redirects=False)
        return s, back


def csrf(html: str) -> str:
    """The CSRF token of the first form on a page."""
    marker = 'name="csrf_token" value="'
    i = html.index(marker) + len(marker)
    return html[i : html.index('"', i)]


def demo_teacher(state_db: Path) -> str:
    """The username of a demo teacher at SCHOOL_ID who teaches a group with pupils."""
    engine = sa.create_engine(f"sqlite:///{state_db}")
    try:
        with engine.connect() as c:
            row = c.execute(
                sa.text(
                    "SELECT p.username FROM dir_members t"
                    " JOIN dir_members s ON s.group_key = t.group_key"
                    " JOIN dir_groups g ON g.group_key = t.group_key"
                    " JOIN dir_persons p ON p.person_id = t.person_id"
                    " WHERE t.role = 'teacher' AND s.role = 'student' AND g.school_id = :school"
                    " ORDER BY p.username LIMIT 1"
                ),
                {"school": SCHOOL_ID},
            ).first()
    finally:
        engine.dispose()
    assert row is not None, "the demo has no teacher with pupils"
    return str(row[0])


def _web_toml(port: int, url: str, cert: Path, key: Path, fake: FakeOidc, secret: Path) -> str:
    return f"""
[web]
listen = "127.0.0.1:{port}"
public_url = "{url}"
tls_cert_file = "{cert}"
tls_key_file = "{key}"

[web.oidc]
issuer = "{fake.issuer}"
client_id = "bas-web"
client_secret_file = "{secret}"
ca_file = "{fake.ca_file}"

[web.roles]
owner_admins = ["sub-owner"]
school_admins = {{ "sub-school" = ["{SCHOOL_ID}"], "sub-other" = ["{OTHER_SCHOOL_ID}"] }}
teachers = {{ claim = "eduPersonAffiliation", values = ["faculty"] }}
"""


@contextmanager
def start_console(
    folder: Path, ca_pair: tuple[Path, Path] | None = None, extra_toml: str = ""
) -> Iterator[Console]:
    """Demo, provider and `bas web` in ``folder``; everything stopped and removed at the end."""
    demo = folder / "demo"
    bas("demo", "--dir", str(demo))
    teacher = demo_teacher(demo / "state.sqlite")
    fake = FakeOidc(folder / "oidc", ca_pair=ca_pair)
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    fake.add_user(OWNER, PASSWORD, name="Ola Owner", email="ola@example.org", sub="sub-owner")
    fake.add_user(SCHOOL, PASSWORD, name="Siri School", email="siri@example.org", sub="sub-school")
    fake.add_user(OTHER_SCHOOL, PASSWORD, name="Per Other", email="per@example.org", sub="sub-other")
    fake.add_user(
        TEACHER,
        PASSWORD,
        name="Teacher",
        email="teacher@example.org",
        sub=f"{teacher}@{REALM}",  # as eduPersonPrincipalName: the BAS username at the realm
        eduPersonAffiliation=["faculty", "member", "employee"],
    )
    fake.add_user(STRANGER, PASSWORD, name="Ukjent", email="u@example.org", sub="sub-unknown")
    client = fake.add_client(
        "bas-web", [url + "/auth/callback"], post_logout_redirect_uris=[url + "/logged-out"]
    )
    secret = folder / "secret"
    secret.write_text(client.client_secret, encoding="utf-8")
    ca, cert, key = _make_certs(folder / "tls", ca_pair)
    cfg = demo / "bas.toml"
    cfg.write_text(
        cfg.read_text(encoding="utf-8") + _web_toml(port, url, cert, key, fake, secret) + extra_toml,
        encoding="utf-8",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "provisioner.cli", "--config", str(cfg), "web"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    c = Console(url, ca, fake, cfg, demo, teacher)
    try:
        _wait(c, proc)
        yield c
    finally:
        try:
            stop(proc)
        finally:
            fake.close()
            shutil.rmtree(folder, ignore_errors=True)


def stop(proc: subprocess.Popen) -> None:
    """Stop a `bas web` started by a test: SIGTERM, then SIGKILL if it has not ended in 30 s
    (a loaded CI machine), so a teardown never fails before it has cleaned up."""
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait(c: Console, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(
                f"bas web exited {proc.returncode}: {proc.stdout.read() if proc.stdout else ''}"
            )
        try:
            c.client().get(c.url + "/logged-out", timeout=2)
            return
        except requests.ConnectionError:
            time.sleep(0.2)
    raise AssertionError("bas web did not answer within 60 s")
