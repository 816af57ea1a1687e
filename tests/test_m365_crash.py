"""Microsoft 365 creates and a run that dies halfway: no user is ever enabled with a password nobody has.

Against the local Graph (tests/fake_graph.py). A user is created disabled with its
password, the password is fsynced to the school's file, and only then is the user
enabled. A run that dies in between (the password file cannot be written; the process
is killed with SIGKILL as the create answers come back) leaves disabled users; the next
run adopts them with a new password written to its file before it enables them.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

from tests.m365test import M365Env
from tests.test_cli import BAS, bas

DAY1, DAY2 = "2025-10-01", "2025-10-02"


def files_passwords(folder: Path, run_id: str = "") -> dict[str, list[str]]:
    """username -> every password on file for it (in this run's files, or in all)."""
    out: dict[str, list[str]] = {}
    for f in sorted(folder.glob(f"*{run_id}.csv" if run_id else "*.csv")) if folder.is_dir() else []:
        rows = list(csv.reader(f.read_text(encoding="utf-8-sig").splitlines(), delimiter=";"))
        for r in rows[1:]:
            out.setdefault(r[0], []).append(r[2])
    return out


def managed_users(env: M365Env) -> list[dict[str, Any]]:
    """The tenant's users made for SIS persons (they carry an employeeId)."""
    return [u for u in env.graph.directory.users.values() if u.get("employeeId")]


def unknown_passwords(env: M365Env) -> list[str]:
    """UPNs of enabled users whose current password is in no school office file."""
    on_file = files_passwords(env.password_dir)
    d = env.graph.directory
    return [
        u["userPrincipalName"]
        for u in managed_users(env)
        if u.get("accountEnabled") and d.passwords.get(u["id"]) not in on_file.get(u["mailNickname"], [])
    ]


def test_a_user_is_enabled_only_once_its_password_is_on_file(m365_env: M365Env) -> None:
    # After every $batch took effect (before its answer is read): no enabled user has a
    # password that is not yet in a school office file.
    seen: list[list[str]] = []
    m365_env.graph.on_batch = lambda _reqs: seen.append(unknown_passwords(m365_env))
    out = m365_env.sync(DAY1)
    assert out.exit_code == 0, out.results["m365"].errors
    assert seen and not any(seen), [s for s in seen if s][:1]
    users = managed_users(m365_env)
    assert len(users) == 9 and all(u["accountEnabled"] for u in users)
    assert sum(1 for u in users if u["assignedLicenses"]) == 8  # staff have no licence configured


def test_password_file_not_written_leaves_users_disabled_and_the_next_run_resets_them(
    m365_env: M365Env,
) -> None:
    m365_env.password_dir.write_text("not a folder\n", encoding="utf-8")  # mkdir fails: OSError
    out = m365_env.sync(DAY1)
    assert out.results["m365"].status == "failed"
    assert "password file" in " ".join(out.results["m365"].errors)
    users = managed_users(m365_env)
    assert users and not any(u["accountEnabled"] for u in users)  # nobody can sign in to them
    m365_env.password_dir.unlink()
    out = m365_env.sync(DAY1)
    assert out.exit_code == 0, out.results["m365"].errors
    d = m365_env.graph.directory
    mine = files_passwords(m365_env.password_dir, out.run_id)
    users = managed_users(m365_env)
    assert len(users) == 9 and all(u["accountEnabled"] for u in users)
    # Each got a new password, in this run's file: the one the tenant holds.
    assert all(mine[u["mailNickname"]] == [d.passwords[u["id"]]] for u in users)
    rows = m365_env.changelog("ok")
    notes = [
        r["error"] for r in rows if (r["op"], r["kind"], r["run_id"]) == ("create", "person", out.run_id)
    ]
    assert len(notes) == 9 and all("was disabled: new password" in n for n in notes)
    assert m365_env.sync(DAY2).plan.target("m365").changes == ()


def test_run_killed_as_the_creates_are_answered_then_next_run_finishes(m365_env: M365Env) -> None:
    m365_env.sis.write(m365_env.src)
    proc = subprocess.Popen(
        [*BAS, "--config", str(m365_env.config_path), "sync", "--as-of", DAY1],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def kill_at_creates(reqs: list[dict[str, Any]]) -> None:
        if any(r.get("method") == "POST" and r.get("url") == "/users" for r in reqs):
            os.kill(proc.pid, signal.SIGKILL)  # the users exist; the process never hears of it

    m365_env.graph.on_batch = kill_at_creates
    assert proc.wait(timeout=120) == -signal.SIGKILL
    m365_env.graph.on_batch = None
    users = managed_users(m365_env)
    assert users and not any(u["accountEnabled"] for u in users)
    assert not files_passwords(m365_env.password_dir)
    # The next run takes over the dead holder's lock, records the killed run, and finishes.
    bas("sync", "--as-of", DAY1, config=m365_env.config_path)
    users = managed_users(m365_env)
    assert len(users) == 9 and all(u["accountEnabled"] for u in users)
    assert unknown_passwords(m365_env) == []
    assert len({u["employeeId"] for u in users}) == 9  # adopted, not created twice
    p = bas("runs", config=m365_env.config_path)
    killed = [line for line in p.stdout.splitlines() if " aborted " in f" {line} "]
    assert len(killed) == 1 and "killed or crashed" in killed[0], p.stdout
