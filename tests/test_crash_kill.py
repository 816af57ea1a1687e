"""kill -9 a sync at 20 points across the whole apply; the next sync finishes the work.

SPEC "Safety": nothing applied is ever lost; a run killed at any point leaves the next run
to finish the work, with no duplicates. Each case runs ``bas sync`` in a subprocess of its
own session against itslearning and Feide LDIF files (applied in worker processes), Feide
live (the test slapd) and Microsoft 365 (the local Graph): a first sync, then the SIS
changes (joiners, leavers, renames) and a second sync is killed with SIGKILL to its whole
process group at one point, then one more sync runs unkilled. The kill points are the test
fault-injection points of provisioner/faults.py: the core's commit, a change of each target
(which one is drawn with a fixed seed from the number of changes that target has), each
target's commit, each file written, each file target's finish.

Afterwards, for every target, compared with the same three syncs run without a kill:
the target holds exactly the same objects, none twice; every create and delete the
changelog records for a file target is in a delta file; and the changelog has exactly
the same applied operations (one row per operation: none lost, none doubled).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from provisioner.state import schema as t
from provisioner.state.store import StateStore
from tests.m365test import M365Env
from tests.sisbuilder import Sis, config_toml, small_sis
from tests.slapd_server import ADMIN_DN, ADMIN_PASSWORD, SUFFIX, SlapdServer

DAY1, DAY2 = "2025-10-01", "2025-10-02"
BAS = [sys.executable, "-m", "provisioner.cli"]
FILES = ("itslearning", "feide")
LIVE = ("feidelive", "m365")
SEED = 10


def _sis() -> tuple[Sis, Sis]:
    """Two schools, ~40 persons; the second state has joiners, leavers and renames."""
    one = small_sis()
    for i in range(24):
        school = "NORD" if i % 2 else "SOR"
        one.student(f"X{i:02d}", school, "Elev", f"Nummer{i:02d}", born=f"2012-0{1 + i % 9}-{10 + i % 18}")
    two = one.copy()
    for pid in ("X00", "X01", "X02", "S5"):
        two.end_enrollments(pid, DAY1)
    for pid in ("X03", "X04", "S2"):
        two.update_person(pid, family_name="Omdøpt")
    for i in range(4):
        two.student(f"Y{i}", "NORD", "Ny", f"Elev{i}", born=f"2013-02-{10 + i}")
    return one, two


SIS1, SIS2 = _sis()


class Case:
    """One owner's run of three syncs (the second one possibly killed), in its own folder."""

    def __init__(self, tmp: Path, server: SlapdServer, tag: str) -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.tmp, self.server = tmp, server
        self.m365 = M365Env(tmp, SIS1)  # the local Graph, its secret and licences; state.db
        self.base_dn = f"dc={tag},{SUFFIX}"
        secret = tmp / "feide-bind.secret"
        secret.write_text(ADMIN_PASSWORD + "\n", encoding="utf-8")
        secret.chmod(0o600)
        text = config_toml(
            tmp,
            self.m365.src,
            self.m365.store.url,
            targets=("itslearning", "feide", "m365"),
            target_settings={"m365": self.m365.settings()},
        )
        text += "".join(
            f'\n[[targets.m365.licenses.{role}]]\nsku_id = "{lic["sku_id"]}"\n'
            for role, lics in self.m365.licenses.items()
            for lic in lics
        )
        text += (
            '\n[targets.feidelive]\nkind = "feide"\nmode = "apply"\n'
            f'base_dn = "{self.base_dn}"\nurl = "{server.url}"\nbind_dn = "{ADMIN_DN}"\n'
            f'start_tls = true\nca_file = "{server.ca_file}"\n'
            f'password_file = "{secret}"\n'
        )
        self.config = tmp / "bas.toml"
        self.config.write_text(text, encoding="utf-8")

    def sync(self, sis: Sis, day: str, kill_at: str | None = None) -> subprocess.CompletedProcess[str]:
        sis.write(self.m365.src)
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
        env.pop("BAS_TEST_KILL_AT", None)
        if kill_at:
            env["BAS_TEST_KILL_AT"] = kill_at
        cmd = [*BAS, "--config", str(self.config), "sync", "--as-of", day]
        # Its own session: the kill takes the run and its worker processes, nothing else.
        return subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=300, start_new_session=True, check=False
        )

    def close(self) -> None:
        self.m365.close()

    # -- what the targets hold ----------------------------------------------------------
    def itslearning_full(self) -> list[str]:
        text = (self.tmp / "itslearning" / "latest-full.xml").read_text(encoding="utf-8")
        return re.findall(r"<person><sourcedid><source>[^<]*</source><id>([^<]*)</id>", text)

    def feide_full(self) -> list[str]:
        text = (self.tmp / "feide" / "latest-full.ldif").read_text(encoding="utf-8")
        return [dn.lower() for dn in re.findall(r"^dn: (.*)$", text, re.M)]

    def feide_live(self) -> list[str]:
        conn = self.server.connect()
        conn.search(self.base_dn, "(objectClass=*)", attributes=["objectClass"])
        dns = [r["dn"].lower().replace(self.base_dn.lower(), "BASE") for r in conn.response or []]
        conn.unbind()
        return dns

    def m365_users(self) -> tuple[list[str], list[str]]:
        d = self.m365.graph.directory
        live = [
            u["userPrincipalName"].lower()
            for u in d.users.values()
            if "it-admin" not in u["userPrincipalName"]
        ]
        gone = [u["userPrincipalName"].lower() for u in d.deleted.values()]
        return live, gone

    def deltas(self, target: str) -> str:
        folder, pattern = (
            (self.tmp / "itslearning", "ims-delta-*.xml")
            if target == "itslearning"
            else (self.tmp / "feide", "feide-delta-*.ldif")
        )
        return "".join(p.read_text(encoding="utf-8") for p in sorted(folder.glob(pattern)))

    def changelog(self) -> list[dict[str, Any]]:
        store = StateStore(self.m365.store.url, check=False)
        try:
            with store.engine.connect() as c:
                rows = c.execute(sa.select(t.changelog).order_by(t.changelog.c.id)).mappings()
                return [dict(r) for r in rows]
        finally:
            store.close()

    def holdings(self) -> dict[str, Any]:
        live, gone = self.m365_users()
        return {
            "itslearning": self.itslearning_full(),
            "feide": self.feide_full(),
            "feidelive": self.feide_live(),
            "m365": live,
            "m365 deleted": gone,
        }


def _applied(rows: list[dict[str, Any]]) -> Counter[tuple[str, str, str, str]]:
    return Counter((r["target"], r["op"], r["kind"], r["key"]) for r in rows if r["result"] == "ok")


@pytest.fixture(scope="module")
def server(slapd: SlapdServer) -> SlapdServer:
    """The session's slapd (each case has a base DN of its own)."""
    return slapd


@pytest.fixture(scope="module")
def reference(server: SlapdServer, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The three syncs without a kill: what every killed case must end up with."""
    case = Case(tmp_path_factory.mktemp("reference"), server, "reference")
    try:
        for sis, day in ((SIS1, DAY1), (SIS2, DAY2), (SIS2, DAY2)):
            out = case.sync(sis, day)
            assert out.returncode == 0, out.stdout + out.stderr
        rows = case.changelog()
        runs = list(dict.fromkeys(r["run_id"] for r in rows))
        second = Counter(r["target"] for r in rows if r["run_id"] == runs[1])
        yield {"holdings": case.holdings(), "applied": _applied(rows), "second": second}
    finally:
        case.close()


def _points() -> list[tuple[str, str]]:
    """(kill point, changes-per-target placeholder) for the 20 cases; see _resolve."""
    fixed = ["core:committed#1"]
    for target, prefix in (("itslearning", "ims"), ("feide", "feide")):
        fixed += [
            f"{target}:committed#1",
            f"file:{prefix}-full#1",
            f"file:{prefix}-delta#1",
            f"{target}:finished#1",
        ]
    fixed += [f"{target}:committed#1" for target in LIVE]
    drawn = [
        f"{t}:change#?" for t in ("itslearning", "feide", "feidelive", "feidelive", "m365", "m365", "m365")
    ]
    drawn += ["itslearning:change#?", "feide:change#?"]
    return [(p, p) for p in fixed + drawn]


def _resolve(point: str, index: int, second: Counter[str]) -> str:
    """A drawn point's change number: seeded, within the changes the target has in the second sync."""
    if not point.endswith("#?"):
        return point
    target = point.split(":")[0]
    n = random.Random(SEED * 100 + index).randint(1, max(1, second[target]))
    return point[:-1] + str(n)


POINTS = _points()


@pytest.mark.parametrize("index", range(len(POINTS)), ids=[p for p, _ in POINTS])
def test_a_killed_sync_is_finished_by_the_next_one(
    index: int, server: SlapdServer, reference: dict[str, Any], tmp_path: Path
) -> None:
    point = _resolve(POINTS[index][0], index, reference["second"])
    case = Case(tmp_path, server, f"case{index}")
    try:
        first = case.sync(SIS1, DAY1)
        assert first.returncode == 0, first.stdout + first.stderr
        killed = case.sync(SIS2, DAY2, kill_at=point)
        assert killed.returncode == -signal.SIGKILL, f"{point} never reached:\n{killed.stdout}{killed.stderr}"
        last = case.sync(SIS2, DAY2)
        assert last.returncode == 0, last.stdout + last.stderr

        # Every target holds exactly what it holds without the kill, nothing twice.
        got, want = case.holdings(), reference["holdings"]
        for target, objects in got.items():
            assert len(objects) == len(set(objects)), f"{target}: duplicates {objects}"
            assert sorted(objects) == sorted(want[target]), target

        # One changelog row per applied operation: the same operations as without the kill.
        rows = case.changelog()
        applied = _applied(rows)
        assert applied == reference["applied"], (
            applied - reference["applied"],
            reference["applied"] - applied,
        )

        # Every create and delete of a person a file target records is in a delta file.
        its, ldif = case.deltas("itslearning"), case.deltas("feide")
        for r in rows:
            if r["result"] != "ok" or r["kind"] != "person" or r["op"] not in ("create", "delete"):
                continue
            if r["target"] == "itslearning":
                status = "1" if r["op"] == "create" else "3"
                assert re.search(
                    rf'<person recstatus="{status}"><sourcedid><source>[^<]*</source><id>{r["key"]}</id>', its
                ), r
            elif r["target"] == "feide" and r["op"] == "create":
                dn = re.escape(json.loads(r["after"])["dn"])
                assert re.search(rf"^dn: {dn}\nchangetype: add$", ldif, re.M), r
        deleted = sum(
            1 for r in rows if r["target"] == "feide" and r["op"] == "delete" and r["result"] == "ok"
        )
        assert ldif.count("changetype: delete") == deleted
    finally:
        case.close()
