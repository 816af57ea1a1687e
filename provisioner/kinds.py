"""The target-kind registry: everything BAS knows about a kind of target, in one record.

A kind (``ad``, ``m365``, ``itslearning``, ``feide``, or one a deployment adds) is one
``TargetKind``: the config model of its ``[targets.X]`` tables, its mapping
(``map_state`` and the attributes whose change is a move), its lifecycle policy, what a
configured target of it can do (``Capabilities``), and the factories of its connector,
its reader and its read-only probe. Every place that used to branch on a kind name (the
config's default kind and validation, the runner's mapping and policy, building
connectors, `bas config check`, the CLI's per-kind commands) asks ``kind_of(name)``.

Adding a kind is one ``register(TargetKind(...))`` call: it also hands the kind's config
model to ``provisioner.config.add_target_model``, because the config module sits below
this one and must not import it. Layering: this module may import connectors, mappings,
state, core and config, and is imported by apply, run, service and cli.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from connectors.base import Connector, Exporter, Reader
from mappings import ad as ad_mapping
from mappings import feide as feide_mapping
from mappings import itslearning as itslearning_mapping
from mappings import m365 as m365_mapping
from mappings.base import MapState
from provisioner.config import (
    ADConfig,
    Config,
    ConfigError,
    FeideConfig,
    ItslearningConfig,
    M365Config,
    TargetBase,
    add_target_model,
    read_secret,
)
from provisioner.core.lifecycle import Policy

if TYPE_CHECKING:
    from connectors.m365.pacing import Clock

__all__ = [
    "KINDS",
    "Capabilities",
    "TargetKind",
    "kind_of",
    "m365_connector",
    "register",
]


@dataclass(frozen=True, slots=True)
class Capabilities:
    """What one configured target of a kind does, decided by its config alone."""

    live: bool  # it writes to a remote system; False: it writes files into ``output_dir``
    output_dir: str | None = None  # file targets: the folder of their files (as configured)
    # `bas config check` reaches it even in plan mode (a checker reads it, e.g. `bas feide check`).
    reached_in_plan: bool = False
    # File targets that also deliver their files (itslearning with [targets.X.sftp]): a run
    # without changes still delivers what earlier runs left, and `bas config check` probes
    # the receiver with the kind's ``probe``.
    delivers: bool = False
    # Targets whose user accounts take a password BAS sets (a delegated reset,
    # provisioner/run/password.py): the length of those passwords; None when its users
    # hold none BAS may set (files, Feide, hybrid Microsoft 365: Entra gets it from AD).
    password_length: int | None = None
    secretless_why: str = ""  # why it holds none, when that is worth saying


ConnectorFactory = Callable[[Config, str], Connector | Exporter]
ReaderFactory = Callable[[Config, str], Reader]


@dataclass(frozen=True, slots=True)
class TargetKind:
    """One kind of target: the one record every kind-dependent decision reads."""

    name: str  # the ``kind`` value in the config
    label: str  # how messages name it ("Microsoft 365")
    config_model: type[TargetBase]
    map_state: MapState
    placement: frozenset[str]  # names in TargetObject.place: a change there is a move
    policy: Callable[[Any], Policy]  # lifecycle policy of a target, from its config model
    capabilities: Callable[[Any], Capabilities]
    # The connector of a target in apply mode (reads secrets, does not connect); None: the
    # kind can only be planned.
    connector: ConnectorFactory | None
    links: frozenset[str] = frozenset()  # names in TargetObject.links (keys of other objects)
    # Reads the live target back for reconciliation; None: the kind has no reader.
    reader: ReaderFactory | None = None
    # Reaches a live target read-only for `bas config check`; returns what it reached.
    probe: Callable[[Config, str], str] | None = None
    # Fails early, naming the key, when a target cannot do what its config asks.
    check: Callable[[Config, str], None] | None = None
    # What `bas config check` adds to a target's line (e.g. hybrid Microsoft 365's users).
    describe: Callable[[Config, str], str] | None = None


KINDS: dict[str, TargetKind] = {}


def register(kind: TargetKind) -> TargetKind:
    """Add a kind to the registry (and its config model to the config's table)."""
    known = KINDS.get(kind.name)
    if known is not None and known is not kind:
        raise ValueError(f"target kind {kind.name!r} is registered already")
    model_kind = kind.config_model.model_fields["kind"].default
    if model_kind != kind.name:
        raise ValueError(f"{kind.config_model.__name__}.kind defaults to {model_kind!r}, not {kind.name!r}")
    add_target_model(kind.name, kind.config_model)
    KINDS[kind.name] = kind
    return kind


def kind_of(name: str) -> TargetKind:
    """The registered kind called ``name``; ConfigError naming the known kinds otherwise."""
    kind = KINDS.get(name)
    if kind is None:
        raise ConfigError(f"unknown target kind {name!r} (known: {', '.join(KINDS)})")
    return kind


# -- lifecycle policies (SPEC "Lifecycle"; provisioner/core/lifecycle.py) ----------------


def _remove_after(tcfg: Any) -> Policy:
    """Removed after ``remove_after_days`` of grace, never disabled first (Feide, itslearning)."""
    return Policy(disable_first=False, delete_after_days=tcfg.remove_after_days)


def _ad_policy(tcfg: ADConfig) -> Policy:
    """Disabled at once, deleted ``remove_after_days`` (90) later."""
    return Policy(disable_first=True, delete_after_days=tcfg.remove_after_days)


def _m365_policy(tcfg: M365Config) -> Policy:
    """Cloud users: sign-in blocked and soft-deleted the same day; restorable for ``restore_within_days``.

    Synced users (hybrid) belong to AD: on a stop their sessions are revoked the same day
    (the block comes from the AD disable through Entra Connect), and ``remove_after_days``
    later BAS releases the licences it gave and forgets the user; it never deletes it
    (the AD target's delete removes it through the sync).
    """
    if tcfg.users == "synced":
        return Policy(disable_first=True, delete_after_days=tcfg.remove_after_days)
    return Policy(
        disable_first=True,
        delete_after_days=0,
        soft_delete=True,
        restore_within_days=tcfg.restore_within_days,
    )


# -- connectors, sessions and probes ---------------------------------------------------


def _live(tcfg: Any) -> Capabilities:
    return Capabilities(live=True)


def _ad_capabilities(tcfg: Any) -> Capabilities:
    return Capabilities(live=True, password_length=tcfg.password_length)


def _m365_capabilities(tcfg: Any) -> Capabilities:
    if tcfg.users == "synced":
        return Capabilities(
            live=True,
            secretless_why="users are synced from AD: the password reaches them by password hash sync",
        )
    return Capabilities(live=True, password_length=tcfg.password_length)


def _files(tcfg: Any) -> Capabilities:
    return Capabilities(live=False, output_dir=tcfg.output_dir)


def _ad_connector(cfg: Config, name: str) -> Connector:
    """The AD connector of target ``name`` (reads the bind password; does not connect)."""
    from connectors.ad.connector import ADConnector, link_from_config

    tcfg = cfg.targets[name]
    assert isinstance(tcfg, ADConfig)
    return ADConnector(tcfg, link_from_config(cfg, tcfg), password_dir=cfg.path(tcfg.password_dir), name=name)


def _ad_probe(cfg: Config, name: str) -> str:
    """Connect over TLS, bind as the service account, read ``base_dn``."""
    from connectors.ad.connector import link_from_config

    tcfg = cfg.targets[name]
    assert isinstance(tcfg, ADConfig)
    link = link_from_config(cfg, tcfg)
    try:
        link.open()
        if link.read(tcfg.base_dn, ["objectClass"], what=f"read base_dn {tcfg.base_dn}") is None:
            raise ConfigError(f"targets.{name}.base_dn: {tcfg.base_dn} does not exist")
    finally:
        link.close()
    return f"{tcfg.url}: bound as {tcfg.bind_dn}, base {tcfg.base_dn} found"


def m365_connector(cfg: Config, name: str, clock: Clock | None = None) -> Connector:
    """The Microsoft 365 connector of ``name`` (reads the secret; does not connect).

    ``clock``: where the Graph client reads the time and waits (default the system's).
    """
    from connectors.m365.connector import M365Connector, client_from_config

    tcfg = cfg.targets[name]
    assert isinstance(tcfg, M365Config)
    client = client_from_config(cfg, tcfg, clock)
    ad = cfg.synced_ad_target(name) if tcfg.users == "synced" else None
    return M365Connector(tcfg, client, password_dir=cfg.path(tcfg.password_dir), name=name, ad_target=ad)


def _m365_probe(cfg: Config, name: str) -> str:
    """Get a token and read one user (what BAS needs to read)."""
    from connectors.m365.connector import client_from_config

    tcfg = cfg.targets[name]
    assert isinstance(tcfg, M365Config)
    client = client_from_config(cfg, tcfg)
    client.attempts = 1  # a check reports at once; a run retries
    try:
        resp = client.call("GET", "/users?$top=1&$select=id")
    finally:
        client.close()
    if not resp.ok:
        raise ConfigError(f"targets.{name}: Graph refused reading users: {resp.describe()}")
    return f"{tcfg.graph_url}: token for app {tcfg.client_id}, users readable"


def _m365_describe(cfg: Config, name: str) -> str:
    tcfg = cfg.targets[name]
    assert isinstance(tcfg, M365Config)
    if tcfg.users == "cloud":
        return "users cloud (created by BAS)"
    ad = cfg.synced_ad_target(name)
    match = f"onPremisesImmutableId from AD target {ad!r}, then employeeId" if ad else "employeeId"
    return f"users synced from AD (hybrid; matched by {match})"


def _files_describe(cfg: Config, name: str) -> str:
    """Where a file target writes, and how often a full file (`bas config check`)."""
    tcfg = cfg.targets[name]
    assert isinstance(tcfg, ItslearningConfig | FeideConfig)
    if isinstance(tcfg, FeideConfig) and tcfg.url:
        return f"live catalog {tcfg.url}"
    hours = tcfg.full_every_hours
    if hours:
        return f"files in {tcfg.output_dir}: a delta each run, a full file every {hours} h"
    said = f"files in {tcfg.output_dir}: a full file on every run with changes for it"
    if cfg.daemon.interval_seconds < 3600:
        # Each such run writes (and for itslearning uploads) the whole population.
        said += f" (the daemon runs every {cfg.daemon.interval_seconds} s: consider full_every_hours = 24)"
    return said


def _itslearning_connector(cfg: Config, name: str) -> Exporter:
    from connectors.itslearning.connector import ItslearningConnector

    tcfg = cfg.targets[name]
    assert isinstance(tcfg, ItslearningConfig)
    return ItslearningConnector(tcfg, cfg.owner, cfg.path(tcfg.output_dir), name=name, base_dir=cfg.base_dir)


def _itslearning_capabilities(tcfg: ItslearningConfig) -> Capabilities:
    return Capabilities(live=False, output_dir=tcfg.output_dir, delivers=tcfg.sftp is not None)


def _itslearning_check(cfg: Config, name: str) -> None:
    """The delivery's secret file and known_hosts file exist (apply mode), so a run does not find out."""
    tcfg = cfg.targets[name]
    assert isinstance(tcfg, ItslearningConfig)
    sftp = tcfg.sftp
    if sftp is None or tcfg.mode != "apply":
        return
    key = f"targets.{name}.sftp"
    if sftp.private_key_file:
        read_secret(sftp.private_key_file, cfg.base_dir, f"{key}.private_key_file")
    if sftp.password_file:
        read_secret(sftp.password_file, cfg.base_dir, f"{key}.password_file")
    if sftp.known_hosts_file and not cfg.path(sftp.known_hosts_file).is_file():
        raise ConfigError(f"{key}.known_hosts_file: {cfg.path(sftp.known_hosts_file)} is not a file")


def _itslearning_probe(cfg: Config, name: str) -> str:
    """Log in to the delivery's SFTP server (host key, login) and list its remote_dir; nothing written."""
    from connectors.itslearning.delivery import Delivery

    tcfg = cfg.targets[name]
    assert isinstance(tcfg, ItslearningConfig) and tcfg.sftp is not None
    return Delivery(tcfg.sftp, cfg.path(tcfg.output_dir), cfg.base_dir, f"targets.{name}.sftp").probe()


def _feide_connector(cfg: Config, name: str) -> Connector | Exporter:
    """Live writes to the LDAP server with ``url``; LDIF files without."""
    tcfg = cfg.targets[name]
    assert isinstance(tcfg, FeideConfig)
    if tcfg.url:
        from connectors.feide.ldap import FeideLdapConnector, link_from_config

        return FeideLdapConnector(tcfg, cfg.owner, link_from_config(cfg, tcfg))
    from connectors.feide.ldif import FeideLdifConnector

    return FeideLdifConnector(tcfg, cfg.owner, cfg.path(tcfg.output_dir))


def _ad_reader(cfg: Config, name: str) -> Reader:
    from connectors.ad.connector import link_from_config
    from connectors.ad.reader import ADReader

    tcfg = cfg.targets[name]
    assert isinstance(tcfg, ADConfig)
    return ADReader(link_from_config(cfg, tcfg), tcfg)


def _feide_reader(cfg: Config, name: str) -> Reader:
    from connectors.feide.ldap import link_from_config
    from connectors.feide.reader import FeideReader

    tcfg = cfg.targets[name]
    assert isinstance(tcfg, FeideConfig)
    return FeideReader(link_from_config(cfg, tcfg), tcfg)


def _m365_reader(cfg: Config, name: str) -> Reader:
    from connectors.m365.connector import client_from_config
    from connectors.m365.reader import M365Reader

    tcfg = cfg.targets[name]
    assert isinstance(tcfg, M365Config)
    return M365Reader(client_from_config(cfg, tcfg), synced=tcfg.users == "synced")


def _feide_capabilities(tcfg: FeideConfig) -> Capabilities:
    if tcfg.url:
        return Capabilities(live=True, reached_in_plan=True)
    return _files(tcfg)


def _feide_check(cfg: Config, name: str) -> None:
    """A live Feide target's secret file and CA file exist (in plan mode too: `bas feide check`)."""
    tcfg = cfg.targets[name]
    assert isinstance(tcfg, FeideConfig)
    if not tcfg.url:
        return
    if tcfg.password_file:
        try:
            read_secret(tcfg.password_file, cfg.base_dir)
        except ConfigError as exc:
            raise ConfigError(f"targets.{name}.password_file: {exc}") from exc
    if tcfg.ca_file and not cfg.path(tcfg.ca_file).is_file():
        raise ConfigError(f"targets.{name}.ca_file: {cfg.path(tcfg.ca_file)} is not a file")


def _feide_probe(cfg: Config, name: str) -> str:
    """The connector's own start: bind, then the base DN, its parent or the naming context.

    A run creates the owner's entry there; the probe reads, never writes.
    """
    tcfg = cfg.targets[name]
    assert isinstance(tcfg, FeideConfig)
    conn = _feide_connector(cfg, name)
    try:
        conn.begin("config-check", lambda kind, key: None)
    finally:
        conn.close()
    return f"{tcfg.url}: bound as {tcfg.bind_dn or 'anonymous'}, base {tcfg.base_dn} usable"


register(
    TargetKind(
        name="ad",
        label="AD",
        config_model=ADConfig,
        map_state=ad_mapping.map_state,
        placement=ad_mapping.PLACEMENT_ATTRS,
        policy=_ad_policy,
        capabilities=_ad_capabilities,
        connector=_ad_connector,
        reader=_ad_reader,
        probe=_ad_probe,
    )
)
register(
    TargetKind(
        name="m365",
        label="Microsoft 365",
        config_model=M365Config,
        map_state=m365_mapping.map_state,
        placement=m365_mapping.PLACEMENT_ATTRS,
        links=m365_mapping.LINK_ATTRS,
        policy=_m365_policy,
        capabilities=_m365_capabilities,
        connector=m365_connector,
        reader=_m365_reader,
        probe=_m365_probe,
        describe=_m365_describe,
    )
)
register(
    TargetKind(
        name="itslearning",
        label="itslearning",
        config_model=ItslearningConfig,
        map_state=itslearning_mapping.map_state,
        placement=itslearning_mapping.PLACEMENT_ATTRS,
        links=itslearning_mapping.LINK_ATTRS,
        policy=_remove_after,
        capabilities=_itslearning_capabilities,
        connector=_itslearning_connector,
        probe=_itslearning_probe,
        check=_itslearning_check,
        describe=_files_describe,
    )
)
register(
    TargetKind(
        name="feide",
        label="Feide",
        config_model=FeideConfig,
        map_state=feide_mapping.map_state,
        placement=feide_mapping.PLACEMENT_ATTRS,
        policy=_remove_after,
        capabilities=_feide_capabilities,
        connector=_feide_connector,
        reader=_feide_reader,
        probe=_feide_probe,
        check=_feide_check,
        describe=_files_describe,
    )
)
