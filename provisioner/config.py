"""Configuration: one TOML file, validated with pydantic, with errors that name the key.

Secrets never sit in this file: settings ending in ``_file`` name a file to read them
from; a relative name is looked up in ``$CREDENTIALS_DIRECTORY`` (systemd
credentials) first, then beside the config file.

A ``[targets.NAME]`` table is validated by its kind's model in ``TARGET_MODELS``
(provisioner.target_config, re-exported here). This module sits below the target-kind
registry (``provisioner.kinds``), so the registry reaches down: the built-in models are in
the table from the start, and ``provisioner.kinds.register`` adds any further kind's with
``add_target_model``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SerializeAsAny,
    ValidationError,
    field_validator,
    model_validator,
)

from provisioner.source_config import SourceBase, database_url, validate_source
from provisioner.target_config import TARGET_MODELS as TARGET_MODELS
from provisioner.target_config import AccountRole, Domain, validate_targets
from provisioner.target_config import ADConfig as ADConfig
from provisioner.target_config import FeideConfig as FeideConfig
from provisioner.target_config import ItslearningConfig as ItslearningConfig
from provisioner.target_config import LicenseConfig as LicenseConfig
from provisioner.target_config import M365Config as M365Config
from provisioner.target_config import SftpDeliveryConfig as SftpDeliveryConfig
from provisioner.target_config import Strict as _Strict
from provisioner.target_config import TargetBase as TargetBase
from provisioner.target_config import add_target_model as add_target_model
from provisioner.web_config import WebConfig


class ConfigError(Exception):
    """The configuration is missing, unreadable or invalid; the message names the key."""


class OwnerConfig(_Strict):
    """The school owner (municipality or county).

    ``mail_domain`` is everyone's UPN and mail domain unless ``role_domains`` gives their
    main role another (pupils ``elev.kommune.no``, staff ``kommune.no`` is common).
    """

    name: str
    org_number: Annotated[str, Field(pattern=r"^\d{9}$")]
    realm: str  # Feide realm, e.g. "oslo.kommune.no"
    mail_domain: str  # UPN and mail domain
    role_domains: dict[AccountRole, Domain] = Field(default_factory=dict)  # per main role


# The databases the state store is made and tested for. Others are refused here, not at
# the first large value: MySQL's and MariaDB's TEXT and BLOB hold 64 kB, less than a big
# school's group members, a held plan or a plan part, and a server outside strict mode
# would cut such a value short without an error.
STATE_DATABASES = ("sqlite", "postgresql")


class StateConfig(_Strict):
    """Where the state store lives."""

    url: str

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        from sqlalchemy.engine import make_url

        url = database_url(v)
        check_state_database(make_url(url).get_backend_name())
        return url


def check_state_database(backend: str) -> None:
    """Raise ValueError unless a state store can run on this SQLAlchemy backend (its name)."""
    if backend not in STATE_DATABASES:
        raise ValueError(
            f"the state store runs on SQLite or PostgreSQL, not {backend!r}"
            " (a SIS on another database is read through [source])"
        )


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
    max_member_removals: Annotated[int, Field(ge=0)] = 2000  # (person, role) pairs out of groups
    max_member_removal_percent: Annotated[float, Field(ge=0, le=100)] = 10.0
    # The limits also hold for what was applied within this many hours plus what is
    # planned (0: no window); an approval starts a target's window afresh.
    window_hours: Annotated[float, Field(ge=0)] = 24.0
    # Refuse a source whose tables (or active persons) fell by more than this below the
    # largest count of the good runs of the last gate_days days.
    max_source_drop_percent: Annotated[float, Field(ge=0, le=100)] = 20.0
    gate_days: Annotated[float, Field(gt=0)] = 7.0


class RoleWindowConfig(_Strict):
    """How far a role's active window reaches beyond its SIS start and end dates."""

    days_before_start: Annotated[int, Field(ge=0, le=366)] = 0  # accounts ready this many days early
    days_after_end: Annotated[int, Field(ge=0, le=366)] = 0  # and kept this many days after the end


class EmployeeWindowConfig(RoleWindowConfig):
    """Employees' window: ready a week before the first working day unless set otherwise."""

    days_before_start: Annotated[int, Field(ge=0, le=366)] = 7


class LifecycleConfig(_Strict):
    """When persons are active, the summer bridge, and retention of personal data.

    ``students`` and ``employees`` widen each enrollment's or employment's window;
    guardians follow their students. A person whose affiliations have ended but who has
    another starting within ``bridge_days`` of that end is bridged: their accounts stay
    as they are until the new one starts (the summer between two schools).
    """

    retention_days: Annotated[int, Field(ge=0)] = 180
    bridge_days: Annotated[int, Field(ge=0, le=366)] = 75
    students: RoleWindowConfig = RoleWindowConfig()
    employees: EmployeeWindowConfig = EmployeeWindowConfig()


class LoggingConfig(_Strict):
    """Log format and level."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["console", "json"] = "console"


class DaemonConfig(_Strict):
    """`bas daemon`: when runs happen and how it stops."""

    interval_seconds: Annotated[int, Field(ge=1)] = 60  # incremental runs (a quiet one is certified: cheap)
    full_cron: str = "30 2 * * *"  # the nightly full reconciliation (crontab: min hour day month dow)
    timezone: str | None = None  # for full_cron; default the host's
    # A run missed by less than this (the host was down, or a long run was in the way) still
    # runs, once (coalesced); one missed by more waits for its next time.
    misfire_grace_seconds: Annotated[int, Field(ge=1)] = 6 * 3600
    # SIGTERM: wait this long for the change in flight to finish before exiting anyway.
    stop_timeout_seconds: Annotated[float, Field(gt=0)] = 60.0

    @field_validator("full_cron")
    @classmethod
    def _cron(cls, v: str) -> str:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger.from_crontab(v)
        except ValueError as exc:
            raise ValueError(f"not a crontab expression ({exc})") from exc
        return v


class MetricsConfig(_Strict):
    """The Prometheus endpoint of `bas daemon`."""

    enabled: bool = False
    listen: Annotated[str, Field(pattern=r"^[^\s:]+:\d{1,5}$")] = "127.0.0.1:9464"  # host:port


class AlertsConfig(_Strict):
    """Notifications from `bas daemon`: a held run, a failed run, no successful run for hours."""

    webhook_url: str | None = None  # JSON POST per alert
    smtp_host: str | None = None  # e-mail alerts when set
    smtp_port: Annotated[int, Field(ge=1, le=65535)] = 587
    smtp_starttls: bool = True
    smtp_ssl: bool = False  # SMTPS (TLS from the start, port 465) instead of STARTTLS
    smtp_ca_file: str | None = None  # CA bundle of the mail server (the system CAs when unset)
    smtp_user: str | None = None
    smtp_password_file: str | None = None  # a secret file or systemd credential
    mail_from: str | None = None
    mail_to: tuple[str, ...] = ()
    no_success_hours: Annotated[float, Field(gt=0)] = 6.0  # per target
    repeat_hours: Annotated[float, Field(gt=0)] = 24.0  # remind while a problem lasts
    timeout_seconds: Annotated[float, Field(gt=0)] = 10.0

    @model_validator(mode="after")
    def _complete(self) -> AlertsConfig:
        if self.smtp_host and not (self.mail_from and self.mail_to):
            raise ValueError("smtp_host needs mail_from and mail_to")
        if (self.smtp_user is None) != (self.smtp_password_file is None):
            raise ValueError("smtp_user and smtp_password_file: set both (or neither)")
        if self.webhook_url:
            _check_webhook(self.webhook_url)
        if self.smtp_ssl and self.smtp_starttls:
            raise ValueError("smtp_ssl and smtp_starttls: one or the other (SMTPS is TLS already)")
        if self.smtp_user and not (self.smtp_ssl or self.smtp_starttls):
            raise ValueError(
                "smtp_starttls: a login (smtp_user) goes only over TLS: set smtp_starttls or smtp_ssl"
            )
        return self


_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _check_webhook(url: str) -> None:
    """https only; plain http only to this host (a relay next to BAS). Errors name the key."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("webhook_url must be an https:// URL")
    if parts.scheme == "http" and parts.hostname.lower() not in _LOOPBACK:
        raise ValueError("webhook_url must be https:// (http:// only to 127.0.0.1, localhost or ::1)")


class Config(_Strict):
    """The whole configuration file."""

    owner: OwnerConfig
    source: SerializeAsAny[SourceBase]
    state: StateConfig
    usernames: UsernameConfig = UsernameConfig()
    safety: SafetyConfig = SafetyConfig()
    lifecycle: LifecycleConfig = LifecycleConfig()
    logging: LoggingConfig = LoggingConfig()
    daemon: DaemonConfig = DaemonConfig()
    metrics: MetricsConfig = MetricsConfig()
    alerts: AlertsConfig = AlertsConfig()
    web: WebConfig = WebConfig()
    targets: dict[str, SerializeAsAny[TargetBase]] = Field(default_factory=dict)
    # Where the file was read from: relative paths in it are relative to this folder.
    base_dir: str = "."

    @model_validator(mode="before")
    @classmethod
    def _default_kind(cls, data: object) -> object:
        # A target named after a kind ([targets.ad]) needs no explicit kind = "ad".
        if isinstance(data, dict) and isinstance(data.get("targets"), dict):
            targets = {}
            for name, t in data["targets"].items():
                if isinstance(t, dict) and "kind" not in t and name in TARGET_MODELS:
                    t = {**t, "kind": name}
                targets[name] = t
            data = {**data, "targets": targets}
        return data

    @field_validator("source", mode="before")
    @classmethod
    def _source(cls, v: Any) -> Any:
        return validate_source(v)

    @field_validator("targets", mode="before")
    @classmethod
    def _targets(cls, v: Any) -> Any:
        return validate_targets(v)

    def path(self, value: str) -> Path:
        """Resolve a path from the config relative to the config file's folder."""
        p = Path(value)
        return p if p.is_absolute() else Path(self.base_dir) / p

    def enabled_targets(self) -> dict[str, TargetBase]:
        """The targets that are switched on, in file order."""
        return {name: t for name, t in self.targets.items() if t.enabled}

    def sqlalchemy_url(self, url: str) -> str:
        """Make a relative SQLite path in a URL relative to the config file."""
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
            return prefix + str(self.path(url[len(prefix) :]))
        return url

    @model_validator(mode="after")
    def _synced_ad_targets(self) -> Config:
        for name, t in self.targets.items():
            if isinstance(t, M365Config) and t.users == "synced":
                self.synced_ad_target(name)
        return self

    def synced_ad_target(self, name: str) -> str | None:
        """The AD target whose objectGUIDs the synced users of m365 target ``name`` carry.

        Its ``ad_target``, else the only AD target (None without one: matched by employeeId).
        """
        t = self.targets[name]
        assert isinstance(t, M365Config)
        ads = [n for n, o in self.targets.items() if o.kind == "ad"]
        if t.ad_target is not None:
            if t.ad_target not in ads:
                known = ", ".join(ads) or "none"
                raise ValueError(
                    f"targets.{name}.ad_target: {t.ad_target!r} is not an AD target (AD targets: {known})"
                )
            return t.ad_target
        if len(ads) > 1:
            raise ValueError(
                f"targets.{name}.ad_target: name the AD target Entra Connect syncs from ({', '.join(ads)})"
            )
        return ads[0] if ads else None

    def target_key(self, tcfg: TargetBase) -> str:
        """The name of a target's table in the file (``ad`` for ``[targets.ad]``), for messages."""
        return next((n for n, t in self.targets.items() if t is tcfg), tcfg.kind)


def _format_errors(err: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid configuration"]
    for e in err.errors():
        key = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-"))
        # Our validators raise ValueError; pydantic prefixes it, which tells the admin nothing.
        lines.append(f"  {key or '(top level)'}: {e['msg'].removeprefix('Value error, ')}")
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
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: not UTF-8 text (byte {exc.start}: {exc.reason})") from exc
    return parse(text, base_dir=str(p.resolve().parent), source=str(p))


def read_secret(name: str, base_dir: str = ".", key: str = "") -> str:
    """Read a secret from a file: $CREDENTIALS_DIRECTORY first, then relative to base_dir.

    ``key`` names the setting (``targets.ad.password_file``) in the error.
    """
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
    where = f"{key}: " if key else ""
    looked = ", ".join(str(c) for c in candidates)
    raise ConfigError(f"{where}secret file {name!r} not found (looked in {looked})")
