"""The state store: one SQLAlchemy engine and the repositories that read and write it.

Each repository owns one part of the schema: ``runs`` (run records, the run lock),
``identities`` (the historic base), ``objects`` (target objects), ``history`` (changelog
reads), ``meta`` (key values), ``certificates`` (the plan certificate), ``versions`` (the state cookie),
``daemons`` (heartbeats), ``local`` (local persons, locks, their audit) and ``directory``
(the web console's view of schools, groups and data errors). Planning
reads everything it needs up front, so the differ does no I/O; apply writes through
provisioner/state/writer.py, one batch per transaction.
"""

from __future__ import annotations

import os
from typing import Any

import sqlalchemy as sa

from provisioner.config import check_state_database
from provisioner.state import schema as t
from provisioner.state.certificates import Certificates
from provisioner.state.directory import Directory
from provisioner.state.history import History
from provisioner.state.identities import Identities
from provisioner.state.local import LocalRecords
from provisioner.state.meta import Daemons, Meta, Versions
from provisioner.state.migrate import ensure_current
from provisioner.state.objects import Objects
from provisioner.state.runs import Runs


class StateStore:
    """The state store behind one SQLAlchemy URL."""

    def __init__(self, url: str, *, check: bool = True) -> None:
        """Open the store; ``check=False`` skips the schema check (a worker of a checked run)."""
        self.url = url
        # The config refuses such a URL with its key's name; this stops a program that
        # opens a store itself (a script, a test) before it writes the first large value.
        check_state_database(sa.engine.make_url(url).get_backend_name())
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30}
            _private_sqlite_file(url)
        self.engine = sa.create_engine(url, **kwargs)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        self.versions = Versions(self.engine)
        self.meta = Meta(self.engine)
        self.certificates = Certificates(self.engine)
        self.daemons = Daemons(self.engine)
        self.runs = Runs(self.engine)
        self.objects = Objects(self.engine)
        self.identities = Identities(self.engine, self.versions)
        self.history = History(self.engine, self.identities)
        self.local = LocalRecords(self.engine)
        self.directory = Directory(self.engine)
        if not check:
            return
        # An empty database is created at the newest revision; an older one is refused
        # (SchemaError: "run bas db upgrade") rather than half-working.
        ensure_current(self.engine)
        with self.engine.begin() as c:
            if c.execute(sa.select(t.meta.c.value).where(t.meta.c.key == "schema_version")).first() is None:
                c.execute(t.meta.insert().values(key="schema_version", value=t.SCHEMA_VERSION))

    def close(self) -> None:
        """Release connections."""
        self.engine.dispose()


def _private_sqlite_file(url: str) -> None:
    """Create the SQLite file owner-only (0600) whatever the umask, or narrow an existing one.

    The store holds NINs and names. SQLite gives its -wal and -shm files the mode of the
    database file, so they are private too.
    """
    path = sa.engine.make_url(url).database
    if not path or path == ":memory:" or path.startswith("file:"):
        return
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return  # no such folder, or not ours: connecting reports it
    try:
        if os.fstat(fd).st_mode & 0o077:
            os.fchmod(fd, 0o600)
    except PermissionError:
        pass  # another user's store (read by an admin): its owner decides
    finally:
        os.close(fd)


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()
