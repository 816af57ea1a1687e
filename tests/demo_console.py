"""The demo's web console for a person to try: the local OpenID Connect provider and `bas web`.

``python -m tests.demo_console --dir bas-demo [--port 8443]`` (what scripts/demo-web.sh runs)
takes a folder `bas demo` made and:

- keeps a throw-away CA in ``<dir>/web-tls/`` (made once and reused, so the browser or the
  system trusts it once; keys 0600, folder 0700) and signs both servers' certificates with it
  (for 127.0.0.1 and localhost);
- starts tests/fake_oidc.py on a free 127.0.0.1 port with three users, each with a new random
  password per start: an owner admin, a school admin of ``SCHOOL_ID`` and a demo teacher who
  teaches pupils there (tests/webenv.py's ``demo_teacher``: they log in as their own BAS
  username). Users are named by ``eduPersonPrincipalName``, as with Feide;
- writes ``<dir>/web.toml``: the demo's bas.toml plus a ``[web]`` table for them (bas.toml
  itself is left alone, so `bas demo` reruns as before; web.toml is rewritten on every start)
  and the client secret in ``<dir>/web-oidc.secret`` (0600);
- runs `bas --config <dir>/web.toml web` and prints the URL, the CA file and the logins;
  Ctrl+C (or SIGTERM) stops both servers.

tests/test_demo_console.py starts the same pieces through ``demo_console`` and logs in.
Nothing here is a real secret: the provider, its passwords and the CA live as long as the demo.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

from tests.fake_oidc import FakeOidc
from tests.slapd_server import _make_certs
from tests.webenv import REALM, SCHOOL_ID, Console, _wait, demo_teacher

PORT = 8443
CA_DAYS = 825  # the longest a browser accepts for a server certificate; the CA signs only these two


@dataclasses.dataclass(frozen=True)
class DemoLogin:
    """A user of the demo's provider, and what BAS makes of them."""

    username: str
    password: str
    role: str


def demo_ca(folder: Path) -> tuple[Path, Path]:
    """The demo's CA (certificate, key) in ``folder``/web-tls, made on first use and then kept."""
    tls = folder / "web-tls"
    tls.mkdir(mode=0o700, exist_ok=True)
    tls.chmod(0o700)
    cert, key = tls / "ca.pem", tls / "ca.key"
    if not (cert.is_file() and key.is_file()):
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key),
             "-out", str(cert), "-days", str(CA_DAYS), "-subj", "/CN=BAS demo CA (throw-away)"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
    return cert, key


def _private_keys(tls: Path) -> None:
    """Every key below ``tls`` readable by its owner only (openssl follows the umask)."""
    for key in tls.rglob("*.key"):
        key.chmod(0o600)


def _add_users(fake: FakeOidc, teacher: str) -> list[DemoLogin]:
    made = []
    for username, name, role, claims in (
        ("ola.owner", "Ola Owner", "owner admin (everything)", {}),
        ("siri.school", "Siri School", f"school admin of {SCHOOL_ID}", {}),
        (teacher, f"Teacher {teacher}", f"teacher at {SCHOOL_ID} (their pupils)",
         {"eduPersonAffiliation": ["faculty", "member", "employee"]}),
    ):  # fmt: skip
        password = secrets.token_urlsafe(9)
        fake.add_user(
            username,
            password,
            name=name,
            email=f"{username}@{REALM}",
            eduPersonPrincipalName=f"{username}@{REALM}",
            **claims,
        )
        made.append(DemoLogin(username, password, role))
    return made


def web_table(port: int, cert: Path, key: Path, fake: FakeOidc, secret: Path) -> str:
    """The ``[web]`` table for the demo's users (owner and school admin by name, teachers by claim)."""
    return f"""
# Added by tests/demo_console.py (scripts/demo-web.sh) for the local provider; rewritten on every start.
[web]
listen = "127.0.0.1:{port}"
public_url = "https://127.0.0.1:{port}"
tls_cert_file = "{cert}"
tls_key_file = "{key}"

[web.oidc]
issuer = "{fake.issuer}"
client_id = "bas-web"
client_secret_file = "{secret.name}"
user_claim = "eduPersonPrincipalName"
ca_file = "{fake.ca_file}"

[web.roles]
owner_admins = ["ola.owner@{REALM}"]
school_admins = {{ "siri.school@{REALM}" = ["{SCHOOL_ID}"] }}
teachers = {{ claim = "eduPersonAffiliation", values = ["faculty"] }}
"""


@contextmanager
def demo_console(
    folder: Path, port: int = PORT, output: int | None = subprocess.PIPE
) -> Iterator[tuple[Console, list[DemoLogin], subprocess.Popen]]:
    """The provider and `bas web` (its process) on the demo in ``folder``; both stopped at the end.

    ``output``: where `bas web` writes (``None``: this process's own stdout and stderr)."""
    if not (folder / "state.sqlite").is_file() or not (folder / "bas.toml").is_file():
        raise SystemExit(f"{folder}: no demo here; run `bas demo --dir {folder}` first")
    teacher = demo_teacher(folder / "state.sqlite")
    ca_pair = demo_ca(folder)
    tls = ca_pair[0].parent
    fake = FakeOidc(tls / "oidc", ca_pair=ca_pair)
    try:
        logins = _add_users(fake, teacher)
        url = f"https://127.0.0.1:{port}"
        client = fake.add_client(
            "bas-web", [url + "/auth/callback"], post_logout_redirect_uris=[url + "/logged-out"]
        )
        secret = folder / "web-oidc.secret"
        secret.unlink(missing_ok=True)
        secret.touch(mode=0o600)
        secret.write_text(client.client_secret, encoding="utf-8")
        _, cert, key = _make_certs(tls / "console", ca_pair)
        _private_keys(tls)
        cfg = folder / "web.toml"
        base = (folder / "bas.toml").read_text(encoding="utf-8")
        cfg.write_text(base + web_table(port, cert, key, fake, secret), encoding="utf-8")
        proc = subprocess.Popen(
            [sys.executable, "-m", "provisioner.cli", "--config", str(cfg), "web"],
            stdout=output,
            stderr=subprocess.STDOUT if output is not None else None,
            text=True,
        )
        try:
            console = Console(url, ca_pair[0], fake, cfg, folder, teacher)
            _wait(console, proc)
            yield console, logins, proc
        finally:
            _end(proc)
    finally:
        fake.close()


def _end(proc: subprocess.Popen) -> None:
    """SIGTERM (uvicorn finishes its requests), SIGKILL after 10 s; its piped output drained."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()


def banner(console: Console, logins: list[DemoLogin]) -> str:
    """What the person starting the demo console needs: URL, CA, logins."""
    rows = "\n".join(f"    {u.username:<22} {u.password:<14} {u.role}" for u in logins)
    return f"""
BAS web console on the demo: {console.url}

  Its certificate is signed by the demo's own throw-away CA: {console.ca}
  Trust that file in the browser (Chromium: Settings > Privacy and security > Security >
  Manage certificates > Authorities > Import; Firefox: Settings > Certificates > View
  Certificates > Authorities > Import), or accept the certificate warning for both
  127.0.0.1 pages (the console and the login provider at {console.fake.url}).

  Log in at the local OpenID Connect provider as (passwords are new on every start):
    {"username":<22} {"password":<14} role
{rows}

  Config: {console.cfg} (the demo's bas.toml plus [web]). Ctrl+C stops the console and the provider.
"""


def _stop(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> None:
    ap = argparse.ArgumentParser(description="The demo's web console with a local login provider.")
    ap.add_argument("--dir", default="bas-demo", help="the folder `bas demo` made (default: bas-demo)")
    ap.add_argument("--port", type=int, default=int(os.environ.get("BAS_WEB_PORT", PORT)))
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, _stop)
    try:
        with demo_console(Path(args.dir).resolve(), args.port, output=None) as (console, logins, proc):
            print(banner(console, logins), flush=True)
            code = proc.wait()
            print(f"bas web stopped (exit {code}); stopping the provider.", flush=True)
    except KeyboardInterrupt:
        print("\nStopped the web console and the provider.", flush=True)
    except AssertionError as exc:  # bas web did not start (its own message is above)
        why = str(exc).split(":")[0]
        raise SystemExit(f"demo-web: {why} (port {args.port} taken? BAS_WEB_PORT=... for another)") from None


if __name__ == "__main__":
    main()
