"""A local OpenID Connect provider for the web console's tests (login through Feide or Entra ID).

An HTTPS server on 127.0.0.1 (a free port, a throw-away CA from tests/slapd_server.py, as
tests/fake_graph.py) that follows OpenID Connect Core 1.0, Discovery 1.0 and RP-Initiated
Logout 1.0 closely enough that a real client library (authlib) runs its own code paths:

- ``/.well-known/openid-configuration``: issuer (the server's URL), the endpoints below,
  ``response_types_supported ["code"]``, ``subject_types_supported ["public"]``,
  ``id_token_signing_alg_values_supported ["RS256"]``, ``code_challenge_methods_supported
  ["S256"]``, the scopes, claims and client authentication methods.
- ``/authorize``: the authorization code flow with PKCE (RFC 7636; S256 required, ``plain``
  refused). A missing or unknown ``client_id`` or a ``redirect_uri`` not registered for
  the client (exact string match) answers a 400 page and never redirects; every other
  error redirects with ``error`` (``invalid_request``, ``unauthorized_client``,
  ``unsupported_response_type``, ``invalid_scope``, ``access_denied``, ``login_required``)
  and ``state``. The login is an HTML form (labelled username and password fields, a
  cancel button that answers ``access_denied``) a browser test fills in; ``preselect(
  username)`` logs the next authorizations in as that user without a form (non-browser
  tests). ``state`` is echoed, ``nonce`` goes into the ID token.
- ``/token``: ``client_secret_basic`` and ``client_secret_post`` (a wrong secret: 401
  ``invalid_client``); codes are one-time and expire after ``code_lifetime`` seconds; the
  ``code_verifier``, client and ``redirect_uri`` are checked (``invalid_grant``); a reused
  code also revokes the access token issued for it (Core 3.1.3.2's SHOULD). Answers
  ``access_token``, ``token_type`` Bearer, ``expires_in``, ``scope`` and an RS256
  ``id_token`` (``kid`` in its header; iss, aud, sub, exp, iat, auth_time, nonce, at_hash,
  sid, the user's claims).
- ``/userinfo`` (GET or POST) with the bearer token; ``/jwks`` with the public key(s).
  ``rotate_key()`` signs with a new key from then on and drops the old one from the JWKS
  (``keep_old=True`` keeps it, as during a real rollover); ``forge_id_token(...,
  wrong_key=True)`` makes an ID token signed by a key the JWKS does not hold (negative tests).
- ``/logout`` (the end_session_endpoint): ``id_token_hint`` (verified against the keys
  this provider ever had; an expired one is accepted, as the spec allows),
  ``post_logout_redirect_uri`` checked against the client's registered ones (400 page
  otherwise), ``state`` echoed; the session ends (its access tokens stop working) and is
  recorded in ``ended_sessions``.

What it simplifies: no single-sign-on session (no cookie: every authorization shows the
form unless a user is preselected, so ``prompt=none`` always answers ``login_required``
then); the code flow only (no implicit or hybrid flow, no refresh tokens, no
``request``/``request_uri`` objects, no dynamic registration, no pairwise subjects);
``max_age``, ``acr_values``, ``claims``, ``login_hint`` and ``ui_locales`` are ignored;
the user's extra claims are in every ID token and userinfo answer whatever the scope (only
name and email follow the ``profile`` and ``email`` scopes; ``userinfo_only`` keeps some out
of the ID token, as Feide's minimal ID token does); passwords are compared in
plain text; time is the wall clock plus ``advance(seconds)``.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import html
import json
import secrets
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.slapd_server import https_server

SCOPES = ("openid", "profile", "email")
PATHS = {
    "authorization_endpoint": "/authorize",
    "token_endpoint": "/token",
    "userinfo_endpoint": "/userinfo",
    "jwks_uri": "/jwks",
    "end_session_endpoint": "/logout",
}


def b64url(data: bytes) -> str:
    """Base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _int_b64(n: int) -> str:
    return b64url(n.to_bytes((n.bit_length() + 7) // 8, "big"))


def s256(verifier: str) -> str:
    """The S256 code challenge of a code verifier (RFC 7636 section 4.2)."""
    return b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def at_hash(access_token: str) -> str:
    """The left half of the token's SHA-256, base64url (Core 3.1.3.6, for RS256)."""
    return b64url(hashlib.sha256(access_token.encode("ascii")).digest()[:16])


@dataclasses.dataclass
class SigningKey:
    """An RSA key with its key id."""

    kid: str
    key: rsa.RSAPrivateKey

    @classmethod
    def new(cls) -> SigningKey:
        return cls(secrets.token_hex(8), rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def jwk(self) -> dict[str, str]:
        pub = self.key.public_key().public_numbers()
        return {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": self.kid,
            "n": _int_b64(pub.n),
            "e": _int_b64(pub.e),
        }

    def sign(self, claims: dict[str, Any], kid: str | None = None) -> str:
        header = {"alg": "RS256", "typ": "JWT", "kid": kid or self.kid}
        signing_input = ".".join(
            b64url(json.dumps(p, separators=(",", ":")).encode()) for p in (header, claims)
        )
        sig = self.key.sign(signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + b64url(sig)

    def verifies(self, token: str) -> bool:
        signing_input, _, sig = token.rpartition(".")
        try:
            self.key.public_key().verify(
                _b64url_decode(sig), signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
            )
        except Exception:
            return False
        return True


@dataclasses.dataclass
class User:
    """A test user: ``claims`` holds any further claims (``eduPersonPrincipalName``, ``groups``)."""

    username: str
    password: str
    sub: str
    name: str
    email: str
    claims: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Claims given only by /userinfo, left out of the ID token (Feide's ID token is minimal).
    userinfo_only: frozenset[str] = frozenset()


@dataclasses.dataclass
class Client:
    """A registered relying party."""

    client_id: str
    client_secret: str
    redirect_uris: tuple[str, ...]
    post_logout_redirect_uris: tuple[str, ...] = ()
    grant_types: tuple[str, ...] = ("authorization_code",)


@dataclasses.dataclass
class Grant:
    """An authorization code and what it was issued for."""

    client_id: str
    redirect_uri: str
    user: User
    scope: tuple[str, ...]
    nonce: str | None
    challenge: str
    auth_time: int
    sid: str
    expires: float
    used: bool = False
    access_token: str | None = None


@dataclasses.dataclass
class AccessToken:
    user: User
    client_id: str
    scope: tuple[str, ...]
    sid: str
    expires: float


Answer = tuple[int, dict[str, str], bytes]


class FakeOidc:
    """The server, its users, clients, keys, issued codes and tokens, and ended sessions."""

    def __init__(
        self,
        folder: Path,
        *,
        code_lifetime: int = 60,
        token_lifetime: int = 3600,
        ca_pair: tuple[Path, Path] | None = None,
    ) -> None:
        """``ca_pair`` (a CA certificate and key): the server's certificate is signed by that CA
        (the one the browser tests' Chromium trusts) instead of a new throw-away one."""
        self.code_lifetime = code_lifetime
        self.token_lifetime = token_lifetime
        self.lock = threading.Lock()
        self.users: dict[str, User] = {}
        self.clients: dict[str, Client] = {}
        self.key = SigningKey.new()
        self.retired_keys: list[SigningKey] = []  # still in the JWKS while rolling over
        self._all_keys: list[SigningKey] = [self.key]  # for id_token_hint
        self.codes: dict[str, Grant] = {}
        self.tokens: dict[str, AccessToken] = {}
        self.ended_sessions: list[dict[str, Any]] = []  # {"sid", "sub", "client_id"} per logout
        self.logins: list[str] = []  # usernames, one per successful login
        self._pending: dict[str, dict[str, str]] = {}  # form id -> the authorization request
        self._preselected: str | None = None
        self.userinfo_sub: str | None = None  # answer /userinfo with this sub (a negative test)
        self.clock_offset = 0.0
        self.server, self.ca_file = https_server(folder, _handler(self), ca_pair)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.issuer = self.url
        self.discovery_url = self.url + "/.well-known/openid-configuration"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the server."""
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> FakeOidc:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- set-up and switches ---------------------------------------------------------------

    def add_user(
        self,
        username: str,
        password: str,
        *,
        name: str,
        email: str,
        sub: str | None = None,
        userinfo_only: Iterable[str] = (),
        **claims: Any,
    ) -> User:
        """A user who can log in; ``claims`` go into the ID token and userinfo as given (those
        named in ``userinfo_only`` into userinfo alone)."""
        user = User(
            username,
            password,
            sub or secrets.token_hex(16),
            name,
            email,
            dict(claims),
            frozenset(userinfo_only),
        )
        with self.lock:
            self.users[username] = user
        return user

    def add_client(
        self,
        client_id: str,
        redirect_uris: tuple[str, ...] | list[str],
        *,
        post_logout_redirect_uris: tuple[str, ...] | list[str] = (),
        client_secret: str | None = None,
        grant_types: tuple[str, ...] = ("authorization_code",),
    ) -> Client:
        """Register a relying party (a secret is made up when none is given)."""
        client = Client(
            client_id,
            client_secret or secrets.token_urlsafe(24),
            tuple(redirect_uris),
            tuple(post_logout_redirect_uris),
            grant_types,
        )
        with self.lock:
            self.clients[client_id] = client
        return client

    def preselect(self, username: str | None) -> None:
        """Log every later authorization in as this user without the form (None: the form again)."""
        with self.lock:
            self._preselected = username

    def advance(self, seconds: float) -> None:
        """Move the provider's clock on (codes and tokens expire; issued times move)."""
        with self.lock:
            self.clock_offset += seconds

    def now(self) -> float:
        return time.time() + self.clock_offset

    def rotate_key(self, *, keep_old: bool = False) -> str:
        """Sign with a new key from now on; the old one leaves the JWKS unless ``keep_old``."""
        with self.lock:
            if keep_old:
                self.retired_keys.append(self.key)
            else:
                self.retired_keys = []
            self.key = SigningKey.new()
            self._all_keys.append(self.key)
            return self.key.kid

    def jwks(self) -> dict[str, Any]:
        with self.lock:
            return {"keys": [k.jwk() for k in (self.key, *self.retired_keys)]}

    def configuration(self) -> dict[str, Any]:
        """The discovery document (Discovery 1.0 section 3)."""
        return {
            "issuer": self.issuer,
            **{name: self.url + path for name, path in PATHS.items()},
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": list(SCOPES),
            "claims_supported": [
                "iss",
                "aud",
                "sub",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "at_hash",
                "sid",
                "name",
                "email",
                "email_verified",
                *sorted({c for u in self.users.values() for c in u.claims}),
            ],
            "prompt_values_supported": ["none", "login"],
        }

    def id_token_claims(
        self,
        user: User,
        client_id: str,
        *,
        nonce: str | None,
        scope: tuple[str, ...],
        sid: str,
        auth_time: int,
        access_token: str | None = None,
    ) -> dict[str, Any]:
        now = int(self.now())
        claims: dict[str, Any] = {
            "iss": self.issuer, "sub": user.sub, "aud": client_id, "exp": now + self.token_lifetime,
            "iat": now, "auth_time": auth_time, "sid": sid, **self._user_claims(user, scope),
        }  # fmt: skip
        for name in user.userinfo_only:
            claims.pop(name, None)
        if nonce is not None:
            claims["nonce"] = nonce
        if access_token is not None:
            claims["at_hash"] = at_hash(access_token)
        return claims

    def forge_id_token(
        self,
        client_id: str,
        username: str,
        *,
        nonce: str | None = None,
        wrong_key: bool = True,
        **overrides: Any,
    ) -> str:
        """An ID token for a negative test: signed by a key not in the JWKS (under the current
        kid) when ``wrong_key``, with any claim replaced by ``overrides`` (``iss=...``, ``exp=...``)."""
        claims = self.id_token_claims(
            self.users[username], client_id, nonce=nonce, scope=SCOPES, sid=secrets.token_hex(8),
            auth_time=int(self.now()),
        )  # fmt: skip
        claims.update(overrides)
        signer = SigningKey.new() if wrong_key else self.key
        return signer.sign(claims, kid=self.key.kid)

    def _user_claims(self, user: User, scope: tuple[str, ...]) -> dict[str, Any]:
        claims: dict[str, Any] = {}
        if "profile" in scope:
            claims["name"] = user.name
        if "email" in scope:
            claims["email"] = user.email
            claims["email_verified"] = True
        claims.update(user.claims)
        return claims

    # -- endpoints -------------------------------------------------------------------------

    def authorize(self, q: dict[str, str]) -> Answer:
        """The authorization endpoint (Core 3.1.2): the form, a code, or an error."""
        client = self.clients.get(q.get("client_id", ""))
        if client is None:
            return _page(400, "Ukjent klient", "The client_id is missing or not registered.")
        redirect_uri = q.get("redirect_uri", "")
        if redirect_uri not in client.redirect_uris:
            return _page(400, "Ugyldig redirect_uri", "The redirect_uri is not registered for this client.")
        fail = self._request_error(client, q)
        if fail:
            return _redirect(
                redirect_uri, {"error": fail[0], "error_description": fail[1], "state": q.get("state")}
            )
        with self.lock:
            preselected = self.users.get(self._preselected or "")
        if preselected is not None and q.get("prompt") != "login":
            return self._issue_code(q, preselected)
        if q.get("prompt") == "none":
            return _redirect(redirect_uri, {"error": "login_required", "state": q.get("state")})
        form_id = secrets.token_urlsafe(16)
        with self.lock:
            self._pending[form_id] = dict(q)
        return _login_form(form_id)

    def _request_error(self, client: Client, q: dict[str, str]) -> tuple[str, str] | None:
        if "authorization_code" not in client.grant_types:
            return "unauthorized_client", "the client may not use the authorization code grant"
        if q.get("response_type") != "code":
            return "unsupported_response_type", "only response_type=code"
        if "openid" not in q.get("scope", "").split():
            return "invalid_scope", "the openid scope is required"
        if not q.get("code_challenge"):
            return "invalid_request", "PKCE is required: code_challenge missing"
        if q.get("code_challenge_method") != "S256":
            return "invalid_request", "code_challenge_method must be S256"
        return None

    def login(self, form: dict[str, str]) -> Answer:
        """The login form's post: a code for the right password, the form again otherwise."""
        with self.lock:
            q = self._pending.get(form.get("request_id", ""))
        if q is None:
            return _page(400, "Utløpt innlogging", "This login request is unknown or already used.")
        if form.get("action") == "cancel":
            with self.lock:
                self._pending.pop(form["request_id"], None)
            return _redirect(q["redirect_uri"], {"error": "access_denied", "state": q.get("state")})
        user = self.users.get(form.get("username", ""))
        if user is None or not secrets.compare_digest(user.password, form.get("password", "")):
            return _login_form(form["request_id"], error="Feil brukernavn eller passord.")
        with self.lock:
            self._pending.pop(form["request_id"], None)
        return self._issue_code(q, user)

    def _issue_code(self, q: dict[str, str], user: User) -> Answer:
        code = secrets.token_urlsafe(32)
        grant = Grant(
            q["client_id"], q["redirect_uri"], user, tuple(q.get("scope", "").split()), q.get("nonce"),
            q["code_challenge"], int(self.now()), secrets.token_hex(12), self.now() + self.code_lifetime,
        )  # fmt: skip
        with self.lock:
            self.codes[code] = grant
            self.logins.append(user.username)
        return _redirect(q["redirect_uri"], {"code": code, "state": q.get("state")})

    def token(self, form: dict[str, str], authorization: str) -> Answer:
        """The token endpoint (Core 3.1.3): client authentication, the code, the verifier."""
        client_id, secret, basic = form.get("client_id", ""), form.get("client_secret"), False
        if authorization.lower().startswith("basic "):
            try:
                raw = base64.b64decode(authorization[6:], validate=True).decode()
            except ValueError:
                raw = ""
            cid, _, sec = raw.partition(":")
            client_id, secret, basic = unquote(cid.replace("+", " ")), unquote(sec.replace("+", " ")), True
        client = self.clients.get(client_id)
        if client is None or secret is None or not secrets.compare_digest(client.client_secret, secret):
            extra = {"WWW-Authenticate": 'Basic realm="fake-oidc"'} if basic else {}
            return _json(
                401, {"error": "invalid_client", "error_description": "client authentication failed"}, extra
            )
        if form.get("grant_type") != "authorization_code":
            return _json(400, {"error": "unsupported_grant_type"})
        with self.lock:
            grant = self.codes.get(form.get("code", ""))
            if grant is not None and grant.used:
                if grant.access_token:  # a replayed code: revoke what it gave (Core 3.1.3.2)
                    self.tokens.pop(grant.access_token, None)
                return _invalid_grant("code already used")
            if grant is not None:
                grant.used = True
        if grant is None or grant.expires < self.now():
            return _invalid_grant("code unknown or expired")
        if grant.client_id != client.client_id or grant.redirect_uri != form.get("redirect_uri"):
            return _invalid_grant("client or redirect_uri mismatch")
        if s256(form.get("code_verifier", "")) != grant.challenge or not form.get("code_verifier"):
            return _invalid_grant("code_verifier does not match")
        access = secrets.token_urlsafe(32)
        claims = self.id_token_claims(
            grant.user, client.client_id, nonce=grant.nonce, scope=grant.scope, sid=grant.sid,
            auth_time=grant.auth_time, access_token=access,
        )  # fmt: skip
        with self.lock:
            grant.access_token = access
            self.tokens[access] = AccessToken(
                grant.user, client.client_id, grant.scope, grant.sid, self.now() + self.token_lifetime
            )
            id_token = self.key.sign(claims)
        return _json(
            200,
            {"access_token": access, "token_type": "Bearer", "expires_in": self.token_lifetime,
             "scope": " ".join(grant.scope), "id_token": id_token},
        )  # fmt: skip

    def userinfo(self, authorization: str) -> Answer:
        """The userinfo endpoint (Core 5.3) for a bearer token."""
        token = authorization[7:] if authorization.lower().startswith("bearer ") else ""
        with self.lock:
            at = self.tokens.get(token)
        if at is None or at.expires < self.now():
            challenge = 'Bearer error="invalid_token"' if token else 'Bearer realm="fake-oidc"'
            return _json(401, {"error": "invalid_token"}, {"WWW-Authenticate": challenge})
        return _json(200, {**self._user_claims(at.user, at.scope), "sub": self.userinfo_sub or at.user.sub})

    def end_session(self, q: dict[str, str]) -> Answer:
        """RP-initiated logout (RP-Initiated Logout 1.0 section 2)."""
        claims: dict[str, Any] = {}
        hint = q.get("id_token_hint")
        if hint:
            with self.lock:
                keys = list(self._all_keys)
            if not any(k.verifies(hint) for k in keys):
                return _page(400, "Ugyldig id_token_hint", "The id_token_hint was not issued here.")
            claims = json.loads(_b64url_decode(hint.split(".")[1]))
            if claims.get("iss") != self.issuer:
                return _page(400, "Ugyldig id_token_hint", "The id_token_hint has another issuer.")
        client_id = q.get("client_id") or claims.get("aud") or ""
        if claims and q.get("client_id") and q["client_id"] != claims.get("aud"):
            return _page(400, "Ugyldig klient", "client_id and id_token_hint disagree.")
        target = q.get("post_logout_redirect_uri")
        client = self.clients.get(client_id)
        if target and (client is None or target not in client.post_logout_redirect_uris):
            return _page(400, "Ugyldig post_logout_redirect_uri", "Not registered for this client.")
        if claims:
            with self.lock:
                sid = claims.get("sid")
                for token, at in list(self.tokens.items()):
                    if at.sid == sid:
                        del self.tokens[token]
                self.ended_sessions.append({"sid": sid, "sub": claims.get("sub"), "client_id": client_id})
        if target:
            return _redirect(target, {"state": q.get("state")})
        return _page(200, "Logget ut", "You are signed out.")


# -- HTTP -------------------------------------------------------------------------------------


def _invalid_grant(description: str) -> Answer:
    return _json(400, {"error": "invalid_grant", "error_description": description})


def _json(status: int, body: dict[str, Any], extra: dict[str, str] | None = None) -> Answer:
    headers = {"Content-Type": "application/json", "Cache-Control": "no-store", "Pragma": "no-cache"}
    headers.update(extra or {})
    return status, headers, json.dumps(body).encode()


def _redirect(uri: str, params: dict[str, str | None]) -> Answer:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return 302, {"Location": uri + ("&" if "?" in uri else "?") + query, "Cache-Control": "no-store"}, b""


_HTML = """<!doctype html>
<html lang="nb"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>{title}</title></head>
<body><main><h1>{title}</h1>
{body}
</main></body></html>
"""


def _page(status: int, title: str, text: str) -> Answer:
    body = _HTML.format(title=html.escape(title), body=f"<p>{html.escape(text)}</p>").encode()
    return status, {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"}, body


def _login_form(form_id: str, error: str = "") -> Answer:
    alert = f'<p role="alert" id="error">{html.escape(error)}</p>\n' if error else ""
    form = (
        f'{alert}<form method="post" action="/login">\n'
        f'<input type="hidden" name="request_id" value="{html.escape(form_id)}">\n'
        '<p><label for="username">Brukernavn</label>\n'
        '<input id="username" name="username" autocomplete="username" required></p>\n'
        '<p><label for="password">Passord</label>\n'
        '<input id="password" name="password" type="password" autocomplete="current-password" required></p>\n'
        '<p><button type="submit" name="action" value="login">Logg inn</button>\n'
        '<button type="submit" name="action" value="cancel" formnovalidate>Avbryt</button></p>\n'
        "</form>"
    )
    body = _HTML.format(title="Logg inn", body=form).encode()
    return 200, {"Content-Type": "text/html; charset=utf-8", "Cache-Control": "no-store"}, body


def _handler(fake: FakeOidc) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
            return

        def _send(self, answer: Answer) -> None:
            status, headers, body = answer
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _route(self, method: str) -> Answer:
            split = urlsplit(self.path)
            params = dict(parse_qsl(split.query))
            if method == "POST":
                length = int(self.headers.get("Content-Length") or 0)
                params.update(parse_qsl(self.rfile.read(length).decode() if length else ""))
            auth = self.headers.get("Authorization", "")
            path = split.path
            if path == "/.well-known/openid-configuration" and method == "GET":
                return _json(200, fake.configuration())
            if path == PATHS["jwks_uri"] and method == "GET":
                return _json(200, fake.jwks())
            if path == PATHS["authorization_endpoint"]:
                return fake.authorize(params)
            if path == "/login" and method == "POST":
                return fake.login(params)
            if path == PATHS["token_endpoint"] and method == "POST":
                return fake.token(params, auth)
            if path == PATHS["userinfo_endpoint"]:
                return fake.userinfo(auth)
            if path == PATHS["end_session_endpoint"]:
                return fake.end_session(params)
            return _json(404, {"error": "not_found"})

        def do_GET(self) -> None:  # noqa: N802 (http.server's names)
            self._send(self._route("GET"))

        def do_POST(self) -> None:  # noqa: N802
            self._send(self._route("POST"))

    return Handler
