"""A run killed mid-way (SIGKILL): the next run takes its lock, records it aborted, removes its temp files.

The run lock's holder is a process, not a PID: a dead holder's PID given by the kernel
to another process does not keep the lock (the holder's process start is kept with the
lock, ``provisioner.state.process``), while a live holder is still respected. On
PostgreSQL the advisory lock is free once the holder died; the lock row is checked the
same way.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.files import clean_stale_temp
from demo.data import DEMO, generate
from provisioner.run import runner
from provisioner.state import schema as t
from provisioner.state.common import now_iso
from provisioner.state.process import process_start
from provisioner.state.runs import ABORTED_ERROR, LockHeld
from provisioner.state.store import StateStore
from tests.sisbuilder import make_config
from tests.test_cli import bas

AS_OF = "2025-10-01"


@pytest.fixture()
def sleeper() -> Iterator[Callable[[], subprocess.Popen]]:
    """Starts a live process that has nothing to do with BAS (stopped after the test)."""
    procs: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        procs.append(subprocess.Popen(["sleep", "120"]))
        return procs[-1]

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


# A process that takes the run lock, starts a run, leaves temp files as a writer would,
# and is killed (SIGKILL: no finally, no atexit) while holding it.
KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from provisioner.state.store import StateStore
    store = StateStore(sys.argv[1])
    out = Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    with store.runs.lock("killed-run"):
        store.runs.start("killed-run", "sync", "2025-10-01")
        (out / f".ims-full-x.xml.{os.getpid()}.tmp").write_text("<half")
        (out / f".latest-full.xml.{os.getpid()}.tmp").write_text("<half")
        os.kill(os.getpid(), signal.SIGKILL)
    """
)


def killed_run(url: str, out: Path) -> int:
    """Run KILLED_RUN; its (now dead) PID."""
    proc = subprocess.run([sys.executable, "-c", KILLED_RUN, url, str(out)], timeout=120, check=False)
    assert proc.returncode == -signal.SIGKILL
    return int(next(out.glob(".ims-full-x.xml.*.tmp")).name.split(".")[-2])


def lock_row(store: StateStore) -> dict | None:
    with store.engine.connect() as c:
        row = c.execute(sa.select(t.locks)).mappings().first()
    return dict(row) if row else None


def give_pid_to(store: StateStore, pid: int) -> None:
    """What the kernel does after the holder died: its PID now names another process."""
    with store.engine.begin() as c:
        c.execute(t.locks.update().values(pid=pid))
        rec = json.loads(
            c.execute(sa.select(t.meta.c.value).where(t.meta.c.key == "run_lock.process")).scalar()
        )
        c.execute(
            t.meta.update()
            .where(t.meta.c.key == "run_lock.process")
            .values(value=json.dumps({**rec, "pid": pid}))
        )


def test_lock_of_a_killed_holder_whose_pid_was_reused_is_taken_over(
    store: StateStore, tmp_path: Path, sleeper: Callable[[], subprocess.Popen]
) -> None:
    killed_run(store.url, tmp_path / "out")
    assert lock_row(store)["holder"] == "killed-run"
    give_pid_to(store, sleeper().pid)  # alive, but not the process that took the lock
    with store.runs.lock("next-run") as abandoned:
        row = lock_row(store)
        assert (row["holder"], row["pid"]) == ("next-run", os.getpid())
        assert abandoned == ["killed-run"]
    assert lock_row(store) is None
    run = store.runs.get("killed-run")
    assert run["status"] == "aborted" and run["error"] == ABORTED_ERROR and run["finished_at"]


def test_live_holder_is_respected_with_its_process_start(
    store: StateStore, sleeper: Callable[[], subprocess.Popen]
) -> None:
    host, live = socket.gethostname(), sleeper()
    with store.engine.begin() as c:
        c.execute(
            t.locks.insert().values(name="run", holder="live", host=host, pid=live.pid, acquired_at=now_iso())
        )
        rec = {"holder": "live", "pid": live.pid, "start": process_start(live.pid)}
        c.execute(t.meta.insert().values(key="run_lock.process", value=json.dumps(rec)))
    with pytest.raises(LockHeld, match="run live holds the lock"), store.runs.lock("x"):
        pass
    # The same row, but the process that took it started at another time: the PID was reused.
    with store.engine.begin() as c:
        rec["start"] = process_start(os.getpid())
        c.execute(t.meta.update().where(t.meta.c.key == "run_lock.process").values(value=json.dumps(rec)))
    with store.runs.lock("x"):
        assert lock_row(store)["holder"] == "x"


def test_a_live_run_in_another_process_keeps_its_lock_and_its_record(store: StateStore) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time\n"
            "from provisioner.state.store import StateStore\n"
            "s = StateStore(sys.argv[1])\n"
            "with s.runs.lock('live-run'):\n"
            "    s.runs.start('live-run', 'sync', '2025-10-01')\n"
            "    print('held', flush=True)\n"
            "    time.sleep(120)\n",
            store.url,
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld, match="live-run"), store.runs.lock("x"):
            pass
        assert store.runs.get("live-run")["status"] == "running"
    finally:
        holder.kill()
        holder.wait()


def test_process_start_names_one_process() -> None:
    me = process_start(os.getpid())
    assert me is not None and me == process_start(os.getpid())
    other = subprocess.Popen(["sleep", "5"])
    try:
        assert process_start(other.pid) not in (None, me)
    finally:
        other.kill()
        other.wait()
    assert process_start(other.pid) is None  # gone


@pytest.mark.parametrize(
    ("name", "removed"),
    [
        (".ims-full-20251001.xml.4242.tmp", True),  # atomic_text_file's temp
        (".latest-full.xml.17.tmp", True),  # link_latest's temp
        (".feide-delta-x.ldif.9.tmp", True),
        ("ims-full-20251001.xml", False),  # a finished file
        ("latest-full.xml", False),
        (".keep.tmp", False),  # somebody else's dotfile: no pid in the name
        ("notes.4242.tmp", False),  # not a dotfile
        (".ims-full.xml.pid.tmp", False),
    ],
)
def test_clean_stale_temp_removes_only_the_writers_temp_names(
    tmp_path: Path, name: str, removed: bool
) -> None:
    (tmp_path / name).write_text("x")
    assert clean_stale_temp(tmp_path) == ([tmp_path / name] if removed else [])
    assert (tmp_path / name).exists() is not removed


def test_next_sync_records_the_killed_run_aborted_and_removes_its_temp_files(tmp_path: Path) -> None:
    src = f"sqlite:///{tmp_path / 'sis.db'}"
    generate(src, DEMO, seed=3, as_of=dt.date.fromisoformat(AS_OF))
    cfg = make_config(tmp_path, src, f"sqlite:///{tmp_path / 'state.db'}", targets=("itslearning", "feide"))
    out = cfg.path(cfg.targets["itslearning"].output_dir)
    store = StateStore(cfg.state.url)
    try:
        killed_run(store.url, out)
        (out / ".keep.tmp").write_text("not ours")
        assert store.runs.get("killed-run")["status"] == "running"
        done = runner.sync(cfg, store, as_of=AS_OF)
        assert done.exit_code == runner.EXIT_OK, done.message
        run = store.runs.get("killed-run")
        assert (run["status"], run["error"]) == ("aborted", ABORTED_ERROR)
        assert sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp")) == [".keep.tmp"]
        assert (out / "latest-full.xml").is_file()
    finally:
        store.close()
    p = bas("runs", config=tmp_path / "bas.toml")
    line = next(x for x in p.stdout.splitlines() if x.startswith("killed-run"))
    assert "aborted" in line and "killed or crashed" in line
