"""What every `bas` command module shares: how a command fails, how a day option is checked."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from provisioner.run.exits import EXIT_USAGE


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print an error and exit with the given code."""
    click.echo(f"bas: {message}", err=True)
    sys.exit(code)


def check_day(_ctx: click.Context | None, _param: click.Parameter | None, value: str | None) -> str | None:
    """A click callback: a day option (``--as-of``, ``--end``) must be a real calendar day YYYY-MM-DD."""
    if value is None:
        return None
    from provisioner.run.runner import valid_day  # loaded when a command runs, not at start-up

    try:
        return valid_day(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
