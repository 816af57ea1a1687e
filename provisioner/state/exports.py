"""Pending exports: what a file target recorded as applied but has not yet written out.

A file target's ``apply`` only records a change; its ``finish`` writes the files. The
state store commits a target's rows batch by batch, before ``finish``, so the writer
stores every change it records as applied here too, in the same transaction. The rows
go once ``finish`` has durably written the files. A run killed (or a disk filling up) in
between leaves them, and the next run hands them to the connector again before its own
changes: its delta file carries them. Nothing recorded is ever missing from the files.

Which pending run was in fact written (killed after its files, before their rows were
cleared) the connector tells (``FileTarget.exported``), so nothing is written twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence

import sqlalchemy as sa

from provisioner.core.plan import Change
from provisioner.core.rows import dumps
from provisioner.state import schema as t
from provisioner.state.common import bulk_insert
from provisioner.state.store import StateStore

_PER_ROW = 1000  # changes per row: few rows to insert and delete, no string of a whole batch


def _row(target: str, run_id: str, changes: Sequence[Change]) -> dict[str, str]:
    return {
        "target": target,
        "run_id": run_id,
        "changes": "[" + ",".join(dumps(c.to_json()) for c in changes) + "]",
    }


def insert(conn: sa.Connection, target: str, run_id: str, changes: Sequence[Change]) -> None:
    """Store changes recorded as applied, inside the caller's transaction.

    A row holds a JSON list of up to ``_PER_ROW`` changes: a first run records ~400,000
    changes for the file targets, and a row each cost seconds to insert and to delete. Each
    row is built just before it is inserted, so a batch's JSON is never held whole.
    """
    for i in range(0, len(changes), _PER_ROW):
        bulk_insert(conn, t.pending_exports, [_row(target, run_id, changes[i : i + _PER_ROW])])


def targets(store: StateStore) -> set[str]:
    """Targets that owe an export."""
    p = t.pending_exports.c
    with store.engine.connect() as c:
        return {r[0] for r in c.execute(sa.select(p.target).distinct())}


def claim(store: StateStore, target: str, run_id: str, exported: Callable[[str], bool]) -> list[Change]:
    """Take over what earlier runs left unexported; returns those changes, oldest first.

    Runs whose files ``exported`` finds written are done (their rows are dropped); the
    rest become this run's, so that this run's ``finish`` clears them with its own.
    """
    p = t.pending_exports.c
    with store.engine.connect() as c:
        runs = [r[0] for r in c.execute(sa.select(p.run_id).where(p.target == target).distinct())]
    if not runs:
        return []
    done = [r for r in runs if r != run_id and exported(r)]
    # Write first, read after: with workers writing other targets, a read-then-write
    # transaction could lose SQLite's write lock to them.
    with store.engine.begin() as c:
        if done:
            c.execute(t.pending_exports.delete().where(p.target == target, p.run_id.in_(done)))
        c.execute(t.pending_exports.update().where(p.target == target).values(run_id=run_id))
        found = c.execute(sa.select(p.changes).where(p.target == target).order_by(p.id)).scalars().all()
    return [Change.from_json(data) for text in found for data in json.loads(text)]


def clear(store: StateStore, target: str, run_id: str) -> None:
    """The files carrying this run's changes (and those it claimed) are durably written."""
    p = t.pending_exports.c
    with store.engine.begin() as c:
        c.execute(t.pending_exports.delete().where(p.target == target, p.run_id == run_id))
