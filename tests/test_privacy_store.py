"""NINs in what the state store keeps: changelog and run records masked; `person show` masked, still found."""

from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from provisioner.core import nin
from provisioner.core.plan import Change, Op
from provisioner.service import explain
from provisioner.state import migrate
from provisioner.state import schema as t
from provisioner.state.history import Filter
from provisioner.state.nins import nin_seal
from provisioner.state.store import StateStore
from provisioner.state.writer import TargetWriter
from tests.sisbuilder import bad_check_digit, small_sis, synthetic_nin
from tests.test_pipeline import DAY1, DAY2, Env, ok

ELEVEN = re.compile(r"(?<![0-9])[0-9]{11}(?![0-9])")


def whole_nins(text: str) -> list[str]:
    """Valid NINs written out whole in a text."""
    return [m for m in ELEVEN.findall(text) if nin.is_valid(m)]


def dump_table(store: StateStore, table: sa.Table) -> str:
    with store.engine.connect() as c:
        return json.dumps([list(r) for r in c.execute(sa.select(table))], ensure_ascii=False, default=str)


VALID = synthetic_nin("2011-02-03")
INVALID = bad_check_digit(synthetic_nin("2011-02-04"))
DIGEST_LIKE = "ab12345678901cd"  # eleven digits inside a hex/base64 digest


@pytest.mark.parametrize(
    ("text", "masked_nins", "masked_error"),
    [
        (f"nin {VALID}", f"nin {VALID[:6]}*****", f"nin {VALID[:6]}*****"),
        (
            f'{{"sourcedid":"{VALID}"}}',
            f'{{"sourcedid":"{VALID[:6]}*****"}}',
            f'{{"sourcedid":"{VALID[:6]}*****"}}',
        ),
        (f"row ('P1', '{INVALID}')", f"row ('P1', '{INVALID}')", f"row ('P1', '{INVALID[:6]}*****')"),
        (DIGEST_LIKE, DIGEST_LIKE, DIGEST_LIKE),
        (f"x{VALID}y", f"x{VALID[:6]}*****y", f"x{VALID[:6]}*****y"),
        ("123456789012", "123456789012", "123456789012"),  # twelve digits: not a NIN
        ("", "", ""),
    ],
)
def test_masking_functions(text: str, masked_nins: str, masked_error: str) -> None:
    assert nin.mask_nins(text) == masked_nins
    assert nin.mask_error(text) == masked_error


def test_changelog_keeps_no_whole_nin_even_after_purge_and_person_show_finds_the_nin(tmp_path: Path) -> None:
    e = Env(tmp_path, small_sis(), target_settings={"itslearning": {"nin_as_sourcedid": True}})
    try:
        ok(e.sync(DAY1))
        nin5 = e.sis.get_person("S5").nin
        assert nin5 and e.persons("itslearning")["S5"]["attrs"]["sourcedid"] == nin5
        e.sis.end_enrollments("S5", DAY1)
        ok(e.sync(DAY2))
        ok(e.sync("2026-04-01"))  # retention passed: S5 purged
        assert e.store.identities.all()["S5"].status == "purged"
        logged = dump_table(e.store, t.changelog)
        assert "norEduPersonNIN" in logged and nin5[:6] + "*****" in logged
        assert whole_nins(logged) == []
        # The historic base still has it, and `person show NIN` finds the person's history.
        assert nin5 in e.store.identities.view().person_by_nin
        rows = e.store.history.query(Filter(person=nin5))
        assert {(r["target"], r["op"]) for r in rows} >= {("core", "create"), ("core", "purge")}
        # person show of a live person whose NIN is the itslearning sourcedid (and anchor).
        nin1 = e.sis.get_person("S1").nin
        info = explain.explain(e.cfg, e.store, nin1)
        assert info is not None and info["history"]
        assert any(a["target"] == "itslearning" for a in info["accounts"])
        shown = json.dumps(info, ensure_ascii=False, default=str)
        assert nin1 not in shown and nin1[:6] + "*****" in shown
        assert whole_nins(explain.render_text(info)) == []
        shown_all = json.dumps(explain.explain(e.cfg, e.store, nin1, show_nin=True), default=str)
        assert nin1 in shown_all  # --show-nin still shows the historic base's number
    finally:
        e.store.close()


def test_stored_errors_are_masked(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        row_error = f"IntegrityError: duplicate row ('P1', '{VALID}', 'Ola', '{INVALID}')"
        store.runs.start("r1", "sync", DAY1)
        store.runs.finish(
            "r1",
            "failed",
            error=row_error,
            summary={"results": {"feide": {"errors": [f"feide person P1: {row_error}"]}}},
        )
        run = store.runs.get("r1")
        assert run is not None
        for text in (run["error"], run["summary"]):
            assert VALID not in text and INVALID not in text and VALID[:6] + "*****" in text
        assert store.runs.newest()[0]["error"] == run["error"]
        w = TargetWriter(store, "feide", "r1", DAY1, soft_delete=False)
        c = Change(
            "feide",
            Op.CREATE,
            "person",
            "P1",
            f"new person {VALID}",
            username="ola",
            person_id="P1",
            attrs={"norEduPersonNIN": VALID, "uid": "ola"},
        )
        w.failed(c, "rejected", row_error)
        w.flush()
        logged = dump_table(store, t.changelog)
        assert VALID not in logged and INVALID not in logged
        assert whole_nins(logged) == [] and "norEduPersonNIN" in logged
    finally:
        store.close()


def _changelog_row(i: int, **kw: Any) -> dict[str, Any]:
    row = {
        "id": i,
        "run_id": "old",
        "at": "2025-01-01T00:00:00+00:00",
        "target": "feide",
        "op": "create",
        "kind": "person",
        "key": "P1",
        "person_id": "P1",
        "username": "ola",
        "before": None,
        "after": None,
        "reason": "new",
        "result": "ok",
        "error": None,
    }
    return {**row, **kw}


def test_migration_masks_nins_written_before(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    engine = sa.create_engine(url)
    try:
        migrate.upgrade(engine, "0002")
        digest = json.dumps({"digest": DIGEST_LIKE, "members": [["P12345678901", "student"]]})
        with engine.begin() as c:
            c.execute(
                t.changelog.insert(),
                [
                    _changelog_row(1, after=json.dumps({"norEduPersonNIN": VALID, "uid": "ola"})),
                    _changelog_row(2, target="core", after=json.dumps({"nin": VALID}), reason=f"nin {VALID}"),
                    _changelog_row(3, result="rejected", error=f"row ('{INVALID}')"),
                    _changelog_row(4, after=digest),
                ],
            )
            c.execute(
                t.runs.insert().values(
                    run_id="old", kind="sync", status="failed", started_at="2025-01-01", error=f"row {VALID}"
                )
            )
        assert migrate.upgrade(engine) == ("0002", migrate.head())
        with engine.connect() as c:
            rows = {r.id: r for r in c.execute(sa.select(t.changelog))}
            run_error = c.execute(sa.select(t.runs.c.error)).scalar()
        assert json.loads(rows[1].after)["norEduPersonNIN"] == VALID[:6] + "*****"
        assert rows[2].reason == f"nin {VALID[:6]}*****" and VALID not in rows[2].after
        assert rows[3].error == f"row ('{INVALID[:6]}*****')"
        assert rows[4].after == digest  # no NIN: left exactly as it was
        assert run_error == f"row {VALID[:6]}*****"
    finally:
        engine.dispose()


# -- target attributes that carry a NIN: sealed everywhere but the historic base ------------------

HISTORIC_BASE = {"usernames", "person_nins", "identities"}


def _store_text(store: StateStore) -> dict[str, str]:
    """Every table but the historic base as text; compressed plan parts decompressed."""
    import zlib

    out: dict[str, str] = {}
    with store.engine.connect() as c:
        for table in t.metadata.sorted_tables:
            if table.name in HISTORIC_BASE:
                continue
            cells: list[str] = []
            for row in c.execute(sa.select(table)):
                for v in row:
                    if isinstance(v, bytes | memoryview):
                        raw = bytes(v)
                        with contextlib.suppress(zlib.error):  # a fingerprint is no zlib stream
                            raw = zlib.decompress(raw)
                        v = raw.decode("utf-8", "replace")
                    cells.append(str(v))
            out[table.name] = "\n".join(cells)
    return out


def test_a_feide_nin_is_sealed_in_objects_plans_and_changelog_and_whole_in_its_files(tmp_path: Path) -> None:
    (tmp_path / "apply").mkdir()
    (tmp_path / "plan").mkdir()
    e = Env(tmp_path / "apply", small_sis())
    try:
        ok(e.sync(DAY1))
        whole = {p.nin for p in e.sis.persons if p.nin}
        sealed = {nin_seal(e.store)(n) for n in whole}
        text = _store_text(e.store)
        assert {k: whole_nins(v) for k, v in text.items() if whole_nins(v)} == {}
        assert [s for s in sealed if s in text["objects"]]  # Feide's persons, sealed
        assert [s for s in sealed if s in text["changelog"]]  # their creates, sealed too
        feide = (tmp_path / "apply" / "feide" / "latest-full.ldif").read_text(encoding="utf-8")
        written = {n for n in whole if f"norEduPersonNIN: {n}\n" in feide}
        assert len(written) == 9  # the target gets every student's and employee's NIN whole
    finally:
        e.store.close()
    # Plan-only, Feide's changes wait in the certified plan: sealed there too.
    p = Env(tmp_path / "plan", small_sis(), target_settings={"feide": {"mode": "plan"}})
    try:
        ok(p.sync(DAY1))
        text = _store_text(p.store)
        assert {k: whole_nins(v) for k, v in text.items() if whole_nins(v)} == {}
        planned = {nin_seal(p.store)(x.nin) for x in p.sis.persons if x.nin}
        assert [s for s in planned if s in text["plan_parts"]]
    finally:
        p.store.close()


def test_the_export_journal_of_a_killed_run_holds_feide_nins_sealed(tmp_path: Path) -> None:
    """Killed after Feide's files were written and before they were recorded (kill -9)."""
    import os
    import subprocess
    import sys

    e = Env(tmp_path, small_sis())
    try:
        e.sis.write(e.src)
        config = tmp_path / "bas.toml"
        env = {**os.environ, "BAS_TEST_KILL_AT": "feide:finished#1"}
        cmd = [sys.executable, "-m", "provisioner.cli", "--config", str(config), "sync", "--as-of", DAY1]
        subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, start_new_session=True)
        text = _store_text(e.store)
        assert "norEduPersonNIN" in text["pending_exports"]  # the run died with Feide's journal
        assert {k: whole_nins(v) for k, v in text.items() if whole_nins(v)} == {}
        ok(e.sync(DAY1))  # the next run records what the journal holds
        assert whole_nins(_store_text(e.store)["objects"]) == []
    finally:
        e.store.close()


def test_migration_seals_the_nins_that_objects_held_plans_and_the_journal_kept_whole(db_url: str) -> None:
    from provisioner.core.rows import digest, dumps

    engine = sa.create_engine(db_url)
    try:
        migrate.upgrade(engine, "0008")
        feide = {"norEduPersonNIN": VALID, "uid": "ola", "cn": "Ola Nordmann"}
        its = {"sourcedid": "S1", "userid": "ola"}
        obj = {"status": "active", "updated_at": "2025-01-01", "person_id": "S1", "members": None}
        plan = {
            "targets": [
                {"target": "feide", "changes": [{"op": "create", "attrs": {"norEduPersonNIN": VALID}}]}
            ]
        }
        journal = [
            {"change": {"attrs": {"norEduPersonNIN": VALID, "uid": "ola"}}, "anchor": None, "note": None}
        ]
        with engine.begin() as c:
            c.execute(
                t.objects.insert(),
                [
                    {**obj, "target": "feide", "key": "S1", "kind": "person", "attrs": dumps(feide),
                     "digest": digest("person", feide, None)},
                    {**obj, "target": "itslearning", "key": "S1", "kind": "person", "attrs": dumps(its),
                     "digest": digest("person", its, None)},
                ],
            )  # fmt: skip
            c.execute(
                t.runs.insert().values(
                    run_id="held", kind="sync", status="held", started_at="2025-01-01", plan=json.dumps(plan)
                )
            )
            c.execute(
                t.pending_exports.insert().values(
                    target="feide", run_id="killed", changes=json.dumps(journal)
                )
            )
            c.execute(t.meta.insert().values(key="plan_certificate", value="{}"))
            c.execute(t.plan_parts.insert().values(part="chunk2-x", seq=0, body=b"x"))
        assert migrate.upgrade(engine) == ("0008", migrate.head())
        store = StateStore(db_url)
        try:
            sealed = nin_seal(store)(VALID)  # the key the migration made
            (got,) = store.objects.iterate("feide")
            assert got["attrs"] == {**feide, "norEduPersonNIN": sealed}
            with store.engine.connect() as c:
                stored = {r.target: r for r in c.execute(sa.select(t.objects))}
                held = json.loads(c.execute(sa.select(t.runs.c.plan)).scalar())
                pending = json.loads(c.execute(sa.select(t.pending_exports.c.changes)).scalar())
                parts = c.execute(sa.select(sa.func.count()).select_from(t.plan_parts)).scalar()
            # The digest the writer would store for the sealed attributes: the next run finds it unchanged.
            assert stored["feide"].digest == digest("person", {**feide, "norEduPersonNIN": sealed}, None)
            assert stored["itslearning"].attrs == dumps(its)  # no NIN attribute: left exactly as it was
            assert held["targets"][0]["changes"][0]["attrs"] == {"norEduPersonNIN": sealed}
            assert pending[0]["change"]["attrs"] == {"norEduPersonNIN": sealed, "uid": "ola"}
            assert store.meta.get("plan_certificate") is None and parts == 0  # planned in full next
            assert {k: whole_nins(v) for k, v in _store_text(store).items() if whole_nins(v)} == {}
        finally:
            store.close()
    finally:
        engine.dispose()
