"""`bas demo` and `bas config check`: try BAS on generated data; validate a config and reach all it names.

Loaded only when one of these commands runs (provisioner/cli/main.py lists them).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import click

from provisioner import config as config_mod
from provisioner.cli.common import fail
from provisioner.cli.main import Ctx, pass_ctx
from provisioner.core.model import School
from provisioner.core.nin import mask_text
from provisioner.core.scope import Scope, unknown_names
from provisioner.kinds import kind_of
from provisioner.run import probe, runner
from provisioner.run.targets import check_targets
from sources.registry import open_source


# ---- demo ----------------------------------------------------------------------------
@click.command()
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
@click.group("config")
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
