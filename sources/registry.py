"""The source-kind registry: each kind of school-admin source is one ``SourceKind``.

A kind names its config model (validated from ``[source]`` by
``provisioner.source_config``) and a factory that opens a ``Source`` for a run. The
built-in kinds are registered below; each factory imports its plug-in only when it is
used, so a deployment that reads SQL never imports the XML or HTTP stacks. Adding a kind
is one ``register(SourceKind(...))`` call: it also hands the config model down to
``provisioner.source_config.add_source_model``, which sits below this module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from provisioner.config import Config
from provisioner.source_config import (
    FintSourceConfig,
    PifuSourceConfig,
    SourceBase,
    SqlSourceConfig,
    add_source_model,
)
from sources.base import Source


@dataclass(frozen=True)
class SourceKind:
    """Everything BAS knows about one kind of source."""

    name: str
    model: type[SourceBase]
    open: Callable[[Config], Source]  # a Source for one run, from the whole config
    summary: str  # for `bas config check` and the README


SOURCE_KINDS: dict[str, SourceKind] = {}


def register(kind: SourceKind) -> SourceKind:
    """Add a source kind (its config model included); a second kind of the same name is refused."""
    if kind.name in SOURCE_KINDS and SOURCE_KINDS[kind.name] is not kind:
        raise ValueError(f"source kind {kind.name!r} is already registered")
    add_source_model(kind.name, kind.model)
    SOURCE_KINDS[kind.name] = kind
    return kind


def source_kind(name: str) -> SourceKind:
    """The registered kind of this name; LookupError naming the known ones."""
    try:
        return SOURCE_KINDS[name]
    except KeyError:
        raise LookupError(f"unknown source kind {name!r}; known: {', '.join(SOURCE_KINDS)}") from None


def open_source(cfg: Config) -> Source:
    """The configured source, opened for one run (use it as a context manager)."""
    return source_kind(cfg.source.kind).open(cfg)


def _sql(cfg: Config) -> Source:
    from sources.sql import SqlSource

    return SqlSource(cfg)


def _pifu(cfg: Config) -> Source:
    from sources.pifu import PifuSource

    return PifuSource(cfg)


def _fint(cfg: Config) -> Source:
    from sources.fint import FintSource

    return FintSource(cfg)


register(SourceKind("sql", SqlSourceConfig, _sql, "a SQL database (the reference schema, or queries)"))
register(SourceKind("pifu", PifuSourceConfig, _pifu, "PIFU-IMS 1.2 export files (optionally over SFTP)"))
register(SourceKind("fint", FintSourceConfig, _fint, "the FINT API (Visma InSchool, county HR systems)"))
