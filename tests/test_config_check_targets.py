"""`bas config check` reaches every live target: Feide LDAP (slapd), Microsoft 365 (local Graph),
AD (connection; the Samba DC when available) and the file targets' folders; exit 6 when one fails."""

from __future__ import annotations

import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from provisioner.run import probe, runner
from tests.m365test import M365Env
from tests.sisbuilder import make_config, small_sis
from tests.slapd_server import ADMIN_DN, ADMIN_PASSWORD, SUFFIX, SlapdServer, _make_certs

BAS = [sys.executable, "-m", "provisioner.cli"]


def check(config: Path) -> subprocess.CompletedProcess:
    p = subprocess.run([*BAS, "--config", str(config), "config", "check"], capture_output=True, text=True)
    assert "Traceback" not in p.stderr, p.stderr
    return p


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


def feide_config(tmp: Path, **feide: Any) -> Path:
    src = f"sqlite:///{tmp / 'sis.db'}"
    small_sis().write(src)
    secret = tmp / "feide.secret"
    secret.write_text(ADMIN_PASSWORD + "\n", encoding="utf-8")
    # Plain ldap:// only with StartTLS (the bind password and NINs never go in clear text).
    settings = {"mode": "apply", "bind_dn": ADMIN_DN, "password_file": str(secret), "start_tls": True}
    settings.update(feide)
    make_config(tmp, src, f"sqlite:///{tmp / 'state.db'}", targets=("itslearning", "feide"),
                target_settings={"feide": settings})  # fmt: skip
    return tmp / "bas.toml"


def test_live_feide_reached_ok(tmp_path: Path, slapd: SlapdServer) -> None:
    cfg = feide_config(tmp_path, **slapd.client, base_dn=f"dc=t{uuid.uuid4().hex[:8]},{SUFFIX}")
    p = check(cfg)
    assert p.returncode == 0, p.stderr
    assert "reach    feide        ok" in p.stdout and "reach    itslearning  ok" in p.stdout


@pytest.mark.parametrize(
    ("where", "want"),
    [
        ("no base", "no such base"),
        ("wrong password", "bind to"),
        ("nothing listening", "cannot reach"),
    ],
)
def test_live_feide_that_cannot_be_used_is_exit_6(
    tmp_path: Path, slapd: SlapdServer, where: str, want: str
) -> None:
    url = f"ldap://127.0.0.1:{closed_port()}" if where == "nothing listening" else slapd.url
    base = f"dc=a,dc=missing{uuid.uuid4().hex[:6]},{SUFFIX}" if where == "no base" else SUFFIX
    cfg = feide_config(tmp_path, **{**slapd.client, "url": url}, base_dn=base)
    if where == "wrong password":
        (tmp_path / "feide.secret").write_text("not-the-password\n", encoding="utf-8")
    p = check(cfg)
    assert p.returncode == runner.EXIT_TARGET_FAILED, (p.stdout, p.stderr)
    assert "reach    feide        FAILED" in p.stdout and want in p.stdout, p.stdout
    assert "reach    itslearning  ok" in p.stdout  # every target is reported, not only the first


def test_file_target_folder_that_cannot_be_written_is_exit_6(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where a folder should be", encoding="utf-8")
    src = f"sqlite:///{tmp_path / 'sis.db'}"
    small_sis().write(src)
    settings = {"itslearning": {"output_dir": str(tmp_path / "blocker" / "its")}}
    make_config(tmp_path, src, f"sqlite:///{tmp_path / 'state.db'}", target_settings=settings)
    p = check(tmp_path / "bas.toml")
    assert p.returncode == runner.EXIT_TARGET_FAILED, p.stdout
    assert "targets.itslearning.output_dir:" in p.stdout and "is not a folder" in p.stdout
    assert "reach    ad           ok: plan only: not reached" in p.stdout


def test_file_targets_say_how_often_they_write_a_full_file(tmp_path: Path) -> None:
    """A full file each run is the default; with the daemon polling often, the check says what
    to set instead."""
    src = f"sqlite:///{tmp_path / 'sis.db'}"
    small_sis().write(src)
    settings = {"feide": {"full_every_hours": 24}}
    make_config(tmp_path, src, f"sqlite:///{tmp_path / 'state.db'}", target_settings=settings)
    p = check(tmp_path / "bas.toml")
    assert p.returncode == 0, p.stdout + p.stderr
    its = tmp_path / "itslearning"
    assert (
        f"target   itslearning  kind itslearning mode apply, files in {its}: a full file on every run with"
        " changes for it (the daemon runs every 60 s: consider full_every_hours = 24)"
    ) in p.stdout
    feide = tmp_path / "feide"
    said = f"files in {feide}: a delta each run, a full file every 24 h"
    assert f"target   feide        kind feide       mode apply, {said}" in p.stdout


def test_m365_token_and_users_read_ok_then_a_wrong_secret_is_exit_6(tmp_path: Path) -> None:
    e = M365Env(tmp_path, small_sis())
    try:
        e.sis.write(e.src)
        p = check(e.config_path)
        assert p.returncode == 0, (p.stdout, p.stderr)
        assert "reach    m365         ok" in p.stdout and "users readable" in p.stdout
        assert e.graph.writes == 0  # a check writes nothing
        (tmp_path / "graph.secret").write_text("wrong-secret\n", encoding="utf-8")
        p = check(e.config_path)
        assert p.returncode == runner.EXIT_TARGET_FAILED, p.stdout
        assert "reach    m365         FAILED" in p.stdout and "invalid_client" in p.stdout
    finally:
        e.close()


def test_ad_that_cannot_be_reached_is_reported(tmp_path: Path) -> None:
    ca, _, _ = _make_certs(tmp_path / "certs")
    (tmp_path / "ad.pw").write_text("secret\n", encoding="utf-8")
    settings = {
        "mode": "apply",
        "url": f"ldaps://127.0.0.1:{closed_port()}",
        "ca_file": str(ca),
        "bind_dn": "CN=bas,DC=x",
        "password_file": str(tmp_path / "ad.pw"),
        "timeout": 5.0,
    }
    cfg = make_config(tmp_path, "sqlite:///:memory:", f"sqlite:///{tmp_path / 's.db'}", targets=("ad",),
                      target_settings={"ad": settings})  # fmt: skip
    [result] = probe.probe_targets(cfg)
    assert (result.target, result.ok) == ("ad", False) and "cannot connect" in result.detail


def test_ad_bind_and_base_dn_on_the_samba_dc(tmp_path: Path, samba_dc: Any) -> None:
    from tests.adtest import ADEnv

    env = ADEnv(tmp_path, samba_dc, small_sis())
    try:
        [ok] = probe.probe_targets(env.cfg)
        assert ok.ok and "base" in ok.detail, ok.detail
        env.configure(base_dn=f"OU=nope,{env.base}")
        [missing] = probe.probe_targets(env.cfg)
        assert not missing.ok and "targets.ad.base_dn:" in missing.detail
        env.configure(password_file=str(tmp_path / "nope.pw"))
        [no_secret] = probe.probe_targets(env.cfg)
        assert not no_secret.ok and "targets.ad.password_file:" in no_secret.detail
    finally:
        env.close()


@pytest.mark.parametrize("command", [("feide", "reconcile"), ("feide", "check")])
def test_live_feide_commands_on_a_server_that_is_down_exit_6(
    tmp_path: Path, command: tuple[str, str]
) -> None:
    cfg = feide_config(tmp_path, url=f"ldap://127.0.0.1:{closed_port()}", base_dn=SUFFIX)
    p = subprocess.run([*BAS, "--config", str(cfg), *command], capture_output=True, text=True)
    assert p.returncode == runner.EXIT_TARGET_FAILED, (p.returncode, p.stderr)
    assert "Traceback" not in p.stderr and "127.0.0.1" in p.stderr
