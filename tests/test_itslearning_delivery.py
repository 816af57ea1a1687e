"""Delivering the itslearning files over SFTP to a real OpenSSH server (tests/sshd_server.py).

The server listens on 127.0.0.1 on a free port with its own host key and logs every
file it opens for writing and every rename, in order: what reached itslearning's
importer is read from there, not from BAS's own account of it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.errors import FatalError, TransientError
from connectors.itslearning import delivery
from connectors.itslearning.delivery import RENAMING, SENT, SKIPPED, Delivery, Journal, backoff
from provisioner.config import ConfigError, SftpDeliveryConfig, parse
from tests.sshd_server import SSH_KEYGEN, SshdServer, password_user, remote_folder, running

KEY = "targets.itslearning.sftp"


@pytest.fixture(scope="module")
def server() -> Iterator[SshdServer]:
    yield from running()


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    return remote_folder(tmp_path)


@pytest.fixture
def out(tmp_path: Path) -> Path:
    o = tmp_path / "out"
    o.mkdir()
    Journal(o).save()  # delivery configured before these files were written: all of them go
    return o


def sftp_cfg(server: SshdServer, remote: Path, **kw: Any) -> SftpDeliveryConfig:
    settings: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": server.port,
        "username": server.user,
        "known_hosts_file": str(server.known_hosts),
        "private_key_file": str(server.user_key),
        "remote_dir": str(remote),
        "timeout": 10,
        "attempts": 2,
        "retry_delay": 0,
        **kw,
    }
    return SftpDeliveryConfig(**{k: v for k, v in settings.items() if v is not None})


def write_runs(out: Path, *runs: tuple[str, str]) -> list[Path]:
    """A full and a delta file per (stamp, run), written in the order given (as the connector does)."""
    written = []
    for i, (stamp, run) in enumerate(runs):
        for kind in ("full", "delta"):
            p = out / f"ims-{kind}-{stamp}-{run}.xml"
            p.write_text(f"<enterprise><!-- {kind} of {run} -->{'x' * (1000 * i)}</enterprise>\n")
            written.append(p)
    return written


def _delivery(cfg: SftpDeliveryConfig, out: Path, sleeps: list[float] | None = None) -> Delivery:
    return Delivery(cfg, out, str(out), KEY, sleep=(sleeps if sleeps is not None else []).append)


def _temp(remote: Path, p: Path) -> str:
    return str(remote / f".{p.name}.part")


def _delivered_renames(server: SshdServer, remote: Path) -> list[str]:
    """The names renamed into ``remote`` on the server, in order."""
    return [Path(new).name for old, new in server.renames() if Path(new).parent == remote]


def test_files_go_in_the_order_written_each_under_a_temp_name_then_renamed(
    server: SshdServer, remote: Path, out: Path
) -> None:
    # Two runs in the same second: the one written first goes first, whatever its name.
    files = write_runs(
        out, ("20251001T060000Z", "r1"), ("20251002T060000Z", "zz"), ("20251002T060000Z", "aa")
    )
    sent = _delivery(sftp_cfg(server, remote), out).run()
    assert sent == len(files)
    assert _delivered_renames(server, remote) == [p.name for p in files]
    renames = [(old, new) for old, new in server.renames() if Path(new).parent == remote]
    assert renames == [(_temp(remote, p), str(remote / p.name)) for p in files]
    assert sorted(p.name for p in remote.iterdir()) == sorted(p.name for p in files)  # no temp left
    for p in files:
        assert (remote / p.name).read_bytes() == p.read_bytes()
    journal = Journal(out)
    assert {journal.state(p.name) for p in files} == {SENT}
    assert delivery.waiting(out) == []


def test_a_delivered_file_is_never_sent_again(server: SshdServer, remote: Path, out: Path) -> None:
    files = write_runs(out, ("20251001T060000Z", "r1"))
    cfg = sftp_cfg(server, remote)
    assert _delivery(cfg, out).run() == 2
    for p in remote.iterdir():  # the importer takes the files away
        p.unlink()
    uploads = len(server.uploads())
    assert _delivery(cfg, out).run() == 0
    assert len(server.uploads()) == uploads and not list(remote.iterdir())
    later = write_runs(out, ("20251002T060000Z", "r2"))
    assert _delivery(cfg, out).run() == 2
    assert sorted(p.name for p in remote.iterdir()) == sorted(p.name for p in later)
    assert [Path(u).name for u in server.uploads()[uploads:]] == [f".{p.name}.part" for p in later]
    assert _delivered_renames(server, remote) == [p.name for p in files + later]  # each once


def _drop_when(monkeypatch: pytest.MonkeyPatch, server: SshdServer, name: str, state: str) -> None:
    """Make the server go away the moment the journal records ``name`` as ``state``."""
    mark = Journal.mark

    def then_drop(self: Journal, n: str, s: str, size: int) -> None:
        mark(self, n, s, size)
        if (n, s) == (name, state):
            server.drop()

    monkeypatch.setattr(Journal, "mark", then_drop)


def test_the_server_gone_between_two_files_resumes_with_no_gap_and_no_duplicate(
    server: SshdServer, remote: Path, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = write_runs(out, ("20251001T060000Z", "r1"), ("20251002T060000Z", "r2"))
    cfg = sftp_cfg(server, remote, attempts=3, retry_delay=0.5)
    sleeps: list[float] = []
    try:
        with monkeypatch.context() as m:
            _drop_when(m, server, files[0].name, SENT)
            with pytest.raises(TransientError, match=r"after 3 attempts .* 3 files wait for the next run"):
                _delivery(cfg, out, sleeps).run()
        assert len(sleeps) == 2 and 0.5 <= sleeps[0] <= 0.75 and 1.0 <= sleeps[1] <= 1.5  # backoff, jitter
        assert [p.name for p in delivery.waiting(out)] == [p.name for p in files[1:]]
    finally:
        server.start()
    assert _delivery(cfg, out).run() == 3
    assert _delivered_renames(server, remote) == [p.name for p in files]  # once each, in order
    assert sorted(Path(u).name for u in server.uploads() if Path(u).parent == remote) == sorted(
        f".{p.name}.part" for p in files
    )


def test_the_server_gone_between_upload_and_rename_renames_without_uploading_again(
    server: SshdServer, remote: Path, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = write_runs(out, ("20251001T060000Z", "r1"))
    cfg = sftp_cfg(server, remote)
    try:
        with monkeypatch.context() as m:
            _drop_when(m, server, files[1].name, RENAMING)
            with pytest.raises(TransientError, match="1 files wait"):
                _delivery(cfg, out).run()
        assert Journal(out).state(files[1].name) == RENAMING
        assert (remote / f".{files[1].name}.part").exists() and not (remote / files[1].name).exists()
    finally:
        server.start()
    assert _delivery(cfg, out).run() == 1
    assert _delivered_renames(server, remote) == [p.name for p in files]
    uploads = [Path(u).name for u in server.uploads() if Path(u).parent == remote]
    assert uploads == [f".{p.name}.part" for p in files]  # the second was not uploaded again
    assert (remote / files[1].name).read_bytes() == files[1].read_bytes()


def test_a_run_killed_after_the_rename_does_not_send_the_file_again(
    server: SshdServer, remote: Path, out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed between the rename and its record: the temp file is gone, so the rename happened."""
    files = write_runs(out, ("20251001T060000Z", "r1"))
    cfg = sftp_cfg(server, remote)
    mark = Journal.mark

    def killed(self: Journal, n: str, s: str, size: int) -> None:
        if s == SENT:
            raise KeyboardInterrupt  # as a kill: nothing after the rename is recorded
        mark(self, n, s, size)

    with monkeypatch.context() as m:
        m.setattr(Journal, "mark", killed)
        with pytest.raises(KeyboardInterrupt):
            _delivery(cfg, out).run()
    assert Journal(out).state(files[0].name) == RENAMING
    (remote / files[0].name).unlink()  # and the importer took it meanwhile
    assert _delivery(cfg, out).run() == 2
    assert _delivered_renames(server, remote) == [p.name for p in files]
    assert [Path(u).name for u in server.uploads() if Path(u).parent == remote] == [
        f".{p.name}.part" for p in files
    ]
    assert not (remote / files[0].name).exists() and (remote / files[1].name).exists()


@pytest.mark.parametrize("kind", ["full", "delta"])
def test_deliver_chooses_the_files_that_go(server: SshdServer, remote: Path, out: Path, kind: str) -> None:
    files = write_runs(out, ("20251001T060000Z", "r1"), ("20251002T060000Z", "r2"))
    chosen = [p for p in files if p.name.startswith(f"ims-{kind}-")]
    assert _delivery(sftp_cfg(server, remote, deliver=kind), out).run() == 2
    assert _delivered_renames(server, remote) == [p.name for p in chosen]
    assert _delivery(sftp_cfg(server, remote, deliver=kind), out).waiting() == []


def test_a_wrong_host_key_is_refused_at_once(server: SshdServer, remote: Path, out: Path) -> None:
    write_runs(out, ("20251001T060000Z", "r1"))
    sleeps: list[float] = []
    cfg = sftp_cfg(server, remote, known_hosts_file=str(server.wrong_known_hosts), attempts=3)
    with pytest.raises(
        FatalError, match=rf"host key .* is not the one {KEY}.known_hosts_file .*wrong_known_hosts"
    ):
        _delivery(cfg, out, sleeps).run()
    assert sleeps == [] and not list(remote.iterdir())  # not tried again, nothing sent
    empty = out.parent / "empty_known_hosts"
    empty.write_text("")
    with pytest.raises(FatalError, match=rf"host key is not in {KEY}.known_hosts_file"):
        _delivery(sftp_cfg(server, remote, known_hosts_file=str(empty)), out).run()
    assert len(delivery.waiting(out)) == 2


def _fingerprint(pub: Path) -> str:
    out = subprocess.run([SSH_KEYGEN, "-lf", str(pub)], capture_output=True, text=True, check=True).stdout
    return out.split()[1]  # "256 SHA256:... comment (ED25519)"


def test_a_pinned_fingerprint_admits_only_the_servers_key(
    server: SshdServer, remote: Path, out: Path
) -> None:
    write_runs(out, ("20251001T060000Z", "r1"))
    wrong = _fingerprint(server.tmp / "other_ed25519.pub")
    cfg = sftp_cfg(server, remote, known_hosts_file=None, host_key_fingerprint=wrong)
    with pytest.raises(FatalError, match=rf"is not the one {KEY}.host_key_fingerprint pins"):
        _delivery(cfg, out).run()
    right = _fingerprint(server.tmp / "host_ed25519.pub")
    cfg = sftp_cfg(server, remote, known_hosts_file=None, host_key_fingerprint=right)
    assert _delivery(cfg, out).run() == 2


def test_a_wrong_user_key_is_fatal_and_names_the_setting(server: SshdServer, remote: Path, out: Path) -> None:
    write_runs(out, ("20251001T060000Z", "r1"))
    cfg = sftp_cfg(server, remote, private_key_file=str(server.tmp / "other_ed25519"))
    with pytest.raises(FatalError, match=rf"login refused .*{KEY}.private_key_file"):
        _delivery(cfg, out).run()
    with pytest.raises(FatalError, match=rf"{KEY}.private_key_file: secret file .* not found"):
        _delivery(sftp_cfg(server, remote, private_key_file="no-such-key"), out).run()


def test_a_missing_remote_folder_is_fatal_and_names_the_setting(server: SshdServer, out: Path) -> None:
    write_runs(out, ("20251001T060000Z", "r1"))
    sleeps: list[float] = []
    cfg = sftp_cfg(server, out.parent / "not-there", attempts=3)
    with pytest.raises(FatalError, match=rf"not-there.*{KEY}.remote_dir"):
        _delivery(cfg, out, sleeps).run()
    assert sleeps == []


def test_a_server_not_listening_is_transient_after_the_attempts(remote: Path, out: Path) -> None:
    write_runs(out, ("20251001T060000Z", "r1"))
    down = SshdServer()  # configured, never started: its port refuses
    try:
        sleeps: list[float] = []
        cfg = sftp_cfg(down, remote, attempts=3, retry_delay=2)
        with pytest.raises(TransientError, match=r"cannot connect.*2 files wait for the next run"):
            _delivery(cfg, out, sleeps).run()
        assert len(sleeps) == 2 and 2 <= sleeps[0] <= 3 and 4 <= sleeps[1] <= 6
    finally:
        down.cleanup()


@pytest.fixture(scope="module")
def account() -> Iterator[tuple[str, str]]:
    yield from password_user()


@pytest.fixture(scope="module")
def password_server(account: tuple[str, str]) -> Iterator[SshdServer]:
    yield from running(password_user=account[0])


def test_password_login(
    password_server: SshdServer,
    account: tuple[str, str],
    tmp_path: Path,
    out: Path,
    request: pytest.FixtureRequest,
) -> None:
    name, password = account
    top = Path(tempfile.mkdtemp(prefix="bas-sftp-drop-"))  # pytest's own folders are root's only
    top.chmod(0o755)
    remote = top / "drop"
    remote.mkdir()
    shutil.chown(remote, user=name)
    request.addfinalizer(lambda: shutil.rmtree(top))
    secret = tmp_path / "sftp-password"
    secret.write_text(password + "\n")
    files = write_runs(out, ("20251001T060000Z", "r1"))
    cfg = sftp_cfg(password_server, remote, username=name, private_key_file=None, password_file=str(secret))
    assert _delivery(cfg, out).run() == 2
    assert sorted(p.name for p in remote.iterdir()) == sorted(p.name for p in files)
    assert {remote.joinpath(p.name).stat().st_uid for p in files} == {pwd.getpwnam(name).pw_uid}
    secret.write_text("not the password\n")
    write_runs(out, ("20251002T060000Z", "r2"))
    with pytest.raises(FatalError, match=rf"login refused .*{KEY}.password_file"):
        _delivery(cfg, out).run()


# -- the pure parts -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "base", "jitter", "wait"),
    [
        (1, 5.0, 0.0, 5.0),
        (2, 5.0, 0.0, 10.0),
        (3, 5.0, 0.999, 29.99),
        (1, 0.0, 0.5, 0.0),
        (4, 1.0, 0.5, 10.0),
    ],
)
def test_backoff_doubles_with_up_to_half_again_of_jitter(
    attempt: int, base: float, jitter: float, wait: float
) -> None:
    assert backoff(attempt, base, jitter) == pytest.approx(wait)


def _stamped(out: Path, names: list[str]) -> None:
    for i, n in enumerate(names):
        p = out / n
        p.write_text("x")
        os.utime(p, ns=(i * 10**9, i * 10**9))  # written in this order


@pytest.mark.parametrize(
    ("names", "journal", "waiting"),
    [
        # no journal yet (delivery just configured): from the newest full file on
        (["ims-full-20250101T000000Z-a.xml", "ims-delta-20250101T000000Z-a.xml",
          "ims-full-20250102T000000Z-b.xml", "ims-delta-20250102T000000Z-b.xml"], None,
         ["ims-full-20250102T000000Z-b.xml", "ims-delta-20250102T000000Z-b.xml"]),
        # a journal: what it has not recorded sent or skipped, in the order written
        (["ims-full-20250101T000000Z-a.xml", "ims-delta-20250101T000000Z-a.xml",
          "ims-full-20250102T000000Z-b.xml"], {"ims-full-20250101T000000Z-a.xml": SENT},
         ["ims-delta-20250101T000000Z-a.xml", "ims-full-20250102T000000Z-b.xml"]),
        # a file half way (renaming) still waits; skipped ones never go
        (["ims-full-20250101T000000Z-a.xml", "ims-delta-20250101T000000Z-a.xml"],
         {"ims-full-20250101T000000Z-a.xml": SKIPPED, "ims-delta-20250101T000000Z-a.xml": RENAMING},
         ["ims-delta-20250101T000000Z-a.xml"]),
        # the UTC time in the name orders first; latest-full.xml, temp and other files never go
        (["ims-full-20250102T000000Z-b.xml", "ims-full-20250101T000000Z-a.xml", "latest-full.xml",
          ".ims-full-x.xml.1.tmp", "notes.txt"], {},
         ["ims-full-20250101T000000Z-a.xml", "ims-full-20250102T000000Z-b.xml"]),
    ],
)  # fmt: skip
def test_what_waits_for_delivery(
    tmp_path: Path, names: list[str], journal: dict[str, str] | None, waiting: list[str]
) -> None:
    _stamped(tmp_path, names)
    if journal is not None:
        j = Journal(tmp_path)
        j.entries = {n: {"state": s, "size": 1} for n, s in journal.items()}
        j.save()
    assert [p.name for p in delivery.waiting(tmp_path)] == waiting


@pytest.mark.parametrize(
    ("kinds", "waiting"),
    [
        (("full",), ["ims-full-20250102T000000Z-b.xml"]),
        (("delta",), ["ims-delta-20250102T000000Z-b.xml"]),  # no journal: from the newest full file on
        (("full", "delta"), ["ims-full-20250102T000000Z-b.xml", "ims-delta-20250102T000000Z-b.xml"]),
    ],
)
def test_what_waits_of_the_kinds_delivered(
    tmp_path: Path, kinds: tuple[str, ...], waiting: list[str]
) -> None:
    names = ["ims-full-20250101T000000Z-a.xml", "ims-delta-20250101T000000Z-a.xml"]
    _stamped(tmp_path, [*names, "ims-full-20250102T000000Z-b.xml", "ims-delta-20250102T000000Z-b.xml"])
    assert [p.name for p in delivery.waiting(tmp_path, kinds=kinds)] == waiting


def test_an_unreadable_journal_stops_delivery(tmp_path: Path) -> None:
    (tmp_path / delivery.JOURNAL).write_text("{not json")
    with pytest.raises(FatalError, match="delivery journal .* unreadable"):
        delivery.waiting(tmp_path)


def test_the_journal_is_owner_only(tmp_path: Path) -> None:
    _stamped(tmp_path, ["ims-full-20250101T000000Z-a.xml"])
    j = Journal(tmp_path)
    j.mark("ims-full-20250101T000000Z-a.xml", SENT, 1)
    assert (tmp_path / delivery.JOURNAL).stat().st_mode & 0o777 == 0o600


_BASE = """
[owner]
name = "E"
org_number = "974000000"
realm = "e.no"
mail_domain = "e.no"
[source]
url = "sqlite:///sis.db"
[state]
url = "sqlite:///state.db"
[targets.itslearning]
mode = "apply"
[targets.itslearning.sftp]
"""


@pytest.mark.parametrize(
    ("table", "error"),
    [
        (
            'username = "u"\nknown_hosts_file = "k"\nprivate_key_file = "p"',
            r"targets.itslearning.itslearning.sftp.host",
        ),
        (
            'host = "h"\nusername = "u"\nknown_hosts_file = "k"\nprivate_key_file = "p"\npassword_file = "q"',
            r"targets.itslearning.itslearning.sftp.*exactly one of private_key_file or password_file",
        ),
        (
            'host = "h"\nusername = "u"\nprivate_key_file = "p"',
            r"targets.itslearning.itslearning.sftp.*exactly one of known_hosts_file or host_key_fingerprint",
        ),
        (
            'host = "h"\nusername = "u"\nhost_key_fingerprint = "MD5:ab"\nprivate_key_file = "p"',
            r"targets.itslearning.itslearning.sftp.host_key_fingerprint",
        ),
        (
            'host = "h"\nusername = "u"\nknown_hosts_file = "k"\nprivate_key_file = "p"\nattempts = 0',
            r"targets.itslearning.itslearning.sftp.attempts",
        ),
        (
            'host = "h"\nusername = "u"\nknown_hosts_file = "k"\nprivate_key_file = "p"\ndeliver = "both"',
            r"targets.itslearning.itslearning.sftp.deliver",
        ),
        (
            'host = "h"\nusername = "u"\nknown_hosts_file = "k"\nprivate_key_file = "p"\nretries = 3',
            r"targets.itslearning.itslearning.sftp.retries",
        ),
    ],
)
def test_delivery_settings_errors_name_the_key(table: str, error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        parse(_BASE + table + "\n")


def test_nothing_written_yet_delivers_nothing_and_reaches_no_server(tmp_path: Path) -> None:
    down = SshdServer()  # never started: a connection would fail
    try:
        d = _delivery(sftp_cfg(down, tmp_path), tmp_path / "never-made")
        assert d.run() == 0 and d.waiting() == []
        assert not (tmp_path / "never-made").exists()
    finally:
        down.cleanup()
