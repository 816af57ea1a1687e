"""OpenID Connect login with authlib: the authorization code flow with PKCE S256, state and nonce.

The provider's endpoints and keys come from its discovery document; the ID token's
signature is checked against its JWKS, and iss, aud, exp, iat, nonce and at_hash. The
JWKS is fetched again once when a token names a key it does not hold (a key rollover).
With ``userinfo`` on (the default) the claims of the provider's userinfo endpoint are
added, as Core 5.3 describes: Feide's ID token is minimal, and the user id and
affiliation the roles need may come only from there. Its ``sub`` must be the ID token's;
a claim in both keeps the ID token's value.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from authlib.common.security import generate_token
from authlib.integrations.requests_client import OAuth2Session
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from provisioner.web_config import OidcConfig

_TIMEOUT = 15
_ALGS = ["RS256"]  # the algorithm the providers (Feide, Entra ID) sign with


class LoginError(Exception):
    """The login failed (a refused or forged answer, a bad token): the message is safe to show."""


@dataclass
class Pending:
    """One login in progress, kept server-side until the provider answers."""

    state: str
    nonce: str
    code_verifier: str
    created: float


class Provider:
    """The configured OpenID Connect provider."""

    def __init__(self, cfg: OidcConfig, client_secret: str, redirect_uri: str, ca_file: str | None) -> None:
        self.cfg = cfg
        self.client_secret = client_secret
        self.redirect_uri = redirect_uri
        self.verify: str | bool = ca_file or True
        self._meta: dict[str, Any] | None = None
        self._jwks: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def _session(self, **kw: Any) -> OAuth2Session:
        s = OAuth2Session(
            self.cfg.client_id,
            self.client_secret,
            scope=" ".join(self.cfg.scopes),
            redirect_uri=self.redirect_uri,
            code_challenge_method="S256",
            **kw,
        )
        s.trust_env = False  # no proxy or CA bundle from the environment: the config says
        s.verify = self.verify
        return s

    def _get(self, url: str) -> dict[str, Any]:
        with self._session() as s:
            r = s.get(url, timeout=_TIMEOUT, withhold_token=True)
        r.raise_for_status()
        data: dict[str, Any] = r.json()
        return data

    def metadata(self) -> dict[str, Any]:
        """The discovery document (fetched once; its issuer must be the configured one)."""
        with self._lock:
            if self._meta is None:
                meta = self._get(self.cfg.issuer + "/.well-known/openid-configuration")
                if meta.get("issuer", "").rstrip("/") != self.cfg.issuer:
                    raise LoginError("the provider's discovery document names another issuer")
                self._meta = meta
            return self._meta

    def start(self, now: float) -> tuple[Pending, str]:
        """A new login: its secrets and the URL to send the browser to."""
        pending = Pending(secrets.token_urlsafe(32), secrets.token_urlsafe(32), generate_token(64), now)
        with self._session() as s:
            url, _ = s.create_authorization_url(
                self.metadata()["authorization_endpoint"],
                state=pending.state,
                nonce=pending.nonce,
                code_verifier=pending.code_verifier,
            )
        return pending, url

    def finish(self, pending: Pending, code: str) -> tuple[dict[str, Any], str]:
        """Exchange the code (with the PKCE verifier); the verified ID token's claims and the raw token."""
        meta = self.metadata()
        try:
            with self._session(state=pending.state) as s:
                token = s.fetch_token(
                    meta["token_endpoint"], code=code, code_verifier=pending.code_verifier, timeout=_TIMEOUT
                )
        except Exception as exc:  # authlib raises OAuthError; the network its own
            raise LoginError(f"the provider refused the code: {exc}") from exc
        id_token = token.get("id_token")
        if not id_token:
            raise LoginError("the provider sent no ID token")
        access_token = token.get("access_token")
        claims = self._verify(id_token, pending.nonce, access_token)
        if self.cfg.userinfo and access_token and meta.get("userinfo_endpoint"):
            claims = {**self._userinfo(meta["userinfo_endpoint"], access_token, claims["sub"]), **claims}
        return claims, id_token

    def _userinfo(self, url: str, access_token: str, sub: str) -> dict[str, Any]:
        """The userinfo endpoint's claims for this login (its sub checked against the ID token's)."""
        try:
            with self._session(token={"access_token": access_token, "token_type": "Bearer"}) as s:
                r = s.get(url, timeout=_TIMEOUT)
            r.raise_for_status()
            info = r.json()
        except Exception as exc:  # the network, a refusal or a body that is not JSON
            raise LoginError(f"the provider's userinfo endpoint failed: {exc}") from exc
        if not isinstance(info, dict) or info.get("sub") != sub:
            raise LoginError("the provider's userinfo answer is for another user (sub differs)")
        return info

    def _verify(self, id_token: str, nonce: str, access_token: str | None) -> dict[str, Any]:
        registry = jwt.JWTClaimsRegistry(
            leeway=60,
            iss={"essential": True, "value": self.metadata()["issuer"]},
            aud={"essential": True, "value": self.cfg.client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        for refresh in (False, True):  # a key we do not hold: fetch the JWKS once more (rollover)
            try:
                token = jwt.decode(id_token, self._keys(refresh), algorithms=_ALGS)
                registry.validate(token.claims)
                break
            except (JoseError, ValueError) as exc:
                if refresh:
                    raise LoginError(f"the ID token is not valid: {exc}") from exc
        claims = dict(token.claims)
        aud = claims["aud"]
        if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != self.cfg.client_id:
            raise LoginError("the ID token is not valid: azp is not this client")
        if access_token and "at_hash" in claims and claims["at_hash"] != _at_hash(access_token):
            raise LoginError("the ID token is not valid: at_hash does not match the access token")
        return claims

    def _keys(self, refresh: bool) -> KeySet:
        if self._jwks is None or refresh:
            self._jwks = self._get(self.metadata()["jwks_uri"])
        return KeySet.import_key_set(self._jwks)  # type: ignore[arg-type]

    def logout_url(self, id_token: str, post_logout_redirect_uri: str) -> str | None:
        """RP-initiated logout at the provider (None when it has no end_session_endpoint)."""
        end = self.metadata().get("end_session_endpoint")
        if not end:
            return None
        query = {
            "id_token_hint": id_token,
            "post_logout_redirect_uri": post_logout_redirect_uri,
            "client_id": self.cfg.client_id,
            "state": secrets.token_urlsafe(16),
        }
        return f"{end}?{urlencode(query)}"


def _at_hash(access_token: str) -> str:
    """The left half of the access token's SHA-256, base64url (Core 3.1.3.6, RS256)."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()[:16]
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
