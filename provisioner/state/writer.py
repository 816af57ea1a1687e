"""Writing apply results into the state store: target objects, identities, changelog.

``TargetWriter`` keeps the rows of the objects a target's plan touches, applies each
successful change to them, and flushes dirty rows and changelog entries in batches
(one transaction each). For a file target, each batch also clears the export journal
rows it records (``settle``, provisioner/state/exports.py) in the same transaction.
``apply_core`` writes identity changes (usernames issued, persons stopping, returning, purged) in one
transaction: the historic base only grows.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import sqlalchemy as sa

from provisioner.core.nin import mask_error, mask_nins
from provisioner.core.plan import CORE, Change, Op
from provisioner.core.rows import IndexRow, ObjectRow, digest_json, dumps
from provisioner.core.states import ChangeResult, IdentityStatus, Origin
from provisioner.core.transitions import transition
from provisioner.state import schema as t
from provisioner.state.common import (
    CHUNK,
    batches,
    bulk_insert,
    bulk_transaction,
    now_iso,
    population_key,
)
from provisioner.state.store import StateStore

_READ_ALL = 20 * CHUNK  # more values to look up than this: read the whole column once
_EMPTY_RECORD: Mapping[str, Any] = {}  # a new password's changelog row: no attributes
_ROW_SLICE = 10_000  # core rows (identities, usernames, NINs, changelog) made and inserted at a time


def _log_row(
    run_id: str,
    at: str,
    c: Change,
    result: ChangeResult,
    error: str | None,
    memo: dict[int, str] | None = None,
    record: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``record``: ``c.record()`` when the caller has it (a created row stores that very dict)."""
    record = c.record() if record is None else record
    if c.members:
        after_json: str | None = dumps({**record, "members": [list(m) for m in c.members]})
    elif record:
        # A created object's attributes are the same dict the object row stores: encode once.
        after_json = memo.get(id(record)) if memo is not None else None
        after_json = after_json or dumps(dict(record))
    else:
        after_json = None
    # The changelog outlives the retention purge: a NIN (a core "nin", an itslearning
    # sourcedid) is stored masked; the historic base alone keeps it whole (norEduPersonNIN
    # comes sealed already: provisioner.core.nin_seal).
    return {
        "run_id": run_id,
        "at": at,
        "target": c.target,
        "op": c.op.value,
        "kind": c.kind,
        "key": mask_nins(c.key),
        "person_id": c.person_id,
        "username": mask_nins(c.username) if c.username else c.username,
        "before": mask_nins(dumps(dict(c.before))) if c.before else None,
        "after": mask_nins(after_json) if after_json else None,
        "reason": mask_nins(c.reason),
        "result": result,
        "error": mask_error(error) if error else error,
    }


class TargetWriter:
    """Applies one target's successful changes to its stored objects, in batches."""

    def __init__(
        self,
        store: StateStore,
        target: str,
        run_id: str,
        as_of: str,
        soft_delete: bool,
    ) -> None:
        self.store, self.target, self.run_id, self.as_of = store, target, run_id, as_of
        self.soft_delete = soft_delete
        # Run inside the next flush's transaction (the export journal rows it records).
        self.settle: Callable[[sa.Connection], None] | None = None
        self.rows: dict[str, ObjectRow | None] = {}  # None: the object is gone
        self.dirty: set[str] = set()
        # (change, at, result, note or error, its record): encoded at flush
        self.log: list[tuple[Change, str, ChangeResult, str | None, Mapping[str, Any] | None]] = []
        self.anchors: dict[str, str | None] = {}  # anchors of rows written (and evicted) this run
        self._index: dict[str, IndexRow] | None = None
        # Changes still to come per key (not creates): a flushed row they need stays in
        # memory, else every group add after its create was flushed re-read the row.
        self._pending: Counter[str] = Counter()
        self._new: set[str] = set()  # keys the store does not hold yet: inserted without a delete
        # Persons forgotten (deleted by hand in the target) since the last flush: they leave
        # the recorded members of the target's groups too, else a re-created account would
        # never be added back.
        self.forgotten: set[str] = set()
        # A target that only set passwords leaves the stored state as it was, so its state
        # version (the cookie a held plan is checked against, and the certificate's key) is
        # not advanced either: a reset never makes a held plan stale.
        self.passwords_only: bool | None = None  # None: nothing recorded yet

    def preload(self, changes: Iterable[Change]) -> None:
        """Read the stored rows of every object the plan changes but does not create."""
        changes = list(changes)
        self._pending = Counter(c.key for c in changes if c.op != Op.CREATE)
        keys = {c.key for c in changes if c.op != Op.CREATE}
        creates = {c.key for c in changes if c.op == Op.CREATE}
        index = None
        if len(creates) > 50:
            # Many creates (a first run): one read of the index tells which keys are new,
            # and their rows are then inserted without a delete first.
            index = self._index = self.store.objects.index(self.target)
            self._new = {k for k in creates if k not in index}
        if keys:
            self._load(keys, index)

    def _load(self, keys: set[str], index: dict[str, IndexRow] | None = None) -> None:
        if index is None:
            index = self.store.objects.index(self.target, None if len(keys) > 50 else keys)
        details = self.store.objects.details(self.target, [k for k in keys if k in index])
        for k in keys:
            row = index.get(k)
            if row is None:
                continue
            attrs, members = details.get(k, ({}, None))
            self.rows[k] = ObjectRow(
                kind=row.kind,
                anchor=row.anchor,
                status=row.status,
                status_since=row.status_since,
                person_id=row.person_id,
                username=row.username,
                attrs=attrs,
                members=None if members is None else frozenset(members),
            )

    def anchor(self, kind: str, key: str) -> str | None:
        """The anchor as known now (including objects created earlier in this run)."""
        if key in self.rows:
            row = self.rows[key]
            return None if row is None else row.anchor
        if key in self.anchors:
            return self.anchors[key]
        if self._index is None:  # what the store held before this run, read once
            self._index = self.store.objects.index(self.target)
        ir = self._index.get(key)
        return ir.anchor if ir is not None else None

    def ok(self, c: Change, anchor: str | None, note: str | None) -> None:
        """Record a change the target accepted (a new password: the changelog row alone)."""
        self._done(c)
        if c.op is Op.SET_PASSWORD:
            # Op, reason (who asked), result: the row has no attributes, and the password is
            # in no field ``_log_row`` reads.
            self.log.append((c, now_iso(), ChangeResult.OK, note, _EMPTY_RECORD))
            return
        if c.key not in self.rows and c.op != Op.CREATE:
            self._load({c.key})  # evicted after an earlier flush
        record = c.record()  # attributes, placement and links: what the row keeps
        row = transition(
            self.rows.get(c.key),
            c,
            as_of=self.as_of,
            anchor=anchor,
            soft_delete=self.soft_delete,
            record=record,
        )
        if c.op is Op.FORGET and c.kind == "person":
            self.forgotten.add(c.person_id or c.key)
        self.rows[c.key] = row
        self.dirty.add(c.key)
        self.log.append((c, now_iso(), ChangeResult.OK, note, record))

    def failed(self, c: Change, result: ChangeResult, error: str) -> None:
        """Record a change the target refused (rejected) or that could not be done (failed)."""
        self._done(c)
        self.log.append((c, now_iso(), result, error, None))

    def flush(self) -> None:
        """Write dirty rows and the changelog in one transaction."""
        if not self.dirty and not self.log:
            return
        o = t.objects.c
        keys = sorted(self.dirty)
        stamp = now_iso()
        inserts = []
        memo: dict[int, str] = {}
        for k in keys:
            row = self.rows[k]
            if row is None:
                continue
            members = None if row.members is None else sorted(row.members)
            attrs_json = memo.get(id(row.attrs)) or dumps(row.attrs)
            memo[id(row.attrs)] = attrs_json
            members_json = None if members is None else dumps(members)
            inserts.append(
                {
                    "target": self.target,
                    "key": k,
                    "kind": row.kind,
                    "anchor": row.anchor,
                    "status": row.status,
                    "status_since": row.status_since,
                    "person_id": row.person_id,
                    "username": row.username,
                    "digest": digest_json(row.kind, attrs_json, members_json),
                    "attrs": attrs_json,
                    "members": members_json,
                    "updated_at": stamp,
                }
            )
        log_rows = [
            _log_row(self.run_id, at, c, result, err, memo, record) for c, at, result, err, record in self.log
        ]
        stored = [k for k in keys if k not in self._new]
        self._new.difference_update(keys)
        with bulk_transaction(self.store.engine) as conn:
            if inserts or stored or self.forgotten:  # its members may change: counted again
                conn.execute(t.meta.delete().where(t.meta.c.key == population_key(self.target)))
            for i in range(0, len(stored), CHUNK):
                conn.execute(
                    t.objects.delete().where(o.target == self.target, o.key.in_(stored[i : i + CHUNK]))
                )
            bulk_insert(conn, t.objects, inserts)
            bulk_insert(conn, t.changelog, log_rows)
            if self.settle is not None:
                self.settle(conn)
            if self.forgotten:
                drop_members(conn, self.target, self.forgotten, stamp)
        if self.forgotten:
            for k, kept in self.rows.items():
                if kept is not None and kept.members:
                    left = frozenset(m for m in kept.members if m[0] not in self.forgotten)
                    self.rows[k] = kept._replace(members=left)
            self.forgotten = set()
        # Forget what is written, unless a change still to come needs it.
        for k in keys:
            row = self.rows.get(k) if self._pending.get(k, 0) > 0 else self.rows.pop(k, None)
            self.anchors[k] = None if row is None else row.anchor
        self.dirty.clear()
        self.log = []

    def _done(self, c: Change) -> None:
        self.passwords_only = c.op is Op.SET_PASSWORD and self.passwords_only is not False
        if c.op != Op.CREATE and self._pending.get(c.key, 0) > 0:
            self._pending[c.key] -= 1

    def finish(self) -> None:
        """Flush and advance the target's version (the state cookie), unless only passwords were set."""
        self.flush()
        if self.passwords_only:
            return
        with self.store.engine.begin() as conn:
            self.store.versions.bump(conn, self.target)


def apply_core(store: StateStore, changes: Iterable[Change], run_id: str, as_of: str) -> int:
    """Write identity changes in one transaction; returns how many were written.

    In this order: the updates, then the new identities, usernames, NINs and aliases, then
    the changelog. Each kind of row is made and inserted a slice at a time: a first run
    issues 250,000 identities, and made all at once their rows and changelog entries
    raised the run process's peak by about 100 MB at Oslo size (1,419 -> 1,319 MB).
    """
    changes = [c for c in changes if c.target == CORE]
    if not changes:
        return 0
    stamp = now_iso()
    u_c, n_c = t.usernames.c, t.person_nins.c
    with bulk_transaction(store.engine) as conn:
        known_users = _existing(
            conn, u_c.username, [c.attrs["username"] for c in changes if "username" in c.attrs]
        )
        known_nins = _existing(conn, n_c.nin, [c.attrs["nin"] for c in changes if c.attrs.get("nin")])
        for c in changes:
            if c.op in (Op.ENABLE, Op.UPDATE, Op.DISABLE, Op.PURGE) and c.kind != "alias":
                _update_identity(conn, c, stamp, as_of)
        created = [c for c in changes if c.op == Op.CREATE and c.kind != "alias"]
        for table, rows in (
            (t.identities, (_identity_row(c, stamp) for c in created)),
            (t.usernames, _new_usernames(created, known_users, stamp)),
            (t.person_nins, _new_nins(changes, known_nins, stamp)),
            (
                t.aliases,
                (
                    {"sis_id": c.key, "person_id": c.attrs["person_id"], "created_at": stamp}
                    for c in changes
                    if c.kind == "alias"
                ),
            ),
            (t.changelog, (_log_row(run_id, stamp, c, ChangeResult.OK, None) for c in changes)),
        ):
            for part in batches(rows, _ROW_SLICE):
                bulk_insert(conn, table, part)
        store.versions.bump(conn, CORE)
    return len(changes)


def _identity_row(c: Change, stamp: str) -> dict[str, Any]:
    a = c.attrs
    return {
        "person_id": c.key,
        "username": a["username"],
        "nin": a.get("nin"),
        "display_name": a.get("display_name"),
        "roles": a.get("roles"),
        "status": IdentityStatus.ACTIVE,
        "inactive_since": None,
        "created_at": stamp,
        "updated_at": stamp,
    }


def _new_usernames(created: Iterable[Change], known: set[str], stamp: str) -> Iterator[dict[str, Any]]:
    """The historic base's rows of usernames issued now (one per username, ever)."""
    for c in created:
        name = c.attrs["username"]
        if name not in known:
            known.add(name)
            yield {
                "username": name,
                "person_id": c.key,
                "nin": c.attrs.get("nin"),
                "origin": Origin.ISSUED,
                "created_at": stamp,
                "note": None,
            }


def _new_nins(changes: Iterable[Change], known: set[str], stamp: str) -> Iterator[dict[str, Any]]:
    """The rows of NINs seen for the first time (one per NIN, ever)."""
    for c in changes:
        nin = c.attrs.get("nin")
        if nin and nin not in known:
            known.add(nin)
            yield {"nin": nin, "person_id": c.person_id, "first_seen": stamp}


def _update_identity(conn: sa.Connection, c: Change, stamp: str, as_of: str) -> None:
    """One stored identity enabled, updated, disabled or purged."""
    i_c = t.identities.c
    a = c.attrs
    mine = t.identities.update().where(i_c.person_id == c.key)
    if c.op in (Op.ENABLE, Op.UPDATE):
        vals = {k: a[k] for k in ("nin", "display_name", "roles", "bridged_until") if k in a}
        if c.op == Op.ENABLE:
            vals.update(status=IdentityStatus.ACTIVE, inactive_since=None, bridged_until=None)
        conn.execute(mine.values(updated_at=stamp, **vals))
    elif c.op == Op.DISABLE:
        conn.execute(
            mine.values(
                status=IdentityStatus.INACTIVE,
                inactive_since=a.get("inactive_since", as_of),
                bridged_until=None,
                updated_at=stamp,
            )
        )
    else:  # PURGE
        conn.execute(
            mine.values(
                status=IdentityStatus.PURGED, nin=None, display_name=None, roles=None, updated_at=stamp
            )
        )
        conn.execute(t.objects.delete().where(t.objects.c.person_id == c.key))


def _existing(conn: sa.Connection, col: sa.Column, values: list[str]) -> set[str]:
    """Which of ``values`` the column holds already."""
    if len(values) > _READ_ALL:
        # A first run issues a username to everyone: one read of the column costs less
        # than a query per 500 of them (a historic base holds one row per person ever).
        wanted = set(values)
        return {v for (v,) in conn.execute(sa.select(col)) if v in wanted}
    out: set[str] = set()
    for i in range(0, len(values), CHUNK):
        out.update(r[0] for r in conn.execute(sa.select(col).where(col.in_(values[i : i + CHUNK]))))
    return out


def drop_members(conn: sa.Connection, target: str, persons: set[str], stamp: str) -> None:
    """Take these persons out of the recorded members of every group of a target."""
    o = t.objects.c
    groups = conn.execute(
        sa.select(o.key, o.attrs, o.members).where(
            o.target == target, o.kind == "group", o.members.is_not(None)
        )
    ).all()
    for gkey, attrs_json, members_json in groups:
        members = json.loads(members_json)
        kept = [m for m in members if m[0] not in persons]
        if len(kept) != len(members):
            kept_json = dumps(kept)
            conn.execute(
                t.objects.update()
                .where(o.target == target, o.key == gkey)
                .values(
                    members=kept_json, digest=digest_json("group", attrs_json, kept_json), updated_at=stamp
                )
            )
