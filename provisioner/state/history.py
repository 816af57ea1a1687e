"""The changelog as the service reads it: `bas changelog`, `person show`, `bas status`, the console.

Rows are written by the writer (provisioner/state/writer.py) and never changed; every
NIN in them is stored masked. The console pages through a year of history by keyset
(``page``: rows before or after an id, newest first; never OFFSET, which reads every
skipped row) and exports it in chunks (``export``), both optionally limited to a
sub-select of person ids (a school admin's reach).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from provisioner.core.plan import Op
from provisioner.core.states import ChangeResult
from provisioner.state import schema as t
from provisioner.state.common import contains
from provisioner.state.identities import Identities

COLUMNS = (
    "id",
    "run_id",
    "at",
    "target",
    "op",
    "kind",
    "key",
    "username",
    "result",
    "reason",
    "error",
    "before",
    "after",
)


@dataclass(frozen=True)
class Filter:
    """What to select; every field optional."""

    person: str | None = None  # username, NIN or SIS person id
    target: str | None = None
    run: str | None = None
    since: str | None = None  # ISO date or timestamp, inclusive
    until: str | None = None  # ISO date or timestamp, inclusive (a date means the whole day)
    op: str | None = None
    result: str | None = None
    limit: int = 200
    text: str | None = None  # a fragment of the key, username or reason (the console's run page)
    before: int | None = None  # keyset paging: only rows with a smaller id
    after: int | None = None  # keyset paging: only rows with a larger id


@dataclass(frozen=True)
class Page:
    """One page of changelog rows, newest first, and the ids to page on from it."""

    rows: list[dict[str, Any]]
    older: int | None  # ``before`` of the next older page (None: no older row)
    newer: int | None  # ``after`` of the next newer page (None: no newer row)


class History:
    """Reads of the changelog."""

    def __init__(self, engine: sa.Engine, identities: Identities) -> None:
        self.engine = engine
        self.identities = identities

    def conditions(self, f: Filter, scope: sa.Select[Any] | None = None) -> list[Any] | None:
        """The WHERE conditions of a filter (None: nothing can match); ``scope``: person ids allowed."""
        cl = t.changelog.c
        conds: list[Any] = []
        if f.person:
            ids = self.identities.resolve(f.person)
            if not ids:
                return None
            # The person's rows and the membership changes naming them (changelog_members, kept
            # by the database), as one id list: an OR of the two reads the whole table on PostgreSQL.
            own, cm = t.changelog.alias("own"), t.changelog_members.c
            ids_of = sa.union_all(
                sa.select(own.c.id).where(own.c.person_id.in_(sorted(ids))),
                sa.select(cm.changelog_id).where(cm.person_id.in_(sorted(ids))),
            )
            conds.append(cl.id.in_(ids_of))
        for col, value in ((cl.target, f.target), (cl.run_id, f.run), (cl.op, f.op), (cl.result, f.result)):
            if value:
                conds.append(col == value)
        when = []
        if f.since:
            when.append(cl.at >= f.since)
        if f.until:
            when.append(cl.at <= (f.until + "T23:59:59~" if len(f.until) == 10 else f.until))
        if when:
            # The ids the window spans, from the ``at`` index: the page then walks the id order
            # between them instead of sorting every row of the window (exact: a bound, not a guess).
            # OFFSET 0 keeps PostgreSQL from answering min/max by walking the primary key.
            window = sa.select(cl.id).where(*when).offset(0).subquery()
            with self.engine.connect() as c:
                low, high = c.execute(sa.select(sa.func.min(window.c.id), sa.func.max(window.c.id))).one()
            if low is None:
                return None
            conds += [*when, cl.id.between(low, high)]
        if f.text:
            pattern = contains(f.text)
            conds.append(
                sa.or_(*(col.like(pattern, escape="\\") for col in (cl.key, cl.username, cl.reason)))
            )
        if scope is not None:
            conds.append(cl.person_id.in_(scope))
        return conds

    def query(self, f: Filter) -> list[dict[str, Any]]:
        """Changelog rows matching the filter, oldest first (the newest ``limit`` of them)."""
        rows = self.page(f).rows
        rows.reverse()
        return rows

    def page(self, f: Filter, scope: sa.Select[Any] | None = None) -> Page:
        """Up to ``limit`` rows newest first: the newest, or those just before or after an id.

        ``before`` and ``after`` are the ids a previous page handed out (``Page.older`` and
        ``Page.newer``); one more row than asked is read to know whether there is another page.
        """
        cl = t.changelog.c
        conds = self.conditions(f, scope)
        if conds is None:
            return Page([], None, None)
        upward = f.after is not None and f.before is None
        if f.before is not None:
            conds.append(cl.id < f.before)
        if f.after is not None:
            conds.append(cl.id > f.after)
        order = cl.id.asc() if upward else cl.id.desc()
        q = sa.select(*[cl[c] for c in COLUMNS]).where(*conds).order_by(order).limit(f.limit + 1)
        with self.engine.connect() as c:
            rows = [dict(r) for r in c.execute(q).mappings()]
        more = len(rows) > f.limit
        rows = rows[: f.limit]
        if upward:
            rows.reverse()
        if not rows:
            return Page([], None, None)
        older = rows[-1]["id"] if (more if not upward else True) else None
        newer = rows[0]["id"] if (more if upward else f.before is not None) else None
        return Page(rows, older, newer)

    def export(
        self, f: Filter, scope: sa.Select[Any] | None = None, cap: int = 100_000, chunk: int = 2_000
    ) -> Iterator[list[dict[str, Any]]]:
        """The newest ``cap`` matching rows, oldest first (as ``query``), in chunks of ``chunk``."""
        cl = t.changelog.c
        conds = self.conditions(f, scope)
        if conds is None:
            return
        newest = sa.select(cl.id).where(*conds).order_by(cl.id.desc()).limit(cap).subquery()
        with self.engine.connect() as c:
            low, high = c.execute(sa.select(sa.func.min(newest.c.id), sa.func.max(newest.c.id))).one()
        if low is None:
            return
        last = low - 1  # rows written during the export (above ``high``) are left out: the cap holds
        while True:
            q = (
                sa.select(*[cl[c] for c in COLUMNS])
                .where(*conds, cl.id > last, cl.id <= high)
                .order_by(cl.id)
                .limit(chunk)
            )
            with self.engine.connect() as c:
                rows = [dict(r) for r in c.execute(q).mappings()]
            if not rows:
                return
            yield rows
            last = rows[-1]["id"]

    def failed(self, run_id: str, limit: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """The first ``limit`` changes a run could not make, and their count per target."""
        cl = t.changelog.c
        bad = sa.and_(cl.run_id == run_id, cl.result != ChangeResult.OK)
        with self.engine.connect() as c:
            counts: dict[str, int] = dict(
                c.execute(sa.select(cl.target, sa.func.count()).where(bad).group_by(cl.target)).all()
            )
            rows = c.execute(
                sa.select(cl.target, cl.op, cl.kind, cl.key, cl.username, cl.result, cl.error)
                .where(bad)
                .order_by(cl.id)
                .limit(limit)
            ).mappings()
            return [dict(x) for x in rows], counts

    def applied(self, run_id: str, target: str) -> set[tuple[str, str]]:
        """(op, key) of the changes run ``run_id`` applied to ``target`` (ok in the changelog)."""
        cl = t.changelog.c
        q = sa.select(cl.op, cl.key).where(
            cl.run_id == run_id, cl.target == target, cl.result == ChangeResult.OK
        )
        with self.engine.connect() as c:
            return {(op, key) for op, key in c.execute(q)}

    def change_counts(self, run_id: str) -> list[tuple[str, str, str, int]]:
        """(target, op, result, count) of one run's changelog."""
        cl = t.changelog.c
        q = (
            sa.select(cl.target, cl.op, cl.result, sa.func.count())
            .where(cl.run_id == run_id)
            .group_by(cl.target, cl.op, cl.result)
        )
        with self.engine.connect() as c:
            return [(a, b, r, n) for a, b, r, n in c.execute(q).all()]

    def removals(self, person_ids: Iterable[str]) -> dict[str, dict[str, Any]]:
        """Per target, the last person account of these persons deleted or purged (ok)."""
        cl = t.changelog.c
        q = (
            sa.select(cl.target, cl.op, cl.at, cl.run_id, cl.reason)
            .where(
                cl.person_id.in_(list(person_ids)),
                cl.kind == "person",
                cl.op.in_((Op.DELETE, Op.PURGE)),
                cl.result == ChangeResult.OK,
            )
            .order_by(cl.id)
        )
        with self.engine.connect() as c:
            return {r.target: dict(r._mapping) for r in c.execute(q)}  # the newest per target wins
