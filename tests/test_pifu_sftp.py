"""Picking the PIFU export up over SFTP from a real OpenSSH server (tests/sshd_server.py).

The server listens on 127.0.0.1 on a free port with its own host key; the source logs in
with a user key from a secret file and checks the host key against known_hosts.
"""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from demo.pifu import write_export
from provisioner import config as config_mod
from provisioner.core.model import SourceSnapshot
from sources.base import SourceError
from sources.pifu import PifuSource
from sources.pifu.sftp import KEEP
from tests.pifudoc import OWNER_ORG
from tests.sisbuilder import config_toml, small_sis
from tests.sshd_server import SshdServer, remote_folder, running


def _snapshot() -> SourceSnapshot:
    return small_sis().snapshot()


def _export(remote: Path, name: str, age: float) -> Path:
    path = write_export(
        _snapshot(), remote / name, owner_name="Eksempel", owner_org_number=OWNER_ORG, as_of="2025-10-01"
    )
    os.utime(path, (time.time() - age,) * 2)
    return path


def _cfg(
    tmp: Path, server: SshdServer, remote: Path, *, known_hosts: Path | None = None
) -> config_mod.Config:
    (tmp / "secrets").mkdir(exist_ok=True)
    key = tmp / "secrets" / "sftp_key"
    key.write_bytes(server.user_key.read_bytes())
    key.chmod(0o600)
    source = "\n".join(
        [
            'kind = "pifu"',
            'path = "exports"',
            "settle_seconds = 60",
            "",
            "[source.sftp]",
            'host = "127.0.0.1"',
            f"port = {server.port}",
            f'username = "{server.user}"',
            f'known_hosts_file = "{known_hosts or server.known_hosts}"',
            'private_key_file = "secrets/sftp_key"',
            f'remote_dir = "{remote}"',
            "timeout = 10",
        ]
    )
    text = config_toml(tmp, "sqlite:///unused.db", f"sqlite:///{tmp / 'state.db'}")
    head, _, rest = text.partition("[source]\n")
    rest = rest.split("\n", 1)[1]  # the sql url line
    # [source.sftp] is a sub-table: it must come last in [source], before the next table
    text = head + "[source]\n" + source + "\n" + rest
    path = tmp / "bas.toml"
    path.write_text(text, encoding="utf-8")
    return config_mod.load(path)


@pytest.fixture(scope="module")
def server() -> Iterator[SshdServer]:
    yield from running()


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return remote_folder(tmp_path)


def test_pickup_downloads_the_newest_settled_export_and_reads_it(
    tmp_path: Path, server: SshdServer, remote: Path
) -> None:
    _export(remote, "pifu-1.xml", 7200)
    _export(remote, "pifu-2.xml", 3600)
    cfg = _cfg(tmp_path, server, remote)
    with PifuSource(cfg) as src:
        snap = src.read()
        assert "sftp://" in src.describe() and "pifu-2.xml" in src.describe()
    local = tmp_path / "exports" / "pifu-2.xml"
    assert local.read_bytes() == (remote / "pifu-2.xml").read_bytes()
    assert stat.S_IMODE(local.stat().st_mode) == 0o600
    assert sorted(p.name for p in (tmp_path / "exports").iterdir()) == ["pifu-2.xml"]  # no temp file left
    assert {p.person_id for p in snap.persons} == {p.person_id for p in _snapshot().persons}


def test_a_second_pickup_of_the_same_export_downloads_nothing(
    tmp_path: Path, server: SshdServer, remote: Path
) -> None:
    _export(remote, "pifu-1.xml", 3600)
    cfg = _cfg(tmp_path, server, remote)
    with PifuSource(cfg) as src:
        first = src.read()
    local = tmp_path / "exports" / "pifu-1.xml"
    inode = local.stat().st_ino
    with PifuSource(cfg) as src:
        assert src.unchanged(first.digests)
        src.read()
    assert local.stat().st_ino == inode  # not written again


def test_a_remote_file_still_being_written_is_not_taken(
    tmp_path: Path, server: SshdServer, remote: Path
) -> None:
    _export(remote, "pifu-1.xml", 3600)
    (remote / "pifu-2.xml").write_text("<?xml version='1.0'?><enterprise")  # being written now
    cfg = _cfg(tmp_path, server, remote)
    with (
        PifuSource(cfg) as src,
        pytest.raises(SourceError, match=r"pifu-2.xml changed \d+ s ago.*being written"),
    ):
        src.read()
    assert not (tmp_path / "exports" / "pifu-2.xml").exists()


def test_a_wrong_host_key_is_refused(tmp_path: Path, server: SshdServer, remote: Path) -> None:
    _export(remote, "pifu-1.xml", 3600)
    cfg = _cfg(tmp_path, server, remote, known_hosts=server.wrong_known_hosts)
    with (
        PifuSource(cfg) as src,
        pytest.raises(SourceError, match=r"host key .* is not the one .*wrong_known_hosts"),
    ):
        src.read()
    assert not (tmp_path / "exports").exists() or not list((tmp_path / "exports").iterdir())


def test_an_unknown_host_key_is_refused(tmp_path: Path, server: SshdServer, remote: Path) -> None:
    _export(remote, "pifu-1.xml", 3600)
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    cfg = _cfg(tmp_path, server, remote, known_hosts=empty)
    with PifuSource(cfg) as src, pytest.raises(SourceError, match=r"host key is not in .*empty_known_hosts"):
        src.read()


def test_a_wrong_user_key_is_refused(tmp_path: Path, server: SshdServer, remote: Path) -> None:
    _export(remote, "pifu-1.xml", 3600)
    cfg = _cfg(tmp_path, server, remote)
    (tmp_path / "secrets" / "sftp_key").write_bytes((server.tmp / "other_ed25519").read_bytes())
    with PifuSource(cfg) as src, pytest.raises(SourceError, match="login refused"):
        src.read()


def test_only_the_newest_exports_are_kept_locally(tmp_path: Path, server: SshdServer, remote: Path) -> None:
    cfg = _cfg(tmp_path, server, remote)
    for i in range(KEEP + 2):
        _export(remote, f"pifu-{i}.xml", 7200 - 100 * i)
        with PifuSource(cfg) as src:
            src.read()
    kept = sorted(p.name for p in (tmp_path / "exports").iterdir())
    assert kept == [f"pifu-{i}.xml" for i in range(2, KEEP + 2)]
