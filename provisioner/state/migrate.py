"""Schema migrations of the state store (Alembic), and the check every StateStore makes.

A brand-new, empty database is created from ``schema.metadata`` in one go and stamped
with the head revision (the same tables the migrations build, tested to match). A
database with an older revision is refused until an admin runs ``bas db upgrade``: BAS
never changes the schema of a production database on its own. A database made by a
BAS from before migrations (tables, no ``alembic_version``) is the baseline revision.
"""

from __future__ import annotations

import functools
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from provisioner.state import schema

MIGRATIONS = Path(__file__).parent / "migrations"
BASELINE = "0001"  # the schema BAS created before it had migrations


class SchemaError(Exception):
    """The state store's schema is not the one this BAS needs (message says what to do)."""


def alembic_config(connection: sa.Connection | None = None) -> AlembicConfig:
    """An Alembic config for the packaged scripts, migrating ``connection``."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@functools.lru_cache(maxsize=1)
def head() -> str:
    """The newest revision this BAS knows."""
    rev = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert rev is not None
    return rev


def current(conn: sa.Connection) -> str | None:
    """The database's revision; BASELINE for a pre-migration database; None when empty."""
    rev = MigrationContext.configure(conn).get_current_revision()
    if rev is None and sa.inspect(conn).has_table("runs"):
        return BASELINE
    return rev


def _known(rev: str) -> bool:
    script = ScriptDirectory.from_config(alembic_config())
    return any(r.revision == rev for r in script.walk_revisions())


def ensure_current(engine: sa.Engine) -> None:
    """Create an empty database at head; raise SchemaError when it is behind or ahead."""
    with engine.begin() as conn:
        rev = current(conn)
        if rev is None:
            schema.metadata.create_all(conn)
            MigrationContext.configure(conn).stamp(ScriptDirectory.from_config(alembic_config()), head())
            return
    if rev == head():
        return
    where = engine.url.render_as_string(hide_password=True)
    if _known(rev):
        raise SchemaError(
            f"the state store {where} has schema revision {rev}, this BAS needs {head()}:"
            " run `bas db upgrade` (back up the database first)"
        )
    raise SchemaError(
        f"the state store {where} has schema revision {rev}, unknown to this BAS (head {head()}):"
        " it was written by a newer BAS; upgrade BAS instead"
    )


def upgrade(engine: sa.Engine, revision: str = "head") -> tuple[str | None, str]:
    """Migrate the database to ``revision``; returns (revision before, revision after)."""
    with engine.begin() as conn:
        before = current(conn)
        if before == BASELINE and MigrationContext.configure(conn).get_current_revision() is None:
            # Made by a BAS from before migrations: its tables are the baseline revision.
            MigrationContext.configure(conn).stamp(ScriptDirectory.from_config(alembic_config()), BASELINE)
        command.upgrade(alembic_config(conn), revision)
        after = MigrationContext.configure(conn).get_current_revision()
    assert after is not None
    return before, after
