"""The systemd units (bas, bas-web): `systemd-analyze verify` passes and `security` rates it 1.5 or better."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "bas.service"
UNITS = ("bas.service", "bas-web.service")


@pytest.fixture(params=UNITS)
def unit(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """The unit with ExecStart pointing at this checkout's `bas` (verify checks it exists)."""
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    bas = Path(sys.executable).parent / "bas"
    assert bas.is_file()
    out = tmp_path / request.param
    text = (UNIT.parent / request.param).read_text(encoding="utf-8")
    out.write_text(text.replace("/opt/bas/.venv/bin/bas", str(bas)), encoding="utf-8")
    return out


def test_unit_verifies(unit: Path) -> None:
    p = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


def test_unit_security_exposure(unit: Path) -> None:
    p = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    m = re.search(rf"Overall exposure level for {re.escape(unit.name)}: ([0-9.]+)", p.stdout)
    assert m, p.stdout[-2000:] + p.stderr
    assert float(m.group(1)) <= 1.5, p.stdout


def test_unit_runs_the_daemon_unprivileged_with_credentials() -> None:
    text = UNIT.read_text(encoding="utf-8")
    for line in (
        "ExecStart=/opt/bas/.venv/bin/bas daemon",
        "User=bas",
        "CapabilityBoundingSet=\n",
        "StateDirectory=bas",
        "ConfigurationDirectory=bas",
        "LoadCredential=feide-bind.secret:",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ):
        assert line in text, line


def test_secrets_come_from_the_credentials_directory_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from provisioner.config import read_secret

    creds, conf_dir = tmp_path / "creds", tmp_path / "etc"
    creds.mkdir()
    conf_dir.mkdir()
    (creds / "smtp.pw").write_text("from-systemd\n", encoding="utf-8")
    (conf_dir / "smtp.pw").write_text("beside-config\n", encoding="utf-8")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    assert read_secret("smtp.pw", str(conf_dir)) == "from-systemd"
    monkeypatch.delenv("CREDENTIALS_DIRECTORY")
    assert read_secret("smtp.pw", str(conf_dir)) == "beside-config"
