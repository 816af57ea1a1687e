"""The ``[targets.NAME]`` tables: the settings every target has and each built-in kind's model.

Owns ``TargetBase`` (mode, limits, grace, scope and extra groups), the models of the
built-in kinds (AD, Microsoft 365, itslearning, Feide), the table of models by kind
(``TARGET_MODELS``, grown by ``add_target_model`` when provisioner.kinds registers a kind)
and ``validate_targets``, which validates each table by its kind's model with errors
located as ``NAME.KIND.key``. provisioner.config builds the whole file on these.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from provisioner.source_config import SftpConfig

__all__ = [
    "AccountRole",
    "Domain",
    "TARGET_MODELS",
    "ADConfig",
    "FeideConfig",
    "ItslearningConfig",
    "LicenseConfig",
    "M365Config",
    "SftpDeliveryConfig",
    "Strict",
    "TargetBase",
    "add_target_model",
    "validate_targets",
]


# A DNS domain as a UPN or mail address takes it: labels of letters, digits and '-', one dot at least.
Domain = Annotated[
    str,
    Field(max_length=253, pattern=r"^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$"),
]
# The roles that have accounts (and so addresses): guardians have none.
AccountRole = Literal["student", "teacher", "staff", "leader"]


class Strict(BaseModel):
    """A config table: unknown keys are errors, values never change once read."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class TargetBase(Strict):
    """Settings every target has; each kind's model narrows ``kind`` to its own name."""

    kind: str
    enabled: bool = True
    # plan: compute and show the changes, never apply them (the default for targets whose
    # live connector is not configured); apply: apply them.
    mode: Literal["plan", "apply"] = "apply"
    max_deletes: Annotated[int, Field(ge=0)] | None = None  # overrides [safety] for this target
    max_delete_percent: Annotated[float, Field(ge=0, le=100)] | None = None
    max_member_removals: Annotated[int, Field(ge=0)] | None = None
    max_member_removal_percent: Annotated[float, Field(ge=0, le=100)] | None = None
    remove_after_days: Annotated[int, Field(ge=0)] = 0  # grace before an inactive person is removed
    # -- scope: which schools and roles this target gets (unset: all; see provisioner.core.scope) --
    schools: tuple[Annotated[str, Field(min_length=1)], ...] | None = None  # school ids or org numbers
    school_levels: tuple[Annotated[str, Field(min_length=1)], ...] | None = None  # School.level values
    exclude_schools: tuple[Annotated[str, Field(min_length=1)], ...] = ()  # ids or org numbers
    roles: tuple[Literal["student", "teacher", "staff", "leader", "guardian"], ...] | None = None
    # -- extra groups this target gets --
    level_groups: bool = False  # one group per school and grade ("8. trinn", "Vg1")
    owner_groups: tuple[Literal["students", "teachers", "staff"], ...] = ()  # owner-wide groups

    @model_validator(mode="after")
    def _scope(self) -> TargetBase:
        for key in ("schools", "school_levels", "roles"):
            value = getattr(self, key)
            if value is not None and not value:
                raise ValueError(f"{key}: an empty list selects nothing; leave {key} out to select all")
        for key in ("schools", "school_levels", "exclude_schools", "roles", "owner_groups"):
            value = getattr(self, key) or ()
            twice = sorted({v for v in value if value.count(v) > 1})
            if twice:
                raise ValueError(f"{key}: {', '.join(twice)} named more than once")
        both = sorted(set(self.schools or ()) & set(self.exclude_schools))
        if both:
            raise ValueError(f"exclude_schools: {', '.join(both)} is also in schools")
        return self


class ADConfig(TargetBase):
    """Active Directory: mapping settings and the live LDAP connection (ldap3 over TLS)."""

    kind: Literal["ad"] = "ad"
    mode: Literal["plan", "apply"] = "plan"
    base_dn: str = "OU=Skoler,DC=example,DC=local"
    disabled_ou: str = "OU=Deaktiverte"
    groups_ou: str = "OU=Grupper"
    remove_after_days: Annotated[int, Field(ge=0)] = 90  # disabled at once, deleted after 90 days
    upn_domain: str | None = None  # defaults to owner.mail_domain
    upn_domains: dict[AccountRole, Domain] = Field(default_factory=dict)  # per main role, beats upn_domain
    # -- the live connection (needed when mode = "apply") --
    url: str | None = None  # ldaps://dc1.example.local (or ldap://... with start_tls = true)
    start_tls: bool = False
    ca_file: str | None = None  # CA certificate(s) the server's certificate must chain to
    # The name the server certificate must carry when ``url`` names the server otherwise
    # (e.g. by address); certificate validation stays on either way.
    tls_server_name: str | None = None
    bind_dn: str | None = None  # the service account
    password_file: str | None = None  # its password (a file or a systemd credential)
    timeout: Annotated[float, Field(gt=0)] = 30.0  # seconds, connect and per request
    page_size: Annotated[int, Field(ge=1, le=1000)] = 500  # paged searches (AD's MaxPageSize is 1000)
    range_size: Annotated[int, Field(ge=1)] = 1500  # values per ranged read (AD's MaxValRange)
    # -- new accounts --
    initial_passwords: bool = True  # write new accounts' passwords for the school office
    password_dir: str = "passwords"  # noqa: S105 (a folder name) per-school files of new accounts (0600), one per run
    password_length: Annotated[int, Field(ge=14, le=128)] = 16
    # -- delegated password resets (`bas password reset`, the web console) --
    # The pupil must choose a password of their own at the next sign-in (pwdLastSet = 0):
    # the one a teacher read out or printed is known to others. A school whose youngest
    # pupils cannot manage that sets false (the reset password then stays until changed).
    force_change_password_on_reset: bool = True
    # -- first run against an existing AD: adopt accounts by employeeID, then by this --
    adopt_fallback: Literal["sAMAccountName", "userPrincipalName", "mail"] | None = "sAMAccountName"

    @model_validator(mode="after")
    def _live_settings(self) -> ADConfig:
        if self.mode != "apply":
            return self
        missing = [k for k in ("url", "ca_file", "bind_dn", "password_file") if not getattr(self, k)]
        if missing:
            raise ValueError(f'mode = "apply" needs {", ".join(missing)}')
        url = (self.url or "").lower()
        if url.startswith("ldaps://"):
            if self.start_tls:
                raise ValueError("start_tls is for ldap:// URLs; an ldaps:// URL is TLS already")
        elif url.startswith("ldap://"):
            if not self.start_tls:
                raise ValueError("a plain ldap:// URL needs start_tls = true (passwords go only over TLS)")
        else:
            raise ValueError(f"url must start with ldaps:// or ldap://, not {self.url!r}")
        return self


class LicenseConfig(Strict):
    """One licence (a subscribed SKU) and the service plans switched off in it."""

    sku_id: Annotated[str, Field(pattern=r"^[0-9a-fA-F-]{36}$")]
    disabled_plans: tuple[str, ...] = ()


class M365Config(TargetBase):
    """Microsoft 365: mapping settings and the live Graph connection (msal client credentials).

    In apply mode the app registration's ``tenant_id`` and ``client_id`` are needed and
    exactly one of ``client_secret_file`` (the secret) or ``client_certificate_file`` (a
    PEM with the private key and the certificate); both are secret files
    (``$CREDENTIALS_DIRECTORY`` first, then beside the config). ``licenses`` maps a role
    (student, teacher, staff, leader: the user's jobTitle) to the SKUs it gets.

    ``users``: ``cloud`` (BAS creates cloud-only users) or ``synced`` (hybrid: Entra
    Connect syncs the users from AD; BAS never creates, renames or deletes one, it waits
    for the synced user, then licenses it, puts it in groups and revokes its sessions on
    a stop). ``mode = "hybrid"`` is short for ``mode = "apply"`` with ``users = "synced"``;
    ``mode = "plan"`` with ``users = "synced"`` plans hybrid without applying.
    ``ad_target``: the AD target whose objectGUIDs Entra Connect uses as the synced
    users' onPremisesImmutableId (default: the config's only AD target; with none, users
    are matched by employeeId alone).
    """

    kind: Literal["m365"] = "m365"
    mode: Literal["plan", "apply"] = "plan"
    users: Literal["cloud", "synced"] = "cloud"
    ad_target: str | None = None
    upn_domain: str | None = None  # defaults to owner.mail_domain (or its role_domains)
    upn_domains: dict[AccountRole, Domain] = Field(default_factory=dict)  # per main role, beats upn_domain
    usage_location: str = "NO"
    restore_within_days: Annotated[int, Field(ge=0)] = 30  # Microsoft purges deleted users after 30 days
    group_type: Literal["security", "m365"] = "security"
    fallback_owner: str | None = None  # a UPN that owns groups without teachers
    # -- the live connection (needed when mode = "apply") --
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret_file: str | None = None
    client_certificate_file: str | None = None
    authority_host: str = "https://login.microsoftonline.com"
    graph_url: str = "https://graph.microsoft.com/v1.0"
    ca_file: str | None = None  # CA bundle for both (a TLS-inspecting proxy); default: the system's
    timeout: Annotated[float, Field(gt=0)] = 60.0  # seconds per HTTP request
    concurrency: Annotated[int, Field(ge=1, le=16)] = 4  # $batch requests in flight at once
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 6  # per request, on 429/5xx/connection errors
    # -- licences per role --
    licenses: dict[Literal["student", "teacher", "staff", "leader"], tuple[LicenseConfig, ...]] = Field(
        default_factory=dict
    )
    # -- new accounts --
    initial_passwords: bool = True  # write new accounts' passwords for the school office
    password_dir: str = "passwords-m365"  # noqa: S105 (a folder name) per-school 0600 files, one per run
    password_length: Annotated[int, Field(ge=14, le=128)] = 16
    force_change_password: bool = True  # users choose their own password at first sign-in

    @model_validator(mode="before")
    @classmethod
    def _hybrid(cls, data: object) -> object:
        # The literal ``mode = "hybrid"``: applied, users synced from AD.
        if not isinstance(data, dict) or not isinstance(data.get("mode"), str):
            return data
        if data["mode"] not in ("plan", "apply", "hybrid"):
            raise ValueError(f'mode must be "plan", "apply" or "hybrid", not {data["mode"]!r}')
        if data["mode"] == "hybrid":
            if data.get("users", "synced") != "synced":
                raise ValueError(f'mode = "hybrid" means users = "synced", not users = {data["users"]!r}')
            data = {**data, "mode": "apply", "users": "synced"}
        return data

    @model_validator(mode="after")
    def _live_settings(self) -> M365Config:
        if self.mode != "apply":
            return self
        mode = '"hybrid"' if self.users == "synced" else '"apply"'
        missing = [k for k in ("tenant_id", "client_id") if not getattr(self, k)]
        if missing:
            raise ValueError(f"mode = {mode} needs {', '.join(missing)}")
        if (self.client_secret_file is None) == (self.client_certificate_file is None):
            raise ValueError(
                f"mode = {mode} needs exactly one of client_secret_file or client_certificate_file"
            )
        for key in ("authority_host", "graph_url"):
            if not str(getattr(self, key)).startswith("https://"):
                raise ValueError(f"{key} must be an https:// URL")
        return self


class SftpDeliveryConfig(SftpConfig):
    """Where a file target delivers its files over SFTP, and how hard a run tries.

    The login settings are the PIFU source's (``SftpConfig``: host key pinned, a key or a
    password from a secret file); ``remote_dir`` is the importer's drop folder. A refused
    connection or a timeout is tried ``attempts`` times in a run, waiting ``retry_delay``
    seconds, then twice that, and so on (with jitter); then the target fails for this run
    and the next run delivers what is left.
    """

    attempts: Annotated[int, Field(ge=1, le=20)] = 4
    retry_delay: Annotated[float, Field(ge=0, le=600)] = 5.0
    # Which files go: both, or only the full files (an import that takes each file as the
    # whole population) or only the deltas (an import of IMS recstatus changes).
    deliver: Literal["all", "full", "delta"] = "all"


class ItslearningConfig(TargetBase):
    """itslearning: IMS Enterprise 1.1 files in a drop directory, delivered over SFTP when ``sftp`` is set."""

    kind: Literal["itslearning"] = "itslearning"
    output_dir: str = "out/itslearning"
    nin_as_sourcedid: bool = False  # person sourcedid = NIN instead of the SIS person_id
    source_name: str = "BAS"  # <sourcedid><source>
    sftp: SftpDeliveryConfig | None = None  # [targets.NAME.sftp]: upload every file to itslearning
    # 0: a full file on every run that exports; N: a delta file each run, a full file only
    # when the newest is N hours old (e.g. 24 with the daemon polling every minute).
    full_every_hours: Annotated[int, Field(ge=0, le=168)] = 0


class FeideConfig(TargetBase):
    """Feide: the LDAP catalog, written live to an LDAP server or exported as LDIF files.

    With ``url`` set, the live connector writes the catalog to that server
    (``ldap://`` with optional ``start_tls``, or ``ldaps://``), bound as ``bind_dn`` with
    the password read from ``password_file`` (a secret file: ``$CREDENTIALS_DIRECTORY``
    first, then beside the config); ``ca_file`` names the CA bundle that signed the
    server's certificate (the system CAs when unset). Without ``url`` the target writes
    LDIF files into ``output_dir`` instead (full and delta files, for an import by hand).

    ``user_password_template``: when set, every person entry gets a ``userPassword`` made
    from it, ``{username}`` replaced by the username and everything else kept, e.g.
    ``{SASL}{username}@AD.EKSEMPEL.NO`` for pass-through authentication to AD. It is
    written when an entry is created (and set when a create finds the entry existing
    with another value), kept out of the state store and the changelog, never logged;
    changing the template does not rewrite existing entries. The GO extras (org and school
    mail, teachers' Grep codes, SMS MFA for employees) are described in mappings/feide.py.
    """

    kind: Literal["feide"] = "feide"
    output_dir: str = "out/feide"
    base_dn: str = "dc=example,dc=no"
    people_ou: str = "ou=people"
    units_ou: str = "ou=units"
    url: str | None = None  # ldap://host[:port] or ldaps://host[:port]; unset: LDIF files
    bind_dn: str | None = None  # unset: anonymous (only for `bas feide check` on an open server)
    password_file: str | None = None
    ca_file: str | None = None
    start_tls: bool = False  # ldap:// only
    timeout: Annotated[float, Field(gt=0)] = 30.0  # seconds to connect and per operation
    page_size: Annotated[int, Field(ge=1, le=10000)] = 500  # paged reads by `bas feide check`
    user_password_template: str | None = None
    org_mail: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")] | None = None  # the owner's entry
    school_mail: str | None = None  # template: {short_name} (folded), {school_id}, {org_number}
    school_mails: dict[str, Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")]] = {}  # by school id
    teacher_grep_codes: bool = False  # teachers get the Grep codes of the groups they teach
    adult_grade: Annotated[int, Field(ge=0, le=13)] = 10  # Grep grade of adult-education pupils; 0: none
    sms_authn: bool = False  # norEduPersonAuthnMethod SMS to the SIS mobile, employees only
    sms_authn_label: Annotated[str, Field(min_length=1)] = "Mobil"  # written percent-encoded
    # LDIF files only: 0, a full file every run that exports; N, only when the newest is N hours old
    full_every_hours: Annotated[int, Field(ge=0, le=168)] = 0

    @model_validator(mode="after")
    def _live_settings(self) -> FeideConfig:
        if self.school_mail is not None:
            try:
                sample = self.school_mail.format(short_name="x", school_id="x", org_number="1")
            except (KeyError, IndexError, ValueError) as exc:
                known = "{short_name}, {school_id} or {org_number}"
                raise ValueError(f"school_mail: {exc!s} is not {known}") from None
            if sample.count("@") != 1 or any(c.isspace() for c in sample):
                raise ValueError("school_mail: must give one mail address (local@domain)")
        if self.url is not None:
            scheme = self.url.split("://", 1)[0].lower() if "://" in self.url else ""
            if scheme not in ("ldap", "ldaps"):
                raise ValueError(f"url: {self.url!r} must start with ldap:// or ldaps://")
            if self.start_tls and scheme == "ldaps":
                raise ValueError("start_tls: only for ldap:// (ldaps:// is TLS from the start)")
            if scheme == "ldap" and not self.start_tls:
                # As for AD: the bind password and every NIN go over the wire only in TLS.
                raise ValueError("start_tls: a plain ldap:// URL needs start_tls = true (or use ldaps://)")
            if self.full_every_hours:
                raise ValueError("full_every_hours: only for LDIF files (no url): a live catalog has none")
        if (self.bind_dn is None) != (self.password_file is None):
            raise ValueError("bind_dn and password_file: set both (or neither, for anonymous reads)")
        if self.user_password_template is not None and "{username}" not in self.user_password_template:
            raise ValueError("user_password_template: must contain {username}")
        return self


# kind -> the config model of its targets (see the module docstring).
TARGET_MODELS: dict[str, type[TargetBase]] = {
    "ad": ADConfig,
    "m365": M365Config,
    "itslearning": ItslearningConfig,
    "feide": FeideConfig,
}


def add_target_model(kind: str, model: type[TargetBase]) -> None:
    """Let ``[targets.X]`` tables of ``kind`` validate with ``model`` (provisioner.kinds.register)."""
    known = TARGET_MODELS.get(kind)
    if known is not None and known is not model:
        raise ValueError(f"target kind {kind!r} already has the config model {known.__name__}")
    TARGET_MODELS[kind] = model


def validate_targets(tables: Any) -> dict[str, TargetBase]:
    """Each target table validated by its kind's model; errors located as ``NAME.KIND.key``."""
    if not isinstance(tables, dict):
        return tables  # pydantic reports the wrong type
    out: dict[str, TargetBase] = {}
    errors: list[InitErrorDetails] = []
    for name, table in tables.items():
        if isinstance(table, TargetBase):
            out[name] = table
            continue
        kind = table.get("kind") if isinstance(table, dict) else None
        model = TARGET_MODELS.get(kind) if isinstance(kind, str) else None
        if model is None:
            known = ", ".join(repr(k) for k in TARGET_MODELS)
            what = "missing" if kind is None else f"unknown target kind {kind!r}"
            message = PydanticCustomError("target_kind", f"{what}; known kinds: {known}")
            errors.append(InitErrorDetails(type=message, loc=(name, "kind"), input=table))
            continue
        try:
            out[name] = model.model_validate(table)
        except ValidationError as exc:
            for e in exc.errors():
                detail = InitErrorDetails(type=e["type"], loc=(name, str(kind), *e["loc"]), input=e["input"])
                if "ctx" in e:
                    detail["ctx"] = e["ctx"]
                errors.append(detail)
    if errors:
        raise ValidationError.from_exception_data("targets", errors)
    return out
