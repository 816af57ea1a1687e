"""CLI commands per live target: `bas feide check|reconcile`, `bas ad reconcile`, `bas m365 reconcile`.

A reconcile prints the drift repair plan of provisioner.run.reconcile (one line per
planned change with its reason, then what is reported and never repaired); --repair
applies it through the executor.

Kept apart from provisioner/cli/main.py (the run commands) so each file stays small. The
commands get the CLI's lazily loaded context (config, state store) as ``click.pass_obj``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from provisioner import config as config_mod
from provisioner.cli.common import fail
from provisioner.core.nin import mask_text
from provisioner.kinds import kind_of
from provisioner.run import runner


@click.group("feide")
def feide_group() -> None:
    """The Feide catalog."""


@feide_group.command("check")
@click.option(
    "--ldif", "ldif_file", type=click.Path(exists=True, dir_okay=False), help="Check this LDIF export."
)
@click.option("--target", "target_name", help="The Feide target to read (default: the first of kind feide).")
@click.option("--realm", help="Feide realm for eduPersonPrincipalName (default: owner.realm).")
@click.option("--show", default=200, show_default=True, help="Problems to print.")
@click.pass_obj
def feide_check(c: Any, ldif_file: str | None, target_name: str | None, realm: str | None, show: int) -> None:
    """Validate the Feide catalog (live, or --ldif FILE) as Feide's validator does; exit 1 on errors."""
    from connectors.errors import ConnectorError
    from connectors.feide.check import check_entries, ldap_entries, ldif_entries
    from connectors.feide.ldap import link_from_config

    cfg = c.cfg if (c.config_path or not ldif_file or not realm) else None
    the_realm = realm or (cfg.owner.realm if cfg else "")
    if ldif_file:
        source, entries = ldif_file, ldif_entries(ldif_file)
        session = None
    else:
        assert cfg is not None
        name, tcfg = _feide_target(cfg, target_name)
        try:
            link = link_from_config(cfg, tcfg)
        except config_mod.ConfigError as exc:
            fail(f"targets.{name}: {exc}")
        session = link
        source, entries = f"{tcfg.url} {tcfg.base_dn}", ldap_entries(link, tcfg.base_dn, tcfg.page_size)
    try:
        problems, persons = check_entries(entries, the_realm)
    except (ConnectorError, ValueError, OSError) as exc:
        # A live catalog that cannot be read is a failed target; an unreadable file, a usage error.
        code = runner.EXIT_USAGE if session is None else runner.EXIT_TARGET_FAILED
        fail(f"feide check: cannot read {source}: {exc}", code=code)
    finally:
        if session is not None:
            session.close()
    errors = [p for p in problems if p.severity == "error"]
    for p in problems[:show]:
        click.echo(mask_text(p.render()))
    if len(problems) > show:
        click.echo(f"… {len(problems) - show} more")
    click.echo(
        f"feide check {source}: {persons} persons,"
        f" {len(errors)} errors, {len(problems) - len(errors)} warnings"
    )
    sys.exit(1 if errors else 0)


@feide_group.command("reconcile")
@click.option("--target", "target_name", help="The Feide target (default: the first of kind feide).")
@click.option(
    "--repair", is_flag=True, help="Apply the repair plan (recorded values back, within the limits)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the drift as JSON.")
@click.pass_obj
def feide_reconcile(c: Any, target_name: str | None, repair: bool, as_json: bool) -> None:
    """Report drift in the live Feide catalog (exit 1 when there is any); --repair fixes what it can."""
    name, _ = _feide_target(c.cfg, target_name)
    _reconcile(c, name, "Feide", repair=repair, full=False, as_json=as_json)


def _reconcile(c: Any, name: str, label: str, *, repair: bool, full: bool, as_json: bool) -> None:
    """Run one reconcile, map its errors to exit codes, print its plan; exit with its code."""
    from connectors.errors import ConnectorError
    from provisioner.run.reconcile import reconcile
    from provisioner.state.runs import LockHeld

    try:
        r = reconcile(c.cfg, c.store, name, repair=repair, full=full)
    except config_mod.ConfigError as exc:
        fail(str(exc))
    except LockHeld as exc:
        fail(str(exc), code=runner.EXIT_LOCKED)
    except ConnectorError as exc:  # the target as a whole: unreachable, bind refused, base missing
        fail(mask_text(str(exc)), code=runner.EXIT_TARGET_FAILED)
    drift = r.drift()
    if as_json:
        click.echo(mask_text(json.dumps([d.to_json() for d in drift], ensure_ascii=False, indent=1)))
    else:
        for d in drift:
            fixed = " (repaired)" if d.repaired else ""
            click.echo(mask_text(f"{d.kind:<10} {d.detail}{fixed}"))
            for attr, vals in d.attrs.items():
                click.echo(mask_text(f"{'':<10}   {attr}: {json.dumps(vals, ensure_ascii=False)}"))
        click.echo(f"{name}: {len(drift)} difference(s) between {label} and the state store (run {r.run_id})")
    if r.message:
        click.echo(f"bas: {mask_text(r.message)}", err=True)
    sys.exit(r.exit_code)


def _feide_target(cfg: config_mod.Config, name: str | None) -> tuple[str, config_mod.FeideConfig]:
    """The named Feide target, or the first one; exit 2 when there is none with a url."""
    chosen = _only_target(cfg, "feide", name, first=True)
    tcfg = cfg.targets[chosen]
    assert isinstance(tcfg, config_mod.FeideConfig)
    if not kind_of("feide").capabilities(tcfg).live:
        fail(f"targets.{chosen}.url is not set: it writes LDIF files; check one with --ldif FILE")
    return chosen, tcfg


@click.group("ad")
def ad_group() -> None:
    """Active Directory: read back and compare with what BAS recorded."""


@ad_group.command("reconcile")
@click.option("--target", "target_name", help="The AD target's name (default: the only AD target).")
@click.option(
    "--repair",
    is_flag=True,
    help="Apply the repair plan (attributes, place, state, members; within the limits).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the drift as JSON.")
@click.pass_obj
def ad_reconcile(c: Any, target_name: str | None, repair: bool, as_json: bool) -> None:
    """Report drift in the managed OUs (exit 1 when there is any); --repair fixes what it can."""
    name = _only_target(c.cfg, "ad", target_name)
    _reconcile(c, name, "AD", repair=repair, full=False, as_json=as_json)


def _only_target(cfg: config_mod.Config, kind: str, name: str | None, *, first: bool = False) -> str:
    """The named target of this kind, or the only one (``first``: the first one); exit 2 otherwise."""
    label = kind_of(kind).label
    names = [n for n, t in cfg.targets.items() if t.kind == kind]
    if first:
        if name is not None and name not in names:
            fail(f"no {label} target {name!r} in the config (have: {', '.join(names) or 'none'})")
        if not names:
            fail(f"no {label} target in the config")
        return name or names[0]
    chosen = name or (names[0] if len(names) == 1 else None)
    if chosen not in names:
        fail(f"name the {label} target with --target ({label} targets: {', '.join(names) or 'none'})")
    return chosen


@click.group("m365")
def m365_group() -> None:
    """Microsoft 365: read the tenant back and compare with what BAS recorded."""


@m365_group.command("reconcile")
@click.option("--target", "target_name", help="The Microsoft 365 target's name (default: the only one).")
@click.option(
    "--repair", is_flag=True, help="Apply the repair plan (attributes, sign-in, restore; within the limits)."
)
@click.option("--full", is_flag=True, help="Read every user, not only the changes since the last reconcile.")
@click.option("--json", "as_json", is_flag=True, help="Print the drift as JSON.")
@click.pass_obj
def m365_reconcile(c: Any, target_name: str | None, repair: bool, full: bool, as_json: bool) -> None:
    """Report user drift in the tenant (exit 1 when there is any); --repair fixes what it can."""
    name = _only_target(c.cfg, "m365", target_name)
    _reconcile(c, name, "Microsoft 365", repair=repair, full=full, as_json=as_json)


@click.command("reconcile")
@click.option("--target", "target_name", required=True, help="The target (any kind with a reader).")
@click.option("--repair", is_flag=True, help="Apply the repair plan (within the limits).")
@click.option("--full", is_flag=True, help="An incremental reader reads everything.")
@click.option("--json", "as_json", is_flag=True, help="Print the drift as JSON.")
@click.pass_obj
def reconcile_any(c: Any, target_name: str, repair: bool, full: bool, as_json: bool) -> None:
    """Report drift in one live target of any kind (exit 1 when there is any); --repair fixes it."""
    tcfg = c.cfg.targets.get(target_name)
    if tcfg is None:
        fail(f"no target {target_name!r} in the config (have: {', '.join(c.cfg.targets) or 'none'})")
    _reconcile(c, target_name, kind_of(tcfg.kind).label, repair=repair, full=full, as_json=as_json)
