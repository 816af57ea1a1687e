"""Configuration: one TOML file, validated with pydantic, with errors that name the key.

Secrets never sit in this file: settings ending in ``_file`` name a file to read them
from; a relative name is looked up in ``$CREDENTIALS_DIRECTORY`` (systemd
credentials) first, then beside the config file.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

TARGET_KINDS = ("ad", "m365", "itslearning", "feide")


class ConfigError(Exception):
    """The configuration is missing, unreadable or invalid; the message names the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OwnerConfig(_Strict):
    """The school owner (municipality or county)."""

    name: str
    org_number: Annotated[str, Field(pattern=r"^\d{9}$")]
    realm: str  # Feide realm, e.g. "oslo.kommune.no"
    mail_domain: str  # UPN and mail domain


class SourceConfig(_Strict):
    """The school-admin database: a SQLAlchemy URL and optional query overrides."""

    url: str
    # Override any default query by name: schools, persons, enrollments, employments,
    # guardianships, groups, memberships. Each must return the reference columns.
    queries: dict[str, str] = Field(default_factory=dict)

    @field_validator("queries")
    @classmethod
    def _known_queries(cls, v: dict[str, str]) -> dict[str, str]:
        known = {"schools", "persons", "enrollments", "employments", "guardianships", "groups", "memberships"}
        unknown = sorted(set(v) - known)
        if unknown:
            raise ValueError(f"unknown query name(s) {unknown}; known: {sorted(known)}")
        return v


class StateConfig(_Strict):
    """Where the state store lives."""

    url: str


class UsernameConfig(_Strict):
    """How usernames are made from names.

    ``scheme`` is a pattern of parts: ``{given:N}`` / ``{family:N}`` / ``{middle:N}``
    take the first N folded letters (all without ``:N``), ``{g}``/``{f}`` the initial,
    ``{n}`` the collision counter (empty for the first), ``{yy}`` the birth year's last
    two digits. Characters outside braces are copied (folded).
    """

    scheme: str = "{given:3}{family:3}{n}"
    student_scheme: str | None = None  # a separate scheme for students, if wanted
    max_length: Annotated[int, Field(ge=3, le=20)] = 20
    min_counter: Annotated[int, Field(ge=1)] = 1  # first counter used after a collision
    reserved_files: tuple[str, ...] = ()  # CSV files of usernames in use elsewhere


class SafetyConfig(_Strict):
    """Thresholds that hold a run before it does harm."""

    max_deletes: Annotated[int, Field(ge=0)] = 500
    max_delete_percent: Annotated[float, Field(ge=0, le=100)] = 10.0
    # Refuse a source whose active persons fell by more than this since the last good run.
    max_source_drop_percent: Annotated[float, Field(ge=0, le=100)] = 20.0


class LifecycleConfig(_Strict):
    """Retention of personal data in the state store once every target is done."""

    retention_days: Annotated[int, Field(ge=0)] = 180


class TargetBase(_Strict):
    """Settings every target has."""

    enabled: bool = True
    # plan: compute and show the changes, never apply them (the default for targets whose
    # live connector is not configured); apply: apply them.
    mode: Literal["plan", "apply"] = "apply"
    max_deletes: Annotated[int, Field(ge=0)] | None = None  # overrides [safety] for this target
    max_delete_percent: Annotated[float, Field(ge=0, le=100)] | None = None
    remove_after_days: Annotated[int, Field(ge=0)] = 0  # grace before an inactive person is removed


class ADConfig(TargetBase):
    """Active Directory (mapping settings; the live connector settings come with it)."""

    kind: Literal["ad"] = "ad"
    mode: Literal["plan", "apply"] = "plan"
    base_dn: str = "OU=Skoler,DC=example,DC=local"
    disabled_ou: str = "OU=Deaktiverte"
    groups_ou: str = "OU=Grupper"
    remove_after_days: Annotated[int, Field(ge=0)] = 90  # disabled at once, deleted after 90 days
    upn_domain: str | None = None  # defaults to owner.mail_domain


class M365Config(TargetBase):
    """Microsoft 365 (mapping settings; the live connector settings come with it)."""

    kind: Literal["m365"] = "m365"
    mode: Literal["plan", "apply"] = "plan"
    upn_domain: str | None = None
    usage_location: str = "NO"
    restore_within_days: Annotated[int, Field(ge=0)] = 30  # Microsoft purges deleted users after 30 days
    group_type: Literal["security", "m365"] = "security"
    fallback_owner: str | None = None  # a UPN that owns groups without teachers


class ItslearningConfig(TargetBase):
    """itslearning: IMS Enterprise 1.1 files in a drop directory."""

    kind: Literal["itslearning"] = "itslearning"
    output_dir: str = "out/itslearning"
    nin_as_sourcedid: bool = False  # person sourcedid = NIN instead of the SIS person_id
    source_name: str = "BAS"  # <sourcedid><source>


class FeideConfig(TargetBase):
    """Feide: the LDAP catalog, here as LDIF export (live writes come with the LDAP connector)."""

    kind: Literal["feide"] = "feide"
    output_dir: str = "out/feide"
    base_dn: str = "dc=example,dc=no"
    people_ou: str = "ou=people"
    units_ou: str = "ou=units"


TargetConfig = Annotated[ADConfig | M365Config | ItslearningConfig | FeideConfig, Field(discriminator="kind")]


class LoggingConfig(_Strict):
    """Log format and level."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["console", "json"] = "console"


class Config(_Strict):
    """The whole configuration file."""

    owner: OwnerConfig
    source: SourceConfig
    state: StateConfig
    usernames: UsernameConfig = UsernameConfig()
    safety: SafetyConfig = SafetyConfig()
    lifecycle: LifecycleConfig = LifecycleConfig()
    logging: LoggingConfig = LoggingConfig()
    targets: dict[str, TargetConfig] = Field(default_factory=dict)
    # Where the file was read from: relative paths in it are relative to this folder.
    base_dir: str = "."

    @model_validator(mode="before")
    @classmethod
    def _default_kind(cls, data: object) -> object:
        # A target named after a kind ([targets.ad]) needs no explicit kind = "ad".
        if isinstance(data, dict) and isinstance(data.get("targets"), dict):
            targets = {}
            for name, t in data["targets"].items():
                if isinstance(t, dict) and "kind" not in t and name in TARGET_KINDS:
                    t = {**t, "kind": name}
                targets[name] = t
            data = {**data, "targets": targets}
        return data

    def path(self, value: str) -> Path:
        """Resolve a path from the config relative to the config file's folder."""
        p = Path(value)
        return p if p.is_absolute() else Path(self.base_dir) / p

    def enabled_targets(self) -> dict[str, TargetConfig]:
        """The targets that are switched on, in file order."""
        return {name: t for name, t in self.targets.items() if t.enabled}

    def sqlalchemy_url(self, url: str) -> str:
        """Make a relative SQLite path in a URL relative to the config file."""
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
            return prefix + str(self.path(url[len(prefix) :]))
        return url


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-"))
        lines.append(f"  {key or '(top level)'}: {e['msg']}")
    return "\n".join(lines)


def parse(text: str, base_dir: str = ".", source: str = "<config>") -> Config:
    """Parse and validate TOML text; raises ConfigError naming the bad key."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from exc
    data["base_dir"] = base_dir
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from exc


def load(path: str | os.PathLike[str]) -> Config:
    """Read and validate a config file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{p}: cannot read config: {exc.strerror}") from exc
    return parse(text, base_dir=str(p.resolve().parent), source=str(p))


def read_secret(name: str, base_dir: str = ".") -> str:
    """Read a secret from a file: $CREDENTIALS_DIRECTORY first, then relative to base_dir."""
    p = Path(name)
    candidates = [p] if p.is_absolute() else []
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if not p.is_absolute():
        if cred_dir:
            candidates.append(Path(cred_dir) / p)
        candidates.append(Path(base_dir) / p)
    for c in candidates:
        if c.is_file():
            return c.read_text(encoding="utf-8").strip()
    raise ConfigError(f"secret file {name!r} not found (looked in {', '.join(str(c) for c in candidates)})")
