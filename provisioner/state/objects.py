"""Target objects as the store records them: the index and details planning reads,
whole objects for exports and `person show`, and populations for the safety limits.

The writer (provisioner/state/writer.py) is what changes them, one batch per transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from sys import intern
from typing import Any

import sqlalchemy as sa

from provisioner.core.jsontext import loads
from provisioner.core.plan import CORE
from provisioner.core.rows import IndexRow, dumps, shared
from provisioner.core.states import ObjectStatus
from provisioner.state import schema as t
from provisioner.state.common import CHUNK, batches, contains

_STATUS = {s.value: s for s in ObjectStatus}  # stored text -> status, without an enum call per row
_o = t.objects.c
_WHOLE = (_o.kind, _o.key, _o.anchor, _o.status, _o.attrs, _o.members, _o.username)  # read by _whole


class Objects:
    """The target objects of every target."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def index(self, target: str, keys: Iterable[str] | None = None) -> dict[str, IndexRow]:
        """Key -> index row for every object stored for a target (or for these keys of it)."""
        o = t.objects.c
        q = sa.select(
            o.key, o.kind, o.anchor, o.status, o.status_since, o.digest, o.person_id, o.username
        ).where(o.target == target)
        with self.engine.connect() as c:
            if keys is None:
                rows = c.execute(q).cursor.fetchall()  # raw driver rows: 150,000+ per target
            else:
                # A chunk of keys at a time: a wide patch asks for tens of thousands, more
                # than a statement may bind (PostgreSQL: 65,535; SQLite as built by default: 32,766).
                rows = []
                for part in batches(sorted(set(keys)), CHUNK):
                    rows.extend(c.execute(q.where(o.key.in_(part))).cursor.fetchall())
        if not rows:
            return {}
        keys_, kinds, anchors, states, since, digests, pids, users = zip(*rows)
        del rows
        # Column-wise, in C: the kinds and days repeat, so each row shares one string of them.
        return dict(
            zip(
                keys_,
                map(
                    IndexRow,
                    shared(kinds),
                    anchors,
                    map(_STATUS.__getitem__, states),
                    shared(since),
                    digests,
                    pids,
                    users,
                ),
            )
        )

    def details(self, target: str, keys: Iterable[str]) -> dict[str, tuple[dict[str, Any], list | None]]:
        """Key -> (attrs, members) for the given keys of a target."""
        o = t.objects.c
        out: dict[str, tuple[dict[str, Any], list | None]] = {}
        keys = list(keys)
        # One (person, role) tuple for every group that lists it: a run that moved pupils
        # reads the members of thousands of groups, and a pupil is in several of them.
        pairs: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        with self.engine.connect() as c:
            for i in range(0, len(keys), CHUNK):
                q = sa.select(o.key, o.attrs, o.members).where(
                    o.target == target, o.key.in_(keys[i : i + CHUNK])
                )
                for k, a, m in c.execute(q):
                    members = None if m is None else [pairs.setdefault(p, p) for p in map(tuple, loads(m))]
                    out[k] = (loads(a), members)
        return out

    def iterate(self, target: str) -> Iterator[dict[str, Any]]:
        """Every stored object of a target, as plain dicts, in (kind, key) order (for full
        exports and `person show`).

        A kind at a time, each in the primary key's (target, key) order: one query ordered
        by (kind, key) had the database sort the whole target, which SQLite does through a
        temp file (Oslo size, Feide: 645 MB written, 1.6 s; so 0.7 s, nothing written). A
        target's objects are written only by its own apply, so its kinds do not change
        between the queries.
        """
        o = t.objects.c
        with self.engine.connect() as c:
            kinds = c.execute(sa.select(o.kind).where(o.target == target).distinct()).scalars().all()
            for kind in sorted(kinds):
                q = sa.select(*_WHOLE).where(o.target == target, o.kind == kind).order_by(o.key)
                yield from map(_whole, c.execute(q))

    def some(self, target: str, keys: Iterable[str]) -> list[dict[str, Any]]:
        """The stored objects of a target with these keys, as ``iterate`` gives them and in
        its (kind, key) order: what a delta file needs, without reading the whole target."""
        o = t.objects.c
        out: list[dict[str, Any]] = []
        with self.engine.connect() as c:
            for chunk in batches(sorted(set(keys)), CHUNK):
                out.extend(
                    map(_whole, c.execute(sa.select(*_WHOLE).where(o.target == target, o.key.in_(chunk))))
                )
        out.sort(key=lambda d: (d["kind"], d["key"]))
        return out

    def populations(self) -> dict[str, int]:
        """Active objects per target, and identities for core (the thresholds' base)."""
        o = t.objects.c
        q = sa.select(o.target, sa.func.count()).where(o.status == ObjectStatus.ACTIVE).group_by(o.target)
        with self.engine.connect() as c:
            out = dict(c.execute(q).all())
            out[CORE] = c.execute(sa.select(sa.func.count()).select_from(t.identities)).scalar() or 0
        return out

    def of_persons(self, person_ids: Iterable[str]) -> list[dict[str, Any]]:
        """Every stored object of these persons, in every target (attributes decoded)."""
        o = t.objects.c
        q = sa.select(t.objects).where(o.person_id.in_(list(person_ids))).order_by(o.target)
        with self.engine.connect() as c:
            rows = [dict(r) for r in c.execute(q).mappings()]
        for r in rows:
            r["attrs"] = loads(r["attrs"])
        return rows

    def live(self, person_ids: Iterable[str], targets: Iterable[str]) -> set[str]:
        """Of these persons, those with an object not deleted in one of these targets (whom
        a purge waits for: provisioner.core.diff)."""
        o = t.objects.c
        ids, out = sorted(set(person_ids)), set[str]()
        with self.engine.connect() as c:
            for k in range(0, len(ids), 500):
                q = sa.select(o.person_id).distinct()
                q = q.where(o.person_id.in_(ids[k : k + 500]), o.target.in_(list(targets)))
                out.update(c.execute(q.where(o.status != ObjectStatus.DELETED)).scalars())
        return out

    def groups_of(self, person_id: str) -> list[tuple[str, str, dict[str, Any]]]:
        """(target, key, attrs) of every stored group that lists this person as a member."""
        o = t.objects.c
        # LIKE only narrows the rows: the id as the members JSON spells it, its % _ and \
        # taken literally (a person id "P_1" matched "PX1" and "P%" every member). The
        # decoded members decide: the same text may be another id's part or a role.
        pattern = contains(dumps(person_id))
        q = sa.select(o.target, o.key, o.attrs, o.members).where(
            o.kind == "group", o.members.like(pattern, escape="\\")
        )
        with self.engine.connect() as c:
            return [
                (target, key, loads(attrs))
                for target, key, attrs, members in c.execute(q)
                if any(pair[0] == person_id for pair in loads(members))
            ]


def _whole(row: Any) -> dict[str, Any]:
    """A whole stored object as a plain dict (``Objects.iterate`` and ``Objects.some``)."""
    kind, key, anchor, status, a, m, u = row
    return {
        "kind": kind,
        "key": key,
        "anchor": anchor,
        "status": _STATUS[status],
        "attrs": loads(a),
        # Interned: a person is in several groups and roles repeat (~1M pairs).
        "members": None if m is None else [(intern(p), intern(r)) for p, r in loads(m)],
        "username": u,
    }
