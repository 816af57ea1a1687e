"""Clear errors for the admin: --as-of, config errors, placeholders, exit codes, `person show` of leavers.

Each test runs `bas` as the admin does (``python -m provisioner.cli``) on a tiny SIS, and
checks the exit code and that no Python traceback reaches the terminal.
"""

from __future__ import annotations

import stat
import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.run import runner
from provisioner.service import explain
from provisioner.state.store import StateStore
from tests.sisbuilder import Sis, bad_check_digit, make_config, nin_pair, small_sis

BAS = [sys.executable, "-m", "provisioner.cli"]
DAY1, DAY2 = "2025-10-01", "2025-10-02"


def bas(*args: str, config: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [*BAS, *(["--config", str(config)] if config else []), *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert "Traceback" not in p.stderr + p.stdout, p.stderr
    return p


def setup(tmp: Path, sis: Sis | None = None, **cfg: object) -> Path:
    """A SIS written to SQLite and a config for it (itslearning and Feide files); the config path."""
    src = f"sqlite:///{tmp / 'sis.db'}"
    (sis or small_sis()).write(src)
    make_config(tmp, src, f"sqlite:///{tmp / 'state.db'}", **cfg)  # type: ignore[arg-type]
    return tmp / "bas.toml"


# -- --as-of ------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["plan", "sync"])
@pytest.mark.parametrize("day", ["2026-11-31", "tomorrow", "20251001", "2025-1-1"])
def test_as_of_must_be_a_real_day(tmp_path: Path, command: str, day: str) -> None:
    cfg = setup(tmp_path)
    p = bas(command, "--as-of", day, config=cfg)
    assert p.returncode == runner.EXIT_USAGE, p.stderr
    assert "--as-of" in p.stderr and day in p.stderr
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        assert store.runs.newest(5) == []  # refused before any run was started
    finally:
        store.close()


def test_runner_refuses_a_day_that_is_not_one(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, f"sqlite:///{tmp_path / 'sis.db'}", f"sqlite:///{tmp_path / 'state.db'}")
    small_sis().write(cfg.source.url)
    store = StateStore(cfg.state.url)
    try:
        with pytest.raises(ValueError, match="2025-02-29"):
            runner.sync(cfg, store, dry_run=True, as_of="2025-02-29")
        assert store.runs.newest(5) == []
    finally:
        store.close()


# -- config errors --------------------------------------------------------------------------

GOOD = (
    '[owner]\nname = "X"\norg_number = "123456789"\nrealm = "r.no"\nmail_domain = "m.no"\n'
    '[source]\nurl = "{source}"\n[state]\nurl = "{state}"\n'
)


@pytest.mark.parametrize(
    ("source", "state", "want"),
    [
        ("postgresql+nodriver://h/db", "sqlite:///s.db", "source.url: unknown database driver"),
        ("nosuch://h/db", "sqlite:///s.db", "source.url: unknown database driver 'nosuch'"),
        ("postgresql://h:abc/db", "sqlite:///s.db", "source.url: not a database URL: the port is not a"),
        ("sqlite:///sis.db", "postgresql+psycopg://h:5x/db", "state.url: not a database URL"),
        ("sqlite:///sis.db", "oracle+nodriver://h/db", "state.url: unknown database driver"),
        ("sqlite:///sis.db", "mysql+pymysql://root@h/bas", "state.url: the state store runs on SQLite or"),
    ],
)
def test_bad_database_urls_name_the_key(tmp_path: Path, source: str, state: str, want: str) -> None:
    cfg = tmp_path / "bas.toml"
    cfg.write_text(GOOD.format(source=source, state=state), encoding="utf-8")
    for args in (("config", "check"), ("plan",), ("runs",)):
        p = bas(*args, config=cfg)
        assert p.returncode == runner.EXIT_USAGE and want in p.stderr, (args, p.stderr)


def test_a_config_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    cfg = tmp_path / "bas.toml"
    cfg.write_bytes(GOOD.format(source="sqlite:///sis.db", state="sqlite:///s.db").encode() + b"# Ski\xf8\n")
    p = bas("config", "check", config=cfg)
    assert p.returncode == runner.EXIT_USAGE and "not UTF-8" in p.stderr, p.stderr


def test_a_missing_sqlite_source_is_a_config_error_and_is_not_created(tmp_path: Path) -> None:
    cfg = setup(tmp_path)
    (tmp_path / "sis.db").unlink()
    for args in (("config", "check"), ("plan",), ("sync",)):
        p = bas(*args, config=cfg)
        assert p.returncode == runner.EXIT_USAGE, (args, p.stderr)
        assert f"source.url: the SQLite file {tmp_path / 'sis.db'} does not exist" in p.stderr + p.stdout
        assert "no such table" not in p.stderr + p.stdout
    assert not (tmp_path / "sis.db").exists()


# -- placeholders -----------------------------------------------------------------------------


@pytest.mark.parametrize(("group", "kind"), [("ad", "ad"), ("m365", "m365")])
def test_reconcile_messages_name_the_real_target(tmp_path: Path, group: str, kind: str) -> None:
    cfg = setup(tmp_path, targets=("itslearning",))
    text = cfg.read_text(encoding="utf-8") + f'\n[targets.skole_x]\nkind = "{kind}"\nmode = "plan"\n'
    cfg.write_text(text, encoding="utf-8")
    p = bas(group, "reconcile", config=cfg)
    assert p.returncode == runner.EXIT_USAGE, p.stderr
    assert "targets.skole_x:" in p.stderr and "<" not in p.stderr, p.stderr


# -- exit codes -------------------------------------------------------------------------------


def test_plan_and_a_no_change_sync_exit_alike_on_data_errors(tmp_path: Path) -> None:
    sis = small_sis()
    fnr, _ = nin_pair("2012-05-06")
    sis.student("BAD", "NORD", "Feil", "Nummer", nin=bad_check_digit(fnr))
    cfg = setup(tmp_path, sis)
    first = bas("sync", "--as-of", DAY1, config=cfg)
    assert first.returncode == runner.EXIT_ERRORS and "invalid_nin" in first.stdout + first.stderr
    again = bas("sync", "--as-of", DAY1, config=cfg)  # nothing left to change; the data error stays
    plan = bas("plan", "--as-of", DAY1, config=cfg)
    assert again.returncode == plan.returncode == runner.EXIT_ERRORS, (again.stderr, plan.stderr)


def test_a_target_that_fails_as_a_whole_has_its_own_exit_code(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("a file where a folder should be", encoding="utf-8")
    cfg = setup(tmp_path, target_settings={"itslearning": {"output_dir": str(tmp_path / "blocker" / "its")}})
    p = bas("sync", "--as-of", DAY1, config=cfg)
    assert p.returncode == runner.EXIT_TARGET_FAILED, p.stderr
    assert "itslearning" in p.stdout and "failed" in p.stdout


def test_an_unexpected_error_is_one_line_and_exit_70_with_the_traceback_in_a_file(tmp_path: Path) -> None:
    cfg = setup(tmp_path)
    (tmp_path / "state.db").write_bytes(b"this is not a SQLite database, it is rubbish\n" * 200)
    p = bas("runs", config=cfg)
    assert p.returncode == runner.EXIT_INTERNAL, (p.returncode, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bas: internal error: ") and "traceback in " in lines[0]
    saved = Path(lines[0].split("traceback in ")[1].split(";")[0])
    try:
        assert stat.S_IMODE(saved.stat().st_mode) == 0o600
        assert "Traceback (most recent call last)" in saved.read_text(encoding="utf-8")
    finally:
        saved.unlink()


# -- person show for a person whose accounts were deleted --------------------------------------


def test_person_show_says_what_was_deleted_and_when(tmp_path: Path) -> None:
    sis = small_sis()
    cfg = make_config(tmp_path, f"sqlite:///{tmp_path / 'sis.db'}", f"sqlite:///{tmp_path / 'state.db'}")
    store = StateStore(cfg.state.url)
    try:
        sis.write(cfg.source.url)
        assert runner.sync(cfg, store, as_of=DAY1).exit_code == runner.EXIT_OK
        sis.remove_person("S3")  # gone from the SIS: stopped, removed from itslearning and Feide
        sis.write(cfg.source.url)
        out = runner.sync(cfg, store, as_of=DAY2)
        assert out.exit_code == runner.EXIT_OK, out.status
        info = explain.explain(cfg, store, "S3")
    finally:
        store.close()
    assert info is not None
    assert {a["target"] for a in info["accounts"]} <= {"ad", "m365"}  # plan-only targets: never made
    removed = {r["target"]: r for r in info["removed"]}
    assert set(removed) == {"itslearning", "feide"}
    assert removed["feide"]["op"] == "delete" and removed["feide"]["run_id"] == out.run_id
    text = explain.render_text(info)
    assert "(none applied)" not in text
    assert f"itslearning  deleted {removed['itslearning']['at'][:10]} (run {out.run_id})" in text


def test_a_state_store_that_cannot_be_reached_is_a_config_error(tmp_path: Path) -> None:
    cfg = tmp_path / "bas.toml"
    cfg.write_text(
        GOOD.format(source="sqlite:///sis.db", state="postgresql+psycopg://postgres@127.0.0.1:1/bas"),
        encoding="utf-8",
    )
    p = bas("runs", config=cfg)
    assert p.returncode == runner.EXIT_USAGE, p.stderr
    assert p.stderr.startswith("bas: state.url: cannot open the state store:")
