"""What every `bas` command module shares: how a command fails."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from provisioner.run.runner import EXIT_USAGE


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    """Print an error and exit with the given code."""
    click.echo(f"bas: {message}", err=True)
    sys.exit(code)
