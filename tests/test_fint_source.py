"""FintSource against the local fake FINT serving demo data: equality with SQL, cache, refusals."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from demo.data import Scale
from provisioner.config import Config
from provisioner.core.model import GroupMembership, Person, SourceSnapshot, StudentEnrollment
from provisioner.core.plan import CORE
from provisioner.core.safety import SourceRefused
from provisioner.run import runner
from provisioner.state.store import StateStore
from sources.base import SourceError
from sources.fint import FintSource
from sources.fint import mapping as fm
from sources.fint.cache import FintCache
from tests.fake_fint import FakeFint
from tests.fintenv import DEMO_DAY, demo_snapshot, fint_config
from tests.sisbuilder import make_config, same_seal_key

DAY = DEMO_DAY.isoformat()
APPLIED = (CORE, "itslearning", "feide")  # AD and Microsoft 365 only plan in the test config


# A small owner (one school per level) for the cache and refusal tests; the demo owner for equality.
SMALL = Scale(1, 1, 1, 1, 1, students=150, employees=30, guardians=220, groups=80, memberships=1_500)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, SourceSnapshot]:
    return demo_snapshot(tmp_path_factory.mktemp("fint-demo"))


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, SourceSnapshot]:
    return demo_snapshot(tmp_path_factory.mktemp("fint-small"), SMALL)


@pytest.fixture()
def fake(tmp_path: Path, small: tuple[str, SourceSnapshot]) -> Iterator[FakeFint]:
    server = FakeFint(tmp_path / "tls", small[1])
    yield server
    server.close()


@pytest.fixture()
def demo_fake(tmp_path: Path, demo: tuple[str, SourceSnapshot]) -> Iterator[FakeFint]:
    server = FakeFint(tmp_path / "demo-tls", demo[1])
    yield server
    server.close()


@pytest.fixture()
def cfg(tmp_path: Path, fake: FakeFint) -> Config:
    return fint_config(tmp_path / "cfg", fake)


def read(cfg: Config, **kw: Any) -> tuple[SourceSnapshot, FintSource]:
    src = FintSource(cfg, **kw)
    try:
        return src.read(), src
    finally:
        src.close()


def fint_view(snap: SourceSnapshot) -> SourceSnapshot:
    """What FINT can carry of a snapshot: an enrollment in no basis group has no grade there."""
    grouped = {
        (m.person_id, g.school_id)
        for g in snap.groups
        if g.kind == "basis"
        for m in snap.memberships
        if m.group_id == g.group_id and m.role == "student"
    }
    latest: dict[tuple[str, str], StudentEnrollment] = {}
    for e in snap.enrollments:
        k = (e.person_id, e.school_id)
        if k not in latest or (e.start_date, e.enrollment_id) > (
            latest[k].start_date,
            latest[k].enrollment_id,
        ):
            latest[k] = e
    enrollments = tuple(
        e
        if (e.person_id, e.school_id) in grouped and latest[(e.person_id, e.school_id)] is e
        else e._replace(grade=None)
        for e in snap.enrollments
    )
    return dataclasses.replace(snap, enrollments=enrollments)


def same_rows(a: SourceSnapshot, b: SourceSnapshot) -> None:
    for table in a.counts():
        left, right = set(getattr(a, table)), set(getattr(b, table))
        assert left == right, (table, sorted(left - right)[:3], sorted(right - left)[:3])


def test_demo_data_reads_as_the_sql_source_gives_it(tmp_path: Path, demo_fake: FakeFint, demo: Any) -> None:
    snap, src = read(fint_config(tmp_path / "demo", demo_fake))
    same_rows(snap, fint_view(demo[1]))
    assert set(src.last_read.values()) == {"full"}
    assert all(f"fint:{r}" in snap.digests for r in fm.RESOURCES)


def _plan(cfg: Config, snap: SourceSnapshot, folder: Path) -> list[tuple[str, str, str, Any]]:
    same_seal_key(f"sqlite:///{folder / 'state.db'}")  # the two plans seal NINs alike
    store = StateStore(f"sqlite:///{folder / 'state.db'}")
    try:
        plan, _ = runner.make_plan(cfg, store, snap, DAY, "compare")
    finally:
        store.close()
    out = []
    for tp in plan.targets:
        for c in tp.changes:
            out.append((tp.target, c.op.value, c.key, json.dumps(c.to_json(), sort_keys=True, default=str)))
    return sorted(out)


def test_the_same_plan_as_from_the_sql_source(tmp_path: Path, demo_fake: FakeFint, demo: Any) -> None:
    url, sql_snap = demo
    cfg = fint_config(tmp_path / "demo", demo_fake)
    fint_snap, _ = read(cfg)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    sql_cfg = make_config(tmp_path / "sqlcfg", url, f"sqlite:///{tmp_path / 'unused.db'}")
    from_sql = _plan(sql_cfg, sql_snap, tmp_path / "a")
    from_fint = _plan(cfg, fint_snap, tmp_path / "b")
    assert len(from_sql) > 1000
    assert from_fint == from_sql


def test_a_quiet_rerun_transfers_almost_nothing_and_gives_the_same_snapshot(
    fake: FakeFint, cfg: Config
) -> None:
    fake.reset_counts()
    first, _ = read(cfg)
    full_bytes = fake.bytes_sent
    fake.reset_counts()
    second, src = read(cfg)
    assert set(src.last_read.values()) == {"quiet"}
    assert fake.bytes_sent < 0.01 * full_bytes
    assert second == first  # rows and digests


def test_a_change_is_picked_up_incrementally(fake: FakeFint, cfg: Config) -> None:
    first, _ = read(cfg)
    student = first.enrollments[0].person_id
    fake.update_person(student, family_name="Nyberg")
    fake.reset_counts()
    second, src = read(cfg)
    assert next(p for p in second.persons if p.person_id == student).family_name == "Nyberg"
    assert src.last_read[fm.ELEV_PERSON] == "incremental"
    assert src.last_read[fm.ELEVFORHOLD] == "quiet"
    assert second.digests["persons"] != first.digests["persons"]
    assert second.digests["enrollments"] == first.digests["enrollments"]


def test_a_new_student_is_picked_up(fake: FakeFint, cfg: Config) -> None:
    first, _ = read(cfg)
    basis = next(g for g in first.groups if g.kind == "basis")
    fake.add_student(
        Person("PNEW", None, "Nora", None, "Ny", "2015-02-03", None, None),
        StudentEnrollment("ENEW", "PNEW", basis.school_id, basis.grade, "2025-09-01", None, True),
        [GroupMembership(basis.group_id, "PNEW", "student")],
    )
    second, _ = read(cfg)
    assert "PNEW" in {p.person_id for p in second.persons}
    assert GroupMembership(basis.group_id, "PNEW", "student") in second.memberships
    same_rows(second, fint_view(fake.snap))


def test_a_deletion_is_picked_up_through_the_cache_size(fake: FakeFint, cfg: Config) -> None:
    first, _ = read(cfg)
    ms = fake.entries[fm.UNDERVISNINGSGRUPPEMEDLEMSKAP]
    victim = next(iter(ms.values()))["systemId"]["identifikatorverdi"]
    fake.remove(fm.UNDERVISNINGSGRUPPEMEDLEMSKAP, victim)
    second, src = read(cfg)
    assert src.last_read[fm.UNDERVISNINGSGRUPPEMEDLEMSKAP] == "full"
    assert len(second.memberships) == len(first.memberships) - 1


def test_a_removed_person_disappears(fake: FakeFint, cfg: Config) -> None:
    first, _ = read(cfg)
    gone = first.enrollments[-1].person_id
    fake.remove_person(gone)
    second, _ = read(cfg)
    assert gone not in {p.person_id for p in second.persons}
    same_rows(second, fint_view(fake.snap))


def test_a_corrupt_cache_is_read_in_full(
    fake: FakeFint, cfg: Config, caplog: pytest.LogCaptureFixture
) -> None:
    first, _ = read(cfg)
    cache = FintCache(cfg.path(cfg.source.cache_dir))  # type: ignore[union-attr]
    path = cache._file(fm.ELEVFORHOLD)
    path.write_bytes(path.read_bytes()[:-100])  # cut short
    second, src = read(cfg)
    assert src.last_read[fm.ELEVFORHOLD] == "full"
    assert second == first
    assert "corrupt" in caplog.text


def test_cache_files_are_private(fake: FakeFint, cfg: Config) -> None:
    old = os.umask(0o022)
    try:
        read(cfg)
    finally:
        os.umask(old)
    folder = cfg.path(cfg.source.cache_dir)  # type: ignore[union-attr]
    files = list(folder.iterdir())
    assert len(files) == len(fm.RESOURCES)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert {stat.S_IMODE(f.stat().st_mode) for f in files} == {0o600}


def test_an_old_cache_is_read_in_full(fake: FakeFint, cfg: Config) -> None:
    read(cfg)
    import time

    _, src = read(cfg, now=lambda: time.time() + 25 * 3600)
    assert set(src.last_read.values()) == {"full"}


@pytest.mark.parametrize("resource", [fm.ELEVFORHOLD, fm.SKOLE, fm.ARBEIDSFORHOLD])
def test_an_empty_resource_refuses_the_run_and_changes_nothing(
    fake: FakeFint, cfg: Config, resource: str
) -> None:
    read(cfg)
    folder = cfg.path(cfg.source.cache_dir)  # type: ignore[union-attr]
    before = {f.name: f.read_bytes() for f in folder.iterdir()}
    fake.clear(resource)
    with pytest.raises(SourceRefused, match="comes back empty refuses the run") as err:
        read(cfg)
    assert err.value.empty == (resource,)
    assert not err.value.approvable
    assert {f.name: f.read_bytes() for f in folder.iterdir()} == before


def test_an_empty_resource_refuses_the_first_run_too(tmp_path: Path, fake: FakeFint) -> None:
    fake.clear(fm.BASISGRUPPEMEDLEMSKAP)
    cfg = fint_config(tmp_path / "fresh", fake)
    with pytest.raises(SourceRefused, match=fm.BASISGRUPPEMEDLEMSKAP):
        read(cfg)
    assert not cfg.path("fint-cache").exists()


def test_a_resource_allowed_to_be_empty_does_not_refuse(fake: FakeFint, cfg: Config) -> None:
    fake.clear(fm.PROGRAMOMRADE)  # in may_be_empty by default: a county may have none
    snap, src = read(cfg)
    assert snap.persons
    assert src.last_read[fm.PROGRAMOMRADE] == "full"


def test_refused_credentials_fail_the_read_and_write_no_cache(tmp_path: Path, fake: FakeFint) -> None:
    cfg = fint_config(tmp_path / "bad", fake, secret="not-the-secret")
    with pytest.raises(SourceError, match="token endpoint refused") as err:
        read(cfg)
    assert "not-the-secret" not in str(err.value)
    assert not cfg.path("fint-cache").exists()


def test_a_token_expiring_between_reads_is_renewed(fake: FakeFint, cfg: Config) -> None:
    src = FintSource(cfg)
    try:
        first = src.read()
        fake.expire_tokens()
        assert src.read() == first
    finally:
        src.close()


def test_unchanged_is_answered_without_downloading_entries(fake: FakeFint, cfg: Config) -> None:
    snap, _ = read(cfg)
    src = FintSource(cfg)
    try:
        fake.reset_counts()
        assert src.unchanged(snap.digests)
        assert fake.bytes_sent < 10_000
        fake.update_person(snap.persons[0].person_id, mobile="47000000")
        assert not src.unchanged(snap.digests)
        assert not src.unchanged({k: v for k, v in snap.digests.items() if not k.startswith("fint:")})
    finally:
        src.close()


def test_a_sync_end_to_end_then_a_quiet_rerun_then_a_small_change(
    tmp_path: Path, fake: FakeFint, cfg: Config
) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'e2e.db'}")
    try:
        first = runner.sync(cfg, store, as_of=DAY)
        assert first.exit_code == runner.EXIT_OK, first.message
        again = runner.sync(cfg, store, as_of=DAY)
        assert again.exit_code == runner.EXIT_OK
        assert all(not tp.changes for tp in again.plan.targets if tp.target in APPLIED)
        pid = next(e.person_id for e in fake.snap.enrollments if e.end_date is None)
        fake.update_person(pid, family_name="Nyberg")
        changed = runner.sync(cfg, store, as_of=DAY)
        assert changed.exit_code == runner.EXIT_OK
        keys = {(tp.target, c.key) for tp in changed.plan.targets if tp.target in APPLIED for c in tp.changes}
        assert keys and {k for _, k in keys} == {pid}
    finally:
        store.close()


def test_an_expired_token_that_cannot_be_renewed_fails_the_read_and_changes_nothing(
    fake: FakeFint, cfg: Config
) -> None:
    src = FintSource(cfg)
    try:
        src.read()
        folder = cfg.path(cfg.source.cache_dir)  # type: ignore[union-attr]
        before = {f.name: f.read_bytes() for f in folder.iterdir()}
        fake.update_person(fake.snap.persons[0].person_id, family_name="Endret")
        fake.expire_tokens()
        fake.refresh_tokens.clear()
        fake.password = "changed-by-the-admin"  # the client's password no longer works
        with pytest.raises(SourceError, match="token endpoint refused the credentials"):
            src.read()
        assert {f.name: f.read_bytes() for f in folder.iterdir()} == before
    finally:
        src.close()
