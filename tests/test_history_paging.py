"""Keyset paging and export of the changelog (provisioner/state/history.py ``page``, ``export``).

A small store with random rows; Hypothesis picks filters, a person scope and page sizes,
and walking the pages Older from the newest, or Newer from the oldest, must give every
matching row exactly once, in order; the export gives the newest ``cap`` of them oldest
first, as ``query`` (the CLI's read) does.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from provisioner.state import common, migrate
from provisioner.state import schema as t
from provisioner.state.common import bulk_insert, bulk_transaction
from provisioner.state.history import Filter
from provisioner.state.store import StateStore

PERSONS = [f"P{i:03d}" for i in range(12)]
TARGETS = ["core", "ad", "feide"]
OPS = ["create", "update", "disable", "add_members"]
RESULTS = ["ok", "failed"]
DAYS = ["2026-01-0" + str(d) for d in range(1, 8)]
SCHOOL_OF = {p: ("S1" if i % 3 else "S2") for i, p in enumerate(PERSONS)}


def _rows(n: int) -> list[dict[str, Any]]:
    rng = random.Random(5)
    out = []
    for i in range(n):
        op = rng.choice(OPS)
        pid = rng.choice(PERSONS)
        member = op == "add_members"
        out.append(
            {
                "run_id": f"R{i // 20:03d}",
                "at": DAYS[min(6, i * 7 // n)] + f"T10:00:{i % 60:02d}+00:00",
                "target": rng.choice(TARGETS),
                "op": op,
                "kind": "group" if member else "person",
                "key": f"G{i % 5}" if member else pid,
                "person_id": None if member else pid,
                "username": None if member else "u" + pid.lower(),
                "after": f'{{"members":[["{pid}","student"]]}}' if member else '{"x":1}',
                "reason": f"reason {i}",
                "result": rng.choice(RESULTS),
            }
        )
    return out


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StateStore]:
    path: Path = tmp_path_factory.mktemp("hist") / "state.sqlite"
    s = StateStore(f"sqlite:///{path}")
    with s.engine.begin() as c:
        c.execute(t.changelog.insert(), _rows(300))
        for p in PERSONS:
            c.execute(
                t.identities.insert().values(
                    person_id=p,
                    username="u" + p.lower(),
                    status="active",
                    created_at="2026-01-01",
                    updated_at="2026-01-01",
                )
            )
            c.execute(t.dir_affiliations.insert().values(person_id=p, school_id=SCHOOL_OF[p], role="student"))
    yield s
    s.close()


def _all(store: StateStore) -> list[dict[str, Any]]:
    with store.engine.connect() as c:
        return [dict(r) for r in c.execute(sa.select(t.changelog).order_by(t.changelog.c.id)).mappings()]


def _expected(rows: list[dict[str, Any]], f: Filter, school: str | None) -> list[int]:
    """The ids a filter matches, newest first, worked out in Python."""
    out = []
    for r in rows:
        if f.person:
            pid = f.person.upper()[1:]
            hit = r["person_id"] == pid or (r["op"] == "add_members" and f'"{pid}"' in r["after"])
            if not hit:
                continue
        if any(v and r[k] != v for k, v in (("target", f.target), ("op", f.op), ("result", f.result))):
            continue
        if f.since and r["at"] < f.since:
            continue
        if f.until and r["at"][:10] > f.until:
            continue
        if school and SCHOOL_OF.get(r["person_id"] or "") != school:
            continue
        out.append(r["id"])
    return sorted(out, reverse=True)


filters = st.builds(
    Filter,
    person=st.none() | st.sampled_from(["u" + p.lower() for p in PERSONS[:4]]),
    target=st.none() | st.sampled_from(TARGETS),
    op=st.none() | st.sampled_from(OPS),
    result=st.none() | st.sampled_from(RESULTS),
    since=st.none() | st.sampled_from(DAYS),
    until=st.none() | st.sampled_from(DAYS),
    limit=st.integers(1, 40),
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(f=filters, school=st.none() | st.sampled_from(["S1", "S2"]))
def test_paging_older_and_newer_visits_every_row_once(
    store: StateStore, f: Filter, school: str | None
) -> None:
    want = _expected(_all(store), f, school)
    scope = store.directory.at_schools([school]) if school else None
    seen: list[int] = []
    before = None
    for _ in range(400):
        got = store.history.page(Filter(**{**f.__dict__, "before": before}), scope)
        assert len(got.rows) <= f.limit
        seen += [r["id"] for r in got.rows]
        if got.older is None:
            break
        before = got.older
    assert seen == want
    # and back up again from the oldest row: Newer pages, each newest first
    up: list[int] = []
    after = 0
    for _ in range(400):
        got = store.history.page(Filter(**{**f.__dict__, "after": after}), scope)
        up = [r["id"] for r in got.rows] + up
        if got.newer is None:
            break
        after = got.newer
    assert up == want


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(f=filters, cap=st.integers(1, 120), chunk=st.integers(1, 50))
def test_export_is_the_newest_cap_rows_oldest_first_like_query(
    store: StateStore, f: Filter, cap: int, chunk: int
) -> None:
    got = [r["id"] for part in store.history.export(f, None, cap=cap, chunk=chunk) for r in part]
    assert got == list(reversed(_expected(_all(store), f, None)[:cap]))
    cli = store.history.query(Filter(**{**f.__dict__, "limit": cap}))
    assert [r["id"] for r in cli] == got


def test_first_page_links_and_an_unknown_person(store: StateStore) -> None:
    first = store.history.page(Filter(limit=10))
    assert first.newer is None and first.older == first.rows[-1]["id"]
    assert [r["id"] for r in first.rows] == sorted((r["id"] for r in first.rows), reverse=True)
    nobody = store.history.page(Filter(person="no-such-user"))
    assert nobody.rows == [] and nobody.older is None and nobody.newer is None
    assert list(store.history.export(Filter(person="no-such-user"))) == []


def test_text_filter_matches_key_username_or_reason(store: StateStore) -> None:
    rows = store.history.page(Filter(text="reason 12", limit=100)).rows
    assert {r["reason"] for r in rows} <= {f"reason {i}" for i in (12, *range(120, 130))}
    assert rows and all("reason 12" in r["reason"] for r in rows)
    by_user = store.history.page(Filter(text="up001", limit=500)).rows
    assert by_user and all(r["username"] == "up001" for r in by_user)
    # LIKE wildcards in the text are literal
    assert store.history.page(Filter(text="reason _2%")).rows == []


def test_scope_keeps_only_rows_of_persons_at_the_school(store: StateStore) -> None:
    rows = store.history.page(Filter(limit=500), store.directory.at_schools(["S2"])).rows
    assert rows and {SCHOOL_OF[r["key"]] for r in rows} == {"S2"}


def _member_row(run: str, key: str, members: list[list[str]]) -> dict[str, Any]:
    return {
        "run_id": run,
        "at": "2026-02-01T10:00:00+00:00",
        "target": "ad",
        "op": "add_members",
        "kind": "group",
        "key": key,
        "person_id": None,
        "after": json.dumps({"members": members}),
        "reason": "members in SIS",
        "result": "ok",
    }


def test_membership_changes_are_found_by_person_through_the_trigger(db_url: str) -> None:
    s = StateStore(db_url)
    try:
        with s.engine.begin() as c:
            c.execute(
                t.identities.insert().values(
                    person_id="P1", username="pone", status="active", created_at="x", updated_at="x"
                )
            )
            c.execute(
                t.changelog.insert(),
                [
                    _member_row("R1", "G1", [["P1", "student"], ["P1", "teacher"], ["P2", "student"]]),
                    _member_row("R1", "G2", [["P2", "student"]]),
                    {**_member_row("R1", "P1", []), "op": "update", "kind": "person", "person_id": "P1"},
                ],
            )
        got = s.history.query(Filter(person="pone"))
        assert [(r["key"], r["op"]) for r in got] == [("G1", "add_members"), ("P1", "update")]
        with s.engine.connect() as c:
            pairs = set(c.execute(sa.select(t.changelog_members)).all())
        assert {p for p, _ in pairs} == {"P1", "P2"} and len(pairs) == 3
    finally:
        s.close()


def test_a_bulk_transaction_journals_in_memory_and_puts_the_setting_back(db_url: str) -> None:
    """The writers' bulk transaction (state/common.py): on SQLite, statement journals
    in memory while it writes (the trigger needs one for every row), the setting put back
    after it, also when it fails; the trigger lists every person a membership change names."""
    s = StateStore(db_url)
    rows = [
        _member_row("R1", "G1", [["P1", "student"], ["P1", "teacher"], ["P2", "teacher"]]),
        {**_member_row("R1", "P3", []), "op": "update", "kind": "person", "person_id": "P3"},
        _member_row("R1", "G2", [["P3", "student"]]),
    ]
    sqlite = s.engine.dialect.name == "sqlite"

    def temp_store(c: sa.Connection) -> object:
        return c.exec_driver_sql("PRAGMA temp_store").scalar() if sqlite else None

    try:
        with bulk_transaction(s.engine) as c:
            c.execute(sa.delete(t.objects).where(t.objects.c.key.in_([f"K{i}" for i in range(600)])))
            bulk_insert(c, t.changelog, rows)
            assert temp_store(c) == (2 if sqlite else None)  # 2: MEMORY
        with s.engine.connect() as c:
            assert temp_store(c) in (0, None)  # the pool's connection: back to the default
            pairs = set(c.execute(sa.select(t.changelog_members)).all())
        assert {p for p, _ in pairs} == {"P1", "P2", "P3"} and len(pairs) == 3
        with pytest.raises(sa.exc.IntegrityError), bulk_transaction(s.engine) as c:
            bulk_insert(c, t.changelog, [{**rows[0], "key": "G3"}, {**rows[0], "reason": None}])
        with s.engine.connect() as c:
            assert temp_store(c) in (0, None)
            assert c.execute(sa.select(sa.func.count()).select_from(t.changelog)).scalar() == 3
    finally:
        s.close()


def test_migration_0007_indexes_the_membership_changes_already_written(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    try:
        migrate.upgrade(engine, "0006")
        with engine.begin() as c:
            c.execute(t.changelog.insert(), [_member_row("R0", "G9", [["P7", "student"], ["P8", "student"]])])
        migrate.upgrade(engine)
        with engine.begin() as c:
            c.execute(t.changelog.insert(), [_member_row("R1", "G9", [["P7", "student"]])])
            listed = c.execute(
                sa.select(t.changelog_members.c.person_id, sa.func.count()).group_by(
                    t.changelog_members.c.person_id
                )
            ).all()
        assert dict(listed) == {"P7": 2, "P8": 1}
        from alembic import command

        with engine.begin() as c:
            command.downgrade(migrate.alembic_config(c), "0006")
            c.execute(t.changelog.insert(), [_member_row("R2", "G9", [["P7", "student"]])])  # no trigger left
        assert "changelog_members" not in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()


def test_bulk_insert_writes_every_row_of_several_slices(db_url: str) -> None:
    """bulk_insert makes and sends its rows a slice at a time: none lost at a slice's edge."""
    s = StateStore(db_url)
    n = 2 * common._SLICE + 7
    rows = [
        {"nin": f"N{i:07d}", "person_id": f"P{i}", "first_seen": "2026-12-01T00:00:00.000000+00:00"}
        for i in range(n)
    ]
    try:
        with s.engine.begin() as c:
            bulk_insert(c, t.person_nins, rows)
        with s.engine.connect() as c:
            got = c.execute(sa.select(t.person_nins.c.nin, t.person_nins.c.person_id)).all()
        assert sorted(got) == sorted((r["nin"], r["person_id"]) for r in rows)
    finally:
        s.close()


@pytest.mark.parametrize(
    ("n", "size", "lengths"),
    [(0, 3, []), (1, 3, [1]), (3, 3, [3]), (7, 3, [3, 3, 1]), (6, 2, [2, 2, 2])],
)
def test_batches_keep_every_item_in_order(n: int, size: int, lengths: list[int]) -> None:
    """state.common.batches, which the core writer and the directory write with."""
    got = list(common.batches(iter(range(n)), size))
    assert [len(b) for b in got] == lengths
    assert [x for b in got for x in b] == list(range(n))
