"""PIFU export files end to end: the packaged XSD, the demo writer's round trip, the same plan as SQL,
choosing the export in a folder, and a property over small hostile snapshots.
"""

from __future__ import annotations

import datetime as dt
import os
import stat
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from demo.data import DEMO, generate
from demo.pifu import write_export
from provisioner import config as config_mod
from provisioner.core.model import (
    TABLES,
    Employment,
    Group,
    GroupMembership,
    Guardianship,
    Person,
    School,
    SourceSnapshot,
    StudentEnrollment,
)
from provisioner.run import runner
from provisioner.state.store import StateStore
from sources.base import SourceError
from sources.pifu import PifuSource
from sources.pifu.files import choose_export
from sources.pifu.reader import read_export
from sources.pifu.schema import check_schema, xsd_path
from sources.sql import read_snapshot
from tests.pifudoc import OWNER_ORG
from tests.sisbuilder import config_toml, same_seal_key

AS_OF = dt.date(2025, 10, 1)
SPEC_XSD = Path("/work/shared/schemas/pifu-ims_sas-1.2.xsd")


def comparable(snap: SourceSnapshot) -> dict[str, list[Any]]:
    """Each table sorted, modulo exactly what PIFU cannot carry (demo.pifu's docstring)."""
    out: dict[str, list[Any]] = {}
    for name in TABLES:
        rows = []
        for r in getattr(snap, name):
            if name == "enrollments":
                r = r._replace(enrollment_id="")
            elif name == "employments":
                r = r._replace(employment_id="")
            elif name == "persons" and r.mobile is not None:
                digits = "".join(c for c in r.mobile if c.isdigit())
                r = r._replace(mobile=f"+{digits}" if digits else None)
            rows.append(r)
        out[name] = sorted(rows, key=repr)
    return out


def test_the_packaged_xsd_is_the_specifications() -> None:
    if not SPEC_XSD.exists():
        pytest.skip("the shared schema folder is not on this machine")
    assert xsd_path().read_bytes() == SPEC_XSD.read_bytes()


def test_the_packaged_xsd_is_a_valid_schema_for_xmlschema_too() -> None:
    check_schema()


# -- the demo owner, through SQL and through PIFU ------------------------------------------------


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SourceSnapshot, Path]:
    tmp = tmp_path_factory.mktemp("pifu-demo")
    url = f"sqlite:///{tmp / 'sis.db'}"
    generate(url, DEMO, seed=1, as_of=AS_OF)
    engine = sa.create_engine(url)
    snap = read_snapshot(engine)
    engine.dispose()
    (tmp / "exports").mkdir()
    export = write_export(
        snap, tmp / "exports" / "export.xml",
        owner_name="Eksempel kommune", owner_org_number=OWNER_ORG, as_of=AS_OF.isoformat(),
    )  # fmt: skip
    return tmp, snap, export


def test_demo_export_reads_back_as_the_sql_snapshot(demo: tuple[Path, SourceSnapshot, Path]) -> None:
    _tmp, sql, export = demo
    back, info = read_export(export, owner_org=OWNER_ORG)
    assert comparable(back) == comparable(sql)
    assert back.counts() == sql.counts()
    assert {e.person_id for e in back.enrollments if e.school_id} and info.sha256 == back.digests["export"]
    assert sum(p.nin is None for p in back.persons) > 0  # the demo's guardians without a NIN


def test_the_export_file_is_private_and_written_whole(demo: tuple[Path, SourceSnapshot, Path]) -> None:
    _tmp, _sql, export = demo
    assert stat.S_IMODE(export.stat().st_mode) == 0o600
    assert [p.name for p in export.parent.iterdir()] == [export.name]  # no temp file left


def _config(tmp: Path, source: str, name: str, **kw: Any) -> config_mod.Config:
    text = config_toml(tmp / name, "sqlite:///unused.db", f"sqlite:///{tmp / name / 'state.db'}", **kw)
    text = text.replace('url = "sqlite:///unused.db"', source)
    (tmp / name).mkdir(exist_ok=True)
    path = tmp / name / "bas.toml"
    path.write_text(text, encoding="utf-8")
    return config_mod.load(path)


def _plan(cfg: config_mod.Config) -> dict[str, Any]:
    same_seal_key(cfg.state.url)  # the two plans seal NINs alike
    store = StateStore(cfg.state.url)
    try:
        plan = runner.plan_run(cfg, store, AS_OF.isoformat(), "run-1", full=True)
    finally:
        store.close()
    return {
        "errors": sorted(e.to_json().items() for e in plan.errors),
        "counts": dict(plan.source_counts),
        "targets": {tp.target: sorted(repr(c.to_json()) for c in tp.changes) for tp in plan.targets},
    }


def test_the_pifu_export_plans_what_the_sql_source_plans(demo: tuple[Path, SourceSnapshot, Path]) -> None:
    tmp, _sql, export = demo
    sql_cfg = _config(tmp, f'url = "sqlite:///{tmp / "sis.db"}"', "sql")
    pifu_cfg = _config(tmp, f'kind = "pifu"\npath = "{export.parent}"\nsettle_seconds = 0', "pifu")
    sql_plan, pifu_plan = _plan(sql_cfg), _plan(pifu_cfg)
    assert sum(len(c) for c in sql_plan["targets"].values()) > 1000
    assert pifu_plan == sql_plan


def test_source_unchanged_and_describe(demo: tuple[Path, SourceSnapshot, Path], tmp_path: Path) -> None:
    _tmp, sql, export = demo
    folder = tmp_path / "in"
    folder.mkdir()
    first = folder / "a.xml"
    first.write_bytes(export.read_bytes())
    os.utime(first, (time.time() - 3600,) * 2)
    cfg = _config(tmp_path, f'kind = "pifu"\npath = "{folder}"\nsettle_seconds = 60', "cfg")
    with PifuSource(cfg) as src:
        snap = src.read()
        assert "a.xml" in src.describe() and str(first.stat().st_size) in src.describe()
        assert src.unchanged(snap.digests)
        assert not src.unchanged({k: v for k, v in snap.digests.items() if k != "export"})
    second = folder / "b.xml"
    second.write_bytes(export.read_bytes().replace(b"<given>", b"<given>X", 1))
    os.utime(second, (time.time() - 600,) * 2)
    with PifuSource(cfg) as src:
        assert not src.unchanged(snap.digests)  # a newer export: not what was read
        again = src.read()
    changed = {k for k in again.digests if again.digests[k] != snap.digests[k]}
    assert changed == {"export", "persons"}
    assert len(sql.persons) == len(again.persons)


# -- choosing the export in a folder -------------------------------------------------------------


def _file(folder: Path, name: str, age: float, text: str = "x") -> Path:
    p = folder / name
    p.write_text(text)
    os.utime(p, (time.time() - age,) * 2)
    return p


def test_the_newest_settled_export_is_chosen_and_temp_names_never(tmp_path: Path) -> None:
    _file(tmp_path, "old.xml", 7200)
    newest = _file(tmp_path, "new.xml", 3600)
    _file(tmp_path, ".hidden.xml", 10)
    _file(tmp_path, "writing.xml.part", 10)
    _file(tmp_path, "writing.xml.tmp", 10)
    _file(tmp_path, "notes.txt", 10)
    assert choose_export(tmp_path, "*.xml", 60) == newest
    assert choose_export(newest, "*.json", 60) == newest  # a file is the export, whatever its name


def test_a_file_still_being_written_waits(tmp_path: Path) -> None:
    _file(tmp_path, "old.xml", 7200)
    _file(tmp_path, "new.xml", 5)
    with pytest.raises(SourceError, match=r"new.xml changed \d+ s ago.*still be being written"):
        choose_export(tmp_path, "*.xml", 60)


@pytest.mark.parametrize("names", [[], ["notes.txt", ".x.xml"]])
def test_an_empty_folder_is_a_source_error(tmp_path: Path, names: list[str]) -> None:
    for n in names:
        _file(tmp_path, n, 7200)
    with pytest.raises(SourceError, match=r"no export in .*\*\.xml"):
        choose_export(tmp_path, "*.xml", 60)


def test_a_broken_newest_export_is_refused_never_an_older_one_read(
    demo: tuple[Path, SourceSnapshot, Path], tmp_path: Path
) -> None:
    _tmp, _sql, export = demo
    folder = tmp_path / "in"
    folder.mkdir()
    _file(folder, "good.xml", 7200).write_bytes(export.read_bytes())
    os.utime(folder / "good.xml", (time.time() - 7200,) * 2)
    _file(folder, "broken.xml", 3600, export.read_text()[:100_000])
    cfg = _config(tmp_path, f'kind = "pifu"\npath = "{folder}"', "cfg")
    with PifuSource(cfg) as src, pytest.raises(SourceError, match=r"broken.xml: refused.*not well-formed"):
        src.read()


def test_a_missing_path_is_a_source_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="neither an export file nor a folder"):
        choose_export(tmp_path / "nope", "*.xml", 0)


# -- property: any small snapshot with hostile text round-trips ---------------------------------

_HOSTILE = (
    st.text(
        alphabet=st.sampled_from(
            list(",+\"\\<>;=*()#&' ") + ["æ", "ø", "å", "É", "😀", "👩", "\u200d", "👧", "a", "Z", "9"]
        ),
        min_size=1,
        max_size=12,
    )
    .map(lambda s: s.strip())
    .filter(bool)
)
_MAYBE = st.none() | _HOSTILE
_DATE = st.dates(dt.date(2000, 1, 1), dt.date(2030, 12, 31)).map(dt.date.isoformat)
_LEVELS = ("primary", "lower_secondary", "combined", "upper_secondary", "adult")


@st.composite
def snapshots(draw: st.DrawFn) -> SourceSnapshot:
    n_schools = draw(st.integers(1, 2))
    schools = [
        School(f"S{i}", f"97400000{i}", draw(_HOSTILE), draw(_HOSTILE), draw(st.sampled_from(_LEVELS)))
        for i in range(n_schools)
    ]
    n = draw(st.integers(1, 6))
    persons = [
        Person(
            f"P{i}",
            draw(st.none() | st.just(f"0101{i:07d}")),
            draw(_HOSTILE),
            draw(_MAYBE),
            draw(_HOSTILE),
            draw(st.none() | _DATE),
            draw(st.none() | st.just(f"p{i}@example.no")),
            draw(st.none() | st.from_regex(r"\+[0-9]{8,12}", fullmatch=True)),
        )  # fmt: skip
        for i in range(n)
    ]
    pids = [p.person_id for p in persons]
    sids = [s.school_id for s in schools]
    enrollments = []
    for k, (pid, sid) in enumerate(
        draw(st.lists(st.tuples(st.sampled_from(pids), st.sampled_from(sids)), unique=True))
    ):
        start = draw(_DATE)
        enrollments.append(
            StudentEnrollment(
                f"E{k}",
                pid,
                sid,
                draw(st.none() | st.integers(1, 13)),
                start,
                draw(st.none() | _DATE),
                draw(st.booleans()),
                draw(_MAYBE),
                draw(_MAYBE),
            )  # fmt: skip
        )
    employments = [
        Employment(f"A{k}", pid, sid, role, draw(_DATE), draw(st.none() | _DATE))
        for k, (pid, sid, role) in enumerate(
            draw(
                st.lists(
                    st.tuples(
                        st.sampled_from(pids),
                        st.sampled_from(sids),
                        st.sampled_from(("teacher", "staff", "leader")),
                    )
                )
            )
        )
    ]
    guardianships = [
        Guardianship(g, s)
        for g, s in draw(st.lists(st.tuples(st.sampled_from(pids), st.sampled_from(pids)), unique=True))
        if g != s
    ]
    groups = [
        Group(
            f"G{k}",
            draw(st.sampled_from(sids)),
            draw(st.sampled_from(("basis", "teaching", "contact"))),
            draw(_HOSTILE),
            draw(st.none() | st.sampled_from(("MAT0006", "NOR1260", "uuid:x+y"))),
            draw(st.none() | st.integers(1, 13)),
            draw(_DATE),
            draw(_DATE),
        )  # fmt: skip
        for k in range(draw(st.integers(0, 3)))
    ]
    memberships = [
        GroupMembership(
            g.group_id, draw(st.sampled_from(pids)), draw(st.sampled_from(("student", "teacher")))
        )
        for g in groups
        for _ in range(draw(st.integers(0, 3)))
    ]
    return SourceSnapshot(
        tuple(schools), tuple(persons), tuple(enrollments), tuple(employments), tuple(guardianships),
        tuple(groups), tuple(memberships),
    )  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(snap=snapshots())
def test_any_small_snapshot_with_hostile_text_round_trips(
    tmp_path_factory: pytest.TempPathFactory, snap: SourceSnapshot
) -> None:
    tmp = tmp_path_factory.mktemp("prop")
    path = write_export(
        snap, tmp / "x.xml", owner_name="Kommune <&>", owner_org_number=OWNER_ORG, as_of="2025-10-01"
    )
    levels = {s.school_id: s.level for s in snap.schools}
    back, _ = read_export(path, school_levels=levels, owner_org=OWNER_ORG)
    assert comparable(back) == comparable(snap)


def test_a_full_sync_a_quiet_rerun_and_a_small_change(
    demo: tuple[Path, SourceSnapshot, Path], tmp_path: Path
) -> None:
    _tmp, sql, export = demo
    folder = tmp_path / "in"
    folder.mkdir()
    first = folder / "pifu-1.xml"
    first.write_bytes(export.read_bytes())
    os.utime(first, (time.time() - 7200,) * 2)
    # The targets that apply (AD and Microsoft 365 only plan in tests: they would plan again).
    source = f'kind = "pifu"\npath = "{folder}"\nsettle_seconds = 60'
    cfg = _config(tmp_path, source, "e2e", targets=("itslearning", "feide"))
    store = StateStore(cfg.state.url)
    try:
        full = runner.sync(cfg, store, as_of=AS_OF.isoformat())
        assert full.plan is not None and sum(len(tp.changes) for tp in full.plan.targets) > 1000
        assert full.status.value not in ("failed", "refused"), full.message
        quiet = runner.sync(cfg, store, as_of=AS_OF.isoformat())
        assert quiet.plan is not None and quiet.plan.is_empty() and quiet.plan.basis == "certified"
        # The SIS writes a newer export in which one student has a new family name.
        student = next(e.person_id for e in sql.enrollments if e.end_date is None)
        persons = tuple(
            p._replace(family_name=f"{p.family_name}-Berg") if p.person_id == student else p
            for p in sql.persons
        )
        second = folder / "pifu-2.xml"
        write_export(
            replace(sql, persons=persons), second,
            owner_name="Eksempel kommune", owner_org_number=OWNER_ORG, as_of=AS_OF.isoformat(),
        )  # fmt: skip
        os.utime(second, (time.time() - 3600,) * 2)
        small = runner.sync(cfg, store, as_of=AS_OF.isoformat())
        # Only the persons table's digest differs (and the file's): the certified plan is patched.
        assert small.plan is not None and small.plan.basis == "incremental"
        changes = list(small.plan.changes())
        assert changes and {c.person_id for c in changes} == {student}
    finally:
        store.close()
