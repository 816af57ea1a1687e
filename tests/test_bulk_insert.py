"""bulk_insert (provisioner/state/common.py): rows as given, in order, whatever the batching.

On SQLite it puts many rows in one INSERT, within the connection's limit on bound
values, and the rest a row at a time; the changelog's trigger must still fill
changelog_members for every membership change, and ids must follow the rows' order.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import pytest
import sqlalchemy as sa

from provisioner.state import common
from provisioner.state import schema as t
from provisioner.state.common import bulk_insert, bulk_transaction
from provisioner.state.store import StateStore


def _rows(n: int) -> list[dict[str, Any]]:
    """Changelog rows; every third a membership change naming two persons (one twice)."""
    out = []
    for i in range(n):
        member = i % 3 == 0
        out.append(
            {
                "run_id": "R1",
                "at": f"2026-12-01T10:00:00.{i:06d}+00:00",
                "target": "feide",
                "op": "add_members" if member else "create",
                "kind": "group" if member else "person",
                "key": f"K{i:05d}",
                "person_id": None if member else f"P{i}",
                "username": None if member else f"u{i}",
                "before": None,
                "after": json.dumps({"members": [[f"P{i}", "student"], [f"Q{i}", ""], [f"P{i}", "x"]]})
                if member
                else json.dumps({"cn": f'Å, "{i}" ; = \\'}),
                "reason": f"reason {i}",
                "result": "ok",
                "error": None,
            }
        )
    return out


_LOG = "SELECT key, op, person_id, after FROM changelog ORDER BY id"
_MEMBERS = "SELECT m.person_id, c.key FROM changelog_members m JOIN changelog c ON c.id = m.changelog_id"


def _read(store: StateStore) -> tuple[list[tuple[Any, ...]], set[tuple[str, str]]]:
    with store.engine.connect() as c:
        log = [tuple(r) for r in c.execute(sa.text(_LOG))]
        return log, {(p, k) for p, k in c.execute(sa.text(_MEMBERS))}


@pytest.mark.parametrize(
    "n",
    [1, common._PER_STATEMENT - 1, common._PER_STATEMENT, common._PER_STATEMENT + 1, common._SLICE + 7],
)
def test_rows_go_in_as_given_and_membership_changes_are_indexed(store: StateStore, n: int) -> None:
    rows = _rows(n)
    with bulk_transaction(store.engine) as conn:
        bulk_insert(conn, t.changelog, rows)
    log, members = _read(store)
    assert log == [(r["key"], r["op"], r["person_id"], r["after"]) for r in rows]  # in order, values kept
    want = {
        (p, r["key"]) for r in rows if r["op"] == "add_members" for p, _ in json.loads(r["after"])["members"]
    }
    assert members == want


def test_a_lower_limit_on_bound_values_makes_smaller_statements(tmp_path: Any) -> None:
    """SQLite may be built with a lower limit than 32,766 (999 before 3.32): the rows still go in."""
    store = StateStore(f"sqlite:///{tmp_path / 'bas.db'}")
    rows = _rows(50)
    with bulk_transaction(store.engine) as conn:
        raw = conn.connection.dbapi_connection
        assert isinstance(raw, sqlite3.Connection)
        before = raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 40)  # three rows of 13 columns
        try:
            assert common._per_statement(conn, 13) == 3
            bulk_insert(conn, t.changelog, rows)
        finally:
            raw.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, before)
    log, members = _read(store)
    assert [k for k, *_ in log] == [r["key"] for r in rows]
    assert len(members) == 2 * len([r for r in rows if r["op"] == "add_members"])
    store.close()
