"""The run commands of `bas`: plan, sync, apply, approve, runs, changelog, person show, usernames.

Loaded only when one of these commands runs (provisioner/cli/main.py lists them); the
pipeline they drive (provisioner.run.runner) is imported here, not at start-up.
"""

from __future__ import annotations

import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from provisioner.cli.common import check_day, fail
from provisioner.cli.main import Ctx, pass_ctx
from provisioner.core.nin import mask, mask_text
from provisioner.core.plan import CORE, Op, Plan
from provisioner.core.states import ChangeResult, PlanBasis
from provisioner.run import runner
from provisioner.run.records import quiet_note
from provisioner.service import changelog, explain
from provisioner.state.history import Filter


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
    if plan.basis is PlanBasis.CERTIFIED:
        click.echo(
            "source, config and state unchanged since the last run: its certified plan stands"
            " (--full recomputes)",
            err=err,
        )
    elif plan.basis is PlanBasis.INCREMENTAL:
        click.echo(
            "only some persons', groups' or enrollments' rows changed since the last run: its plan,"
            " patched for them and what depends on them (--full recomputes)",
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


@click.command()
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


@click.command()
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


@click.command()
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


@click.command()
@click.argument("run_id")
@click.option("--by", default=None, help="Who approves (default: the login name).")
@pass_ctx
def approve(c: Ctx, run_id: str, by: str | None) -> None:
    """Approve one held run (its plan is applied now) or one source refusal (accepted once)."""
    out = runner.approve(c.cfg, c.store, run_id, by or getpass.getuser())
    _report(out, show=0)
    sys.exit(out.exit_code)


@click.command()
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
        note = note or quiet_note(summ)
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


@click.command("changelog")
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


@click.group()
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


@click.group("usernames")
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
