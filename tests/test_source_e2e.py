"""End to end through `bas`: a PIFU export and the local FINT drive the same runs as the SQL SIS.

One generated owner (the demo's) is read three ways: from its SQL database, from the
PIFU-IMS export of the same data, and from the local FINT serving the same data. The first
plan, the sync, a quiet re-run and a small change in the SIS give the same plan whichever
source is read (every change, with its reason). Bad input fails the run with a clear error
and changes nothing: no change applied, nothing in the changelog.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from demo.data import DEMO, generate
from provisioner.cli.demo import DEMO_CONFIG
from provisioner.core.model import SourceSnapshot
from sources.sql import read_snapshot, source_engine
from tests.fake_fint import FakeFint
from tests.fintenv import fint_source
from tests.sisbuilder import same_seal_key

BAS = [sys.executable, "-m", "provisioner.cli"]
AS_OF = "2025-10-01"
# The demo's owner and targets (AD and Microsoft 365 plan-only, itslearning and Feide files);
# each test appends its own [source] table.
OWNER = DEMO_CONFIG.format(source="")
# What differs between two plans of the same inputs: when and by which run they were made,
# and how the source is fingerprinted (a SQL source hashes its rows, PIFU its file).
VOLATILE = {"run_id", "created_at", "source_digests", "config_digest", "cookie"}


def bas(*args: str, config: Path, check: int | None = 0) -> subprocess.CompletedProcess[str]:
    cmd = [*BAS, "--config", str(config), *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    if check is not None:
        assert p.returncode == check, f"{cmd} -> {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


def plan_of(config: Path, as_of: str = AS_OF) -> dict[str, Any]:
    """`bas plan --json` without what differs between two plans of the same inputs."""
    out = json.loads(bas("plan", "--json", "--as-of", as_of, config=config, check=None).stdout)
    plan = {k: v for k, v in out["plan"].items() if k not in VOLATILE}
    for t in plan["targets"]:
        t["changes"] = sorted(t["changes"], key=lambda c: json.dumps(c, sort_keys=True))
    return plan


def changes(plan: dict[str, Any]) -> dict[str, int]:
    return {t["target"]: len(t["changes"]) for t in plan["targets"]}


def changelog_rows(folder: Path) -> int:
    con = sqlite3.connect(folder / "state.sqlite")
    try:
        return int(con.execute("SELECT count(*) FROM changelog").fetchone()[0])
    finally:
        con.close()


@pytest.fixture(scope="module")
def sis(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo owner's SIS database, generated once for the module."""
    db = tmp_path_factory.mktemp("sis") / "sis.sqlite"
    generate(f"sqlite:///{db}", DEMO, seed=5, as_of=dt.date.fromisoformat(AS_OF))
    return db


def snapshot(db: Path) -> SourceSnapshot:
    engine = source_engine(f"sqlite:///{db}")
    try:
        return read_snapshot(engine)
    finally:
        engine.dispose()


def sql_owner(sis: Path, folder: Path) -> Path:
    folder.mkdir()
    shutil.copy(sis, folder / "sis.sqlite")
    (folder / "bas.toml").write_text(OWNER + '\n[source]\nurl = "sqlite:///sis.sqlite"\n')
    same_seal_key(f"sqlite:///{folder / 'state.sqlite'}")  # its plans are compared with others'
    return folder / "bas.toml"


# -- PIFU -----------------------------------------------------------------------------------------------


def export(db: Path, folder: Path, n: int) -> Path:
    """The SIS as the n-th PIFU export in the folder (newer than every earlier one)."""
    from demo.pifu import write_export

    path = write_export(
        snapshot(db),
        folder / f"pifu-{n:03d}.xml",
        owner_name="Demo kommune",
        owner_org_number="999888777",
        as_of=AS_OF,
    )
    stamp = 1_700_000_000 + 1000 * n  # mtimes in export order, whatever the clock does
    os.utime(path, (stamp, stamp))
    return path


def pifu_owner(sis: Path, folder: Path) -> Path:
    (folder / "export").mkdir(parents=True)
    export(sis, folder / "export", 1)
    source = '\n[source]\nkind = "pifu"\npath = "export"\nsettle_seconds = 0\n'
    (folder / "bas.toml").write_text(OWNER + source)
    same_seal_key(f"sqlite:///{folder / 'state.sqlite'}")
    return folder / "bas.toml"


def small_change(db: Path) -> None:
    """A pupil renamed, a teacher leaving, a pupil moving to another class: a typical quiet hour."""
    con = sqlite3.connect(db)
    try:
        pupil = con.execute(
            "SELECT person_id FROM student_enrollment WHERE end_date IS NULL ORDER BY person_id LIMIT 1"
        ).fetchone()[0]
        con.execute("UPDATE person SET family_name = 'Omdøpt-Hansen' WHERE person_id = ?", (pupil,))
        teacher = con.execute(
            "SELECT person_id FROM employment WHERE role = 'teacher' AND end_date IS NULL"
            " ORDER BY person_id LIMIT 1"
        ).fetchone()[0]
        con.execute("UPDATE employment SET end_date = '2025-09-15' WHERE person_id = ?", (teacher,))
        mover = con.execute(
            "SELECT m.person_id, m.group_id FROM group_membership m JOIN school_group g USING (group_id)"
            " WHERE g.kind = 'basis' AND m.role = 'student' AND EXISTS (SELECT 1 FROM school_group g2"
            " WHERE g2.school_id = g.school_id AND g2.kind = 'basis' AND g2.group_id <> g.group_id"
            " AND g2.grade IS g.grade) ORDER BY m.person_id LIMIT 1 OFFSET 7"
        ).fetchone()
        other = con.execute(
            # Another class of the same year: FINT takes a pupil's grade from the class, SQL
            # from the enrollment, and a move across years would make the two sources differ.
            "SELECT g2.group_id FROM school_group g1 JOIN school_group g2 ON g2.school_id = g1.school_id"
            " AND g2.kind = 'basis' AND g2.group_id <> g1.group_id AND g2.grade IS g1.grade"
            " WHERE g1.group_id = ? LIMIT 1",
            (mover[1],),
        ).fetchone()[0]
        con.execute(
            "UPDATE group_membership SET group_id = ? WHERE person_id = ? AND group_id = ?",
            (other, mover[0], mover[1]),
        )
        con.commit()
    finally:
        con.close()


def test_a_pifu_export_drives_the_same_runs_as_the_sql_database(sis: Path, tmp_path: Path) -> None:
    sql = sql_owner(sis, tmp_path / "sql")
    pifu = pifu_owner(sis, tmp_path / "pifu")
    out = bas("config", "check", config=pifu, check=None).stdout
    assert "source   pifu" in out and "pifu-001.xml" in out and "source   reachable" in out

    first = plan_of(sql)
    assert changes(first)["feide"] > 100
    assert plan_of(pifu) == first

    for cfg in (sql, pifu):
        bas("sync", "--as-of", AS_OF, config=cfg)
    quiet = plan_of(sql)
    assert changes(quiet)["itslearning"] == changes(quiet)["feide"] == 0
    assert plan_of(pifu) == quiet
    # `person show` gives the same source facts from the export, NINs masked.
    person = snapshot(sis).persons[0]
    shown = [bas("person", "show", person.person_id, config=cfg).stdout for cfg in (sql, pifu)]
    assert person.nin and person.nin[:6] + "*****" in shown[1] and person.nin not in shown[1]
    assert shown[1].split("Source facts", 1)[1].split("\n\n", 1)[0].count(person.person_id) >= 1

    # The next day's export of the same rows (only its date differs): the certified plan
    # stands, kept with the new file's digest, so the run after does not parse it again.
    nxt = export(sql.parent / "sis.sqlite", pifu.parent / "export", 2)
    stamp = nxt.stat().st_mtime
    nxt.write_bytes(nxt.read_bytes().replace(b"<datetime>2025-10-01<", b"<datetime>2025-10-02<", 1))
    os.utime(nxt, (stamp, stamp))
    again = bas("plan", "--json", "--as-of", AS_OF, config=pifu)
    assert "a new export of them): the certified plan stands" in again.stderr
    assert json.loads(again.stdout)["plan"]["basis"] == "certified"
    assert plan_of(pifu) == quiet
    unchanged = bas("plan", "--as-of", AS_OF, config=pifu).stderr
    assert "source, config and state unchanged: the certified plan stands" in unchanged

    small_change(sql.parent / "sis.sqlite")
    export(sql.parent / "sis.sqlite", pifu.parent / "export", 3)
    changed = plan_of(sql)
    assert changes(changed)["feide"] > 0
    # Patched from each source's rows: a new export differs in its file's digest too, which
    # is where the read came from, not what it holds.
    assert changed["basis"] == "incremental"
    assert plan_of(pifu) == changed
    for cfg in (sql, pifu):
        bas("sync", "--as-of", AS_OF, config=cfg)
    assert plan_of(pifu) == plan_of(sql)


BAD_EXPORTS = {
    "malformed": (b"<enterprise><properties></enterprise>", "line 1: not well-formed XML"),
    "xxe": (
        b'<?xml version="1.0"?>\n<!DOCTYPE enterprise [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
        b"<enterprise>&x;</enterprise>\n",
        "DOCTYPE",
    ),
}


@pytest.mark.parametrize("how", ["malformed", "truncated", "xxe", "invalid"])
def test_a_bad_export_fails_the_run_and_changes_nothing(sis: Path, tmp_path: Path, how: str) -> None:
    pifu = pifu_owner(sis, tmp_path / "pifu")
    bas("sync", "--as-of", AS_OF, config=pifu)
    rows = changelog_rows(pifu.parent)
    files = sorted(p.name for p in (pifu.parent / "out").rglob("*"))
    good = pifu.parent / "export" / "pifu-001.xml"
    text = good.read_bytes()
    bad = pifu.parent / "export" / "pifu-900.xml"
    if how == "truncated":
        bad.write_bytes(text[: len(text) * 2 // 3])
        wanted = "not well-formed XML"
    elif how == "invalid":  # well-formed, but not PIFU-IMS 1.2: a person without a name
        bad.write_bytes(text.replace(b"<name>", b"<nom>", 1).replace(b"</name>", b"</nom>", 1))
        wanted = "line 4: not a valid PIFU-IMS 1.2 document: Element 'nom'"
    else:
        body, wanted = BAD_EXPORTS[how]
        bad.write_bytes(body)
    os.utime(bad, (1_750_000_000, 1_750_000_000))  # newer than every good export, in the past
    p = bas("sync", "--as-of", AS_OF, config=pifu, check=2)
    assert "pifu-900.xml: refused" in p.stdout + p.stderr and wanted in p.stdout + p.stderr
    assert "root:" not in p.stdout + p.stderr  # nothing of /etc/passwd was read
    assert changelog_rows(pifu.parent) == rows
    assert sorted(p.name for p in (pifu.parent / "out").rglob("*")) == files
    runs = bas("runs", "--json", config=pifu).stdout
    assert json.loads(runs)[0]["status"] == "failed"


def test_the_pifu_demo_ends_where_the_sql_demo_ends(tmp_path: Path) -> None:
    runs = {}
    for source in ("sql", "pifu"):
        folder = tmp_path / source
        p = subprocess.run(
            [*BAS, "demo", "--dir", str(folder), "--source", source],
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
        assert "changes for applied targets: {'core': 0, 'itslearning': 0, 'feide': 0}" in p.stdout
        runs[source] = folder / "bas.toml"
    assert "exported as PIFU-IMS 1.2" in p.stdout
    assert [x.name for x in (tmp_path / "pifu" / "sis-export").iterdir()] == [
        f"pifu-{dt.date.today():%Y%m%d}.xml"
    ]
    today = dt.date.today().isoformat()
    # The same plan for the plan-only targets (every account of AD and Microsoft 365), the
    # same changelog (what the first sync did to itslearning and Feide, with its reasons).
    assert plan_of(runs["pifu"], today) == plan_of(runs["sql"], today)
    log = [
        bas("changelog", "--format", "json", "--limit", "100000", config=runs[s]).stdout
        for s in ("sql", "pifu")
    ]
    # Each demo made its own store, so each sealed the Feide NINs with its own key: the
    # seals' six digits must agree, their digests cannot.
    entries = [
        sorted(
            re.sub(
                r"(\*{5})~[a-p]{30}",
                r"\1~",
                json.dumps(
                    {k: v for k, v in e.items() if k not in ("id", "run_id", "at", "time")}, sort_keys=True
                ),
            )
            for e in json.loads(text)
        )
        for text in log
    ]
    assert any("*****~" in e for e in entries[0])
    assert entries[0] == entries[1] and len(entries[0]) > 1000


# -- FINT -----------------------------------------------------------------------------------------------


@pytest.fixture()
def fake(tmp_path: Path, sis: Path) -> Iterator[FakeFint]:
    """The local FINT serving the owner's SIS."""
    f = FakeFint(tmp_path / "fake", snapshot(sis))
    yield f
    f.close()


def fint_owner(fake: FakeFint, folder: Path, **extra: Any) -> Path:
    settings = fint_source(folder, fake, **extra)
    source = "\n[source]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in settings.items())
    (folder / "bas.toml").write_text(OWNER + source)
    same_seal_key(f"sqlite:///{folder / 'state.sqlite'}")
    return folder / "bas.toml"


def test_the_local_fint_drives_the_same_runs_as_the_sql_database(
    sis: Path, tmp_path: Path, fake: FakeFint
) -> None:
    sql = sql_owner(sis, tmp_path / "sql")
    fint = fint_owner(fake, tmp_path / "fint")
    fake.reset_counts()
    out = bas("config", "check", config=fint).stdout  # the first read: in full
    assert f"source   fint {fake.url}" in out and "source   reachable" in out
    full = fake.bytes_sent

    first = plan_of(sql)
    assert plan_of(fint) == first
    for cfg in (sql, fint):
        bas("sync", "--as-of", AS_OF, config=cfg)
    cache = sorted((fint.parent / "fint-cache").rglob("*"))
    assert cache and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in cache if p.is_file())

    # A quiet re-run: the same plan, and FINT sends almost nothing.
    fake.reset_counts()
    quiet = plan_of(fint)
    assert quiet == plan_of(sql)
    assert changes(quiet)["feide"] == 0
    assert fake.bytes_sent < full / 100

    small_change(sql.parent / "sis.sqlite")
    fake.load(snapshot(sql.parent / "sis.sqlite"))
    fake.reset_counts()
    changed = plan_of(sql)
    assert changes(changed)["feide"] > 0
    assert changed["basis"] == "incremental"
    assert plan_of(fint) == changed  # patched too: FINT's cursors are where the read came from
    # The changed entries, and in full the resources that lost one (a move: the old membership
    # is gone, which only a full read of that resource shows).
    assert fake.bytes_sent < full / 10
    for cfg in (sql, fint):
        bas("sync", "--as-of", AS_OF, config=cfg)
    assert plan_of(fint) == plan_of(sql)


def test_a_token_that_expires_mid_read_is_renewed(sis: Path, tmp_path: Path, fake: FakeFint) -> None:
    sql = sql_owner(sis, tmp_path / "sql")
    fint = fint_owner(fake, tmp_path / "fint", page_size=50)
    fake.token_uses = 10  # far fewer than the pages of one read
    assert plan_of(fint) == plan_of(sql)
    assert fake.grants.count("refresh_token") + fake.grants.count("password") > 3


@pytest.mark.parametrize("how", ["revoked", "empty", "down"])
def test_fint_failures_fail_the_run_and_change_nothing(
    sis: Path, tmp_path: Path, fake: FakeFint, how: str
) -> None:
    fint = fint_owner(fake, tmp_path / "fint", page_size=50, max_attempts=2)
    bas("sync", "--as-of", AS_OF, config=fint)
    rows = changelog_rows(fint.parent)
    files = sorted(p.name for p in (fint.parent / "out").rglob("*"))
    cache = {p: p.read_bytes() for p in (fint.parent / "fint-cache").rglob("*") if p.is_file()}
    if how == "revoked":  # the token expires during the run and the client may not get another
        fake.token_uses, _ = 3, fake.revoke_client()
        want, code = "the FINT token endpoint refused the credentials (HTTP 401, invalid_client)", 2
    elif how == "empty":
        fake.clear("utdanning/elev/elevforhold")
        want, code = "utdanning/elev/elevforhold came back empty", 3
    else:
        fake.fail_next(1000)
        want, code = "FINT did not answer", 2
    p = bas("sync", "--as-of", AS_OF, "--full", config=fint, check=code)
    assert want in p.stdout + p.stderr
    assert fake.client_secret not in p.stdout + p.stderr and fake.password not in p.stdout + p.stderr
    assert changelog_rows(fint.parent) == rows
    assert sorted(p.name for p in (fint.parent / "out").rglob("*")) == files
    assert {p: p.read_bytes() for p in (fint.parent / "fint-cache").rglob("*") if p.is_file()} == cache
    assert json.loads(bas("runs", "--json", config=fint).stdout)[0]["status"] == (
        "refused" if how == "empty" else "failed"
    )
