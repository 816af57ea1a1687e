"""The state store's operations: reads for planning, writes for apply, run control.

Planning reads everything it needs up front (``identity_view``, ``target_index``,
``target_details``) so the differ itself does no I/O. Apply writes through
``ObjectWriter`` in batches, each batch one transaction, so an interrupted run leaves
a consistent store: what was written matches what the target holds.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import socket
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from sys import intern
from typing import Any

import sqlalchemy as sa

from provisioner.core.derive import IdentityView
from provisioner.core.nin import mask_error
from provisioner.core.plan import CORE
from provisioner.core.safety import GateBaseline
from provisioner.state import schema as t
from provisioner.state.migrate import ensure_current
from provisioner.state.process import holder_alive, process_start

_CHUNK = 500  # keys per IN (...) clause
_CERT = "plan_certificate"  # meta key of the plan certificate (provisioner.core.certificate)
# pg_advisory_lock key of the run lock: any fixed 64-bit number, the same in every BAS.
_ADVISORY_KEY = 0x0BA5_5E11_0C4B_0001
_LOCK_PROCESS = "run_lock.process"  # meta key: the run lock holder's pid and process start
RUN_ABORTED = "aborted"  # the status of a run whose process ended without recording its end
ABORTED_ERROR = "the process ended without finishing (killed or crashed)"


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


_ENCODER = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def dumps(value: Any) -> str:
    """Canonical JSON: the same data always gives the same text (and digest)."""
    return _ENCODER.encode(value)


def digest(kind: str, attrs: Mapping[str, Any], members: Iterable[Iterable[str]] | None) -> str:
    """Hash of what a target object holds; equal digests mean nothing to change."""
    return digest_json(kind, dumps(attrs), None if members is None else dumps([list(m) for m in members]))


def digest_json(kind: str, attrs_json: str, members_json: str | None) -> str:
    """digest() from already-encoded attributes and members (the writer has them at hand)."""
    body = f"{kind}\x00{attrs_json}\x00{members_json}"
    return hashlib.blake2b(body.encode(), digest_size=16).hexdigest()


def bulk_insert(conn: sa.Connection, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    """executemany straight through the driver: SQLAlchemy's per-row work costs more than the insert."""
    if not rows:
        return
    cols = [c.name for c in table.columns if c.name in rows[0]]
    mark = "?" if conn.dialect.paramstyle == "qmark" else "%s"
    quote = conn.dialect.identifier_preparer.quote
    sql = (
        f"INSERT INTO {quote(table.name)} ({', '.join(quote(c) for c in cols)})"
        f" VALUES ({', '.join([mark] * len(cols))})"
    )
    conn.exec_driver_sql(sql, [tuple(r[c] for c in cols) for r in rows])


class LockHeld(Exception):
    """Another run holds the run lock."""


@dataclass(frozen=True, slots=True)
class IndexRow:
    """What planning needs of every stored object, without its attributes."""

    kind: str
    anchor: str | None
    status: str
    status_since: str | None
    digest: str
    person_id: str | None
    username: str | None


@dataclass(frozen=True, slots=True)
class IdentityRow:
    """One person's identity record."""

    username: str
    nin: str | None
    display_name: str | None
    status: str
    inactive_since: str | None
    roles: str | None = None  # "role@school,..." as last applied
    bridged_until: str | None = None  # summer bridge recorded: the day the next affiliation starts


class StateStore:
    """The state store behind one SQLAlchemy URL."""

    def __init__(self, url: str, *, check: bool = True) -> None:
        """Open the store; ``check=False`` skips the schema check (a worker of a checked run)."""
        self.url = url
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):
            kwargs["connect_args"] = {"timeout": 30}
            _private_sqlite_file(url)
        self.engine = sa.create_engine(url, **kwargs)
        if self.engine.dialect.name == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
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

    # ---- planning reads -------------------------------------------------------------
    def identity_view(self) -> IdentityView:
        """The historic base as derivation needs it."""
        with self.engine.connect() as c:
            u = t.usernames.c
            # Bound logins of persons not yet known (provisioner.core.bindings), then every identity.
            by_person = dict(
                c.execute(sa.select(u.person_id, u.username).where(u.origin == "adopted")).cursor
            )
            by_person.update(c.execute(sa.select(t.identities.c.person_id, t.identities.c.username)).cursor)
            by_nin = dict(c.execute(sa.select(t.person_nins.c.nin, t.person_nins.c.person_id)).cursor)
            al = dict(c.execute(sa.select(t.aliases.c.sis_id, t.aliases.c.person_id)).cursor)
            taken = frozenset(r[0] for r in c.execute(sa.select(t.usernames.c.username)).cursor)
        return IdentityView(username_by_person=by_person, person_by_nin=by_nin, aliases=al, taken=taken)

    def identities(self) -> dict[str, IdentityRow]:
        """Every identity row by person id."""
        cols = t.identities.c
        q = sa.select(
            cols.person_id,
            cols.username,
            cols.nin,
            cols.display_name,
            cols.status,
            cols.inactive_since,
            cols.roles,
            cols.bridged_until,
        )
        with self.engine.connect() as c:
            rows = c.execute(q).cursor.fetchall()
        return {r[0]: IdentityRow(*r[1:]) for r in rows}

    def target_index(self, target: str) -> dict[str, IndexRow]:
        """Key -> index row for every object stored for a target."""
        o = t.objects.c
        q = sa.select(
            o.key, o.kind, o.anchor, o.status, o.status_since, o.digest, o.person_id, o.username
        ).where(o.target == target)
        with self.engine.connect() as c:
            rows = c.execute(q).cursor.fetchall()  # raw driver rows: 150,000+ per target
        return {r[0]: IndexRow(*r[1:]) for r in rows}

    def target_details(
        self, target: str, keys: Iterable[str]
    ) -> dict[str, tuple[dict[str, Any], list | None]]:
        """Key -> (attrs, members) for the given keys of a target."""
        o = t.objects.c
        out: dict[str, tuple[dict[str, Any], list | None]] = {}
        keys = list(keys)
        with self.engine.connect() as c:
            for i in range(0, len(keys), _CHUNK):
                q = sa.select(o.key, o.attrs, o.members).where(
                    o.target == target, o.key.in_(keys[i : i + _CHUNK])
                )
                for k, a, m in c.execute(q):
                    out[k] = (json.loads(a), None if m is None else [tuple(x) for x in json.loads(m)])
        return out

    def iter_objects(self, target: str) -> Iterator[dict[str, Any]]:
        """Every stored object of a target, as plain dicts (for full exports and `person show`)."""
        o = t.objects.c
        q = sa.select(o.kind, o.key, o.anchor, o.status, o.attrs, o.members, o.username).where(
            o.target == target
        )
        with self.engine.connect() as c:
            for kind, key, anchor, status, a, m, u in c.execute(q.order_by(o.kind, o.key)):
                yield {
                    "kind": kind,
                    "key": key,
                    "anchor": anchor,
                    "status": status,
                    "attrs": json.loads(a),
                    # Interned: a person is in several groups and roles repeat (~1M pairs).
                    "members": None if m is None else [(intern(p), intern(r)) for p, r in json.loads(m)],
                    "username": u,
                }

    def versions(self) -> dict[str, int]:
        """The state cookie: version per target (and core)."""
        with self.engine.connect() as c:
            return dict(c.execute(sa.select(t.versions.c.target, t.versions.c.version)).all())

    def bump_version(self, conn: sa.Connection, target: str) -> None:
        """Advance a target's version (inside the caller's transaction)."""
        v = t.versions.c
        # Write first, read never: with workers writing other targets at the same time, a
        # read-then-write transaction could lose SQLite's write lock to them.
        bumped = conn.execute(t.versions.update().where(v.target == target).values(version=v.version + 1))
        if bumped.rowcount == 0:
            conn.execute(t.versions.insert().values(target=target, version=1))

    def populations(self) -> dict[str, int]:
        """Active objects per target, and identities for core (the thresholds' base)."""
        o = t.objects.c
        q = sa.select(o.target, sa.func.count()).where(o.status == "active").group_by(o.target)
        with self.engine.connect() as c:
            out = dict(c.execute(q).all())
            out[CORE] = c.execute(sa.select(sa.func.count()).select_from(t.identities)).scalar() or 0
        return out

    # ---- plan certificate -----------------------------------------------------------
    def load_certificate(self) -> str | None:
        """The stored plan certificate (JSON), if any."""
        with self.engine.connect() as c:
            return c.execute(sa.select(t.meta.c.value).where(t.meta.c.key == _CERT)).scalar()

    def save_certificate(self, text: str | None) -> None:
        """Replace the plan certificate (None: drop it)."""
        with self.engine.begin() as c:
            c.execute(t.meta.delete().where(t.meta.c.key == _CERT))
            if text is not None:
                c.execute(t.meta.insert().values(key=_CERT, value=text))

    # ---- connector bookmarks (e.g. a Graph deltaLink) ---------------------------------
    def get_meta(self, key: str) -> str | None:
        """A value a connector keeps between runs (``None`` when unset)."""
        with self.engine.connect() as c:
            return c.execute(sa.select(t.meta.c.value).where(t.meta.c.key == key)).scalar()

    def set_meta(self, key: str, value: str | None) -> None:
        """Replace such a value (None: drop it)."""
        with self.engine.begin() as c:
            c.execute(t.meta.delete().where(t.meta.c.key == key))
            if value is not None:
                c.execute(t.meta.insert().values(key=key, value=value))

    # ---- run control ----------------------------------------------------------------
    @contextmanager
    def run_lock(self, holder: str) -> Iterator[list[str]]:
        """Hold the one run lock; raise LockHeld when another live run has it.

        Yields the runs a dead holder left 'running', now recorded ``aborted``: the lock is
        ours, so no live process is running them (``close_abandoned_runs``).

        On PostgreSQL the lock is a session advisory lock on a connection held for the run:
        it works across hosts sharing the database and is released by the server when the
        holder dies, so a ``locks`` row found then was left by a dead holder and is taken
        over (unless it names a live process on this host); the row says who holds it. On
        SQLite (one host) the row is the lock; a row of a dead process here is taken over.
        A process is the holder only if it started when the holder did (``process_start``,
        kept in ``meta``): a PID reused by another process does not keep a dead run's lock.
        """
        if self.engine.dialect.name == "postgresql":
            with self._advisory_lock(holder):
                yield self.close_abandoned_runs(holder)
            return
        self._take_row_lock(holder, advisory=False)
        try:
            yield self.close_abandoned_runs(holder)
        finally:
            self._release_row_lock(holder)

    @contextmanager
    def _advisory_lock(self, holder: str) -> Iterator[None]:
        conn = self.engine.connect()
        try:
            got = conn.execute(sa.select(sa.func.pg_try_advisory_lock(_ADVISORY_KEY))).scalar()
            conn.commit()  # a session lock outlives the transaction; do not sit idle in one
            if not got:
                with self.engine.connect() as c:
                    cur = c.execute(sa.select(t.locks).where(t.locks.c.name == "run")).mappings().first()
                who = (
                    f"run {cur['holder']} holds the lock (pid {cur['pid']} on {cur['host']}"
                    f" since {cur['acquired_at']})"
                    if cur
                    else "another run holds the lock"
                )
                raise LockHeld(who)
            try:
                self._take_row_lock(holder, advisory=True)
                try:
                    yield
                finally:
                    self._release_row_lock(holder)
            finally:
                try:
                    conn.execute(sa.select(sa.func.pg_advisory_unlock(_ADVISORY_KEY)))
                    conn.commit()
                except sa.exc.DBAPIError:
                    # A broken connection: the server dropped the session and its lock with it.
                    conn.invalidate()
        finally:
            conn.close()

    def _take_row_lock(self, holder: str, *, advisory: bool) -> None:
        host, pid = socket.gethostname(), os.getpid()
        row = {"name": "run", "holder": holder, "host": host, "pid": pid, "acquired_at": now_iso()}
        me = dumps({"holder": holder, "pid": pid, "start": process_start(pid)})
        m = t.meta.c
        with self.engine.begin() as c:
            try:
                with c.begin_nested():
                    c.execute(t.locks.insert().values(**row))
            except sa.exc.IntegrityError:
                cur = c.execute(sa.select(t.locks).where(t.locks.c.name == "run")).mappings().first()
                # Under the advisory lock a row is left by a holder that died, on any host; only a
                # live process on this host is respected still (a BAS from before advisory locks).
                here = cur is not None and cur["host"] == host
                known = c.execute(sa.select(m.value).where(m.key == _LOCK_PROCESS)).scalar()
                stale = not holder_alive(cur, known) if here else advisory
                if cur is not None and not stale:
                    raise LockHeld(
                        f"run {cur['holder']} holds the lock (pid {cur['pid']} on {cur['host']}"
                        f" since {cur['acquired_at']})"
                    ) from None
                # The holder died without releasing: take the lock over.
                c.execute(t.locks.update().where(t.locks.c.name == "run").values(**row))
            c.execute(t.meta.delete().where(m.key == _LOCK_PROCESS))
            c.execute(t.meta.insert().values(key=_LOCK_PROCESS, value=me))

    def _release_row_lock(self, holder: str) -> None:
        with self.engine.begin() as c:
            gone = c.execute(t.locks.delete().where(t.locks.c.name == "run", t.locks.c.holder == holder))
            if gone.rowcount:
                c.execute(t.meta.delete().where(t.meta.c.key == _LOCK_PROCESS))

    def close_abandoned_runs(self, holder: str) -> list[str]:
        """Record runs left 'running' (other than ``holder``) as aborted; call under the run lock.

        Every run holds the lock while it is 'running', so under the lock another 'running'
        run belongs to a process that ended (killed, or crashed) without recording its end.
        """
        r = t.runs.c
        with self.engine.begin() as c:
            ids = [
                x[0] for x in c.execute(sa.select(r.run_id).where(r.status == "running", r.run_id != holder))
            ]
            if ids:
                c.execute(
                    t.runs.update()
                    .where(r.run_id.in_(ids), r.status == "running")
                    .values(status=RUN_ABORTED, finished_at=now_iso(), error=ABORTED_ERROR)
                )
        return ids

    def start_run(self, run_id: str, kind: str, as_of: str | None) -> None:
        """Record that a run started."""
        with self.engine.begin() as c:
            c.execute(
                t.runs.insert().values(
                    run_id=run_id, kind=kind, status="running", started_at=now_iso(), as_of=as_of
                )
            )

    def finish_run(self, run_id: str, status: str, **values: Any) -> None:
        """Record how a run ended (summary, held plan, error); NINs in the texts are masked.

        An error may quote a source row (a driver error): the run record is read by
        `bas status`, `bas runs` and alerts, so it never holds a whole NIN.
        """
        if "summary" in values and not isinstance(values["summary"], str):
            values["summary"] = dumps(values["summary"])
        for k in ("summary", "error"):
            if values.get(k):
                values[k] = mask_error(values[k])
        with self.engine.begin() as c:
            c.execute(
                t.runs.update()
                .where(t.runs.c.run_id == run_id)
                .values(status=status, finished_at=now_iso(), **values)
            )

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        """One run record."""
        with self.engine.connect() as c:
            row = c.execute(sa.select(t.runs).where(t.runs.c.run_id == run_id)).mappings().first()
        return dict(row) if row else None

    def list_runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest runs first (without their plans)."""
        cols = [c for c in t.runs.c if c.name != "plan"]
        with self.engine.connect() as c:
            rows = c.execute(
                sa.select(*cols).order_by(t.runs.c.started_at.desc(), t.runs.c.run_id.desc()).limit(limit)
            )
            return [dict(r) for r in rows.mappings()]

    def gate_baseline(self, days: float = 7.0) -> GateBaseline:
        """What the source gate compares with: the largest counts of the good runs of the last days.

        Good: done, done_with_errors or held, or a source refusal an admin approved (of any
        kind: a dry-run that ends "planned" never counts, but the same run counts once its
        plan is applied with apply_saved). An approved refusal accepts its counts once: only
        it and the runs after it count. With no good run in those days, the newest one does.
        The schools are those of the newest good run.
        """
        r = t.runs.c
        good = sa.or_(r.status.in_(("done", "done_with_errors", "held")), r.approved_at.is_not(None))
        # A reconcile reads no source: the newest run being one must not hide the schools.
        good = sa.and_(r.kind != "reconcile", good)
        newest = (r.started_at.desc(), r.run_id.desc())
        cols = (r.active_persons, r.summary)
        with self.engine.connect() as c:
            accepted = c.execute(
                sa.select(sa.func.max(r.started_at)).where(r.status == "refused", r.approved_at.is_not(None))
            ).scalar()
            floor = [r.started_at >= accepted] if accepted else []
            rows = c.execute(
                sa.select(*cols).where(good, r.started_at >= iso_ago(days * 24), *floor).order_by(*newest)
            ).all()
            if not rows:
                rows = c.execute(sa.select(*cols).where(good, *floor).order_by(*newest).limit(1)).all()
        counts: dict[str, int] = {}
        active = [a for a, _ in rows if a is not None]
        schools: frozenset[str] | None = None
        for i, (_, summary) in enumerate(rows):
            source = (json.loads(summary) or {}).get("source", {}) if summary else {}
            for table, n in source.get("counts", {}).items():
                counts[table] = max(counts.get(table, 0), n)
            if i == 0 and source.get("schools") is not None:
                schools = frozenset(source["schools"])
        return GateBaseline(counts, max(active) if active else None, schools)

    def approve_run(self, run_id: str, by: str) -> None:
        """Mark a run approved (one-shot)."""
        with self.engine.begin() as c:
            c.execute(
                t.runs.update().where(t.runs.c.run_id == run_id).values(approved_at=now_iso(), approved_by=by)
            )

    # ---- reserved usernames ---------------------------------------------------------
    def reserve_usernames(self, names: Iterable[str], note: str) -> tuple[int, int]:
        """Add usernames in use elsewhere to the historic base; returns (added, already known)."""
        names = sorted(set(names))
        with self.engine.begin() as c:
            known = set()
            for i in range(0, len(names), _CHUNK):
                q = sa.select(t.usernames.c.username).where(t.usernames.c.username.in_(names[i : i + _CHUNK]))
                known.update(r[0] for r in c.execute(q))
            new = [
                {
                    "username": u,
                    "person_id": None,
                    "nin": None,
                    "origin": "reserved",
                    "created_at": now_iso(),
                    "note": note,
                }
                for u in names
                if u not in known
            ]
            bulk_insert(c, t.usernames, new)
            if new:
                self.bump_version(c, CORE)  # fewer names are free: plans made before are stale
        return len(new), len(known)

    def bind_usernames(self, pairs: Iterable[tuple[str, str]], note: str) -> tuple[int, int, list[str]]:
        """Record existing logins of persons (provisioner.core.bindings); returns (bound, already, conflicts).

        A binding is kept in the historic base with origin "adopted"; derivation then gives
        the person this username when they first come. Conflicts are reported, never forced.
        """
        pairs = list(pairs)
        u, i = t.usernames.c, t.identities.c
        bound, already, conflicts = 0, 0, []
        with self.engine.begin() as c:
            for start in range(0, len(pairs), _CHUNK):
                chunk = pairs[start : start + _CHUNK]
                names = {
                    r[0]: r[1]
                    for r in c.execute(
                        sa.select(u.username, u.person_id).where(u.username.in_([n for _, n in chunk]))
                    )
                }
                idents = dict(
                    c.execute(
                        sa.select(i.person_id, i.username).where(i.person_id.in_([p for p, _ in chunk]))
                    ).all()
                )
                for pid, name in chunk:
                    holder = names.get(name, "missing")
                    has = idents.get(pid)
                    if has == name or holder == pid:
                        already += 1
                    elif has is not None:
                        conflicts.append(f"person {pid} already has username {has!r}; not bound to {name!r}")
                    elif holder not in ("missing", None):
                        conflicts.append(f"username {name!r} belongs to person {holder}; not bound to {pid}")
                    else:
                        # A person has at most one binding: a new one replaces an older one.
                        c.execute(
                            t.usernames.delete().where(
                                u.person_id == pid, u.origin == "adopted", u.username != name
                            )
                        )
                        row = {"person_id": pid, "origin": "adopted", "note": note}
                        if holder is None:  # reserved (in use elsewhere): now known to be this person's
                            c.execute(t.usernames.update().where(u.username == name).values(**row))
                        else:
                            c.execute(t.usernames.insert().values(username=name, created_at=now_iso(), **row))
                        names[name] = pid
                        bound += 1
            if bound:
                self.bump_version(c, CORE)
        return bound, already, conflicts

    def username_record(self, username: str) -> dict[str, Any] | None:
        """The historic base's row for a username."""
        with self.engine.connect() as c:
            row = (
                c.execute(sa.select(t.usernames).where(t.usernames.c.username == username.lower()))
                .mappings()
                .first()
            )
        return dict(row) if row else None


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
