"""The daemon's polling interval: 60 seconds by default, configurable, and the watchdog keeps up.

No process is started: the config model, the `Daemon` object (it opens no store until it
runs), `bas daemon --help` and the shipped systemd unit and example config are read.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from provisioner import config
from provisioner.cli.main import main as cli
from provisioner.service.daemon import HEARTBEAT, Daemon, heartbeat_seconds

ROOT = Path(__file__).resolve().parent.parent

BASE = """
[owner]
name = "Testkommune"
org_number = "999888777"
realm = "test.kommune.no"
mail_domain = "test.kommune.no"
[source]
url = "sqlite:///sis.sqlite"
[state]
url = "sqlite:///state.sqlite"
[targets.itslearning]
output_dir = "out/itslearning"
"""


def _write(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "bas.toml"
    path.write_text(BASE + extra, encoding="utf-8")
    return path


def test_the_default_interval_is_sixty_seconds(tmp_path: Path) -> None:
    assert config.parse(BASE).daemon.interval_seconds == 60
    assert Daemon(str(_write(tmp_path))).interval() == 60


def test_the_interval_is_configurable_and_the_cli_wins(tmp_path: Path) -> None:
    path = _write(tmp_path, "[daemon]\ninterval_seconds = 900\n")
    assert Daemon(str(path)).interval() == 900
    assert Daemon(str(path), interval=5).interval() == 5


@pytest.mark.parametrize("bad", ["0", "-60"])
def test_an_interval_under_one_second_is_refused(bad: str) -> None:
    with pytest.raises(config.ConfigError, match="daemon.interval_seconds"):
        config.parse(BASE + f"[daemon]\ninterval_seconds = {bad}\n")


def test_the_example_config_and_the_help_state_the_default() -> None:
    default = config.DaemonConfig().interval_seconds
    example = tomllib.loads((ROOT / "config" / "bas.example.toml").read_text(encoding="utf-8"))
    assert example["daemon"]["interval_seconds"] == default
    out = CliRunner().invoke(cli, ["daemon", "--help"])
    assert out.exit_code == 0, out.output
    assert f"default {default})" in " ".join(out.output.split())


def test_the_shipped_watchdog_is_fed_twice_per_watchdog_period() -> None:
    unit = (ROOT / "systemd" / "bas.service").read_text(encoding="utf-8")
    m = re.search(r"^WatchdogSec=(\d+)$", unit, re.MULTILINE)
    assert m, "bas.service sets WatchdogSec="
    watchdog = float(m.group(1))
    # The heartbeat does not wait for a run: with runs every 60 s (or longer than the
    # watchdog) the loop still beats at least twice per WatchdogSec.
    assert heartbeat_seconds(watchdog) <= watchdog / 2
    assert heartbeat_seconds(1.0) == 0.5
    assert heartbeat_seconds(None) == HEARTBEAT
