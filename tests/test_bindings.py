"""Existing logins bound to persons (taking over from AD or an old BAS): CSV, store, derivation, CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from provisioner.core.bindings import read_binding_csv
from tests.sisbuilder import small_sis
from tests.test_pipeline import DAY1, Env, ok


@pytest.mark.parametrize(
    ("text", "expect"),
    [
        ("person_id,username\nS1,ola.gammel\n", [("S1", "ola.gammel")]),
        # Export-Csv from AD: #TYPE line, semicolons, AD's column names and case, extra columns
        (
            "#TYPE Selected.Microsoft.ActiveDirectory.Management.ADUser\n"
            '"Name";"EmployeeID";"SamAccountName"\n'
            '"Ola N";"S1";"OLA.Gammel"\n"Kari";"S2";"kari2"\n',
            [("S1", "ola.gammel"), ("S2", "kari2")],
        ),
        ("employeeID,sAMAccountName\n\n,\nS1,ola\nS1,ola\n", [("S1", "ola")]),  # blanks, repeats
    ],
)
def test_read_binding_csv(tmp_path: Path, text: str, expect: list) -> None:
    f = tmp_path / "b.csv"
    f.write_text(text, encoding="utf-8")
    assert read_binding_csv(f) == expect


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("username\nola\n", "needs a person column"),
        ("person_id,username\nS1,\n", "needs both"),
        ("person_id,username\nS1,ola nordmann\n", "invalid username"),
        ("person_id,username\nS1,ola\nS1,kari\n", "bound to both 'ola' and 'kari'"),
        ("person_id,username\nS1,ola\nS2,ola\n", "username 'ola' is bound to both"),
    ],
)
def test_bad_binding_files_name_the_line(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "b.csv"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        read_binding_csv(f)


def test_bound_persons_get_their_login_and_conflicts_are_reported(tmp_path: Path) -> None:
    env = Env(tmp_path, small_sis())
    try:
        env.store.identities.reserve_usernames(["kari.ad"], note="from AD")
        bound, already, conflicts = env.store.identities.bind_usernames(
            [("S1", "ola.gammel"), ("S2", "kari.ad")], note="test"
        )
        assert (bound, already, conflicts) == (2, 0, [])
        # A newer binding for the same person replaces the older one (before they are known).
        assert env.store.identities.bind_usernames([("S1", "ola.ad")], note="test")[0] == 1
        assert env.store.identities.username_record("ola.gammel") is None
        out = ok(env.sync(DAY1))
        assert env.username("S1") == "ola.ad" and env.username("S2") == "kari.ad"
        rec = env.store.identities.username_record("ola.ad")
        assert (rec["person_id"], rec["origin"]) == ("S1", "adopted")
        reasons = {c.key: c.reason for c in out.plan.target("core").changes}
        assert "from the historic base" in reasons["S1"]
        # Nobody else is ever issued a bound name, and a person keeps the login they have.
        assert sorted(
            env.store.identities.bind_usernames([("S1", "ola.ad"), ("T9", "ola.ad"), ("S1", "x1")], "t")[2]
        ) == [
            "person S1 already has username 'ola.ad'; not bound to 'x1'",
            "username 'ola.ad' belongs to person S1; not bound to T9",
        ]
        assert env.sync(DAY1, dry_run=True).plan.target("core").changes == ()
    finally:
        env.store.close()


def test_cli_bind(tmp_path: Path) -> None:
    env = Env(tmp_path, small_sis())
    env.store.close()
    f = tmp_path / "ad.csv"
    f.write_text("EmployeeID;SamAccountName\nS1;ola.ad\n", encoding="utf-8")
    cmd = [
        sys.executable,
        "-m",
        "provisioner.cli",
        "--config",
        str(tmp_path / "bas.toml"),
        "usernames",
        "bind",
    ]
    p = subprocess.run([*cmd, str(f)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "1 bound now" in p.stdout
    f.write_text("EmployeeID;SamAccountName\nS2;ola.ad\n", encoding="utf-8")
    p = subprocess.run([*cmd, str(f)], capture_output=True, text=True, timeout=120)
    assert p.returncode == 1 and "belongs to person S1" in p.stderr
