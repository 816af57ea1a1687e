"""The ``[web]`` table: `bas web`, the web console (listen address, TLS, OpenID Connect, roles).

Kept beside provisioner/config.py (which wires it into ``Config.web``) so that module stays
small. Roles come from config only: owner admins see everything, school admins their
schools, teachers are matched by a claim of their ID token (Feide's
``eduPersonAffiliation``, an Entra group id in ``groups``).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator

from provisioner.target_config import Strict


def _https_or_loopback(url: str) -> str:
    parts = urlsplit(url)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise ValueError(f"must be an https:// URL (http only for 127.0.0.1/localhost), got {url!r}")
    if not parts.hostname:
        raise ValueError(f"not a URL with a host: {url!r}")
    return url.rstrip("/")


class OidcConfig(Strict):
    """The OpenID Connect provider (Feide, Entra ID) the console logs in through."""

    issuer: str = ""  # discovery at {issuer}/.well-known/openid-configuration
    client_id: str = ""
    client_secret_file: str = ""
    scopes: list[str] = ["openid", "profile", "email"]
    user_claim: str = (
        "sub"  # the claim holding the user id the roles name (sub, email, eduPersonPrincipalName)
    )
    ca_file: str | None = None  # verify the provider's TLS with this CA bundle instead of the system's
    userinfo: bool = True  # add the userinfo endpoint's claims (Feide's ID token is minimal)

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, v: str) -> str:
        if not v:
            return v
        if urlsplit(v).scheme != "https":
            raise ValueError(f"must be an https:// URL, got {v!r}")
        return v.rstrip("/")

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, v: list[str]) -> list[str]:
        if "openid" not in v:
            raise ValueError("must include 'openid'")
        return v


class TeacherRule(Strict):
    """Teachers: users whose ``claim`` holds one of ``values`` (a string or a list claim)."""

    claim: str
    values: list[str] = Field(min_length=1)


class RolesConfig(Strict):
    """Who may do what, by the user id in ``oidc.user_claim``."""

    owner_admins: list[str] = []
    school_admins: dict[str, list[str]] = {}  # user id -> school ids
    teachers: TeacherRule | None = None

    @field_validator("school_admins")
    @classmethod
    def _schools(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for user, schools in v.items():
            if not schools:
                raise ValueError(f"{user}: name at least one school id")
        return v


class WebConfig(Strict):
    """`bas web`: where it listens, its public URL, its TLS and login."""

    listen: Annotated[str, Field(pattern=r"^[^\s:]+:\d{1,5}$")] = "127.0.0.1:8080"  # host:port
    public_url: str = "http://127.0.0.1:8080"  # the URL browsers use (the reverse proxy's)
    tls_cert_file: str | None = None  # serve HTTPS itself (both or neither)
    tls_key_file: str | None = None
    session_minutes: Annotated[int, Field(ge=5, le=24 * 60)] = 480  # a login lasts at most this long
    idle_minutes: Annotated[int, Field(ge=5, le=24 * 60)] = 60  # and ends after this long unused
    oidc: OidcConfig = OidcConfig()
    roles: RolesConfig = RolesConfig()

    @field_validator("public_url")
    @classmethod
    def _public(cls, v: str) -> str:
        return _https_or_loopback(v)

    @model_validator(mode="after")
    def _tls_pair(self) -> WebConfig:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file: set both or neither")
        return self

    def missing(self) -> list[str]:
        """What `bas web` still needs, each naming its key."""
        out = [
            f"web.oidc.{k}: not set"
            for k in ("issuer", "client_id", "client_secret_file")
            if not getattr(self.oidc, k)
        ]
        if not (self.roles.owner_admins or self.roles.school_admins or self.roles.teachers):
            out.append("web.roles: no owner_admins, school_admins or teachers: nobody could log in")
        return out

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host, int(port)
