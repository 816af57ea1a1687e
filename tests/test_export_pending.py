"""File targets lose nothing the state store records as applied (SPEC "Safety", last rule).

A file target's changes are recorded as applied only once its files are durably written.
When the files cannot be written (a full disk here) nothing is recorded and the next run
writes the changes; when a run dies between its files and their record (a crash here, a
kill -9 in tests/test_crash_kill.py) the next run records what the files carry, from the
export journal, and writes nothing twice.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors import files
from connectors.feide.ldif import FeideLdifConnector
from provisioner.apply.options import ApplyOptions
from provisioner.config import FeideConfig, OwnerConfig
from provisioner.core.plan import Change, Op
from provisioner.run import recovery, runner
from provisioner.state import exports
from provisioner.state import schema as t
from provisioner.state.store import StateStore
from tests.sisbuilder import make_config, small_sis

DAY1, DAY2 = "2025-10-01", "2025-10-02"
OWNER = OwnerConfig(
    name="Eksempel kommune", org_number="974000000", realm="eksempel.kommune.no", mail_domain="eksempel.no"
)


def _deltas(directory: Path, pattern: str) -> str:
    return "".join(p.read_text(encoding="utf-8") for p in sorted(directory.glob(pattern)))


def _deleted_in_ims(text: str, sourcedid: str) -> bool:
    deleted = rf'<person recstatus="3"><sourcedid><source>[^<]*</source><id>{sourcedid}</id>'
    return re.search(deleted, text) is not None


def _pending(store: StateStore) -> int:
    with store.engine.connect() as c:
        return c.execute(sa.select(sa.func.count()).select_from(t.pending_exports)).scalar() or 0


def _results(store: StateStore, run_id: str, key: str) -> set[tuple[str, str]]:
    """(target, result) of the changelog rows of one run for one key."""
    log = t.changelog.c
    q = sa.select(log.target, log.result).where(log.run_id == run_id, log.key == key, log.target != "core")
    with store.engine.connect() as c:
        return {(target, result) for target, result in c.execute(q)}


def _ops(outcome: runner.RunOutcome, target: str) -> list[tuple[str, str]]:
    return [(c.op.value, c.key) for c in outcome.plan.target(target).changes]


@pytest.mark.parametrize("in_workers", [False, True], ids=["in-process", "workers"])
def test_files_a_full_disk_refused_are_written_by_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_workers: bool
) -> None:
    sis = small_sis()
    src = f"sqlite:///{tmp_path / 'sis.db'}"
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    cfg = make_config(tmp_path, src, store.url, targets=("itslearning", "feide"))
    try:
        sis.write(src)
        assert runner.sync(cfg, store, as_of=DAY1).status == "done"
        s3_dn = next(o["anchor"] for o in store.objects.iterate("feide") if o["key"] == "S3")

        # S3 leaves; the disk is full when the files are written (in this process only,
        # so the targets are applied here for this run).
        sis.end_enrollments("S3", DAY1)
        sis.write(src)
        with monkeypatch.context() as m:

            def full(path: Path):  # noqa: ANN202
                raise OSError(errno.ENOSPC, "No space left on device", str(path))

            m.setattr(files, "atomic_text_file", full)
            m.setattr("connectors.feide.ldif.atomic_text_file", full)
            failed = runner.sync(cfg, store, as_of=DAY2, options=ApplyOptions(workers=False))
        assert failed.results["itslearning"].status == "failed"
        assert failed.results["feide"].status == "failed"
        # No file carries S3's removal, so the store does not record it as applied (it did,
        # before files came first): the next plan has it again, and nothing stays journaled.
        assert "S3" in {o["key"] for o in store.objects.iterate("feide")}
        assert _results(store, failed.run_id, "S3") == {("itslearning", "failed"), ("feide", "failed")}
        assert not _deleted_in_ims(_deltas(tmp_path / "itslearning", "ims-delta-*.xml"), "S3")
        assert "changetype: delete" not in _deltas(tmp_path / "feide", "feide-delta-*.ldif")
        assert _pending(store) == 0

        again = runner.sync(cfg, store, as_of=DAY2, options=ApplyOptions(workers=in_workers))
        assert again.status == "done", again.message
        for target in ("itslearning", "feide"):  # nothing new: only what failed
            assert _ops(again, target) == _ops(failed, target) != []
        assert again.results["itslearning"].status == "applied"
        its = _deltas(tmp_path / "itslearning", f"ims-delta-*-{again.run_id}.xml")
        assert _deleted_in_ims(its, "S3")
        feide = (tmp_path / "feide" / f"feide-delta-{again.run_id}.ldif").read_text(encoding="utf-8")
        assert f"dn: {s3_dn}\nchangetype: delete" in feide
        assert _pending(store) == 0

        # Written once: the run after has nothing to write again.
        third = runner.sync(cfg, store, as_of=DAY2)
        assert third.results["itslearning"].status == "unchanged"
        assert not list((tmp_path / "itslearning").glob(f"ims-delta-*-{third.run_id}.xml"))
    finally:
        store.close()


def test_a_run_dead_after_its_files_is_recorded_by_the_next_and_written_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files durable, then the process dies before recording them: the next run records them."""
    sis = small_sis()
    src = f"sqlite:///{tmp_path / 'sis.db'}"
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    cfg = make_config(tmp_path, src, store.url, targets=("itslearning", "feide"))
    try:
        sis.write(src)
        assert runner.sync(cfg, store, as_of=DAY1).status == "done"
        sis.end_enrollments("S3", DAY1)
        sis.write(src)
        first = set((tmp_path / "itslearning").glob("ims-delta-*.xml"))
        with monkeypatch.context() as m:

            def crash(*_a: object, **_k: object) -> None:
                raise KeyboardInterrupt  # as a kill: nothing after the files runs

            m.setattr(exports, "record", crash)
            with pytest.raises(KeyboardInterrupt):
                runner.sync(cfg, store, as_of=DAY2, options=ApplyOptions(workers=False))
        assert "S3" in {o["key"] for o in store.objects.iterate("feide")}  # not recorded yet
        assert _pending(store) > 0
        (its_delta,) = set((tmp_path / "itslearning").glob("ims-delta-*.xml")) - first  # durable
        assert _deleted_in_ims(its_delta.read_text(encoding="utf-8"), "S3")

        again = runner.sync(cfg, store, as_of=DAY2)
        assert again.status == "done", again.message
        assert "S3" not in {o["key"] for o in store.objects.iterate("feide")}  # recorded before planning
        assert again.plan.target("itslearning").changes == ()  # so nothing is planned again
        assert again.results["itslearning"].status == "unchanged"
        assert _pending(store) == 0
        assert _deltas(tmp_path / "feide", "feide-delta-*.ldif").count("changetype: delete") == 1
        assert set((tmp_path / "itslearning").glob("ims-delta-*.xml")) == first | {its_delta}
        log = t.changelog.c
        with store.engine.connect() as c:
            deletes = c.execute(
                sa.select(log.target).where(log.key == "S3", log.op == "delete", log.result == "ok")
            ).all()
        assert sorted(r[0] for r in deletes) == ["feide", "itslearning"]  # once each
    finally:
        store.close()


def _change(key: str) -> Change:
    attrs = {"sourcedid": key, "name": {"given": "Ola", "family": key}, "roles": []}
    return Change("itslearning", Op.CREATE, "person", key, "test", person_id=key, attrs=attrs)


def test_settling_records_runs_whose_files_are_written_and_drops_the_rest(tmp_path: Path) -> None:
    """A journal whose delta file is in place is recorded; one whose files never landed goes."""
    src = f"sqlite:///{tmp_path / 'sis.db'}"
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    cfg = make_config(tmp_path, src, store.url, targets=("itslearning", "feide"))
    out = tmp_path / "itslearning"
    try:
        for run in ("written", "lost"):
            store.runs.start(run, "sync", DAY1)
        exports.journal(store, "itslearning", "written", [(_change("P1"), "P1", None)])
        exports.journal(
            store, "itslearning", "lost", [(_change("P2"), "P2", None), (_change("P3"), "P3", None)]
        )
        exports.journal(store, "feide", "lost", [(_change("P4"), "uid=p4,dc=x", None)])
        assert exports.pending(store) == [
            ("itslearning", "written"),
            ("itslearning", "lost"),
            ("feide", "lost"),
        ]
        out.mkdir()
        (out / "ims-full-20251001T000000Z-written.xml").write_text("<x/>", encoding="utf-8")
        (out / "ims-delta-20251001T000000Z-written.xml").write_text("<x/>", encoding="utf-8")
        recovery.settle_exports(cfg, store, "now", ApplyOptions())
        assert exports.pending(store) == []
        assert [(o["key"], o["anchor"]) for o in store.objects.iterate("itslearning")] == [("P1", "P1")]
        assert list(store.objects.iterate("feide")) == []
        assert (out / "latest-full.xml").read_text(encoding="utf-8") == "<x/>"  # the link it never made
        log = t.changelog.c
        with store.engine.connect() as c:
            rows = c.execute(sa.select(log.run_id, log.key, log.result)).all()
        assert rows == [("written", "P1", "ok")]  # recorded under the run that wrote it
    finally:
        store.close()


def test_feide_ldif_knows_which_runs_it_wrote(tmp_path: Path) -> None:
    conn = FeideLdifConnector(FeideConfig(base_dn="dc=eksempel,dc=no"), OWNER, tmp_path)
    (tmp_path / "feide-delta-r_1.ldif").write_text("version: 1\n", encoding="utf-8")
    assert conn.exported("r 1") and not conn.exported("r2")
