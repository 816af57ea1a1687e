"""End-to-end tests through the `bas` command line, on the demo school owner."""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

BAS = [sys.executable, "-m", "provisioner.cli"]
NIN_RE = re.compile(r"(?<![0-9])[0-9]{11}(?![0-9])")


def bas(*args: str, config: Path | None = None, check: int | None = 0) -> subprocess.CompletedProcess:
    """Run `bas` and return the completed process; assert the exit code unless check is None."""
    cmd = [*BAS, *(["--config", str(config)] if config else []), *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    if check is not None:
        assert p.returncode == check, (
            f"{cmd} -> {p.returncode}\nstdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-3000:]}"
        )
    return p


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo folder after `bas demo` (first sync, second sync)."""
    d = tmp_path_factory.mktemp("demo")
    p = bas("demo", "--dir", str(d))
    assert "Second sync" in p.stdout
    assert "changes for applied targets: {'core': 0, 'itslearning': 0, 'feide': 0}" in p.stdout
    return d


def copy_demo(demo: Path, tmp_path: Path) -> Path:
    """A private copy of the demo folder for a test that changes things."""
    import shutil

    dst = tmp_path / "demo"
    shutil.copytree(demo, dst)
    return dst / "bas.toml"


def test_demo_writes_files_owner_only(demo: Path) -> None:
    files = list((demo / "out" / "feide").glob("feide-full-*.ldif")) + list(
        (demo / "out" / "itslearning").glob("ims-full-*.xml")
    )
    assert len(files) == 2
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == 0o600
    assert "norEduPersonNIN" in files[0].read_text(encoding="utf-8")


def test_plan_after_demo_is_empty_for_applied_targets_and_masks_nins(demo: Path) -> None:
    p = bas("plan", "--json", config=demo / "bas.toml")
    data = json.loads(p.stdout)
    changes = {t["target"]: len(t["changes"]) for t in data["plan"]["targets"]}
    assert changes["core"] == changes["itslearning"] == changes["feide"] == 0
    assert changes["ad"] > 0 and changes["m365"] > 0  # plan-only targets keep their plan
    assert not NIN_RE.search(p.stdout)
    con = sqlite3.connect(demo / "state.sqlite")
    roles = dict(con.execute("SELECT person_id, roles FROM identities"))
    con.close()
    guardian_only = {pid for pid, r in roles.items() if all(x.startswith("guardian@") for x in r.split(","))}
    assert guardian_only
    for t in data["plan"]["targets"]:
        if t["target"] in ("ad", "m365"):
            persons = {c["person_id"] for c in t["changes"] if c["kind"] == "person"}
            assert persons and not persons & guardian_only
            assert "nin" not in {k.lower() for c in t["changes"] for k in c.get("attrs", {})}


def test_plan_says_when_it_is_certified_and_full_recomputes(demo: Path) -> None:
    cfg = demo / "bas.toml"
    assert "certified plan stands" in bas("plan", "--show", "0", config=cfg).stdout
    full = bas("plan", "--full", "--show", "0", "--json", config=cfg)
    assert json.loads(full.stdout)["plan"]["basis"] == "full"


def test_plan_says_when_it_is_patched_and_for_what(tmp_path: Path) -> None:
    """A class move (group membership rows only) is patched, and `bas plan` says so in words
    that fit every patch, not only a rename's. Its own demo: a copied one plans in full (the
    config's digest takes in the folder it is read from)."""
    assert "Second sync" in bas("demo", "--dir", str(tmp_path)).stdout
    cfg = tmp_path / "bas.toml"
    con = sqlite3.connect(cfg.parent / "sis.sqlite")
    with con:
        gid, pid, school = con.execute(
            "SELECT m.group_id, m.person_id, g.school_id FROM group_membership m"
            " JOIN school_group g ON g.group_id = m.group_id"
            " WHERE g.kind = 'basis' AND m.role = 'student' ORDER BY m.person_id LIMIT 1"
        ).fetchone()
        (other,) = con.execute(
            "SELECT group_id FROM school_group WHERE school_id = ? AND kind = 'basis' AND group_id != ?"
            " ORDER BY group_id LIMIT 1",
            (school, gid),
        ).fetchone()
        con.execute(
            "UPDATE group_membership SET group_id = ? WHERE group_id = ? AND person_id = ?", (other, gid, pid)
        )
    con.close()
    said = bas("plan", "--show", "0", config=cfg).stdout
    assert "rows changed since the last run: its plan, patched for them and what depends on them" in said
    assert "names, e-mail or mobile" not in said
    # The patched plan is certified as it is made: the next plan is that one, unchanged.
    assert "certified plan stands" in bas("plan", "--show", "0", config=cfg).stdout


def test_changelog_formats_and_masking(demo: Path) -> None:
    cfg = demo / "bas.toml"
    table = bas("changelog", "--target", "feide", "--limit", "5", config=cfg).stdout
    assert "feide" in table and "create" in table
    rows = json.loads(bas("changelog", "--target", "feide", "--limit", "50", "--json", config=cfg).stdout)
    assert len(rows) == 50 and not NIN_RE.search(json.dumps(rows))
    assert any("norEduPersonNIN" in (r["after"] or {}) for r in rows)
    # The changelog stores NINs masked (it outlives the retention purge): nothing to unmask.
    shown = bas("changelog", "--target", "feide", "--limit", "50", "--json", "--show-nin", config=cfg).stdout
    assert not NIN_RE.search(shown) and "*****" in shown
    csv_out = bas("changelog", "--op", "create", "--limit", "3", "--format", "csv", config=cfg).stdout
    assert csv_out.splitlines()[0].startswith("id,run_id,at,target,op")


def test_person_show_by_username_nin_and_sis_id(demo: Path) -> None:
    cfg = demo / "bas.toml"
    con = sqlite3.connect(demo / "state.sqlite")
    pid, username, nin = con.execute(
        "SELECT person_id, username, nin FROM identities"
        " WHERE nin IS NOT NULL AND roles LIKE 'student@%' LIMIT 1"
    ).fetchone()
    con.close()
    for who in (username, nin, pid):
        out = bas("person", "show", who, config=cfg).stdout
        assert f"username   {username}" in out
        assert "Source facts" in out and "enrolled at" in out
        assert nin not in out
    data = json.loads(bas("person", "show", username, "--json", config=cfg).stdout)
    assert {a["target"] for a in data["accounts"]} == {"itslearning", "feide"}
    assert bas("person", "show", "nobody-here", config=cfg, check=1).returncode == 1


def test_changelog_by_person_includes_memberships(demo: Path) -> None:
    cfg = demo / "bas.toml"
    con = sqlite3.connect(demo / "state.sqlite")
    username = con.execute("SELECT username FROM identities WHERE roles LIKE 'student@%' LIMIT 1").fetchone()[
        0
    ]
    con.close()
    rows = json.loads(bas("changelog", "--person", username, "--json", config=cfg).stdout)
    ops = {(r["target"], r["op"]) for r in rows}
    assert ("core", "create") in ops and ("itslearning", "add_members") in ops


def test_usernames_show_and_import(demo: Path, tmp_path: Path) -> None:
    cfg = copy_demo(demo, tmp_path)
    con = sqlite3.connect(cfg.parent / "state.sqlite")
    username = con.execute("SELECT username FROM identities LIMIT 1").fetchone()[0]
    con.close()
    out = bas("usernames", "show", username, config=cfg).stdout
    assert "issued" in out and "active" in out
    assert bas("usernames", "show", "neverissued", config=cfg, check=1).returncode == 1
    csv_file = tmp_path / "old-ad.csv"
    csv_file.write_text("sAMAccountName;displayName\nZedQwe;Zed\nzedqwe1;Zed\n", encoding="utf-8")
    out = bas("usernames", "import", str(csv_file), config=cfg).stdout
    assert "2 usernames read, 2 reserved now" in out
    assert "origin          reserved" in bas("usernames", "show", "zedqwe", config=cfg).stdout
    # A new person called Zed Qwerty must not get a reserved name.
    sis = sqlite3.connect(cfg.parent / "sis.sqlite")
    sis.execute("INSERT INTO person (person_id, given_name, family_name) VALUES ('PNEW1', 'Zed', 'Qwerty')")
    school = sis.execute("SELECT school_id FROM school LIMIT 1").fetchone()[0]
    sis.execute(
        "INSERT INTO employment VALUES ('ANEW1', 'PNEW1', ?, 'teacher', '2020-01-01', NULL)", (school,)
    )
    sis.commit()
    sis.close()
    bas("sync", config=cfg)
    con = sqlite3.connect(cfg.parent / "state.sqlite")
    got = con.execute("SELECT username FROM identities WHERE person_id = 'PNEW1'").fetchone()[0]
    con.close()
    assert got.startswith("zedqwe") and got not in ("zedqwe", "zedqwe1")


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(
        '[owner]\nname = "X"\norg_number = "12"\nrealm = "r"\nmail_domain = "m"\n'
        '[source]\nurl = "sqlite:///x"\n[state]\nurl = "sqlite:///y"\n[targets.feide]\nbase_dnn = "x"\n'
    )
    p = bas("config", "check", config=bad, check=2)
    assert "owner.org_number" in p.stderr and "targets.feide.feide.base_dnn" in p.stderr.replace("'", "")
    assert bas("plan", check=2).stderr.startswith("bas: no config")
    missing = bas("plan", config=tmp_path / "nope.toml", check=2)
    assert "cannot read config" in missing.stderr


def test_config_check_on_demo(demo: Path) -> None:
    out = bas("config", "check", config=demo / "bas.toml").stdout
    assert "valid" in out and "source   reachable" in out
    assert "source   sql sqlite:///" in out and "sis.sqlite" in out


def test_saved_plan_applies_once_then_is_stale(demo: Path, tmp_path: Path) -> None:
    cfg = copy_demo(demo, tmp_path)
    sis = sqlite3.connect(cfg.parent / "sis.sqlite")
    sis.execute(
        "UPDATE person SET family_name = 'Omdøpt' WHERE person_id IN "
        "(SELECT person_id FROM student_enrollment WHERE end_date IS NULL ORDER BY person_id LIMIT 2)"
    )
    sis.commit()
    sis.close()
    plan_file = tmp_path / "plan.json"
    out = bas("plan", "-o", str(plan_file), config=cfg).stdout
    assert "update" in out
    assert stat.S_IMODE(plan_file.stat().st_mode) == 0o600
    saved = json.loads(plan_file.read_text())
    assert any(c["op"] == "update" for t in saved["targets"] if t["target"] == "feide" for c in t["changes"])
    bas("apply", str(plan_file), config=cfg)
    p = bas("apply", str(plan_file), config=cfg, check=2)
    assert "changed since this plan was made" in p.stdout + p.stderr
    # The rename is applied: the username stayed, the name changed.
    rows = json.loads(bas("changelog", "--op", "update", "--target", "feide", "--json", config=cfg).stdout)
    assert rows and all("Omdøpt" in json.dumps(r["after"], ensure_ascii=False) for r in rows)


def test_threshold_holds_then_approve_applies_once(demo: Path, tmp_path: Path) -> None:
    cfg = copy_demo(demo, tmp_path)
    cfg.write_text(cfg.read_text().replace("[targets.feide]\n", "[targets.feide]\nmax_deletes = 2\n"))
    sis = sqlite3.connect(cfg.parent / "sis.sqlite")
    sis.execute(
        "UPDATE student_enrollment SET end_date = date('now', '-1 day') WHERE person_id IN"
        " (SELECT person_id FROM student_enrollment"
        " WHERE end_date IS NULL AND grade >= 8 ORDER BY person_id LIMIT 5)"
    )
    sis.commit()
    sis.close()
    p = bas("sync", config=cfg, check=3)
    assert "feide held" in p.stdout + p.stderr
    run_id = re.search(r"run (\S+): held", p.stdout).group(1)
    assert "held" in bas("runs", config=cfg).stdout
    con = sqlite3.connect(cfg.parent / "state.sqlite")
    assert (
        con.execute("SELECT count(*) FROM changelog WHERE target='feide' AND op='delete'").fetchone()[0] == 0
    )
    bas("approve", run_id, config=cfg)
    assert (
        con.execute("SELECT count(*) FROM changelog WHERE target='feide' AND op='delete'").fetchone()[0] == 5
    )
    con.close()
    again = bas("approve", run_id, config=cfg, check=2)
    assert "already approved" in again.stdout + again.stderr
    bas("sync", config=cfg)  # nothing left to hold


def test_source_gate_refuses_empty_and_shrunk_source(demo: Path, tmp_path: Path) -> None:
    cfg = copy_demo(demo, tmp_path)
    sis = sqlite3.connect(cfg.parent / "sis.sqlite")
    sis.execute("UPDATE student_enrollment SET end_date = date('now', '-1 day') WHERE rowid % 2 = 0")
    sis.execute("UPDATE employment SET end_date = date('now', '-1 day') WHERE rowid % 2 = 0")
    sis.commit()
    p = bas("sync", config=cfg, check=3)
    assert "refusing to run" in p.stdout + p.stderr
    run_id = re.search(r"run (\S+): refused", p.stdout).group(1)
    con = sqlite3.connect(cfg.parent / "state.sqlite")
    assert con.execute("SELECT count(*) FROM changelog WHERE op IN ('delete','disable')").fetchone()[0] == 0
    assert "source refusal approved" in bas("approve", run_id, config=cfg).stdout
    bas(
        "sync", config=cfg, check=3
    )  # the drop is accepted once, then the deletes pass the default 10 % hold?
    for t in ("person", "student_enrollment", "employment", "guardianship", "group_membership"):
        sis.execute(f"DELETE FROM {t}")
    sis.commit()
    sis.close()
    p = bas("sync", config=cfg, check=3)
    assert "source is empty" in p.stdout + p.stderr
    con.close()


def test_lock_held_by_another_run_exits_4(demo: Path, tmp_path: Path) -> None:
    cfg = copy_demo(demo, tmp_path)
    con = sqlite3.connect(cfg.parent / "state.sqlite")
    con.execute(
        "INSERT INTO locks VALUES ('run', 'other-run', ?, ?, '2026-01-01T00:00:00')",
        (socket.gethostname(), os.getpid()),
    )
    con.commit()
    p = bas("sync", config=cfg, check=4)
    assert "other-run holds the lock" in p.stdout + p.stderr
    con.execute("DELETE FROM locks")
    con.commit()
    con.close()
    bas("sync", config=cfg)


def test_bad_records_are_reported_and_the_run_goes_on(demo: Path, tmp_path: Path) -> None:
    cfg = copy_demo(demo, tmp_path)
    sis = sqlite3.connect(cfg.parent / "sis.sqlite")
    school = sis.execute("SELECT school_id FROM school LIMIT 1").fetchone()[0]
    rows = [
        ("BAD1", "01018012345", "Bad", "Nin"),  # wrong check digits
        ("BAD2", None, "  ", "Blank"),  # missing given name
        ("ODD1", None, ' Ola, "Jr" <x>; =*()# ', "\\Nord+mann # 🙂"),  # special characters: accepted
        ("LONG", None, "A" * 150, "B" * 150),
    ]
    for pid, nin_, g, f in rows:
        sis.execute(
            "INSERT INTO person (person_id, nin, given_name, family_name) VALUES (?, ?, ?, ?)",
            (pid, nin_, g, f),
        )
        sis.execute(
            "INSERT INTO employment VALUES (?, ?, ?, 'teacher', '2020-01-01', NULL)", ("E" + pid, pid, school)
        )
    sis.execute(
        "INSERT INTO employment VALUES ('BACKWARDS', 'BAD2', ?, 'teacher', '2020-01-01', '2019-01-01')",
        (school,),
    )
    sis.execute(
        "INSERT INTO group_membership"
        " VALUES ((SELECT group_id FROM school_group LIMIT 1), 'GHOST', 'student')"
    )
    sis.commit()
    sis.close()
    p = bas("sync", config=cfg, check=1)
    out = p.stdout
    for frag in (
        "invalid_nin",
        "person:BAD1",
        "missing_name",
        "person:BAD2",
        "bad_period",
        "employment:BACKWARDS",
        "unknown_person",
        "GHOST",
    ):
        assert frag in out, frag
    assert "01018012345" not in out + p.stderr
    con = sqlite3.connect(cfg.parent / "state.sqlite")
    got = dict(
        con.execute(
            "SELECT person_id, username FROM identities WHERE person_id IN ('ODD1','LONG')"
        ).fetchall()
    )
    con.close()
    assert set(got) == {"ODD1", "LONG"}
    assert all(re.fullmatch(r"[a-z0-9]{1,20}", u) for u in got.values())
    info = json.loads(bas("person", "show", "ODD1", "--json", config=cfg).stdout)
    dns = [a["anchor"] for a in info["accounts"] if a["target"] == "feide"]
    assert dns and dns[0].startswith("uid=")
