"""Files with personal data are 0600 whatever the umask: state store, latest-full.*, saved plans."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors import files
from provisioner.state.store import StateStore
from tests.sisbuilder import make_config, small_sis

BAS = [sys.executable, "-m", "provisioner.cli"]


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture(params=[0o022, 0o000])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def test_sqlite_state_store_and_its_wal_files_are_owner_only(tmp_path: Path, umask: int) -> None:
    db = tmp_path / "state.sqlite"
    store = StateStore(f"sqlite:///{db}")
    try:
        with store.engine.begin() as c:  # keep a connection open: -wal and -shm exist meanwhile
            c.execute(sa.text("INSERT INTO meta (key, value) VALUES ('x', 'y')"))
            wal = [p for p in tmp_path.iterdir() if p.name != db.name]
            assert {p.name for p in wal} >= {"state.sqlite-wal", "state.sqlite-shm"}
            assert {p.name: mode(p) for p in [db, *wal]} == {p.name: 0o600 for p in [db, *wal]}
    finally:
        store.close()


def test_existing_sqlite_store_with_a_broad_mode_is_narrowed(tmp_path: Path) -> None:
    db = tmp_path / "state.sqlite"
    StateStore(f"sqlite:///{db}").close()
    db.chmod(0o644)
    StateStore(f"sqlite:///{db}").close()
    assert mode(db) == 0o600


@pytest.mark.parametrize("hard_links", [True, False])
def test_latest_full_is_owner_only(tmp_path: Path, umask: int, hard_links: bool, monkeypatch) -> None:  # noqa: ANN001
    full = tmp_path / "feide-full-1.ldif"
    with files.atomic_text_file(full) as fh:
        fh.write("dn: uid=ola\nnorEduPersonNIN: 01010112345\n")
    if not hard_links:

        def no_link(*_a: object, **_k: object) -> None:
            raise OSError("hard links not supported")

        monkeypatch.setattr(os, "link", no_link)
    latest = tmp_path / "latest-full.ldif"
    files.link_latest(full, latest)
    assert latest.read_text() == full.read_text()
    assert mode(full) == mode(latest) == 0o600
    assert latest.stat().st_nlink == (2 if hard_links else 1)


def test_saved_plan_is_owner_only_also_when_it_overwrites(tmp_path: Path, umask: int) -> None:
    src = f"sqlite:///{tmp_path / 'sis.db'}"
    small_sis().write(src)
    make_config(tmp_path, src, f"sqlite:///{tmp_path / 'state.db'}")
    out = tmp_path / "plan.json"
    out.write_text("{}")
    out.chmod(0o666 & ~umask)  # an older file someone made readable
    p = subprocess.run(
        [*BAS, "--config", str(tmp_path / "bas.toml"), "plan", "--show", "0", "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    assert "norEduPersonNIN" in out.read_text()
    assert mode(out) == 0o600
    assert mode(tmp_path / "state.db") == 0o600
