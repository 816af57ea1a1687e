"""The export journal: a file target's accepted changes, from before its files until they are recorded.

An exporter (connectors.base.Exporter) writes its files first; only then are its changes
recorded as applied. A run killed between the two would leave files carrying changes the
store does not know, and the next run would plan (and write) them a second time. So the
executor journals the accepted changes (with the anchors the exporter gave them) in one
transaction before the files are written, and records them afterwards in batches, each
batch deleting the journal rows it covered in its own transaction: the journal holds
exactly what is durably decided but not yet recorded.

The next run, under the run lock and before it plans (provisioner/run/recovery.py),
settles what a killed run left: when the exporter finds that run's delta file in place,
the files carry the journaled changes and they are recorded now (``replay``); otherwise
the files were never completed, nothing was recorded, and the journal goes (``drop``):
the next plan has those changes again. Nothing the store records as applied is missing
from the files, and nothing is written to them twice.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence

import sqlalchemy as sa

from provisioner.core.plan import Change
from provisioner.core.rows import dumps
from provisioner.state import schema as t
from provisioner.state.common import bulk_insert
from provisioner.state.store import StateStore
from provisioner.state.writer import TargetWriter

_PER_ROW = 1000  # changes per row: few rows to insert and delete, no string of a whole batch

Accepted = tuple[Change, str | None, str | None]  # a change, the anchor and the note it was accepted with


def _row(target: str, run_id: str, entries: Sequence[Accepted]) -> dict[str, str]:
    text = ",".join(dumps({"change": c.to_json(), "anchor": a, "note": n}) for c, a, n in entries)
    return {"target": target, "run_id": run_id, "changes": "[" + text + "]"}


def _chunks(entries: Sequence[Accepted]) -> Iterator[Sequence[Accepted]]:
    for i in range(0, len(entries), _PER_ROW):
        yield entries[i : i + _PER_ROW]


def journal(store: StateStore, target: str, run_id: str, entries: Sequence[Accepted]) -> None:
    """Journal a run's accepted changes for a target, in one transaction, before its files are written.

    A row holds a JSON list of up to ``_PER_ROW`` changes: a first run accepts ~400,000
    changes for the file targets. Each row is built just before it is inserted, so the
    JSON of the whole run is never held at once.
    """
    with store.engine.begin() as conn:
        for chunk in _chunks(entries):
            bulk_insert(conn, t.pending_exports, [_row(target, run_id, chunk)])


def pending(store: StateStore) -> list[tuple[str, str]]:
    """(target, run id) of every journal a killed run left, oldest first."""
    p = t.pending_exports.c
    q = sa.select(p.target, p.run_id, sa.func.min(p.id)).group_by(p.target, p.run_id)
    with store.engine.connect() as c:
        return [(target, run) for target, run, _ in sorted(c.execute(q).all(), key=lambda r: r[2])]


def drop(store: StateStore, target: str, run_id: str) -> None:
    """Forget a journal whose files were never completed: its changes stay unrecorded (planned again)."""
    p = t.pending_exports.c
    with store.engine.begin() as conn:
        conn.execute(t.pending_exports.delete().where(p.target == target, p.run_id == run_id))


def record(writer: TargetWriter, entries: Sequence[Accepted], batch: int) -> None:
    """Record journaled changes as applied: about ``batch`` a transaction, each clearing its journal rows.

    The writer flushes only at journal-row boundaries, so a kill between two batches leaves
    exactly the rows not yet recorded. Call it only once the files carrying them are durable.
    """
    rows = 0
    since = 0
    for chunk in _chunks(entries):
        for change, anchor, note in chunk:
            writer.ok(change, anchor, note)
        rows += 1
        since += len(chunk)
        if since >= batch:
            _flush(writer, rows)
            rows = since = 0
    if rows:
        _flush(writer, rows)


def _flush(writer: TargetWriter, rows: int) -> None:
    """Flush the writer; the same transaction deletes the first ``rows`` journal rows of its run."""
    p = t.pending_exports.c
    first = sa.select(p.id).where(p.target == writer.target, p.run_id == writer.run_id).order_by(p.id)

    def settle(conn: sa.Connection) -> None:
        ids = conn.execute(first.limit(rows)).scalars().all()
        conn.execute(t.pending_exports.delete().where(p.id.in_(ids)))

    writer.settle = settle
    try:
        writer.flush()
    finally:
        writer.settle = None


def replay(store: StateStore, target: str, run_id: str, soft_delete: bool, batch: int) -> int:
    """Record what a killed run journaled and durably exported; returns how many changes.

    Rows an older version wrote (plain changes, recorded as applied before their files)
    are only deleted: the store holds those changes already, and full files carry them.
    """
    p = t.pending_exports.c
    mine = (p.target == target, p.run_id == run_id)
    with store.engine.connect() as c:
        rows = [
            (i, json.loads(text))
            for i, text in c.execute(sa.select(p.id, p.changes).where(*mine).order_by(p.id))
        ]
    old = [i for i, data in rows if data and "change" not in data[0]]
    if old:
        with store.engine.begin() as conn:
            conn.execute(t.pending_exports.delete().where(p.id.in_(old)))
    entries = [
        (Change.from_json(e["change"]), e.get("anchor"), e.get("note"))
        for i, data in rows
        if i not in old
        for e in data
    ]
    run = store.runs.get(run_id)
    writer = TargetWriter(store, target, run_id, (run or {}).get("as_of") or "", soft_delete)
    writer.preload(c for c, _, _ in entries)
    record(writer, entries, batch)
    writer.finish()
    return len(entries)
