"""What every repository of the state store shares: timestamps and bulk inserts.

Timestamps are ISO text in UTC with microseconds, so they compare (and sort) as text.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import chain
from operator import itemgetter
from typing import Any, TypeVar

import sqlalchemy as sa

CHUNK = 500  # keys per IN (...) clause


def population_key(target: str) -> str:
    """The meta key of a target's counted memberships (provisioner.state.safety_reads), which
    every write of the target's objects deletes (provisioner.state.writer)."""
    return "member_population:" + target


_SLICE = 10_000  # rows bulk_insert makes at a time
_PER_STATEMENT = 200  # rows per INSERT on SQLite (bulk_insert)

T = TypeVar("T")

# The last whole second, formatted (now_iso runs once per change); one tuple, replaced
# whole, so a thread never pairs one second's text with another's number.
_second: tuple[int, str] = (-1, "")


def iso_ago(hours: float) -> str:
    """The time this many hours ago, in now_iso's format (they compare as text)."""
    then = dt.datetime.now(dt.UTC) - dt.timedelta(hours=hours)
    return then.strftime("%Y-%m-%dT%H:%M:%S.%f") + "+00:00"


def now_iso() -> str:
    """UTC timestamp in ISO format (microseconds: runs in one second still sort by time)."""
    global _second
    sec, us = divmod(time.time_ns() // 1000, 1_000_000)
    known = _second
    if known[0] != sec:
        known = _second = (sec, dt.datetime.fromtimestamp(sec, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"))
    return f"{known[1]}.{us:06d}+00:00"


def bulk_insert(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """Insert rows straight through the driver: SQLAlchemy's per-row work costs more than the insert.

    On SQLite, ``_PER_STATEMENT`` rows go in one INSERT (a VALUES list): SQLite gives each
    statement on the changelog, whose trigger fills changelog_members, a statement journal
    that copies every page the statement changes, so a statement per row (executemany)
    copied the table's and its indexes' pages for every row. A first run's 272,000
    itslearning creates: 3.9 s a row at a time, 3.0 s by 200 (none of their rows wakes the
    trigger). Other databases, and the rows left over, take executemany.
    """
    if not rows:
        return
    cols = [c.name for c in table.columns if c.name in rows[0]]
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    quote = conn.dialect.identifier_preparer.quote
    head = f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in cols)}) VALUES "
    one = f"({', '.join([mark] * len(cols))})"
    # itemgetter makes each row's tuple in C: a first run inserts about two million rows,
    # made a slice at a time, so a quarter of a million rows are not held twice.
    values = itemgetter(*cols) if len(cols) > 1 else (lambda r: (r[cols[0]],))
    per = _per_statement(conn, len(cols))
    many = head + ", ".join([one] * per) if per > 1 else ""
    for i in range(0, len(rows), _SLICE):
        part = rows[i : i + _SLICE]
        whole = len(part) - len(part) % per if per > 1 else 0
        for j in range(0, whole, per):
            conn.exec_driver_sql(many, tuple(chain.from_iterable(map(values, part[j : j + per]))))
        if whole < len(part):
            conn.exec_driver_sql(head + one, [values(r) for r in part[whole:]])


def _per_statement(conn: sa.Connection, columns: int) -> int:
    """Rows per INSERT: up to _PER_STATEMENT on SQLite, within its limit on bound values; else 1."""
    if conn.dialect.name != "sqlite":
        return 1
    raw = conn.connection.dbapi_connection
    limit = raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) if isinstance(raw, sqlite3.Connection) else 999
    return max(1, min(_PER_STATEMENT, limit // columns))


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """Lists of up to ``size`` items, in order: rows made and written a batch at a time."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


@contextmanager
def bulk_transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction of many multi-row writes; on SQLite with statement journals in memory.

    SQLite gives each statement that writes several rows inside a larger transaction (an
    INSERT of a VALUES list, a DELETE of a list of keys) a statement journal, a temp file
    by default, holding the old image of every page the statement changes, so that the
    statement alone can be undone. That cost more than the writes: a first run's ~650,000
    changelog rows (whose table had a trigger and six indexes then) took 25 s, 15 s with the
    journals in memory; the web directory's first ~1.5 million rows wrote 2.7 GB, 0.7 GB
    with them in memory. A journal holds one statement's pages (a few hundred rows), so
    memory stays small. Only here: kept in memory everywhere, SQLite would also sort in
    memory. SQLite changes the setting only outside a transaction, so it is set before
    and put back after.
    """
    with engine.connect() as conn:
        if conn.dialect.name != "sqlite":
            with conn.begin():
                yield conn
            return
        conn.exec_driver_sql("PRAGMA temp_store = MEMORY")  # no DML yet: the driver has begun nothing
        conn.commit()
        try:
            with conn.begin():
                yield conn
        finally:
            try:
                conn.exec_driver_sql("PRAGMA temp_store = DEFAULT")
                conn.commit()
            except sa.exc.DBAPIError:
                conn.invalidate()  # never back to the pool with the setting changed


def contains(text: str) -> str:
    """A LIKE pattern matching ``text`` anywhere, its % _ and \\ taken literally (use escape="\\")."""
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
