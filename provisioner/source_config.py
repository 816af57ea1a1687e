"""The ``[source]`` table: which school-admin system BAS reads, and how.

A source kind (``sql``, ``pifu``, ``fint``, or one a deployment adds) has one config
model here, chosen by ``kind`` (``sql`` when the table has no kind, as before source
kinds existed). The source registry (``sources.registry``) sits above this module and
adds any further kind's model with ``add_source_model``, as the target kinds do for
``[targets.X]``. This module owns only validation: reading is the source plug-in's job.
"""

from __future__ import annotations

import importlib.util
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

# The source's tables, in the order a snapshot holds them (its counts, digests, queries):
# the one list, here so that config (the layer below the core) can check query names.
TABLES = ("schools", "persons", "enrollments", "employments", "guardianships", "groups", "memberships")


# A plain dialect name takes SQLAlchemy's default driver; where that driver is not
# installed but the one of our extra is, the URL names ours ([postgres] installs psycopg 3,
# [mysql] PyMySQL), so "postgresql://..." works with either.
_DEFAULT_DRIVERS = {
    "postgresql": ("psycopg2", "psycopg", "postgresql+psycopg"),
    "mysql": ("MySQLdb", "pymysql", "mysql+pymysql"),
    "mariadb": ("MySQLdb", "pymysql", "mariadb+pymysql"),
    "mssql": ("pyodbc", "pymssql", "mssql+pymssql"),
    "oracle": ("cx_Oracle", "oracledb", "oracle+oracledb"),
}


def _with_installed_driver(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    choice = _DEFAULT_DRIVERS.get(scheme)
    if not sep or choice is None:
        return url
    default, ours, drivername = choice
    if importlib.util.find_spec(default) is None and importlib.util.find_spec(ours) is not None:
        return f"{drivername}://{rest}"
    return url


def database_url(url: str) -> str:
    """A SQLAlchemy URL whose dialect and driver this installation has (checked, not connected)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    url = _with_installed_driver(url)
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ValueError(f"not a database URL ({exc})") from exc
    except ValueError:  # make_url's int() of the port
        raise ValueError("not a database URL: the port is not a number") from None
    try:
        dialect = parsed.get_dialect()
    except ArgumentError:  # NoSuchModuleError included
        raise ValueError(f"unknown database driver {parsed.drivername!r}") from None
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        raise ValueError(
            f"the driver of {parsed.drivername!r} is not installed ({exc}); install BAS with the extra"
            " for this database: [postgres], [mysql], [mssql] or [oracle]"
        ) from None
    return url


def _https(key: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return
    raise ValueError(f"{key} must be an https:// URL (personal data and secrets travel over it)")


class SourceBase(BaseModel):
    """What every ``[source]`` table has: its kind."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: str


class SqlSourceConfig(SourceBase):
    """The school-admin database: a SQLAlchemy URL and optional query overrides."""

    kind: Literal["sql"] = "sql"
    url: str
    # Override any default query by name: schools, persons, enrollments, employments,
    # guardianships, groups, memberships. Each must return the reference columns.
    queries: dict[str, str] = Field(default_factory=dict)

    @field_validator("queries")
    @classmethod
    def _known_queries(cls, v: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(v) - set(TABLES))
        if unknown:
            raise ValueError(f"unknown query name(s) {unknown}; known: {sorted(TABLES)}")
        return v

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        return database_url(v)


SchoolLevel = Literal["primary", "lower_secondary", "combined", "upper_secondary", "adult"]


class SftpConfig(BaseModel):
    """An SFTP server BAS logs in to with its host key pinned (provisioner/sftp.py).

    The PIFU source picks its export up from one; the itslearning target delivers its
    files to one (``provisioner.config.SftpDeliveryConfig`` adds its own settings).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str
    port: Annotated[int, Field(ge=1, le=65535)] = 22
    username: str
    # The server's host key is pinned by one of these: a known_hosts file that has it, or
    # its SHA256 fingerprint as `ssh-keygen -lf` prints it. An unknown or changed key refuses.
    known_hosts_file: str | None = None
    host_key_fingerprint: Annotated[str, Field(pattern=r"^(SHA256:)?[A-Za-z0-9+/]{43}=?$")] | None = None
    private_key_file: str | None = None  # a secret file, as every *_file
    password_file: str | None = None
    remote_dir: str = "."
    timeout: Annotated[float, Field(gt=0)] = 30.0

    @model_validator(mode="after")
    def _one_credential(self) -> SftpConfig:
        if (self.private_key_file is None) == (self.password_file is None):
            raise ValueError("set exactly one of private_key_file or password_file")
        if (self.known_hosts_file is None) == (self.host_key_fingerprint is None):
            raise ValueError("set exactly one of known_hosts_file or host_key_fingerprint (pin the host key)")
        return self


class PifuSourceConfig(SourceBase):
    """A PIFU-IMS 1.2 export file, or a folder where the newest complete export is read."""

    kind: Literal["pifu"] = "pifu"
    path: str  # a file, or a folder of exports (relative to the config file's folder)
    # (with [source.sftp]: the local folder the pickup downloads into; it keeps the 3 newest)
    pattern: str = "*.xml"  # which files in the folder are exports
    # A file changed less than this many seconds ago may still be being written: it waits.
    settle_seconds: Annotated[float, Field(ge=0)] = 60.0
    # PIFU has no school level: it is derived from the grades taught, or set here per school id.
    school_levels: dict[str, SchoolLevel] = Field(default_factory=dict)
    sftp: SftpConfig | None = None


# The resources the FINT source reads (paths below base_url), FINT information model 3.x.
FINT_RESOURCES = (
    "utdanning/utdanningsprogram/skole",
    "utdanning/utdanningsprogram/arstrinn",
    "utdanning/utdanningsprogram/programomrade",
    "utdanning/utdanningsprogram/utdanningsprogram",
    "utdanning/utdanningsprogram/programomrademedlemskap",
    "utdanning/elev/person",
    "utdanning/elev/elev",
    "utdanning/elev/elevforhold",
    "utdanning/elev/basisgruppe",
    "utdanning/elev/basisgruppemedlemskap",
    "utdanning/elev/kontaktlarergruppe",
    "utdanning/elev/kontaktlarergruppemedlemskap",
    "utdanning/elev/skoleressurs",
    "utdanning/elev/undervisningsforhold",
    "utdanning/elev/kontaktperson",
    "utdanning/timeplan/undervisningsgruppe",
    "utdanning/timeplan/undervisningsgruppemedlemskap",
    "utdanning/timeplan/fag",
    "administrasjon/personal/person",
    "administrasjon/personal/personalressurs",
    "administrasjon/personal/arbeidsforhold",
    "administrasjon/organisasjon/organisasjonselement",
)


class FintSourceConfig(SourceBase):
    """The FINT API (Visma InSchool and the county HR systems) over OAuth2 and HAL+JSON."""

    kind: Literal["fint"] = "fint"
    base_url: str  # e.g. https://api.felleskomponent.no
    token_url: str  # e.g. https://idp.felleskomponent.no/nidp/oauth/nam/token
    client_id: str
    client_secret_file: str
    username: str
    password_file: str
    scope: str = "fint-client"
    ca_file: str | None = None  # CA bundle (a TLS-inspecting proxy); default: the system's
    # Entries per page. A full read costs its pages plus a fixed 23 requests (the token and one
    # /last-updated per resource, which makes the next incremental read exact): at 2000 an
    # Oslo-size read is 1.03x its pages (benchmarks/bench_fint.py).
    page_size: Annotated[int, Field(ge=1, le=100_000)] = 2000
    timeout: Annotated[float, Field(gt=0)] = 60.0  # seconds per HTTP request
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 6  # per request, on 5xx and timeouts
    # The local cache of what was read (personal data: 0600), for sinceTimeStamp reads.
    cache_dir: str = "fint-cache"
    # A full read at least this often, so every deletion in FINT is seen (an incremental read
    # sees one only when the resource's size changed).
    full_every_hours: Annotated[float, Field(gt=0)] = 24.0
    # FINT has no school level: it is derived from the grades taught, or set here per school id.
    school_levels: dict[str, SchoolLevel] = Field(default_factory=dict)
    # Resources (paths below base_url) that may legitimately come back empty: an owner without
    # upper secondary schools has no programme areas, one without VGS no contact-teacher groups.
    # Every other resource that comes back empty refuses the run (the per-table gate).
    may_be_empty: list[str] = Field(
        default_factory=lambda: [
            "utdanning/utdanningsprogram/programomrade",
            "utdanning/utdanningsprogram/programomrademedlemskap",
            "utdanning/utdanningsprogram/utdanningsprogram",
            "utdanning/elev/kontaktlarergruppe",
            "utdanning/elev/kontaktlarergruppemedlemskap",
            "utdanning/elev/kontaktperson",
            "utdanning/timeplan/fag",
        ]
    )

    @field_validator("may_be_empty")
    @classmethod
    def _known_resources(cls, v: list[str]) -> list[str]:
        unknown = sorted({r.strip("/") for r in v} - set(FINT_RESOURCES))
        if unknown:
            raise ValueError(f"unknown FINT resource(s) {unknown}; known: {list(FINT_RESOURCES)}")
        return [r.strip("/") for r in v]

    @model_validator(mode="after")
    def _tls(self) -> FintSourceConfig:
        _https("base_url", self.base_url)
        _https("token_url", self.token_url)
        return self


# kind -> the config model of a [source] table of that kind (see the module docstring).
SOURCE_MODELS: dict[str, type[SourceBase]] = {
    "sql": SqlSourceConfig,
    "pifu": PifuSourceConfig,
    "fint": FintSourceConfig,
}


def add_source_model(kind: str, model: type[SourceBase]) -> None:
    """Let ``[source]`` tables of ``kind`` validate with ``model`` (sources.registry.register)."""
    known = SOURCE_MODELS.get(kind)
    if known is not None and known is not model:
        raise ValueError(f"source kind {kind!r} already has the config model {known.__name__}")
    SOURCE_MODELS[kind] = model


def validate_source(table: Any) -> Any:
    """The ``[source]`` table validated by its kind's model; errors located as ``source.key``."""
    if isinstance(table, SourceBase) or not isinstance(table, dict):
        return table  # already a model, or pydantic reports the wrong type
    kind = table.get("kind", "sql")
    model = SOURCE_MODELS.get(kind) if isinstance(kind, str) else None
    if model is None:
        known = ", ".join(repr(k) for k in SOURCE_MODELS)
        message = PydanticCustomError("source_kind", f"unknown source kind {kind!r}; known kinds: {known}")
        raise ValidationError.from_exception_data(
            "source", [InitErrorDetails(type=message, loc=("kind",), input=table)]
        )
    return model.model_validate({**table, "kind": kind})
