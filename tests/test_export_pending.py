"""File targets lose nothing the state store records as applied (SPEC "Safety", last rule).

A file target's changes are recorded batch by batch before ``finish`` writes its files.
When the files cannot be written (a full disk here; a kill -9 in tests/test_crash_kill.py)
the next run must write the recorded changes into its delta file, even when it has
nothing new for that target, and exactly once.
"""

from __future__ import annotations

import errno
import re
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors import files
from connectors.feide.ldif import FeideLdifConnector
from connectors.itslearning.connector import ItslearningConnector
from provisioner.apply.options import ApplyOptions
from provisioner.config import FeideConfig, ItslearningConfig, OwnerConfig
from provisioner.core.plan import Change, Op
from provisioner.run import runner
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
        s3_dn = next(o["anchor"] for o in store.iter_objects("feide") if o["key"] == "S3")

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
        # The store records S3's removal as applied: no later plan has it again.
        assert "S3" not in {o["key"] for o in store.iter_objects("feide")}
        assert not _deleted_in_ims(_deltas(tmp_path / "itslearning", "ims-delta-*.xml"), "S3")
        assert "changetype: delete" not in _deltas(tmp_path / "feide", "feide-delta-*.ldif")
        assert _pending(store) > 0

        again = runner.sync(cfg, store, as_of=DAY2, options=ApplyOptions(workers=in_workers))
        assert again.status == "done", again.message
        assert again.plan.target("itslearning").changes == ()  # nothing new: only what was owed
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


def _change(key: str) -> Change:
    attrs = {"sourcedid": key, "name": {"given": "Ola", "family": key}, "roles": []}
    return Change("itslearning", Op.CREATE, "person", key, "test", person_id=key, attrs=attrs)


def test_claim_drops_runs_whose_files_are_written_and_takes_over_the_rest(tmp_path: Path) -> None:
    """Killed after its files and before its rows were cleared, a run is not written twice."""
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    conn = ItslearningConnector(ItslearningConfig(), OWNER, tmp_path / "out")
    try:
        with store.engine.begin() as c:
            exports.insert(c, "itslearning", "written", [_change("P1")])
            exports.insert(c, "itslearning", "lost", [_change("P2"), _change("P3")])
            exports.insert(c, "feide", "lost", [_change("P4")])
        (tmp_path / "out").mkdir()
        (tmp_path / "out" / "ims-delta-20251001T000000Z-written.xml").write_text("<x/>", encoding="utf-8")
        assert exports.targets(store) == {"itslearning", "feide"}
        owed = exports.claim(store, "itslearning", "now", conn.exported)
        assert [c.key for c in owed] == ["P2", "P3"]
        assert owed[0] == _change("P2")  # the change as the connector got it
        exports.clear(store, "itslearning", "now")
        assert exports.targets(store) == {"feide"}
    finally:
        store.close()


def test_feide_ldif_knows_which_runs_it_wrote(tmp_path: Path) -> None:
    conn = FeideLdifConnector(FeideConfig(base_dn="dc=eksempel,dc=no"), OWNER, tmp_path)
    (tmp_path / "feide-delta-r_1.ldif").write_text("version: 1\n", encoding="utf-8")
    assert conn.exported("r 1") and not conn.exported("r2")
