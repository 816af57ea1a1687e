"""The local OpenID Connect provider's contract (tests/fake_oidc.py), driven by authlib's client.

The web console will log in through authlib; these tests hold the provider to OpenID
Connect Core 1.0, Discovery 1.0 and RP-Initiated Logout 1.0 from that client's side, and
verify ID tokens with joserfc against the published JWKS.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import tempfile
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import pytest
import requests
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.errors import BadSignatureError, InvalidClaimError, InvalidKeyIdError
from joserfc.jwk import KeySet

from tests.fake_oidc import FakeOidc

CALLBACK = "https://127.0.0.1:8443/auth/callback"
AFTER_LOGOUT = "https://127.0.0.1:8443/signed-out"
SCOPE = "openid profile email"


@pytest.fixture(scope="module")
def idp() -> Iterator[FakeOidc]:
    with tempfile.TemporaryDirectory(prefix="bas-oidc-") as tmp, FakeOidc(Path(tmp)) as fake:
        fake.add_client(
            "bas-web", [CALLBACK], post_logout_redirect_uris=[AFTER_LOGOUT], client_secret="s3cret"
        )
        fake.add_client("no-code", [CALLBACK], grant_types=("client_credentials",))
        fake.add_user(
            "kari",
            "pass-kari",
            name="Kari Nordmann",
            email="kari@skole.eksempel.no",
            sub="f1b0c0de-kari",
            eduPersonPrincipalName="kari@skole.eksempel.no",
            groups=["skoleadmin:Lia skole"],
        )
        fake.add_user("ola", "pass-ola", name="Ola Lærer", email="ola@skole.eksempel.no", roles=["teacher"])
        yield fake


@pytest.fixture(autouse=True)
def _reset(idp: FakeOidc) -> Iterator[None]:
    """Each test starts with the form (no preselected user) and the provider's clock at the wall clock."""
    yield
    idp.preselect(None)
    idp.advance(-idp.clock_offset)


def get(idp: FakeOidc, url: str, **params: str) -> requests.Response:
    return requests.get(url, params=params, verify=str(idp.ca_file), allow_redirects=False, timeout=10)


def config(idp: FakeOidc) -> dict[str, Any]:
    data: dict[str, Any] = get(idp, idp.discovery_url).json()
    return data


def session(idp: FakeOidc, method: str = "client_secret_basic", secret: str = "s3cret") -> OAuth2Session:
    s = OAuth2Session(
        "bas-web",
        secret,
        scope=SCOPE,
        redirect_uri=CALLBACK,
        code_challenge_method="S256",
        token_endpoint_auth_method=method,
    )
    s.verify = str(idp.ca_file)
    s.trust_env = False  # neither a CA bundle nor a proxy from the environment
    return s


class Form(HTMLParser):
    """The first form of a page: its action, inputs (name -> value) and labels (for -> text)."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.action = ""
        self.inputs: dict[str, str] = {}
        self.labels: dict[str, str] = {}
        self.alert = ""
        self._label: str | None = None
        self._in_alert = False
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and not self.action:
            self.action = a.get("action", "")
        elif tag == "input":
            self.inputs[a["name"]] = a.get("value", "")
        elif tag == "label":
            self._label = a.get("for", "")
        self._in_alert = a.get("role") == "alert"

    def handle_data(self, data: str) -> None:
        if self._label is not None:
            self.labels[self._label] = data.strip()
            self._label = None
        if self._in_alert:
            self.alert += data


class Login:
    """One authorization: its verifier, nonce, state and the session that made it."""

    def __init__(self, idp: FakeOidc, sess: OAuth2Session | None = None, **extra: str) -> None:
        self.idp, self.sess = idp, sess or session(idp)
        self.conf = config(idp)
        self.verifier = secrets.token_urlsafe(48)
        self.nonce = secrets.token_urlsafe(12)
        self.url, self.state = self.sess.create_authorization_url(
            self.conf["authorization_endpoint"], code_verifier=self.verifier, nonce=self.nonce, **extra
        )

    def start(self) -> requests.Response:
        return requests.get(self.url, verify=str(self.idp.ca_file), allow_redirects=False, timeout=10)

    def submit(self, page: requests.Response, action: str = "login", **fields: str) -> requests.Response:
        form = Form(page.text)
        data = {**form.inputs, **fields, "action": action}
        return requests.post(
            urljoin(page.url, form.action),
            data=data,
            verify=str(self.idp.ca_file),
            allow_redirects=False,
            timeout=10,
        )

    def through_form(self, username: str = "kari", password: str = "pass-kari") -> str:
        """The redirect back to the client after logging in with the form."""
        answer = self.submit(self.start(), username=username, password=password)
        assert answer.status_code == 302, answer.text
        return str(answer.headers["Location"])

    def tokens(self, location: str, **kw: Any) -> dict[str, Any]:
        kw.setdefault("code_verifier", self.verifier)
        token: dict[str, Any] = self.sess.fetch_token(
            self.conf["token_endpoint"], authorization_response=location, state=self.state, **kw
        )
        return token


def query(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def verify_id_token(idp: FakeOidc, id_token: str, *, nonce: str, access_token: str) -> dict[str, Any]:
    """Verify as a relying party must (Core 3.1.3.7): JWKS signature, iss, aud, exp, nonce, at_hash."""
    keys = KeySet.import_key_set(get(idp, config(idp)["jwks_uri"]).json())
    token = jwt.decode(id_token, keys, algorithms=["RS256"])
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": idp.issuer},
        aud={"essential": True, "value": "bas-web"},
        sub={"essential": True},
        exp={"essential": True},
        iat={"essential": True},
        nonce={"essential": True, "value": nonce},
    ).validate(token.claims)
    digest = hashlib.sha256(access_token.encode()).digest()[:16]
    assert token.claims["at_hash"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert token.header["kid"] in {k["kid"] for k in get(idp, config(idp)["jwks_uri"]).json()["keys"]}
    return dict(token.claims)


# -- discovery -------------------------------------------------------------------------------


def test_discovery_document(idp: FakeOidc) -> None:
    conf = config(idp)
    assert conf["issuer"] == idp.issuer == idp.url
    for name in (
        "authorization_endpoint",
        "token_endpoint",
        "jwks_uri",
        "userinfo_endpoint",
        "end_session_endpoint",
    ):
        assert conf[name].startswith(idp.url + "/"), name
        assert urlsplit(conf[name]).hostname == "127.0.0.1"
    assert conf["response_types_supported"] == ["code"]
    assert conf["id_token_signing_alg_values_supported"] == ["RS256"]
    assert conf["code_challenge_methods_supported"] == ["S256"]
    assert "public" in conf["subject_types_supported"]
    assert "openid" in conf["scopes_supported"]
    assert {"sub", "nonce", "at_hash", "eduPersonPrincipalName", "groups"} <= set(conf["claims_supported"])
    assert {"client_secret_basic", "client_secret_post"} <= set(conf["token_endpoint_auth_methods_supported"])


# -- the code flow ----------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["client_secret_basic", "client_secret_post"])
def test_code_flow_through_the_login_form(idp: FakeOidc, method: str) -> None:
    login = Login(idp, session(idp, method))
    page = login.start()
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    form = Form(page.text)
    assert form.labels == {"username": "Brukernavn", "password": "Passord"}
    assert {"username", "password", "request_id"} <= set(form.inputs)
    location = login.through_form()
    assert location.startswith(CALLBACK + "?")
    assert query(location)["state"] == login.state
    token = login.tokens(location)
    assert token["token_type"] == "Bearer" and token["expires_in"] > 0
    claims = verify_id_token(idp, token["id_token"], nonce=login.nonce, access_token=token["access_token"])
    assert claims["sub"] == "f1b0c0de-kari"
    assert claims["eduPersonPrincipalName"] == "kari@skole.eksempel.no"
    assert claims["groups"] == ["skoleadmin:Lia skole"]
    assert claims["auth_time"] <= claims["iat"] < claims["exp"]
    info = login.sess.get(login.conf["userinfo_endpoint"]).json()
    assert info["sub"] == claims["sub"]
    assert (info["name"], info["email"]) == ("Kari Nordmann", "kari@skole.eksempel.no")
    assert info["eduPersonPrincipalName"] == "kari@skole.eksempel.no"


def test_preselected_user_skips_the_form(idp: FakeOidc) -> None:
    idp.preselect("ola")
    login = Login(idp)
    answer = login.start()
    assert answer.status_code == 302
    token = login.tokens(answer.headers["Location"])
    claims = verify_id_token(idp, token["id_token"], nonce=login.nonce, access_token=token["access_token"])
    assert claims["roles"] == ["teacher"] and claims["name"] == "Ola Lærer"
    forced = Login(idp, prompt="login").start()  # prompt=login asks even so
    assert forced.status_code == 200 and "username" in Form(forced.text).inputs


def test_wrong_password_shows_the_form_again_and_cancel_denies(idp: FakeOidc) -> None:
    login = Login(idp)
    again = login.submit(login.start(), username="kari", password="wrong")
    assert again.status_code == 200 and "Feil brukernavn eller passord" in Form(again.text).alert
    cancelled = login.submit(again, action="cancel")
    assert cancelled.status_code == 302
    assert query(cancelled.headers["Location"]) == {"error": "access_denied", "state": login.state}


# -- refusals ---------------------------------------------------------------------------------


def _params(**change: str | None) -> dict[str, str]:
    base: dict[str, str | None] = {
        "client_id": "bas-web",
        "redirect_uri": CALLBACK,
        "response_type": "code",
        "scope": SCOPE,
        "state": "st4te",
        "nonce": "n0nce",
        "code_challenge": "x" * 43,
        "code_challenge_method": "S256",
    }
    base.update(change)
    return {k: v for k, v in base.items() if v is not None}


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"code_challenge": None}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "profile"}, "invalid_scope"),
        ({"client_id": "no-code"}, "unauthorized_client"),
        ({"prompt": "none"}, "login_required"),
    ],
)
def test_authorization_errors_redirect_with_state(
    idp: FakeOidc, change: dict[str, str | None], error: str
) -> None:
    answer = get(idp, config(idp)["authorization_endpoint"], **_params(**change))
    assert answer.status_code == 302
    assert answer.headers["Location"].startswith(CALLBACK + "?")
    got = query(answer.headers["Location"])
    assert (got["error"], got["state"]) == (error, "st4te")


@pytest.mark.parametrize(
    "change",
    [
        {"redirect_uri": "https://evil.example/auth/callback"},
        {"redirect_uri": CALLBACK + "/"},
        {"redirect_uri": CALLBACK + "?next=/admin"},
        {"redirect_uri": None},
        {"client_id": "unknown"},
        {"client_id": None},
    ],
)
def test_bad_client_or_redirect_uri_is_a_page_not_a_redirect(
    idp: FakeOidc, change: dict[str, str | None]
) -> None:
    answer = get(idp, config(idp)["authorization_endpoint"], **_params(**change))
    assert answer.status_code == 400 and "Location" not in answer.headers
    assert "text/html" in answer.headers["Content-Type"]


Attempt = Callable[[FakeOidc, Login, str], Any]


def _wrong_verifier(idp: FakeOidc, login: Login, loc: str) -> Any:
    return login.tokens(loc, code_verifier=secrets.token_urlsafe(48))


def _no_verifier(idp: FakeOidc, login: Login, loc: str) -> Any:
    return login.tokens(loc, code_verifier="")


def _replayed(idp: FakeOidc, login: Login, loc: str) -> Any:
    login.tokens(loc)
    return login.tokens(loc)


def _other_redirect_uri(idp: FakeOidc, login: Login, loc: str) -> Any:
    return login.tokens(loc, redirect_uri=CALLBACK + "2")


def _expired(idp: FakeOidc, login: Login, loc: str) -> Any:
    idp.advance(idp.code_lifetime + 1)
    return login.tokens(loc)


def _wrong_secret(method: str) -> Attempt:
    def attempt(idp: FakeOidc, login: Login, loc: str) -> Any:
        login.sess = session(idp, method, secret="not-the-secret")
        return login.tokens(loc)

    return attempt


REFUSALS: list[tuple[str, Attempt, str]] = [
    ("wrong verifier", _wrong_verifier, "invalid_grant"),
    ("no verifier", _no_verifier, "invalid_grant"),
    ("code reused", _replayed, "invalid_grant"),
    ("other redirect_uri", _other_redirect_uri, "invalid_grant"),
    ("code expired", _expired, "invalid_grant"),
    ("wrong secret, basic", _wrong_secret("client_secret_basic"), "invalid_client"),
    ("wrong secret, post", _wrong_secret("client_secret_post"), "invalid_client"),
]


@pytest.mark.parametrize(("name", "attempt", "error"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_token_endpoint_refuses(idp: FakeOidc, name: str, attempt: Attempt, error: str) -> None:
    idp.preselect("kari")
    login = Login(idp)
    location = login.start().headers["Location"]
    with pytest.raises(OAuthError) as refused:
        attempt(idp, login, location)
    assert refused.value.error == error


def test_a_replayed_code_revokes_its_access_token(idp: FakeOidc) -> None:
    idp.preselect("kari")
    login = Login(idp)
    location = login.start().headers["Location"]
    login.tokens(location)
    userinfo = login.conf["userinfo_endpoint"]
    assert login.sess.get(userinfo).status_code == 200
    with pytest.raises(OAuthError):
        login.tokens(location)
    answer = login.sess.get(userinfo)
    assert answer.status_code == 401 and 'error="invalid_token"' in answer.headers["WWW-Authenticate"]


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Basic YTpi"])
def test_userinfo_needs_a_valid_bearer_token(idp: FakeOidc, authorization: str | None) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    answer = requests.get(
        config(idp)["userinfo_endpoint"], headers=headers, verify=str(idp.ca_file), timeout=10
    )
    assert answer.status_code == 401 and answer.headers["WWW-Authenticate"].startswith("Bearer")


# -- keys -------------------------------------------------------------------------------------


def _id_token(idp: FakeOidc) -> tuple[Login, dict[str, Any]]:
    idp.preselect("kari")
    login = Login(idp)
    return login, login.tokens(login.start().headers["Location"])


def _kids(idp: FakeOidc) -> set[str]:
    return {k["kid"] for k in get(idp, config(idp)["jwks_uri"]).json()["keys"]}


def test_key_rotation(idp: FakeOidc) -> None:
    login, before = _id_token(idp)
    old_kid = jwt.decode(
        before["id_token"], KeySet.import_key_set(get(idp, config(idp)["jwks_uri"]).json())
    ).header["kid"]
    new_kid = idp.rotate_key(keep_old=True)
    assert _kids(idp) == {old_kid, new_kid}  # rolling over: both published
    new_kid = idp.rotate_key()
    assert _kids(idp) == {new_kid}  # the old kid is gone from the JWKS
    keys = KeySet.import_key_set(get(idp, config(idp)["jwks_uri"]).json())
    with pytest.raises(InvalidKeyIdError):  # no key for the old kid
        jwt.decode(before["id_token"], keys, algorithms=["RS256"])
    login, after = _id_token(idp)
    claims = verify_id_token(idp, after["id_token"], nonce=login.nonce, access_token=after["access_token"])
    assert claims["sub"] == "f1b0c0de-kari"
    assert jwt.decode(after["id_token"], keys).header["kid"] == new_kid


@pytest.mark.parametrize(
    ("forge", "refusal"),
    [
        ({"wrong_key": True}, BadSignatureError),
        ({"wrong_key": False, "iss": "https://evil.example"}, InvalidClaimError),
        ({"wrong_key": False, "aud": "another-client"}, InvalidClaimError),
        ({"wrong_key": False, "nonce": "not-mine"}, InvalidClaimError),
    ],
)
def test_forged_id_tokens_fail_verification(
    idp: FakeOidc, forge: dict[str, Any], refusal: type[Exception]
) -> None:
    token = idp.forge_id_token("bas-web", "kari", **{"nonce": "mine", **forge})
    with pytest.raises(refusal):
        verify_id_token(idp, token, nonce="mine", access_token="unused")


def test_an_expired_forged_token_fails_verification(idp: FakeOidc) -> None:
    token = idp.forge_id_token("bas-web", "kari", nonce="mine", wrong_key=False, exp=1)
    with pytest.raises(Exception, match="expired"):
        verify_id_token(idp, token, nonce="mine", access_token="unused")


# -- logout -----------------------------------------------------------------------------------


def test_end_session_redirects_records_and_revokes(idp: FakeOidc) -> None:
    login, token = _id_token(idp)
    claims = jwt.decode(
        token["id_token"], KeySet.import_key_set(get(idp, config(idp)["jwks_uri"]).json())
    ).claims
    params = {"id_token_hint": token["id_token"], "post_logout_redirect_uri": AFTER_LOGOUT, "state": "bye"}
    answer = get(idp, config(idp)["end_session_endpoint"], **params)
    assert answer.status_code == 302
    assert answer.headers["Location"] == AFTER_LOGOUT + "?" + urlencode({"state": "bye"})
    assert idp.ended_sessions[-1] == {"sid": claims["sid"], "sub": "f1b0c0de-kari", "client_id": "bas-web"}
    assert login.sess.get(login.conf["userinfo_endpoint"]).status_code == 401


@pytest.mark.parametrize(
    "params",
    [
        {"post_logout_redirect_uri": "https://evil.example/"},
        {"post_logout_redirect_uri": AFTER_LOGOUT + "/"},
        {"client_id": "no-code"},
        {"forged": "yes"},
    ],
)
def test_end_session_refuses(idp: FakeOidc, params: dict[str, str]) -> None:
    _, token = _id_token(idp)
    hint = idp.forge_id_token("bas-web", "kari") if params.pop("forged", None) else token["id_token"]
    ended = len(idp.ended_sessions)
    answer = get(idp, config(idp)["end_session_endpoint"], id_token_hint=hint, **params)
    assert answer.status_code == 400 and "Location" not in answer.headers
    assert len(idp.ended_sessions) == ended


def test_end_session_without_redirect_shows_a_page(idp: FakeOidc) -> None:
    _, token = _id_token(idp)
    answer = get(idp, config(idp)["end_session_endpoint"], id_token_hint=token["id_token"])
    assert answer.status_code == 200 and "Logget ut" in answer.text


def test_a_login_form_answers_once(idp: FakeOidc) -> None:
    login = Login(idp)
    page = login.start()
    assert login.submit(page, username="kari", password="pass-kari").status_code == 302
    again = login.submit(page, username="kari", password="pass-kari")
    assert again.status_code == 400 and "Location" not in again.headers


def test_binds_loopback_and_stops(tmp_path: Path) -> None:
    with FakeOidc(tmp_path) as fake:
        host, port = fake.server.server_address[:2]
        assert host == "127.0.0.1"
        assert get(fake, fake.discovery_url).status_code == 200
    with pytest.raises(requests.ConnectionError):
        requests.get(f"https://127.0.0.1:{port}/jwks", verify=str(fake.ca_file), timeout=5)
