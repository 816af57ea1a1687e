"""Reading the school-admin database (read-only) into a SourceSnapshot.

Every query has a default for the reference schema and can be replaced in the config
(``[source.queries]``), so a real SIS is connected by configuration. Columns are
matched by name, not position, so an override may order them freely; a missing
column is a clear error naming the query. The connection is put in read-only mode
where the database supports it: the source is never written.
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import re
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from itertools import compress
from operator import itemgetter, not_
from pathlib import Path
from typing import Any, cast

import sqlalchemy as sa

from provisioner.config import Config, ConfigError
from provisioner.core.fetched import Fetched
from provisioner.core.model import (
    Employment,
    Group,
    GroupMembership,
    Guardianship,
    Person,
    School,
    SourceSnapshot,
    StudentEnrollment,
)
from provisioner.core.rows import shared
from provisioner.core.valuebytes import bulk_bytes
from provisioner.source_config import SqlSourceConfig
from sources.base import FACT_TABLES, Source, SourceError, digest_text

__all__ = [
    "DEFAULT_QUERIES",
    "SourceError",
    "SqlSource",
    "read_snapshot",
    "read_unless",
    "source_engine",
    "source_unchanged",
]

DEFAULT_QUERIES: dict[str, str] = {
    "schools": "SELECT school_id, org_number, name, short_name, level FROM school",
    "persons": (
        "SELECT person_id, nin, given_name, middle_name, family_name, birth_date, email, mobile FROM person"
    ),
    "enrollments": (
        "SELECT enrollment_id, person_id, school_id, grade, start_date, end_date, main_school,"
        " programme, programme_area FROM student_enrollment"
    ),
    "employments": "SELECT employment_id, person_id, school_id, role, start_date, end_date FROM employment",
    "guardianships": "SELECT guardian_id, student_id FROM guardianship",
    "groups": (
        "SELECT group_id, school_id, kind, name, subject_code, grade, start_date, end_date FROM school_group"
    ),
    "memberships": "SELECT group_id, person_id, role FROM group_membership",
}


# ISO 8601 calendar date, optionally with a time of day (some drivers and views give
# "2025-08-15 00:00:00"): the date part is the value. Anything else is kept as read.
_ISO_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    r"(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?(?:Z|[+-][0-9]{2}:?[0-9]{2})?)?"
)
_INT_TEXT = re.compile(r"[+-]?[0-9]+")


def _iso(value: Any) -> Any:
    """Dates as ISO strings, whatever the driver returns (SQLite gives text).

    Never raises: a value that is no ISO date is kept as text, and derivation reports
    it as a data error naming the record and column (it is never cut to fit).
    """
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    text = _str(value).strip()
    if not text:
        return None
    return text[:10] if _ISO_DATE_TIME.fullmatch(text) else text


def _str(value: Any) -> Any:
    if value is None or type(value) is str:
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        # A BLOB where text belongs: undecodable bytes survive as lone surrogates, which
        # validation reports as invalid UTF-8 for that record and column.
        return bytes(value).decode("utf-8", "surrogateescape")
    return str(value)


def _int(value: Any) -> Any:
    """Integers; a value that is none (grade "6A") is kept as read for validation to report."""
    if value is None or value == "":
        return None
    if type(value) is int:
        return value
    if isinstance(value, str) and _INT_TEXT.fullmatch(value.strip()):
        return int(value)
    if isinstance(value, float | decimal.Decimal):
        try:
            if int(value) == value:
                return int(value)  # 6.0 or Decimal("6") from a NUMERIC column
        except (ValueError, OverflowError, ArithmeticError):
            pass  # NaN or infinity: not a number of anything
    return _str(value)


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
    # The same bytes for the same values (valuebytes.bulk_bytes). Every run pays it, a quiet
    # run of a daemon polling each minute too: at Oslo size (1.5 million rows) ~0.14 s,
    # marshal took ~0.25 s and repr ~0.7 s.
    for i in range(0, len(rows), _DIGEST_CHUNK):
        h.update(bulk_bytes(rows[i : i + _DIGEST_CHUNK]))
    return digest_text(h)


def _fetch(conn: sa.Connection, name: str, query: str) -> tuple[list[str], list[Any]]:
    """Run one query; its lowercased column names and raw driver rows."""
    if conn.dialect.paramstyle in ("format", "pyformat"):
        # The driver formats the statement (psycopg2, pymysql): a literal % (LIKE 'A%') must be doubled.
        query = query.replace("%", "%%")
    try:
        return _run(conn, name, query)
    except sqlite3.OperationalError:
        return _run_lenient(conn, name, query)


def _run_lenient(conn: sa.Connection, name: str, query: str) -> tuple[list[str], list[Any]]:
    """SQLite again, undecodable text ("Could not decode to UTF-8 column ...") kept as lone surrogates.

    Validation then reports the rows that hold it and every other row is read as usual.
    Clean data never takes this path; a query that fails for another reason fails again here.
    """
    raw = conn.connection.dbapi_connection
    assert isinstance(raw, sqlite3.Connection)
    raw.text_factory = _lenient_text
    try:
        return _run(conn, name, query)
    except sqlite3.Error as exc:
        raise SourceError(f"source query {name!r} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        raw.text_factory = str


def _lenient_text(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def _run(conn: sa.Connection, name: str, query: str) -> tuple[list[str], list[Any]]:
    try:
        result = conn.exec_driver_sql(query)
    except sa.exc.OperationalError as exc:
        if isinstance(exc.orig, sqlite3.OperationalError):
            raise exc.orig from exc  # perhaps undecodable text in the first row: the caller retries
        raise SourceError(f"source query {name!r} failed: {type(exc).__name__}: {exc.orig}") from exc
    except sa.exc.SQLAlchemyError as exc:
        detail = getattr(exc, "orig", None) or exc
        raise SourceError(f"source query {name!r} failed: {type(exc).__name__}: {detail}") from exc
    cols = [c.lower() for c in result.keys()]  # noqa: SIM118 (a Result is not a dict)
    try:
        # Raw driver rows (a list): SQLAlchemy's Row objects cost 4x here.
        return cols, cast(list[Any], result.cursor.fetchall())
    except UnicodeDecodeError as exc:  # a server-side encoding (SQL_ASCII) that holds other bytes
        raise SourceError(f"source query {name!r} returned text the driver cannot decode: {exc}") from exc


def _convert(
    name: str, cols: list[str], rows: list[Any], digest: str, pool: dict[str, str] | None = None
) -> tuple[tuple[Any, ...], str]:
    """One query's driver rows as model records (SourceError for a missing column), with their digest.

    ``pool``: text columns of ``_SHARED`` hold one string object per value (rows.shared).
    """
    model, convs = _SHAPES[name]
    present = _columns(name, cols)
    idx = [cols.index(f) for f in present]
    conv = [convs.get(f, _str) for f in present]
    if not rows:
        return (), digest
    # Column-wise: transpose in C, convert only columns whose values need it, rebuild.
    columns = list(zip(*rows))
    out_cols: list[tuple[Any, ...]] = []
    for field, i, c in zip(present, idx, conv):
        col = columns[i]
        types = _types(col)
        if types <= _AS_READ.get(c, frozenset()):
            pass  # the driver's values are already what the model holds
        elif c is _iso and types <= _STR_TYPES and all(len(v) == 10 for v in col if v is not None):
            pass  # already ISO dates as text (SQLite)
        else:
            col = tuple(map(c, col))
            types = _types(col)
        if pool is not None and field in _SHARED and types <= _STR_TYPES:
            col = shared(col, pool)
        out_cols.append(col)
    # An optional column the query does not return (an override written before it existed)
    # takes the model's default.
    return tuple(map(model, *_with_defaults(model, present, out_cols))), digest


# Columns whose values repeat (ids other tables refer to, codes, days): one string per value
# (provisioner.core.rows.shared).
# Names, NINs and contact details are nearly all distinct: sharing them cost more than it saved.
_SHARED = frozenset(
    {
        "person_id",
        "guardian_id",
        "student_id",
        "school_id",
        "group_id",
        "role",
        "kind",
        "subject_code",
        "start_date",
        "end_date",
        "programme",
        "programme_area",
    }
)


def _columns(name: str, cols: list[str]) -> list[str]:
    """The model fields one query returns; SourceError naming those it lacks."""
    fields: tuple[str, ...] = _SHAPES[name][0]._fields  # type: ignore[attr-defined]
    missing = [f for f in fields if f not in cols and f not in _OPTIONAL]
    if missing:
        raise SourceError(f"source query {name!r} lacks column(s) {missing}; it returned {cols}")
    return [f for f in fields if f in cols]


# Columns a query may leave out: the model's default stands in (programme and programme area
# came with the upper-secondary Grep data; older query overrides do not return them).
_OPTIONAL = frozenset({"programme", "programme_area"})


def _with_defaults(model: Any, present: list[str], columns: list[tuple[Any, ...]]) -> list[Any]:
    if len(present) == len(model._fields):
        return columns
    n = len(columns[0])
    by_name = dict(zip(present, columns))
    return [by_name[f] if f in by_name else (model._field_defaults[f],) * n for f in model._fields]


_STR_TYPES: frozenset[type] = frozenset({str, type(None)})
_INT_TYPES: frozenset[type] = frozenset({int, type(None)})
_AS_READ: dict[_Conv, frozenset[type]] = {_str: _STR_TYPES, _int: _INT_TYPES}


def _plain(rows: list[Any]) -> bool:
    """Whether a driver's rows are plain tuples (sqlite3, psycopg2 and PyMySQL give them)."""
    return set(map(type, rows)) <= {tuple}


def _types(col: Iterable[Any]) -> set[type]:
    return set(map(type, col))


def _key_conversion(name: str, column: str, keys: Iterable[Any]) -> _Conv | None:
    """The conversion that makes a key column's driver values what the records hold; None
    when they are that already (text ids as text: nearly always)."""
    conv = _SHAPES[name][1].get(column, _str)
    return None if _types(keys) <= _AS_READ.get(conv, frozenset()) else conv


def _conversion(name: str, column: str) -> str:
    """The name of the conversion that makes a key column's driver values what the records hold."""
    return _SHAPES[name][1].get(column, _str).__name__


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
    return fetch(engine, queries).snapshot()


def fetch(engine: sa.Engine, queries: Mapping[str, str] | None = None) -> Fetched:
    """Every table's rows as the driver gives them, read in one read-only transaction, with
    their digests; made records of as they are asked for (provisioner.core.fetched)."""
    q = {**DEFAULT_QUERIES, **(queries or {})}
    fetched: dict[str, tuple[list[str], list[Any], str]] = {}
    with _read_only(engine) as conn:
        for name in _SHAPES:
            cols, rows = _fetch(conn, name, q[name])
            fetched[name] = (cols, rows, _digest(name, cols, rows))
    return _Rows(fetched)


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


def read_unless(
    engine: sa.Engine, queries: Mapping[str, str] | None, digests: Mapping[str, str]
) -> Fetched | None:
    """None when every query returns exactly the rows these digests were made from; else the read.

    One read either way: a run whose certificate no longer holds keeps the rows it
    fetched to compare, and converts them only as they are asked for (a patch needs a
    few hundred of them, provisioner.core.fetched).
    """
    read = fetch(engine, queries)
    if set(digests) == set(_SHAPES) and all(d == digests[name] for name, d in read.digests.items()):
        return None
    return read


class _Rows(Fetched):
    """The driver rows of one read, each table converted to records when first asked for."""

    def __init__(self, fetched: dict[str, tuple[list[str], list[Any], str]]) -> None:
        self._raw = fetched
        self._done: dict[str, tuple[Any, ...]] = {}
        self._key_columns: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._converted: set[tuple[str, str]] = set()  # key columns the driver gave in another type
        self._asked: set[tuple[str, str]] = set()  # key columns read once already (not kept)
        self._as_is: set[tuple[str, str]] = set()  # key columns found to be what the records hold
        self._pool: dict[str, str] = {}  # one string object per text value, across tables
        self._spent = False  # snapshot() made: the rows as read went with it
        self.digests = {name: d for name, (_, _, d) in fetched.items()}

    def table(self, name: str) -> tuple[Any, ...]:
        if name not in self._done:
            cols, rows, d = self._raw[name]
            self._done[name] = _convert(name, cols, rows, d, self._pool)[0]
        return self._done[name]

    def where(self, name: str, column: str, values: Collection[object]) -> tuple[Any, ...]:
        if name in self._done:
            return tuple(r for r in self._done[name] if getattr(r, column) in values)
        cols, rows, d = self._raw[name]
        picked = list(compress(rows, map(values.__contains__, self._key_stream(name, column))))
        return _convert(name, cols, picked, d)[0]

    def _key_stream(self, name: str, column: str) -> Iterable[Any]:
        """One column of a table's rows as the records hold it, kept once asked for twice.

        A patch asks for most columns once (a million membership rows, by person and by
        group): those are read straight off the rows, with no tuple of a million keys made
        and freed. A column asked for again (the persons' ids, a guardian's students) is kept.
        """
        if (name, column) in self._key_columns or (name, column) in self._asked:
            return self._keys(name, column)
        self._asked.add((name, column))
        if not self._as_read(name, column):
            return self._keys(name, column)  # another type than the record's: converted, and kept
        pick, rows = self._column(name, column)
        return map(pick, rows)

    def _column(self, name: str, column: str) -> tuple[itemgetter[Any], list[Any]]:
        """What picks one column out of a table's driver rows, and those rows."""
        cols, rows, _ = self._raw[name]
        _columns(name, cols)  # a missing column is the same error as converting the table
        return itemgetter(cols.index(column)), rows

    def _keys(self, name: str, column: str) -> tuple[Any, ...]:
        """One column of a table's rows as the records hold it (kept: a patch asks more than once)."""
        if (name, column) not in self._key_columns:
            pick, rows = self._column(name, column)
            keys = tuple(map(pick, rows))
            conv = None if (name, column) in self._as_is else _key_conversion(name, column, keys)
            if conv is None:
                self._as_is.add((name, column))
            else:
                keys = tuple(map(conv, keys))  # as the record would hold it (an integer id as text)
                self._converted.add((name, column))
            self._key_columns[name, column] = keys
        return self._key_columns[name, column]

    def person_rows(self) -> Sequence[tuple[Any, ...]]:
        # Always the rows as read, whether or not the table was made records of too: the
        # fingerprints of one run and the next must be taken of the same values.
        cols, rows, _ = self._raw["persons"]
        fields = _columns("persons", cols)
        ids = self._keys("persons", "person_id")
        if cols == fields and ("persons", "person_id") not in self._converted and _plain(rows):
            return rows  # the default query: the driver's rows are what is asked for already
        rest = itemgetter(*(cols.index(f) for f in fields[1:]))
        return [(i, *rest(r)) for i, r in zip(ids, rows)]

    def membership_rows(self) -> Sequence[tuple[Any, ...]]:
        cols, rows, _ = self._raw["memberships"]
        fields = _columns("memberships", cols)
        if cols == fields and _plain(rows) and self._as_read("memberships", "group_id", "person_id"):
            return rows  # the default query: the driver's rows are what is asked for already
        groups, persons = self._keys("memberships", "group_id"), self._keys("memberships", "person_id")
        role = itemgetter(cols.index("role"))
        return [(g, p, role(r)) for g, p, r in zip(groups, persons, rows)]

    def count(self, name: str) -> int:
        return len(self._raw[name][1])

    def digest_without(self, name: str, columns: Sequence[str], persons: Collection[str]) -> str | None:
        cols, rows, _ = self._raw[name]
        if not columns:
            return None
        streams = [self._key_stream(name, c) for c in columns]
        named = map(persons.__contains__, streams[0])
        for more in streams[1:]:
            named = map(bool.__or__, named, map(persons.__contains__, more))
        kept = list(compress(rows, map(not_, named)))
        # The same container as read: a chunk's bytes tell a tuple (PyMySQL's) from a list.
        return _digest(name, cols, tuple(kept) if isinstance(rows, tuple) else kept)

    def _as_read(self, name: str, *columns: str) -> bool:
        """Whether the driver gives these key columns as the records hold them (text ids as text).

        Each column is checked once (a membership patch asks for the memberships' ids as
        read, then streams them by person and by group: a million values each time).
        """
        for column in columns:
            if (name, column) in self._as_is:
                continue
            pick, rows = self._column(name, column)
            if _key_conversion(name, column, map(pick, rows)) is not None:
                return False
            self._as_is.add((name, column))
        return True

    def checked(self) -> dict[str, Any]:
        """The key columns found to need no conversion, by table: [the table's digest, {column:
        the conversion they need none of}] (a table's digest is of its rows' values and
        types: another read with that digest gives the same types)."""
        out: dict[str, Any] = {}
        for name, column in sorted(self._as_is):
            out.setdefault(name, [self.digests[name], {}])[1][column] = _conversion(name, column)
        return out

    def assume_checked(self, known: Mapping[str, Any]) -> None:
        for name, entry in known.items():
            if not (isinstance(entry, list) and len(entry) == 2 and isinstance(entry[1], dict)):
                continue  # not what checked() writes: checked again
            digest, columns = entry
            if name not in _SHAPES or self.digests.get(name) != digest:
                continue
            # Only while the conversion is the same (the code may have changed since).
            self._as_is.update((name, c) for c, conv in columns.items() if conv == _conversion(name, c))

    @property
    def spent(self) -> bool:
        return self._spent

    def snapshot(self) -> SourceSnapshot:
        self._spent = True
        data: dict[str, Any] = {}
        for name in _SHAPES:  # each table's driver rows go as soon as converted
            data[name] = self.table(name)
            del self._raw[name]
        self._done.clear()
        self._key_columns.clear()  # the snapshot holds the records now: nothing here keeps them alive
        self._pool = {}
        return SourceSnapshot(**data, digests=self.digests)


def source_engine(url: str) -> sa.Engine:
    """An engine for the source database (no pooling: one read per run)."""
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


class SqlSource(Source):
    """The SQL source plug-in: the configured database, read with the (overridable) queries."""

    kind = "sql"

    def __init__(self, cfg: Config) -> None:
        scfg = cfg.source
        assert isinstance(scfg, SqlSourceConfig)
        self.queries = {**DEFAULT_QUERIES, **scfg.queries}
        self.url = _db_url(cfg, scfg.url)
        self._engine: sa.Engine | None = None

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = source_engine(self.url)
        return self._engine

    def read(self) -> SourceSnapshot:
        return read_snapshot(self.engine, self.queries)

    def fetch(self) -> Fetched:
        return fetch(self.engine, self.queries)

    def unchanged(self, digests: Mapping[str, str]) -> bool:
        return source_unchanged(self.engine, self.queries, digests)

    def read_unless(self, digests: Mapping[str, str]) -> Fetched | None:
        return read_unless(self.engine, self.queries, digests)

    def describe(self) -> str:
        return f"sql {sa.engine.make_url(self.url).render_as_string(hide_password=True)}"

    def facts(self, sis_ids: set[str]) -> dict[str, list[dict[str, Any]]]:
        """Only the rows about these persons, filtered in the database."""
        out: dict[str, list[dict[str, Any]]] = {}
        with _read_only(self.engine) as c:
            for label, (table, col) in FACT_TABLES.items():
                q = sa.text(f"SELECT * FROM ({self.queries[table]}) AS q WHERE q.{col} IN :ids").bindparams(
                    sa.bindparam("ids", expanding=True)
                )
                out[label] = [
                    {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()}
                    for r in c.execute(q, {"ids": sorted(sis_ids)}).mappings()
                ]
        return out

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


def _db_url(cfg: Config, url: str) -> str:
    """The source's SQLAlchemy URL; ConfigError when it names a SQLite file that does not exist.

    SQLite would create an empty file and fail later with "no such table": the source is
    only read, so a missing file is a configuration error.
    """
    url = cfg.sqlalchemy_url(url)
    parsed = sa.engine.make_url(url)
    db = parsed.database or ":memory:"
    if parsed.get_backend_name() == "sqlite" and db != ":memory:" and not Path(db).is_file():
        raise ConfigError(f"source.url: the SQLite file {db} does not exist")
    return url
