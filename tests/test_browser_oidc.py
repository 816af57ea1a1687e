"""The local OpenID Connect provider's login form in a real Chromium (tests/browser.py).

A relying party's flow as a person does it: the browser opens an authorization URL (code
flow with PKCE), the user reaches the labelled fields with Tab, types, presses Enter, and
lands on the client's redirect_uri (a small HTTPS server on 127.0.0.1 that records what
arrives); the test then redeems the code with requests and verifies the ID token against
the provider's JWKS. At desktop and phone size, with a screenshot per step.
"""

from __future__ import annotations

import dataclasses
import secrets
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests
from joserfc import jwt
from joserfc.jwk import KeySet
from selenium.webdriver.common.keys import Keys

from tests.browser import DESKTOP, PHONE, Browser
from tests.fake_oidc import FakeOidc, s256
from tests.slapd_server import https_server

SCOPE = "openid profile email"
pytestmark = pytest.mark.browser


class Callback:
    """The relying party's redirect_uri: an HTTPS page on 127.0.0.1 that records each query."""

    def __init__(self, folder: Path, ca_pair: tuple[Path, Path] | None) -> None:
        self.queries: list[dict[str, str]] = []
        self.server, _ = https_server(folder, self._handler(), ca_pair)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/auth/callback"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        queries = self.queries

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

            def do_GET(self) -> None:  # noqa: N802
                split = urlsplit(self.path)
                if split.path != "/auth/callback":  # the browser's /favicon.ico
                    self.send_error(404)
                    return
                queries.append({k: v[0] for k, v in parse_qs(split.query).items()})
                body = (
                    b'<!doctype html><html lang="nb"><head><meta charset="utf-8"><title>Tilbake</title>'
                    b'<meta name="viewport" content="width=device-width, initial-scale=1">'
                    b"</head><body><main><h1>Tilbake hos klienten</h1><p>Innloggingen kom fram.</p>"
                    b"</main></body></html>"
                )
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)


@pytest.fixture(scope="module")
def servers(test_ca: tuple[Path, Path]) -> Iterator[tuple[FakeOidc, Callback]]:
    """The provider and the client's callback, both with certificates from the browser's CA."""
    with tempfile.TemporaryDirectory(prefix="bas-browser-oidc-") as tmp:
        callback = Callback(Path(tmp) / "rp", test_ca)
        idp = FakeOidc(Path(tmp) / "idp", ca_pair=test_ca)
        try:
            idp.add_client("bas-web", [callback.url], client_secret="s3cret")
            idp.add_user("kari", "pass-kari", name="Kari Nordmann", email="kari@skole.eksempel.no",
                         sub="f1b0c0de-kari", groups=["skoleadmin:Lia skole"])  # fmt: skip
            yield idp, callback
        finally:
            idp.close()
            callback.close()


def http(idp: FakeOidc) -> requests.Session:
    """requests that trusts only the tests' CA (not REQUESTS_CA_BUNDLE from the environment)."""
    s = requests.Session()
    s.trust_env = False
    s.verify = str(idp.ca_file)
    return s


def authorization(idp: FakeOidc, callback: Callback) -> tuple[str, dict[str, str]]:
    """An authorization URL for bas-web with PKCE (S256), state and nonce; and those values."""
    secret = {"verifier": secrets.token_urlsafe(48), "state": secrets.token_urlsafe(12),
              "nonce": secrets.token_urlsafe(12)}  # fmt: skip
    query = {
        "response_type": "code", "client_id": "bas-web", "redirect_uri": callback.url, "scope": SCOPE,
        "state": secret["state"], "nonce": secret["nonce"],
        "code_challenge": s256(secret["verifier"]), "code_challenge_method": "S256",
    }  # fmt: skip
    return f"{idp.url}/authorize?{urlencode(query)}", secret


@dataclasses.dataclass
class Login:
    """A login form open in the browser: the provider, the client's callback, the PKCE secrets."""

    idp: FakeOidc
    callback: Callback
    secret: dict[str, str]


@pytest.fixture(params=["desktop", "phone"])
def login(browser: Browser, servers: tuple[FakeOidc, Callback], request: pytest.FixtureRequest) -> Login:
    """The provider's login form for a fresh authorization request, at desktop or phone size."""
    idp, callback = servers
    url, secret = authorization(idp, callback)
    if request.param == "phone":
        browser.phone()
    browser.open(url)
    browser.wait_for("form")
    assert browser.driver.title == "Logg inn"
    fits_width(browser)
    return Login(idp, callback, secret)


def fits_width(browser: Browser) -> None:
    """The page is laid out for this screen (a phone gets its own width, not a shrunken desktop
    page: the viewport meta is there) and nothing sticks out sideways."""
    wide, inner = browser.driver.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth]"
    )
    assert inner == (PHONE if browser.size == "phone" else DESKTOP)[0], f"laid out {inner}px wide"
    assert wide <= inner, f"the page is {wide}px wide in a {inner}px viewport"


def test_login_with_the_keyboard_lands_on_the_callback_with_a_code_that_redeems(
    browser: Browser, login: Login
) -> None:
    idp, callback, secret = login.idp, login.callback, login.secret
    browser.shot("login-form")
    browser.fill("Brukernavn", "kari")
    browser.fill("Passord", "pass-kari")
    browser.shot("filled-in")
    browser.press(Keys.ENTER)
    landed = browser.wait_until_url(callback.url)
    browser.wait_for("h1")
    fits_width(browser)
    browser.shot("back-at-the-client")
    query = {k: v[0] for k, v in parse_qs(urlsplit(landed).query).items()}
    assert query["state"] == secret["state"]
    assert callback.queries[-1] == query
    answer = http(idp).post(
        idp.url + "/token",
        data={"grant_type": "authorization_code", "code": query["code"], "redirect_uri": callback.url,
              "code_verifier": secret["verifier"]},
        auth=("bas-web", "s3cret"), timeout=10,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    keys = KeySet.import_key_set(http(idp).get(idp.url + "/jwks", timeout=10).json())
    token = jwt.decode(answer.json()["id_token"], keys, algorithms=["RS256"])
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": idp.issuer},
        aud={"essential": True, "value": "bas-web"},
        nonce={"essential": True, "value": secret["nonce"]},
        sub={"essential": True, "value": "f1b0c0de-kari"},
    ).validate(token.claims)
    assert token.claims["name"] == "Kari Nordmann"
    assert token.claims["groups"] == ["skoleadmin:Lia skole"]


def test_a_wrong_password_shows_an_error_on_the_form_and_issues_no_code(
    browser: Browser, login: Login
) -> None:
    idp, callback = login.idp, login.callback
    arrived, logins = len(callback.queries), len(idp.logins)
    browser.fill("Brukernavn", "kari")
    browser.fill("Passord", "not-her-password")
    browser.press(Keys.ENTER)
    alert = browser.wait_for("[role=alert]")
    assert alert.text == "Feil brukernavn eller passord."
    fits_width(browser)
    browser.shot("wrong-password")
    assert browser.url.startswith(idp.url)
    assert len(callback.queries) == arrived and len(idp.logins) == logins
    # The form is there again, labelled, and the right password now gets through.
    browser.fill("Brukernavn", "kari")
    browser.fill("Passord", "pass-kari")
    browser.press(Keys.ENTER)
    browser.wait_until_url(callback.url)
    browser.shot("second-try")
    assert "code" in callback.queries[-1]


def test_a_certificate_from_another_ca_is_refused(
    browser: Browser,
    tmp_path: Path,
) -> None:
    """The browser trusts the tests' CA only: TLS checking stays on for everything else."""
    stranger = Callback(tmp_path / "other", ca_pair=None)
    try:
        browser.open(stranger.url)
        browser.shot("untrusted-certificate")
        source = browser.driver.page_source
        assert "ERR_CERT_AUTHORITY_INVALID" in source, source[:500]
        assert stranger.queries == []
    finally:
        stranger.close()
