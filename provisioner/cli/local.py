"""CLI commands for the admin's own records: `bas local add|set|end|list|import|audit`, `bas lock`,
`bas unlock`.

Each command edits the state store (with its audit row) and says what the next run
will do; no command here writes to a target: `bas plan` shows the changes and `bas sync`
applies them through the executor, like every other change. Kept apart from
provisioner/cli/main.py (the run commands) so each file stays small.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import sys
from typing import Any

import click

from provisioner.cli.common import check_day, fail
from provisioner.config import ConfigError
from provisioner.core.local import LOCAL_ROLES, LocalPerson
from provisioner.core.local_csv import write_local_csv
from provisioner.core.locks import ALL_TARGETS
from provisioner.core.nin import mask, mask_text
from provisioner.run import local_edit, runner
from provisioner.run.local_edit import EditError


def _today() -> str:
    return dt.date.today().isoformat()


def _by(by: str | None) -> str:
    return by or getpass.getuser()


def _local_or_fail(c: Any, who: str) -> LocalPerson:
    lp = local_edit.find_local(c.store, who)
    if lp is None:
        fail(f"no local person {who!r} (give local:<n>, <n> or the ref)", code=runner.EXIT_ERRORS)
    return lp


def _warn_school(c: Any, school_id: str) -> None:
    """Say so when the last run saw no such school (the run reports the record as a data error)."""
    known = c.store.runs.gate_baseline(c.cfg.safety.gate_days).schools
    if known is not None and school_id not in known:
        click.echo(
            f"warning: the last run saw no school {school_id!r} (schools: {', '.join(sorted(known))});"
            " a run leaves the person out while the source has no such school",
            err=True,
        )


_BY = click.option(
    "--by", default=None, help="Who makes the change, for the audit (default: the login name)."
)


def _person_options(required: bool) -> Any:
    """The fields of a local person as options (required ones only for add)."""
    opts = [
        click.option("--given", "given_name", required=required, help="Given name(s)."),
        click.option("--middle", "middle_name", help="Middle name."),
        click.option("--family", "family_name", required=required, help="Family name."),
        click.option("--school", "school_id", required=required, help="School id (as in the SIS)."),
        click.option("--role", type=click.Choice(LOCAL_ROLES), required=required, help="Role at the school."),
        click.option("--start", "start_date", callback=check_day, help="First day (default: today)."),
        click.option(
            "--end",
            "end_date",
            callback=check_day,
            required=required,
            help="Last day (required; not in the past, at most 366 days ahead).",
        ),
        click.option("--nin", help="National identity number (optional; never sent for --protected)."),
        click.option(
            "--protected/--not-protected",
            "protected",
            default=None,
            help="Protected identity (skjermet identitet): the NIN never leaves BAS.",
        ),
        click.option("--email", help="Private e-mail."),
        click.option("--mobile", help="Mobile number."),
        click.option("--ref", help="Your own key for this person (the CSV import matches on it)."),
        click.option("--note", help="A note, e.g. whom a substitute stands in for."),
    ]

    def wrap(f: Any) -> Any:
        for o in reversed(opts):
            f = o(f)
        return f

    return wrap


@click.group("local")
def local_group() -> None:
    """Local persons: substitutes, external staff, persons with protected identity."""


@local_group.command("add")
@_person_options(required=True)
@_BY
@click.pass_obj
def local_add(c: Any, by: str | None, **values: Any) -> None:
    """Add a local person; the next sync gives them a username and their accounts."""
    values = {k: v for k, v in values.items() if v is not None}
    try:
        lp = local_edit.add(c.store, values, _today(), _by(by))
    except EditError as exc:
        fail(str(exc))
    click.echo(f"added {local_edit.describe_local(lp)}")
    _warn_school(c, lp.school_id)
    click.echo("the next `bas sync` gives them a username and accounts (`bas plan` shows them)")


@local_group.command("set")
@click.argument("who")
@_person_options(required=False)
@_BY
@click.pass_obj
def local_set(c: Any, who: str, by: str | None, **values: Any) -> None:
    """Change a local person (local:<n>, <n> or the ref); the next sync carries it out."""
    lp = _local_or_fail(c, who)
    values = {k: v for k, v in values.items() if v is not None}
    try:
        changed = local_edit.change(c.store, lp, values, _today(), _by(by))
    except EditError as exc:
        fail(str(exc))
    click.echo(f"{lp.person_id}: {'changed ' + ', '.join(sorted(changed)) if changed else 'nothing changed'}")
    if "school_id" in changed:
        _warn_school(c, changed["school_id"])


@local_group.command("end")
@click.argument("who")
@click.option("--on", "day", callback=check_day, help="Last day (default: today).")
@_BY
@click.pass_obj
def local_end(c: Any, who: str, day: str | None, by: str | None) -> None:
    """End a local person: after the last day their accounts follow the lifecycle (disabled, removed)."""
    lp = _local_or_fail(c, who)
    try:
        local_edit.end(c.store, lp, day or _today(), _today(), _by(by))
    except EditError as exc:
        fail(str(exc))
    click.echo(
        f"{lp.person_id} ends on {day or _today()}: the first sync after that day stops their accounts"
    )


@local_group.command("list")
@click.option("--all", "show_all", is_flag=True, help="Ended local persons too.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--csv", "as_csv", is_flag=True, help="CSV in the columns `bas local import` reads.")
@click.option("--show-nin", is_flag=True, help="Show NINs unmasked (audited use only).")
@click.pass_obj
def local_list(c: Any, show_all: bool, as_json: bool, as_csv: bool, show_nin: bool) -> None:
    """The local persons (those not ended yet unless --all)."""
    today = _today()
    persons = [lp for lp in c.store.local.persons() if show_all or lp.end_date >= today]
    if as_csv:
        click.echo(write_local_csv(persons, masked=not show_nin), nl=False)
        return
    if as_json:
        rows = [
            {"person_id": lp.person_id, **lp.values(), "nin": lp.nin if show_nin else mask(lp.nin)}
            for lp in persons
        ]
        click.echo(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    for lp in persons:
        click.echo(local_edit.describe_local(lp))
    click.echo(f"{len(persons)} local person(s)")


@local_group.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--dry-run", is_flag=True, help="Check the file and say what it would change; write nothing.")
@_BY
@click.pass_obj
def local_import(c: Any, csv_file: str, dry_run: bool, by: str | None) -> None:
    """Add and change local persons from your CSV (matched on the ref column); all rows or none."""
    try:
        lines = local_edit.import_csv(c.store, csv_file, _today(), _by(by), dry_run=dry_run)
    except EditError as exc:
        fail(mask_text(str(exc)), code=runner.EXIT_ERRORS)
    counts = {"add": 0, "set": 0, "same": 0}
    for item in lines:
        counts[item.action] += 1
        if item.action != "same":
            what = f" ({', '.join(item.changed)})" if item.changed else ""
            click.echo(f"line {item.line}: {item.action} {item.subject} ref {item.ref}{what}")
    verb = "would be" if dry_run else "were"
    click.echo(
        f"{csv_file}: {counts['add']} {verb} added, {counts['set']} {verb} changed,"
        f" {counts['same']} unchanged" + (" (dry run: nothing written)" if dry_run else "")
    )


@local_group.command("audit")
@click.argument("who", required=False)
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def local_audit(c: Any, who: str | None, as_json: bool) -> None:
    """Every change to local persons and locks (of one person when given): who, when, before, after."""
    subjects = None
    if who:
        pid = local_edit.resolve_person(c.store, who)
        if pid is None:
            fail(f"nobody known as {mask_text(who)}", code=runner.EXIT_ERRORS)
        subjects = [pid]
    rows = c.store.local.audit(subjects)
    if as_json:
        click.echo(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    for r in rows:
        note = f" ({r['note']})" if r["note"] else ""
        click.echo(
            f"{r['at'][:19]} {r['by']:<12} {r['action']:<7} {r['subject']:<12}"
            f" before {r['before'] or '-'} after {r['after'] or '-'}{note}"
        )


@click.command("lock")
@click.argument("who")
@click.option("--reason", required=True, help="Why (shown in `bas person show` and the changelog).")
@click.option("--until", callback=check_day, help="Last day locked (default: until `bas unlock`).")
@click.option("--target", "targets", multiple=True, help="Only this target (repeatable; default: every one).")
@_BY
@click.pass_obj
def lock_cmd(
    c: Any, who: str, reason: str, until: str | None, targets: tuple[str, ...], by: str | None
) -> None:
    """Lock a person (username, NIN, SIS id, local:<n>): accounts disabled until unlocked, never deleted."""
    pid = local_edit.resolve_person(c.store, who)
    if pid is None:
        fail(f"nobody known as {mask_text(who)}", code=runner.EXIT_ERRORS)
    try:
        made, left = local_edit.lock(c.cfg, c.store, pid, reason, until, targets, _today(), _by(by))
    except EditError as exc:
        fail(str(exc))
    every = made[0].target == ALL_TARGETS
    where = ", ".join(local_edit.disabling_targets(c.cfg)[0] if every else [x.target for x in made])
    click.echo(f"locked {pid} in {where}: {made[0].text()}")
    if left:
        click.echo(f"{', '.join(left)} cannot disable an account: left as they are")
    click.echo("the next `bas sync` disables their accounts (`bas plan` shows it)")


@click.command("unlock")
@click.argument("who")
@click.option("--target", help="Only this target (default: every one).")
@_BY
@click.pass_obj
def unlock_cmd(c: Any, who: str, target: str | None, by: str | None) -> None:
    """Unlock a person: the next sync enables the accounts the lock kept disabled."""
    pid = local_edit.resolve_person(c.store, who)
    if pid is None:
        fail(f"nobody known as {mask_text(who)}", code=runner.EXIT_ERRORS)
    try:
        released = local_edit.unlock(c.cfg, c.store, pid, target, _by(by))
    except ConfigError as exc:  # no such target
        fail(str(exc))
    if not released:
        fail(f"{pid} is not locked{' in ' + target if target else ''}", code=runner.EXIT_ERRORS)
    click.echo(
        f"unlocked {pid}{' in ' + target if target else ''}: the next `bas sync` enables their accounts"
    )
    sys.exit(runner.EXIT_OK)
