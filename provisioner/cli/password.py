"""`bas password reset WHO`: a delegated password reset from the server's shell.

The same reset as the web console's (provisioner/run/password.py): one generated password
set on the person's live accounts through the executor, under the run lock, with a
changelog row per target naming who asked. The password is printed once, here, and
nowhere else (not in the changelog, the runs table or a log line).
"""

from __future__ import annotations

import getpass
import sys
from typing import Any

import click

from provisioner.cli.common import fail
from provisioner.core.nin import mask_text
from provisioner.run import local_edit, runner
from provisioner.run.password import reset_password, via_reason


@click.group("password")
def password_group() -> None:
    """Delegated password resets (AD and cloud Microsoft 365)."""


@password_group.command("reset")
@click.argument("who")
@click.option("--by", default=None, help="Who asks for the reset, for the audit (default: the login name).")
@click.pass_obj
def reset_cmd(c: Any, who: str, by: str | None) -> None:
    """Set a new generated password on a person's accounts (username, SIS id, local:<n>); printed once."""
    pid = local_edit.resolve_person(c.store, who)
    if pid is None:
        fail(f"nobody known as {mask_text(who)}", code=runner.EXIT_ERRORS)
    by = by or getpass.getuser()
    out = reset_password(c.cfg, c.store, pid, by, reason=via_reason(by, "CLI"))
    for t in out.targets:
        click.echo(f"  {t.target:<12} {t.result:<9} {mask_text(t.message)}")
    if out.password is None:
        fail(mask_text(out.message), code=out.exit_code)
    click.echo(f"run {out.run_id}: {mask_text(out.message)}")
    click.echo(f"new password for {out.username or pid}: {out.password}")
    sys.exit(out.exit_code)
