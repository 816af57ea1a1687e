"""The `bas` command line: the top-level group, its lazily loaded commands (COMMANDS), the context.

Exit codes: 0 done; 1 done with per-object errors (rejected changes, or data errors in
the source: `plan` too); 2 usage or config error; 3 held by a safety rule; 4 another run
holds the lock; 5 interrupted (the next run does the rest); 6 a target failed as a whole
(unreachable, base DN missing; the other targets went on); 70 internal error (a bug: one
line on stderr, the traceback in a file it names); 130 stopped with Ctrl-C.
"""

from __future__ import annotations

import importlib
import sys
import tempfile
import traceback
from typing import TYPE_CHECKING, Any

import click

from provisioner.cli.common import fail
from provisioner.core.nin import mask_text
from provisioner.run.exits import EXIT_INTERNAL

if TYPE_CHECKING:
    from provisioner.config import Config
    from provisioner.state.store import StateStore

# Every command: name -> (module, attribute, the one-line help `bas --help` lists). A command's
# module is imported only when that command runs, so `bas --help` and a mistyped command
# load no database driver, pydantic or pipeline (tests/test_cli_startup.py checks both the
# imports and that these lines match each command's own help).
COMMANDS: dict[str, tuple[str, str, str]] = {
    "demo": (
        "provisioner.cli.checks",
        "demo",
        "Create a demo school owner and run the main job on it, twice.",
    ),
    "config": ("provisioner.cli.checks", "config_group", "Configuration commands."),
    "plan": ("provisioner.cli.runs", "plan", "Dry-run: compute and print the plan; apply nothing."),
    "sync": ("provisioner.cli.runs", "sync", "Plan and apply one run."),
    "apply": (
        "provisioner.cli.runs",
        "apply",
        "Apply exactly a saved plan (refused if the state changed since it was made).",
    ),
    "approve": (
        "provisioner.cli.runs",
        "approve",
        "Approve one held run (its plan is applied now) or one source refusal (accepted once).",
    ),
    "runs": ("provisioner.cli.runs", "runs", "Recent runs, newest first."),
    "changelog": ("provisioner.cli.runs", "changelog_cmd", "What was done, when and why."),
    "person": ("provisioner.cli.runs", "person", "Persons."),
    "usernames": ("provisioner.cli.runs", "usernames_group", "The historic base of usernames."),
    "feide": ("provisioner.cli.targets", "feide_group", "The Feide catalog."),
    "ad": (
        "provisioner.cli.targets",
        "ad_group",
        "Active Directory: read back and compare with what BAS recorded.",
    ),
    "m365": (
        "provisioner.cli.targets",
        "m365_group",
        "Microsoft 365: read the tenant back and compare with what BAS recorded.",
    ),
    "reconcile": (
        "provisioner.cli.targets",
        "reconcile_any",
        "Report drift in one live target of any kind (exit 1 when there is any); --repair fixes it.",
    ),
    "web": (
        "provisioner.cli.web",
        "web_command",
        "Serve the web console ([web] in the config: listen, public_url, TLS, OpenID Connect, roles).",
    ),
    "daemon": (
        "provisioner.cli.service",
        "daemon",
        "Run as a service: scheduled runs, metrics, alerts; SIGTERM stops, SIGHUP reloads the config.",
    ),
    "status": (
        "provisioner.cli.service",
        "status",
        "Health: each target's last run (error, files to deliver), held runs, failed objects, next run.",
    ),
    "db": ("provisioner.cli.service", "db_group", "The state store's schema (Alembic migrations)."),
    "local": (
        "provisioner.cli.local",
        "local_group",
        "Local persons: substitutes, external staff, persons with protected identity.",
    ),
    "lock": (
        "provisioner.cli.local",
        "lock_cmd",
        "Lock a person (username, NIN, SIS id, local:<n>): accounts disabled until unlocked, never deleted.",
    ),
    "password": (
        "provisioner.cli.password",
        "password_group",
        "Delegated password resets (AD and cloud Microsoft 365).",
    ),
    "unlock": (
        "provisioner.cli.local",
        "unlock_cmd",
        "Unlock a person: the next sync enables the accounts the lock kept disabled.",
    ),
}


class Ctx:
    """Lazily loaded config and state store shared by the subcommands."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._cfg: Config | None = None
        self._store: StateStore | None = None

    @property
    def cfg(self) -> Config:
        """The validated config (exit 2 with a clear message when missing or invalid)."""
        from provisioner import config as config_mod
        from provisioner import logs

        if self._cfg is None:
            if not self.config_path:
                fail("no config: pass --config PATH or set BAS_CONFIG (try `bas demo` for an example)")
            try:
                self._cfg = config_mod.load(self.config_path)
            except config_mod.ConfigError as exc:
                fail(str(exc))
            logs.configure(self._cfg.logging.level, self._cfg.logging.format)
        return self._cfg

    @property
    def store(self) -> StateStore:
        """The state store named in the config."""
        from sqlalchemy.exc import OperationalError

        from provisioner.state.migrate import SchemaError
        from provisioner.state.store import StateStore

        if self._store is None:
            try:
                self._store = StateStore(self.cfg.sqlalchemy_url(self.cfg.state.url))
            except SchemaError as exc:
                fail(str(exc))
            except OperationalError as exc:  # server down, wrong host or database: not a bug
                fail(f"state.url: cannot open the state store: {str(exc.orig).strip().splitlines()[0]}")
        return self._store


pass_ctx = click.make_pass_decorator(Ctx)
EXIT_CTRL_C = 130  # the shell's 128 + SIGINT


def save_traceback(exc: BaseException) -> str:
    """Write the traceback of an unexpected error to a new owner-only file (NINs masked); its path."""
    fd, path = tempfile.mkstemp(prefix="bas-traceback-", suffix=".txt")  # created 0600
    with open(fd, "w", encoding="utf-8") as fh:
        fh.write(mask_text("".join(traceback.format_exception(exc))))
    return path


class _Main(click.Group):
    """The top-level group: an unexpected error is one line and exit 70, never a bare traceback.

    Python's own exit status for an uncaught exception is 1, which BAS uses for "done with
    per-object errors"; a script or the systemd unit must be able to tell a bug apart.
    Its commands are COMMANDS, each imported when it is used.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        command: click.Command = getattr(importlib.import_module(entry[0]), entry[1])
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # click's own listing (sorted, each help cut to the width), from COMMANDS: no command imported.
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(n) for n in names)
        with formatter.section("Commands"):
            # A stand-in command carrying only the help text cuts it exactly as the real one would.
            formatter.write_dl(
                [(n, click.Command(n, help=COMMANDS[n][2]).get_short_help_str(limit)) for n in names]
            )

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("bas: stopped (Ctrl-C)", err=True)
            sys.exit(EXIT_CTRL_C)
        except Exception as exc:
            where = save_traceback(exc)
            first = (str(exc).splitlines() or [""])[0]  # the whole of it is in the file
            click.echo(
                f"bas: internal error: {type(exc).__name__}: {mask_text(first)}"
                f" (traceback in {where}; please report it)",
                err=True,
            )
            sys.exit(EXIT_INTERNAL)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option(
    "--config",
    "config_path",
    envvar="BAS_CONFIG",
    type=click.Path(dir_okay=False),
    help="Config file (TOML). Also BAS_CONFIG.",
)
@click.version_option(package_name="bas-provisioner")
@click.pass_context
def main(ctx: click.Context, config_path: str | None) -> None:
    """BAS: keeps school accounts (AD, Microsoft 365, itslearning, Feide) in step with the SIS."""
    from provisioner import logs

    logs.configure()
    ctx.obj = Ctx(config_path)


if __name__ == "__main__":
    main()
