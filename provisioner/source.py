"""Reading the school-admin database (read-only) into a SourceSnapshot.

Every query has a default for the reference schema and can be replaced in the config
(``[source.queries]``), so a real SIS is connected by configuration. Columns are
matched by name, not position, so an override may order them freely; a missing
column is a clear error naming the query. The connection is put in read-only mode
where the database supports it: the source is never written.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from provisioner.model import (
    Employment,
    Group,
    GroupMembership,
    Guardianship,
    Person,
    School,
    SourceSnapshot,
    StudentEnrollment,
)

DEFAULT_QUERIES: dict[str, str] = {
    "schools": "SELECT school_id, org_number, name, short_name, level FROM school",
    "persons": (
        "SELECT person_id, nin, given_name, middle_name, family_name, birth_date, email, mobile FROM person"
    ),
    "enrollments": (
        "SELECT enrollment_id, person_id, school_id, grade, start_date, end_date, main_school"
        " FROM student_enrollment"
    ),
    "employments": "SELECT employment_id, person_id, school_id, role, start_date, end_date FROM employment",
    "guardianships": "SELECT guardian_id, student_id FROM guardianship",
    "groups": (
        "SELECT group_id, school_id, kind, name, subject_code, grade, start_date, end_date FROM school_group"
    ),
    "memberships": "SELECT group_id, person_id, role FROM group_membership",
}


class SourceError(Exception):
    """The source cannot be read as configured (connection, query or columns)."""


def _iso(value: Any) -> str | None:
    """Dates as ISO strings, whatever the driver returns (SQLite gives text)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    text = str(value).strip()
    if not text:
        return None
    return text[:10]


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _int(value: Any) -> int | None:
    return None if value is None or value == "" else int(value)


def _bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "t", "yes", "y")
    return bool(value)


# Per query: the model type, and a converter per column (None = take as str).
_Conv = Callable[[Any], Any]
_SHAPES: dict[str, tuple[type, dict[str, _Conv]]] = {
    "schools": (School, {}),
    "persons": (Person, {"birth_date": _iso}),
    "enrollments": (
        StudentEnrollment,
        {"grade": _int, "start_date": _iso, "end_date": _iso, "main_school": _bool},
    ),
    "employments": (Employment, {"start_date": _iso, "end_date": _iso}),
    "guardianships": (Guardianship, {}),
    "groups": (Group, {"grade": _int, "start_date": _iso, "end_date": _iso}),
    "memberships": (GroupMembership, {}),
}


_DIGEST_CHUNK = 20_000  # rows per hash update (the digest depends on it: keep it fixed)


def _digest(name: str, cols: list[str], rows: list[Any]) -> str:
    """Digest of one query's rows exactly as the driver returned them (order included)."""
    h = hashlib.sha256(repr((name, cols)).encode())
    for i in range(0, len(rows), _DIGEST_CHUNK):
        # repr of a slice is one C call per chunk: ~1 s for 1.5 million rows
        h.update(repr(rows[i : i + _DIGEST_CHUNK]).encode("utf-8", "surrogatepass"))
    # base64, not hex: a hex digest can hold an 11-digit run that looks like a NIN to masking
    return base64.urlsafe_b64encode(h.digest()).rstrip(b"=").decode()


def _fetch(conn: sa.Connection, name: str, query: str) -> tuple[list[str], list[Any]]:
    """Run one query; its lowercased column names and raw driver rows."""
    if conn.dialect.paramstyle in ("format", "pyformat"):
        # The driver formats the statement (psycopg2, pymysql): a literal % (LIKE 'A%') must be doubled.
        query = query.replace("%", "%%")
    try:
        result = conn.exec_driver_sql(query)
    except sa.exc.SQLAlchemyError as exc:
        detail = getattr(exc, "orig", None) or exc
        raise SourceError(f"source query {name!r} failed: {type(exc).__name__}: {detail}") from exc
    cols = [c.lower() for c in result.keys()]  # noqa: SIM118 (a Result is not a dict)
    return cols, result.cursor.fetchall()  # raw driver rows: SQLAlchemy's Row objects cost 4x here


def _read(conn: sa.Connection, name: str, query: str) -> tuple[tuple[Any, ...], str]:
    """One query's rows as model records, and their digest."""
    model, convs = _SHAPES[name]
    fields: tuple[str, ...] = model._fields  # type: ignore[attr-defined]
    cols, rows = _fetch(conn, name, query)
    missing = [f for f in fields if f not in cols]
    if missing:
        raise SourceError(f"source query {name!r} lacks column(s) {missing}; it returned {cols}")
    digest = _digest(name, cols, rows)
    idx = [cols.index(f) for f in fields]
    conv = [convs.get(f, _str) for f in fields]
    if not rows:
        return (), digest
    # Column-wise: transpose in C, convert only columns whose values need it, rebuild.
    cols = list(zip(*rows))
    out_cols = []
    for i, c in zip(idx, conv):
        col = cols[i]
        if c is _str and _types(col) <= _STR_TYPES:
            out_cols.append(col)
        elif c is _iso and _types(col) <= _STR_TYPES and all(len(v) == 10 for v in col if v is not None):
            out_cols.append(col)  # already ISO dates as text (SQLite)
        else:
            out_cols.append(tuple(map(c, col)))
    return tuple(map(model, *out_cols)), digest


_STR_TYPES = frozenset({str, type(None)})


def _types(col: tuple[Any, ...]) -> set[type]:
    return set(map(type, col))


@contextmanager
def _read_only(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A connection in one read-only transaction; SourceError when the database is unreachable."""
    try:
        with engine.connect() as conn:
            sqlite = engine.dialect.name == "sqlite"
            if sqlite:
                conn.exec_driver_sql("PRAGMA query_only = ON")
            elif engine.dialect.name in ("postgresql", "mysql", "mariadb"):
                conn.exec_driver_sql("SET TRANSACTION READ ONLY")
            try:
                yield conn
            finally:
                conn.rollback()
                if sqlite:  # the pragma outlives the transaction: do not leave a pooled connection read-only
                    conn.exec_driver_sql("PRAGMA query_only = OFF")
    except sa.exc.OperationalError as exc:
        raise SourceError(f"cannot read the source database: {exc.orig or exc}") from exc


def read_snapshot(engine: sa.Engine, queries: Mapping[str, str] | None = None) -> SourceSnapshot:
    """Read every table of the source in one read-only transaction."""
    q = {**DEFAULT_QUERIES, **(queries or {})}
    data: dict[str, Any] = {}
    digests: dict[str, str] = {}
    with _read_only(engine) as conn:
        for name in _SHAPES:
            data[name], digests[name] = _read(conn, name, q[name])
    return SourceSnapshot(**data, digests=digests)


def source_unchanged(
    engine: sa.Engine, queries: Mapping[str, str] | None, digests: Mapping[str, str]
) -> bool:
    """True when every query returns exactly the rows these digests were made from.

    Reads and hashes without converting anything; stops at the first query that differs.
    """
    q = {**DEFAULT_QUERIES, **(queries or {})}
    if set(digests) != set(_SHAPES):
        return False
    with _read_only(engine) as conn:
        for name in _SHAPES:
            cols, rows = _fetch(conn, name, q[name])
            if _digest(name, cols, rows) != digests[name]:
                return False
            del rows
    return True


def source_engine(url: str) -> sa.Engine:
    """An engine for the source database (no pooling: one read per run)."""
    return sa.create_engine(url, poolclass=sa.pool.NullPool)
