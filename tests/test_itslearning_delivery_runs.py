"""itslearning delivery as part of a run, and through the CLI on the demo, against a real sshd.

A run writes the files, records their changes, then delivers; when the server cannot be
reached the target fails for that run (its changes stay recorded: the files carry them)
and the files wait; the next run delivers them first, even when it plans no changes.
`bas status` shows the files waiting and the error.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.itslearning import delivery
from provisioner import config as config_mod
from provisioner.apply.options import ApplyOptions
from provisioner.run import runner
from provisioner.service import status
from provisioner.state.store import StateStore
from tests.sisbuilder import config_toml, small_sis
from tests.sshd_server import SshdServer, remote_folder
from tests.test_cli import BAS, bas

DAY1, DAY2 = "2025-10-01", "2025-10-02"


@pytest.fixture
def server() -> Iterator[SshdServer]:
    """A server of this test's own (it is stopped and started again), not started yet."""
    if not Path("/usr/sbin/sshd").exists():
        pytest.skip("sshd is not installed (apt-get install openssh-server)")
    s = SshdServer()
    try:
        yield s
    finally:
        s.cleanup()


def sftp_table(server: SshdServer, remote: Path, key_file: str) -> str:
    return "\n".join(
        [
            "",
            "[targets.itslearning.sftp]",
            'host = "127.0.0.1"',
            f"port = {server.port}",
            f'username = "{server.user}"',
            f'known_hosts_file = "{server.known_hosts}"',
            f'private_key_file = "{key_file}"',
            f'remote_dir = "{remote}"',
            "timeout = 10",
            "attempts = 2",
            "retry_delay = 0",
            "",
        ]
    )


def _names(folder: Path) -> set[str]:
    return {p.name for p in folder.glob("ims-*.xml")}


@pytest.mark.parametrize("in_workers", [False, True], ids=["in-process", "workers"])
def test_a_failed_delivery_fails_the_target_and_the_next_run_delivers_first(
    tmp_path: Path, server: SshdServer, in_workers: bool
) -> None:
    sis = small_sis()
    src = f"sqlite:///{tmp_path / 'sis.db'}"
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    remote = remote_folder(tmp_path)
    text = config_toml(tmp_path, src, store.url, targets=("itslearning", "feide"))
    (tmp_path / "bas.toml").write_text(text + sftp_table(server, remote, str(server.user_key)))
    cfg = config_mod.load(tmp_path / "bas.toml")
    out = tmp_path / "itslearning"
    options = ApplyOptions(workers=in_workers)
    try:
        server.start()
        sis.write(src)
        first = runner.sync(cfg, store, as_of=DAY1, options=options)
        assert first.status == "done", first.message
        res = first.results["itslearning"]
        assert (res.status, res.delivered, res.waiting) == ("applied", 2, 0)
        assert _names(remote) == _names(out) and len(_names(out)) == 2

        server.drop()  # itslearning's server is gone for the next run
        sis.end_enrollments("S3", DAY1)
        sis.write(src)
        failed = runner.sync(cfg, store, as_of=DAY2, options=options)
        res = failed.results["itslearning"]
        assert res.status == "failed" and res.failed == 0  # the changes are in the files: recorded
        assert res.errors[0].startswith("delivery failed: itslearning: delivery failed after 2 attempts")
        assert (res.delivered, res.waiting) == (0, 2)
        assert failed.results["feide"].status == "applied"
        assert failed.plan.target("itslearning").changes
        assert "S3" not in {o["key"] for o in store.objects.iterate("itslearning")}
        health = status.collect(store, ["itslearning", "feide"])
        assert health.targets["itslearning"].waiting == 2
        assert "cannot connect" in (health.targets["itslearning"].last_error or "")
        text = status.render_text(health)
        assert "itslearning: 2 files waiting for delivery" in text
        assert "itslearning: last error: delivery failed" in text

        server.start()
        again = runner.sync(cfg, store, as_of=DAY2, options=options)
        assert again.status == "done", again.message
        assert again.plan.target("itslearning").changes == ()  # nothing new: only what waited
        res = again.results["itslearning"]
        assert (res.status, res.delivered, res.waiting) == ("unchanged", 2, 0)
        assert _names(remote) == _names(out) and len(_names(out)) == 4
        health = status.collect(store, ["itslearning", "feide"])
        assert health.targets["itslearning"].waiting == 0 and health.targets["itslearning"].last_error is None
        assert "waiting for delivery" not in status.render_text(health)

        quiet = runner.sync(cfg, store, as_of=DAY2, options=options)  # nothing waits: nothing sent
        assert (quiet.results["itslearning"].status, quiet.results["itslearning"].delivered) == (
            "unchanged",
            0,
        )
        assert "delivered" not in quiet.results["itslearning"].to_json()
    finally:
        store.close()


def test_a_plan_or_a_plan_only_target_delivers_nothing(tmp_path: Path, server: SshdServer) -> None:
    """`bas plan` and a target in plan mode never reach the server."""
    sis = small_sis()
    src = f"sqlite:///{tmp_path / 'sis.db'}"
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    remote = remote_folder(tmp_path)
    text = config_toml(tmp_path, src, store.url, targets=("itslearning",))
    (tmp_path / "bas.toml").write_text(text + sftp_table(server, remote, str(server.user_key)))
    cfg = config_mod.load(tmp_path / "bas.toml")
    try:
        server.start()
        sis.write(src)
        runner.sync(cfg, store, as_of=DAY1, options=ApplyOptions(workers=False))
        (tmp_path / "itslearning" / "ims-delta-20990101T000000Z-later.xml").write_text("<x/>")
        planned = runner.sync(cfg, store, as_of=DAY1, dry_run=True)
        assert planned.status == "planned"
        assert not (remote / "ims-delta-20990101T000000Z-later.xml").exists()
        text = text.replace('mode = "apply"', 'mode = "plan"')
        (tmp_path / "bas.toml").write_text(text + sftp_table(server, remote, str(server.user_key)))
        plan_mode = runner.sync(config_mod.load(tmp_path / "bas.toml"), store, as_of=DAY1)
        assert plan_mode.results["itslearning"].status == "planned"
        assert not (remote / "ims-delta-20990101T000000Z-later.xml").exists()
    finally:
        store.close()


def test_the_demo_syncs_and_delivers_through_the_cli(tmp_path: Path, server: SshdServer) -> None:
    """`bas sync` on the demo with delivery configured: waits while the server is down, then delivers."""
    demo = tmp_path / "demo"
    bas("demo", "--dir", str(demo))
    secrets = demo / "secrets"
    secrets.mkdir()
    shutil.copy(server.user_key, secrets / "itslearning-sftp-key")
    (secrets / "itslearning-sftp-key").chmod(0o600)
    remote = remote_folder(tmp_path)
    conf = demo / "bas.toml"
    conf.write_text(conf.read_text() + sftp_table(server, remote, "secrets/itslearning-sftp-key"))
    out = demo / "out" / "itslearning"
    written = _names(out)
    assert len(written) == 2  # the demo's first sync; its second had no changes

    # The server is down: the check says so, the sync fails the target, status shows the files.
    check = bas("config", "check", config=conf, check=None)
    assert check.returncode != 0 and "cannot connect" in check.stdout + check.stderr
    sync = bas("sync", config=conf, check=None)
    assert sync.returncode != 0
    st = bas("status", config=conf, check=None).stdout
    assert "itslearning: 2 files waiting for delivery" in st
    assert "itslearning: last error: delivery failed" in st and "cannot connect" in st

    server.start()
    check = bas("config", "check", config=conf)
    assert f"SFTP {server.user}@127.0.0.1:{server.port}: host key pinned and matching" in check.stdout
    assert not list(remote.iterdir())  # the check only reads
    bas("sync", config=conf)
    assert _names(remote) == written
    assert "waiting for delivery" not in bas("status", config=conf).stdout

    # A change in the SIS: the next sync writes a full and a delta file and delivers both.
    con = sqlite3.connect(demo / "sis.sqlite")
    with con:
        con.execute(
            "UPDATE person SET family_name = 'Nyberg' WHERE person_id = (SELECT MIN(person_id) FROM person)"
        )
    con.close()
    bas("sync", config=conf)
    assert len(_names(out)) == 4 and _names(remote) == _names(out)
    new_delta = next(p for p in sorted(remote.glob("ims-delta-*.xml")) if p.name not in written)
    assert "Nyberg" in new_delta.read_text(encoding="utf-8")
    assert "waiting for delivery" not in bas("status", config=conf).stdout


def test_metrics_and_the_start_check_see_the_delivery(tmp_path: Path, server: SshdServer) -> None:
    """The daemon's gauge shows the files waiting; a missing secret stops a run before it starts."""
    from provisioner.run.targets import check_targets
    from provisioner.service.metrics import Metrics

    text = config_toml(tmp_path, "sqlite:///sis.db", "sqlite:///state.db", targets=("itslearning",))
    (tmp_path / "bas.toml").write_text(text + sftp_table(server, tmp_path, "secrets/missing-key"))
    cfg = config_mod.load(tmp_path / "bas.toml")
    with pytest.raises(
        config_mod.ConfigError, match=r"targets.itslearning.sftp.private_key_file: secret file"
    ):
        check_targets(cfg)
    metrics = Metrics()
    health = status.Health(None, {"itslearning": status.TargetHealth(waiting=3)}, [], [], {})
    metrics.update_health(health)
    assert metrics.registry.get_sample_value("bas_files_waiting_delivery", {"target": "itslearning"}) == 3


@pytest.mark.parametrize(
    "kill_at",
    ["file:.delivery.json#1", "delivery:renamed#1", "delivery:renamed#2"],
    ids=["before-the-full-files-rename", "after-the-full-files-rename", "after-the-deltas-rename"],
)
def test_a_sync_killed_while_delivering_is_finished_by_the_next_with_each_file_once(
    tmp_path: Path, server: SshdServer, kill_at: str
) -> None:
    """kill -9 (the whole process group) at a point of the delivery; the next sync delivers the rest."""
    sis = small_sis()
    src = f"sqlite:///{tmp_path / 'sis.db'}"
    remote = remote_folder(tmp_path)
    text = config_toml(tmp_path, src, f"sqlite:///{tmp_path / 'state.db'}", targets=("itslearning",))
    conf = tmp_path / "bas.toml"
    conf.write_text(text + sftp_table(server, remote, str(server.user_key)))
    out = tmp_path / "itslearning"
    server.start()
    sis.write(src)
    bas("sync", "--as-of", DAY1, config=conf)
    sis.end_enrollments("S3", DAY1)
    sis.write(src)
    env = {**os.environ, "BAS_TEST_KILL_AT": kill_at}
    killed = subprocess.run(
        [*BAS, "--config", str(conf), "sync", "--as-of", DAY2],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        start_new_session=True,  # its own process group: the kill takes the run and nothing else
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert len(_names(out)) == 4 and delivery.waiting(out)  # written, not all recorded delivered
    bas("sync", "--as-of", DAY2, config=conf)
    assert _names(remote) == _names(out)
    renamed = [Path(new).name for _, new in server.renames() if Path(new).parent == remote]
    assert sorted(renamed) == sorted(_names(out)) and len(renamed) == 4  # each once, none lost
    uploaded = [Path(u).name for u in server.uploads() if Path(u).parent == remote]
    assert sorted(uploaded) == sorted(f".{n}.part" for n in _names(out))  # none uploaded twice
    assert "waiting for delivery" not in bas("status", config=conf).stdout
