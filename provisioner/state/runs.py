"""Runs and the run lock: the run records `bas runs`, `bas status` and the gate read.

One run holds the lock while it is recorded 'running'; a run whose process died is
recorded ``aborted`` by the next one to take the lock. A run's summary and error are
stored with NINs masked.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from provisioner.core.nin import mask_error
from provisioner.core.rows import dumps
from provisioner.core.safety import GateBaseline
from provisioner.core.states import RUNS_THROUGH, RunStatus
from provisioner.state import schema as t
from provisioner.state.common import iso_ago, now_iso
from provisioner.state.process import holder_alive, process_start

# pg_advisory_lock key of the run lock: any fixed 64-bit number, the same in every BAS.
_ADVISORY_KEY = 0x0BA5_5E11_0C4B_0001
_LOCK_PROCESS = "run_lock.process"  # meta key: the run lock holder's pid and process start
ABORTED_ERROR = "the process ended without finishing (killed or crashed)"


class LockHeld(Exception):
    """Another run holds the run lock."""


class Runs:
    """The run records and the one run lock."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    @contextmanager
    def lock(self, holder: str) -> Iterator[list[str]]:
        """Hold the one run lock; raise LockHeld when another live run has it.

        Yields the runs a dead holder left 'running', now recorded ``aborted``: the lock is
        ours, so no live process is running them (``close_abandoned``).

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
                yield self.close_abandoned(holder)
            return
        self._take_row_lock(holder, advisory=False)
        try:
            yield self.close_abandoned(holder)
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

    def close_abandoned(self, holder: str) -> list[str]:
        """Record runs left 'running' (other than ``holder``) as aborted; call under the run lock.

        Every run holds the lock while it is 'running', so under the lock another 'running'
        run belongs to a process that ended (killed, or crashed) without recording its end.
        """
        r = t.runs.c
        with self.engine.begin() as c:
            ids = [
                x[0]
                for x in c.execute(
                    sa.select(r.run_id).where(r.status == RunStatus.RUNNING, r.run_id != holder)
                )
            ]
            if ids:
                c.execute(
                    t.runs.update()
                    .where(r.run_id.in_(ids), r.status == RunStatus.RUNNING)
                    .values(status=RunStatus.ABORTED, finished_at=now_iso(), error=ABORTED_ERROR)
                )
        return ids

    def start(self, run_id: str, kind: str, as_of: str | None) -> None:
        """Record that a run started."""
        with self.engine.begin() as c:
            c.execute(
                t.runs.insert().values(
                    run_id=run_id, kind=kind, status=RunStatus.RUNNING, started_at=now_iso(), as_of=as_of
                )
            )

    def finish(self, run_id: str, status: RunStatus, **values: Any) -> None:
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

    def fold_quiet(self, run_id: str) -> int:
        """Fold a finished quiet run into the streak before it; the streak's length now.

        The daemon polls every minute: a week of runs that found nothing to do would be ten
        thousand rows that `bas runs`, the console and every source gate read. A quiet run
        (the caller's judgement: certified, nothing applied) that wrote nothing to the
        changelog and ended as the newest run before it did, with the same summary, takes
        its place: one row per streak, the newest, with ``summary.quiet`` saying how many
        runs since when. Any other run ends a streak.
        """
        r = t.runs.c
        cols = (r.run_id, r.status, r.started_at, r.summary)
        with self.engine.begin() as c:
            me = c.execute(sa.select(*cols).where(r.run_id == run_id)).first()
            if me is None or me.summary is None:
                return 0
            wrote = c.execute(
                sa.select(t.changelog.c.id).where(t.changelog.c.run_id == run_id).limit(1)
            ).first()
            if wrote is not None:
                return 0
            prev = c.execute(
                sa.select(*cols)
                .where(r.run_id != run_id, r.started_at <= me.started_at)
                .order_by(r.started_at.desc(), r.run_id.desc())
                .limit(1)
            ).first()
            summary = json.loads(me.summary)
            streak = {"runs": 1, "since": me.started_at}
            if prev is not None and prev.status == me.status and prev.summary:
                before = json.loads(prev.summary)
                quiet = before.pop("quiet", None)
                if quiet is not None and before == summary:
                    streak = {"runs": int(quiet["runs"]) + 1, "since": quiet["since"]}
                    c.execute(t.runs.delete().where(r.run_id == prev.run_id))
            summary["quiet"] = streak
            c.execute(t.runs.update().where(r.run_id == run_id).values(summary=dumps(summary)))
        return int(streak["runs"])

    def get(self, run_id: str) -> dict[str, Any] | None:
        """One run record."""
        with self.engine.connect() as c:
            row = c.execute(sa.select(t.runs).where(t.runs.c.run_id == run_id)).mappings().first()
        return dict(row) if row else None

    def newest(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest runs first (without their plans)."""
        cols = [c for c in t.runs.c if c.name != "plan"]
        with self.engine.connect() as c:
            rows = c.execute(
                sa.select(*cols).order_by(t.runs.c.started_at.desc(), t.runs.c.run_id.desc()).limit(limit)
            )
            return [dict(r) for r in rows.mappings()]

    def older_than(self, run_id: str | None, limit: int) -> list[dict[str, Any]]:
        """The newest runs (without their plans) started before run ``run_id`` (None: the newest).

        Keyset paging for the console's run list: ``limit + 1`` rows are read, so a caller
        sees whether an older page exists.
        """
        r = t.runs.c
        cols = [c for c in t.runs.c if c.name != "plan"]
        q = sa.select(*cols).order_by(r.started_at.desc(), r.run_id.desc()).limit(limit + 1)
        if run_id is not None:
            at = sa.select(r.started_at).where(r.run_id == run_id).scalar_subquery()
            q = q.where(sa.or_(r.started_at < at, sa.and_(r.started_at == at, r.run_id < run_id)))
        with self.engine.connect() as c:
            return [dict(x) for x in c.execute(q).mappings()]

    def gate_baseline(self, days: float = 7.0) -> GateBaseline:
        """What the source gate compares with: the largest counts of the good runs of the last days.

        Good: done, done_with_errors or held, or a source refusal an admin approved (of any
        kind: a dry-run that ends "planned" never counts, but the same run counts once its
        plan is applied with apply_saved). An approved refusal accepts its counts once: only
        it and the runs after it count. With no good run in those days, the newest one does.
        The schools are those of the newest good run.
        """
        r = t.runs.c
        good = sa.or_(r.status.in_(sorted(RUNS_THROUGH)), r.approved_at.is_not(None))
        # A reconcile or a password reset reads no source: the newest run being one must not
        # hide the schools.
        good = sa.and_(r.kind.not_in(("reconcile", "password")), good)
        newest = (r.started_at.desc(), r.run_id.desc())
        cols = (r.active_persons, r.summary)
        with self.engine.connect() as c:
            accepted = c.execute(
                sa.select(sa.func.max(r.started_at)).where(
                    r.status == RunStatus.REFUSED, r.approved_at.is_not(None)
                )
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

    def approve(self, run_id: str, by: str) -> None:
        """Mark a run approved (one-shot)."""
        with self.engine.begin() as c:
            c.execute(
                t.runs.update().where(t.runs.c.run_id == run_id).values(approved_at=now_iso(), approved_by=by)
            )

    def recent(self, kinds: Iterable[str], limit: int) -> list[dict[str, Any]]:
        """The newest runs of these kinds first, without their plans (for `bas status`)."""
        r = t.runs.c
        cols = [r.run_id, r.kind, r.status, r.started_at, r.finished_at, r.summary, r.error, r.approved_at]
        q = (
            sa.select(*cols)
            .where(r.kind.in_(list(kinds)))
            .order_by(r.started_at.desc(), r.run_id.desc())
            .limit(limit)
        )
        with self.engine.connect() as c:
            return [dict(x) for x in c.execute(q).mappings()]
