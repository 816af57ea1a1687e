"""The service commands of `bas`: daemon, status, db upgrade/current.

provisioner/cli/main.py lists them; the context object is the CLI's lazily loaded config
and state store (``.config_path``, ``.cfg``, ``.store``).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from provisioner.cli.common import fail
from provisioner.run.exits import EXIT_ERRORS


def _state_engine(c: Any) -> Any:
    import sqlalchemy as sa

    return sa.create_engine(c.cfg.sqlalchemy_url(c.cfg.state.url))


@click.command()
@click.option(
    "--interval",
    type=click.IntRange(min=1),
    help="Seconds between incremental runs (overrides [daemon] interval_seconds, default 60).",
)
@click.pass_obj
def daemon(c: Any, interval: int | None) -> None:
    """Run as a service: scheduled runs, metrics, alerts; SIGTERM stops, SIGHUP reloads the config."""
    from provisioner import config as config_mod
    from provisioner import logs
    from provisioner.service.daemon import Daemon

    if not c.config_path:
        fail("no config: pass --config PATH or set BAS_CONFIG")
    try:
        d = Daemon(c.config_path, interval)
    except config_mod.ConfigError as exc:
        fail(str(exc))
    # The journal gets JSON lines on stdout, whatever [logging] format says for the CLI.
    logs.configure(d.cfg.logging.level, "json", stream=sys.stdout)
    sys.exit(d.run())


@click.command()
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def status(c: Any, as_json: bool) -> None:
    """Health: each target's last run (error, files to deliver), held runs, failed objects, next run."""
    from provisioner.service import status as status_mod

    health = status_mod.collect(c.store, c.cfg.enabled_targets())
    if as_json:
        click.echo(json.dumps(health.to_json(), ensure_ascii=False, indent=1))
    else:
        click.echo(status_mod.render_text(health))


@click.group("db")
def db_group() -> None:
    """The state store's schema (Alembic migrations)."""


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@click.pass_obj
def db_upgrade(c: Any, revision: str) -> None:
    """Migrate the state store to the newest schema (back it up first)."""
    from provisioner.state import migrate

    engine = _state_engine(c)
    try:
        before, after = migrate.upgrade(engine, revision)
    finally:
        engine.dispose()
    if before == after:
        click.echo(f"state store already at revision {after}")
    else:
        click.echo(f"state store upgraded from revision {before or '(empty)'} to {after}")


@db_group.command("current")
@click.pass_obj
def db_current(c: Any) -> None:
    """Show the state store's revision and the one this BAS needs (exit 1 when they differ)."""
    from provisioner.state import migrate

    engine = _state_engine(c)
    try:
        with engine.connect() as conn:
            rev = migrate.current(conn)
    finally:
        engine.dispose()
    click.echo(f"state store revision {rev or '(empty)'}; this BAS needs {migrate.head()}")
    if rev != migrate.head():
        sys.exit(EXIT_ERRORS)
