"""`bas` starts light: the top-level help and the command table load no command's module.

Every CLI call pays the start-up, so `bas --help` must not import the pipeline, a database
driver, pydantic or the connectors' clients; each command's module is imported when that
command runs (provisioner/cli/main.py COMMANDS). Checked by the modules loaded, never by
the clock (benchmarks/bench_cli_startup.py measures the time).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import click
import pytest

from provisioner.cli.main import COMMANDS, main

HEAVY = (
    "sqlalchemy",
    "pydantic",
    "structlog",
    "alembic",
    "ldap3",
    "msal",
    "requests",
    "starlette",
    "provisioner.config",
    "provisioner.run.runner",
    "provisioner.state.store",
)

_PROBE = """
import json, sys
from provisioner.cli.main import main
try:
    main({args!r}, prog_name="bas")
except SystemExit:
    pass
print(json.dumps(sorted(sys.modules)))
"""


def _loaded(args: list[str]) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(args=args)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["no-such-command"]])
def test_start_up_loads_no_heavy_module(args: list[str]) -> None:
    loaded = _loaded(args)
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY or m in HEAVY)
    assert heavy == [], f"`bas {' '.join(args)}` imported {heavy}"


def test_a_command_loads_its_module_when_it_runs() -> None:
    assert "provisioner.run.runner" in _loaded(["plan", "--help"])


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_the_listed_help_is_the_commands_own(name: str) -> None:
    module, attr, short = COMMANDS[name]
    command = getattr(importlib.import_module(module), attr)
    assert isinstance(command, click.Command)
    assert command.get_short_help_str(limit=200) == short
    assert main.get_command(click.Context(main), name) is command


def test_every_command_module_is_listed() -> None:
    """A command defined in a CLI module but missing from COMMANDS would be unreachable."""
    listed = {(m, a) for m, a, _ in COMMANDS.values()}
    for module in {m for m, _, _ in COMMANDS.values()}:
        mod = importlib.import_module(module)
        commands = {n: v for n, v in vars(mod).items() if isinstance(v, click.Command)}
        # A group's subcommands are module attributes too: they are reached through their group.
        nested = {
            id(sub) for v in commands.values() if isinstance(v, click.Group) for sub in v.commands.values()
        }
        missing = sorted(n for n, v in commands.items() if (module, n) not in listed and id(v) not in nested)
        assert not missing, f"{module}: commands not in COMMANDS: {missing}"
