"""The `bas` command line: demo, config, plan, apply, sync, approve, runs, changelog, person, usernames,
daemon, status, db, local, lock, unlock.

Exit codes: 0 done; 1 done with per-object errors (rejected changes, or data errors in
the source: `plan` too); 2 usage or config error; 3 held by a safety rule; 4 another run
holds the lock; 5 interrupted (the next run does the rest); 6 a target failed as a whole
(unreachable, base DN missing; the other targets went on); 70 internal error (a bug: one
line on stderr, the traceback in a file it names); 130 stopped with Ctrl-C.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import OperationalError

from provisioner import config as config_mod
from provisioner import logs
from provisioner.cli import local as cli_local
from provisioner.cli import password as cli_password
from provisioner.cli import service as cli_service
from provisioner.cli import targets as cli_targets
from provisioner.cli import web as cli_web
from provisioner.cli.common import check_day, fail
from provisioner.core.model import School
from provisioner.core.nin import mask, mask_text
from provisioner.core.plan import CORE, Op, Plan
from provisioner.core.scope import Scope, unknown_names
from provisioner.core.states import ChangeResult
from provisioner.kinds import kind_of
from provisioner.run import probe, runner
from provisioner.run.targets import check_targets
from provisioner.service import changelog, explain
from provisioner.state.history import Filter
from provisioner.state.migrate import SchemaError
from provisioner.state.store import StateStore
from sources.registry import open_source

EXIT_USAGE = runner.EXIT_USAGE


class Ctx:
    """Lazily loaded config and state store shared by the subcommands."""

    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._cfg: config_mod.Config | None = None
        self._store: StateStore | None = None

    @property
    def cfg(self) -> config_mod.Config:
        """The validated config (exit 2 with a clear message when missing or invalid)."""
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
    """

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
            sys.exit(runner.EXIT_INTERNAL)


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
    logs.configure()
    ctx.obj = Ctx(config_path)


# ---- demo ----------------------------------------------------------------------------
@main.command()
@click.option(
    "--dir",
    "directory",
    default="bas-demo",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for the demo's database, state, config and output files.",
)
@click.option("--seed", default=1, show_default=True, help="Seed for the generated school owner.")
@click.option(
    "--source",
    type=click.Choice(["sql", "pifu"]),
    default="sql",
    show_default=True,
    help="Read the generated SIS as a SQL database, or as the PIFU-IMS export a municipal SIS hands out.",
)
def demo(directory: str, seed: int, source: str) -> None:
    """Create a demo school owner and run the main job on it, twice."""
    from provisioner.cli.demo import run_demo

    sys.exit(run_demo(Path(directory), seed, source))


# ---- config --------------------------------------------------------------------------
@main.group("config")
def config_group() -> None:
    """Configuration commands."""


@config_group.command("check")
@pass_ctx
def config_check(c: Ctx) -> None:
    """Validate the config file and reach the source, the state store and every live target.

    Exit 2 when the config or the source is wrong; 6 when a target cannot be reached.
    """
    cfg = c.cfg
    try:
        check_targets(cfg)
    except config_mod.ConfigError as exc:
        fail(str(exc))
    click.echo(f"config {c.config_path}: valid")
    click.echo(f"  owner    {cfg.owner.name} ({cfg.owner.org_number}), realm {cfg.owner.realm}")
    for name, t in cfg.targets.items():
        describe = kind_of(t.kind).describe
        extra = ("" if t.enabled else " (disabled)") + (f", {describe(cfg, name)}" if describe else "")
        click.echo(f"  target   {name:<12} kind {t.kind:<11} mode {t.mode}{extra}")
    try:
        with open_source(cfg) as src:
            click.echo(f"  source   {mask_text(src.describe())}")
            snap = src.read()
    except config_mod.ConfigError as exc:
        fail(str(exc))
    except Exception as exc:  # any driver error: report it as a config problem
        fail(f"source: {exc}")
    click.echo("  source   reachable: " + ", ".join(f"{k} {v}" for k, v in snap.counts().items()))
    unknown = _print_scopes(cfg, snap.schools)
    runs = c.store.runs.newest(1)
    click.echo(
        f"  state    reachable; last run: {runs[0]['run_id'] + ' ' + runs[0]['status'] if runs else 'none'}"
    )
    probes = probe.probe_targets(cfg)
    for p in probes:
        click.echo(f"  reach    {p.target:<12} {'ok' if p.ok else 'FAILED'}: {mask_text(p.detail)}")
    failed = [p.target for p in probes if not p.ok]
    if failed:
        fail(f"cannot reach target(s) {', '.join(failed)} (see above)", code=runner.EXIT_TARGET_FAILED)
    if unknown:
        fail(f"the scope of {', '.join(unknown)} names schools the source does not have (see above)")


def _print_scopes(cfg: config_mod.Config, schools: Sequence[School]) -> list[str]:
    """Each enabled target's scope in a few words; returns the targets whose scope names unknown schools.

    A school in a scope that the source lacks is a data problem (schools come from the
    SIS, and one may close), so it is reported here, not when the config is parsed.
    """
    by_id = {s.school_id: s for s in schools}
    unknown: list[str] = []
    for name, t in cfg.enabled_targets().items():
        scope = Scope.of(t)
        click.echo(f"  scope    {name:<12} {scope.describe(by_id)}")
        for what in unknown_names(scope, schools):
            click.echo(f"  scope    {name:<12} UNKNOWN targets.{name}.{what}: no school of the source has it")
            if name not in unknown:
                unknown.append(name)
    return unknown


# ---- plan / sync / apply / approve -----------------------------------------------------
def _print_plan(plan: Plan, show: int, err: bool = False) -> None:
    ops = [op.value for op in Op]
    rows = []
    for tp in plan.targets:
        counts = tp.counts()
        mode = "held" if tp.hold else "plan only" if tp.dry_run else "apply"
        rows.append([tp.target, mode, *[counts.get(o, 0) or "" for o in ops]])
    click.echo(changelog.table(["target", "mode", *ops], rows), err=err)
    for tp in plan.targets:
        if tp.hold:
            click.echo(f"HELD {tp.target}: {tp.hold.message}", err=err)
    if show:
        for tp in plan.targets:
            for ch in tp.changes[:show]:
                who = ch.username or ch.key
                click.echo(
                    mask_text(f"  {tp.target:<12} {ch.op.value:<14} {ch.kind:<7} {who:<22} {ch.reason}"),
                    err=err,
                )
            if len(tp.changes) > show:
                click.echo(f"  {tp.target:<12} … {len(tp.changes) - show} more", err=err)
    if plan.basis == "certified":
        click.echo(
            "source, config and state unchanged since the last run: its certified plan stands"
            " (--full recomputes)",
            err=err,
        )
    if plan.errors:
        click.echo(f"{len(plan.errors)} data error(s) in the source (records skipped, run goes on):", err=err)
        for e in plan.errors[:20]:
            click.echo(f"  {e.kind:<20} {e.record:<30} {e.message}", err=err)
        if len(plan.errors) > 20:
            click.echo(f"  … {len(plan.errors) - 20} more (see `bas runs` / --json)", err=err)


def _write_plan(plan: Plan, path: str) -> None:
    # Saved plans carry NINs (Feide needs them): owner-only file.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # also when it overwrites a file another mode made
    with open(fd, "w", encoding="utf-8") as fh:
        fh.write(plan.dumps())


def _plan_json(plan: Plan, show_nin: bool) -> str:
    text = json.dumps(plan.to_json(), ensure_ascii=False, indent=1)
    return text if show_nin else mask_text(text)


@main.command()
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False), help="Save the plan as JSON (for `bas apply`)."
)
@click.option(
    "--as-of", callback=check_day, help="Evaluate activity on this day (YYYY-MM-DD); default today."
)
@click.option("--show", default=10, show_default=True, help="Changes to list per target.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole plan as JSON (NINs masked).")
@click.option("--show-nin", is_flag=True, help="Do not mask NINs in --json output.")
@click.option("--full", is_flag=True, help="Derive and diff in full even when no input changed.")
@pass_ctx
def plan(
    c: Ctx, output: str | None, as_of: str | None, show: int, as_json: bool, show_nin: bool, full: bool
) -> None:
    """Dry-run: compute and print the plan; apply nothing."""
    out = runner.sync(c.cfg, c.store, dry_run=True, as_of=as_of, full=full)
    _report(out, show=show, as_json=as_json, show_nin=show_nin)
    if out.plan is not None and output:
        _write_plan(out.plan, output)
        click.echo(
            f"plan saved to {output} (run {out.run_id}); apply it with `bas apply {output}`", err=as_json
        )
    sys.exit(out.exit_code)


def _progress_sync(c: Ctx, dry_run: bool, as_of: str | None, full: bool = False) -> runner.RunOutcome:
    if not sys.stderr.isatty() or dry_run:
        return runner.sync(c.cfg, c.store, dry_run=dry_run, as_of=as_of, full=full)
    with click.progressbar(length=0, label="applying", file=sys.stderr) as bar:

        def progress(n: int) -> None:
            bar.length = max(bar.length or 0, bar.pos + n)
            bar.update(n)

        return runner.sync(c.cfg, c.store, dry_run=dry_run, as_of=as_of, progress=progress, full=full)


def _report(out: runner.RunOutcome, show: int = 10, as_json: bool = False, show_nin: bool = False) -> None:
    if as_json:
        data: dict[str, Any] = {
            "run_id": out.run_id,
            "status": out.status,
            "exit_code": out.exit_code,
            "message": out.message,
            "results": {k: v.to_json() for k, v in out.results.items()},
        }
        if out.plan is not None:
            data["plan"] = json.loads(_plan_json(out.plan, show_nin))
        click.echo(json.dumps(data, ensure_ascii=False, indent=1))
        return
    click.echo(f"run {out.run_id}: {out.status}")
    if out.plan is not None:
        _print_plan(out.plan, show)
    for name, r in out.results.items():
        if name == CORE:
            continue
        line = f"  {name:<12} {r.status:<10} ok {r.ok}"
        if r.rejected or r.failed:
            line += f", rejected {r.rejected}, failed {r.failed}"
        if r.pending:
            line += f", pending {r.pending} (retried next run)"
        click.echo(line)
        for e in r.errors[:10]:
            click.echo(f"    {mask_text(e)}")
    if out.message:
        click.echo(out.message, err=out.exit_code != 0)


@main.command()
@click.option("--dry-run", is_flag=True, help="Plan only (the same as `bas plan`).")
@click.option(
    "--as-of", callback=check_day, help="Evaluate activity on this day (YYYY-MM-DD); default today."
)
@click.option("--show", default=5, show_default=True, help="Changes to list per target.")
@click.option("--json", "as_json", is_flag=True, help="Print the run result as JSON.")
@click.option("--full", is_flag=True, help="Derive and diff in full even when no input changed.")
@pass_ctx
def sync(c: Ctx, dry_run: bool, as_of: str | None, show: int, as_json: bool, full: bool) -> None:
    """Plan and apply one run."""
    out = _progress_sync(c, dry_run, as_of, full)
    _report(out, show=show, as_json=as_json)
    sys.exit(out.exit_code)


@main.command()
@click.argument("plan_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_ctx
def apply(c: Ctx, plan_file: str, as_json: bool) -> None:
    """Apply exactly a saved plan (refused if the state changed since it was made)."""
    try:
        saved = Plan.loads(Path(plan_file).read_text(encoding="utf-8"))
    except (ValueError, KeyError) as exc:
        fail(f"{plan_file}: not a BAS plan: {exc}")
    out = runner.apply_saved(c.cfg, c.store, saved)
    _report(out, show=0, as_json=as_json)
    sys.exit(out.exit_code)


@main.command()
@click.argument("run_id")
@click.option("--by", default=None, help="Who approves (default: the login name).")
@pass_ctx
def approve(c: Ctx, run_id: str, by: str | None) -> None:
    """Approve one held run (its plan is applied now) or one source refusal (accepted once)."""
    out = runner.approve(c.cfg, c.store, run_id, by or getpass.getuser())
    _report(out, show=0)
    sys.exit(out.exit_code)


@main.command()
@click.option("--limit", default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def runs(c: Ctx, limit: int, as_json: bool) -> None:
    """Recent runs, newest first."""
    rows = c.store.runs.newest(limit)
    if as_json:
        for r in rows:
            r["summary"] = json.loads(r["summary"]) if r["summary"] else None
        click.echo(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    table_rows = []
    for r in rows:
        summ = json.loads(r["summary"]) if r["summary"] else {}
        changes = sum(sum(v.values()) for v in summ.get("plan", {}).values())
        note = (r["error"] or "")[:60] or (f"approved by {r['approved_by']}" if r["approved_by"] else "")
        table_rows.append(
            [
                r["run_id"],
                r["kind"],
                r["status"],
                r["started_at"][:19],
                r["as_of"],
                r["active_persons"],
                changes,
                summ.get("data_errors", ""),
                note,
            ]
        )
    click.echo(
        changelog.table(
            ["run", "kind", "status", "started", "as of", "active", "changes", "data errors", "note"],
            table_rows,
        )
    )


@main.command("changelog")
@click.option("--person", help="Username, NIN or SIS person id.")
@click.option("--target")
@click.option("--run", "run_id")
@click.option("--since", help="From this date or timestamp (inclusive).")
@click.option("--until", help="Up to this date or timestamp (inclusive).")
@click.option("--op", type=click.Choice([op.value for op in Op]), help="Operation.")
@click.option("--result", type=click.Choice([r.value for r in ChangeResult]))
@click.option("--limit", default=200, show_default=True)
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True
)
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
@click.option("--show-nin", is_flag=True, help="Show NINs unmasked (audited use only).")
@pass_ctx
def changelog_cmd(
    c: Ctx,
    person: str | None,
    target: str | None,
    run_id: str | None,
    since: str | None,
    until: str | None,
    op: str | None,
    result: str | None,
    limit: int,
    fmt: str,
    as_json: bool,
    show_nin: bool,
) -> None:
    """What was done, when and why."""
    f = Filter(
        person=person, target=target, run=run_id, since=since, until=until, op=op, result=result, limit=limit
    )
    rows = c.store.history.query(f)
    if person and not rows and fmt == "table" and not as_json:
        fail(f"no changelog entries for {mask_text(person)}", code=1)
    click.echo(changelog.render(rows, "json" if as_json else fmt, show_nin))


@main.group()
def person() -> None:
    """Persons."""


@person.command("show")
@click.argument("who")
@click.option("--json", "as_json", is_flag=True)
@click.option("--show-nin", is_flag=True, help="Show NINs unmasked (audited use only).")
@pass_ctx
def person_show(c: Ctx, who: str, as_json: bool, show_nin: bool) -> None:
    """Explain one person (username, NIN or SIS id): source facts, accounts per target, history."""
    info = explain.explain(c.cfg, c.store, who, show_nin)
    if info is None:
        fail(f"nobody known as {mask_text(who)}", code=1)
    click.echo(
        json.dumps(info, ensure_ascii=False, indent=1, default=str) if as_json else explain.render_text(info)
    )


@main.group("usernames")
def usernames_group() -> None:
    """The historic base of usernames."""


@usernames_group.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
def usernames_show(c: Ctx, name: str, as_json: bool) -> None:
    """Who a username was issued to (it is never issued to anyone else)."""
    rec = c.store.identities.username_record(name)
    if rec is None:
        fail(f"username {name!r} has never been issued or reserved", code=1)
    rec["nin"] = mask(rec["nin"])
    ident = c.store.identities.all().get(rec["person_id"]) if rec["person_id"] else None
    rec["current_status"] = ident.status if ident else None
    if as_json:
        click.echo(json.dumps(rec, ensure_ascii=False, indent=1))
        return
    for k in ("username", "origin", "person_id", "nin", "created_at", "current_status", "note"):
        click.echo(f"{k:<15} {rec.get(k) if rec.get(k) is not None else '-'}")


@usernames_group.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False))
@pass_ctx
def usernames_import(c: Ctx, csv_file: str) -> None:
    """Reserve usernames in use elsewhere (CSV from the old BAS or AD) so they are never issued."""
    from provisioner.core.usernames import read_reserved_csv

    try:
        found = read_reserved_csv(csv_file)
    except ValueError as exc:
        fail(str(exc))
    added, known = c.store.identities.reserve_usernames(found, note=f"imported from {Path(csv_file).name}")
    click.echo(
        f"{csv_file}: {len(found)} usernames read, {added} reserved now, {known} already in the historic base"
    )


@usernames_group.command("bind")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False))
@pass_ctx
def usernames_bind(c: Ctx, csv_file: str) -> None:
    """Give persons the logins they already have (CSV: employeeID/person_id + sAMAccountName/username).

    For taking over from AD or an old BAS: each person gets their existing username, and
    the AD and Microsoft 365 connectors adopt their accounts. Conflicts are listed (exit 1).
    """
    from provisioner.core.bindings import read_binding_csv

    try:
        pairs = read_binding_csv(csv_file)
    except ValueError as exc:
        fail(str(exc))
    bound, already, conflicts = c.store.identities.bind_usernames(
        pairs, note=f"bound from {Path(csv_file).name}"
    )
    for line in conflicts:
        click.echo(f"conflict: {line}", err=True)
    click.echo(
        f"{csv_file}: {len(pairs)} bindings read, {bound} bound now, {already} already so,"
        f" {len(conflicts)} conflicts"
    )
    sys.exit(runner.EXIT_ERRORS if conflicts else runner.EXIT_OK)


# ---- feide, ad, m365: checks and reconciliation (provisioner/cli/targets.py) -------------
cli_targets.register(main)
cli_web.register(main)


# ---- daemon, status, db (provisioner/cli/service.py) -------------------------------------
cli_service.register(main)

# ---- local persons, lock, unlock (provisioner/cli/local.py) ------------------------------
cli_local.register(main)

# ---- delegated password resets (provisioner/cli/password.py) -----------------------------
cli_password.register(main)


if __name__ == "__main__":
    main()
