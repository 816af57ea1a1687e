"""The store's small records: key values (connector bookmarks; the plan certificate's own
module is provisioner/state/certificates.py),
the state versions (the cookie a plan carries) and the daemons' heartbeat rows.
"""

from __future__ import annotations

import socket
from typing import Any

import sqlalchemy as sa

from provisioner.state import schema as t
from provisioner.state.common import now_iso


class Meta:
    """Values BAS keeps between runs, by key."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def get(self, key: str) -> str | None:
        """A stored value (``None`` when unset)."""
        with self.engine.connect() as c:
            return c.execute(sa.select(t.meta.c.value).where(t.meta.c.key == key)).scalar()

    def set(self, key: str, value: str | None) -> None:
        """Replace a value (None: drop it)."""
        with self.engine.begin() as c:
            c.execute(t.meta.delete().where(t.meta.c.key == key))
            if value is not None:
                c.execute(t.meta.insert().values(key=key, value=value))


class Versions:
    """The state cookie: a version per target (and core), advanced by every write."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def current(self) -> dict[str, int]:
        """Version per target (and core)."""
        with self.engine.connect() as c:
            return dict(c.execute(sa.select(t.versions.c.target, t.versions.c.version)).all())

    def bump(self, conn: sa.Connection, target: str) -> None:
        """Advance a target's version (inside the caller's transaction)."""
        v = t.versions.c
        # Write first, read never: with workers writing other targets at the same time, a
        # read-then-write transaction could lose SQLite's write lock to them.
        bumped = conn.execute(t.versions.update().where(v.target == target).values(version=v.version + 1))
        if bumped.rowcount == 0:
            conn.execute(t.versions.insert().values(target=target, version=1))


class Daemons:
    """The daemons' heartbeat rows (one per host), read by `bas status`."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def report(self, **values: Any) -> None:
        """Upsert this host's row (pid, started_at, next_run_at, state ...), stamped now."""
        host = socket.gethostname()
        values = {**values, "host": host, "heartbeat_at": now_iso()}
        with self.engine.begin() as c:
            c.execute(t.daemon_status.delete().where(t.daemon_status.c.host == host))
            c.execute(t.daemon_status.insert().values(**values))

    def all(self) -> list[dict[str, Any]]:
        """Every host's row."""
        with self.engine.connect() as c:
            return [dict(x) for x in c.execute(sa.select(t.daemon_status)).mappings()]
