"""Writing apply results into the state store: target objects, identities, changelog.

``TargetWriter`` keeps the rows of the objects a target's plan touches, applies each
successful change to them, and flushes dirty rows and changelog entries in batches
(one transaction each). For a file target, each batch also clears the export journal
rows it records (``settle``, provisioner/state/exports.py) in the same transaction.
``apply_core`` writes
identity changes (usernames issued, persons stopping, returning, purged) in one
transaction: the historic base only grows.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from provisioner.core.nin import mask_error, mask_nins
from provisioner.core.plan import CORE, Change, Op
from provisioner.state import schema as t
from provisioner.state.store import _CHUNK, IndexRow, StateStore, bulk_insert, digest_json, dumps, now_iso


def _log_row(
    run_id: str, at: str, c: Change, result: str, error: str | None, memo: dict[int, str] | None = None
) -> dict[str, Any]:
    if c.members:
        after_json: str | None = dumps({**c.attrs, "members": [list(m) for m in c.members]})
    elif c.attrs:
        # A created object's attributes are the same dict the object row stores: encode once.
        after_json = memo.get(id(c.attrs)) if memo is not None else None
        after_json = after_json or dumps(dict(c.attrs))
    else:
        after_json = None
    # The changelog outlives the retention purge: a NIN (a core "nin", norEduPersonNIN, an
    # itslearning sourcedid) is stored masked; the historic base alone keeps it whole.
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
        self.rows: dict[str, dict[str, Any] | None] = {}  # None: the object is gone
        self.dirty: set[str] = set()
        self.log: list[tuple[Change, str, str, str | None]] = []  # encoded at flush
        self.anchors: dict[str, str | None] = {}  # anchors of rows written (and evicted) this run
        self._index: dict[str, IndexRow] | None = None
        # Changes still to come per key (not creates): a flushed row they need stays in
        # memory, else every group add after its create was flushed re-read the row.
        self._pending: Counter[str] = Counter()
        self._new: set[str] = set()  # keys the store does not hold yet: inserted without a delete

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
            index = self._index = self.store.target_index(self.target)
            self._new = {k for k in creates if k not in index}
        if keys:
            self._load(keys, index)

    def _load(self, keys: set[str], index: dict[str, IndexRow] | None = None) -> None:
        if index is None:
            index = self.store.target_index(self.target) if len(keys) > 50 else self._index_of(keys)
        details = self.store.target_details(self.target, [k for k in keys if k in index])
        for k in keys:
            row = index.get(k)
            if row is None:
                continue
            attrs, members = details.get(k, ({}, None))
            self.rows[k] = {
                "kind": row.kind,
                "anchor": row.anchor,
                "status": row.status,
                "status_since": row.status_since,
                "person_id": row.person_id,
                "username": row.username,
                "attrs": attrs,
                "members": None if members is None else set(members),
            }

    def _index_of(self, keys: set[str]) -> dict:
        o = t.objects.c
        q = sa.select(o.key, o.kind, o.anchor, o.status, o.status_since, o.digest, o.person_id, o.username)
        with self.store.engine.connect() as c:
            rows = c.execute(q.where(o.target == self.target, o.key.in_(sorted(keys)))).all()
        return {r[0]: IndexRow(*r[1:]) for r in rows}

    def anchor(self, kind: str, key: str) -> str | None:
        """The anchor as known now (including objects created earlier in this run)."""
        if key in self.rows:
            row = self.rows[key]
            return None if row is None else row["anchor"]
        if key in self.anchors:
            return self.anchors[key]
        if self._index is None:  # what the store held before this run, read once
            self._index = self.store.target_index(self.target)
        ir = self._index.get(key)
        return ir.anchor if ir is not None else None

    def ok(self, c: Change, anchor: str | None, note: str | None) -> None:
        """Record a change the target accepted."""
        self._done(c)
        if c.op == Op.RESTORE and c.attrs and anchor in (None, c.anchor):
            # A restore carries the desired attributes only so that a target finding nothing
            # to restore (purged) can create the object again, under a new anchor. Restored
            # as it was deleted, the object keeps its stored attributes (an update later in
            # the plan records what it changes, and is planned again if it fails).
            c = replace(c, attrs={})
        if c.key not in self.rows and c.op != Op.CREATE:
            self._load({c.key})  # evicted after an earlier flush
        row = self.rows.get(c.key)
        if c.op == Op.CREATE or row is None:
            row = {
                "kind": c.kind,
                "anchor": anchor or c.anchor,
                "status": "active",
                "status_since": self.as_of,
                "person_id": c.person_id,
                "username": c.username,
                "attrs": c.attrs,  # shared with the change; copied on update
                "members": set() if c.kind == "group" else None,
            }
        elif c.op in (Op.UPDATE, Op.MOVE):
            row["attrs"] = {**row["attrs"], **c.attrs}
        elif c.op == Op.DISABLE:
            row["status"], row["status_since"] = "disabled", self.as_of
        elif c.op == Op.ENABLE:
            row["status"], row["status_since"] = "active", self.as_of
            if c.attrs:  # an enable carries the placement it was put back into
                row["attrs"] = {**row["attrs"], **c.attrs}
        elif c.op == Op.RESTORE:
            row["status"], row["status_since"] = "disabled", self.as_of
            if c.attrs:  # nothing was left to restore: created again from these attributes
                row["attrs"] = dict(c.attrs)
        elif c.op == Op.DELETE:
            if self.soft_delete and c.kind == "person":
                row["status"], row["status_since"] = "deleted", self.as_of
            else:
                row = None
        elif c.op == Op.ADD_MEMBERS:
            row["members"] = (row["members"] or set()) | set(c.members)
        elif c.op == Op.REMOVE_MEMBERS:
            row["members"] = (row["members"] or set()) - set(c.members)
        if row is not None and anchor:
            row["anchor"] = anchor
        self.rows[c.key] = row
        self.dirty.add(c.key)
        self.log.append((c, now_iso(), "ok", note))

    def failed(self, c: Change, result: str, error: str) -> None:
        """Record a change the target refused (rejected) or that could not be done (failed)."""
        self._done(c)
        self.log.append((c, now_iso(), result, error))

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
            members = None if row["members"] is None else sorted(row["members"])
            attrs_json = memo.get(id(row["attrs"])) or dumps(row["attrs"])
            memo[id(row["attrs"])] = attrs_json
            members_json = None if members is None else dumps(members)
            inserts.append(
                {
                    "target": self.target,
                    "key": k,
                    "kind": row["kind"],
                    "anchor": row["anchor"],
                    "status": row["status"],
                    "status_since": row["status_since"],
                    "person_id": row["person_id"],
                    "username": row["username"],
                    "digest": digest_json(row["kind"], attrs_json, members_json),
                    "attrs": attrs_json,
                    "members": members_json,
                    "updated_at": stamp,
                }
            )
        log_rows = [_log_row(self.run_id, at, c, result, err, memo) for c, at, result, err in self.log]
        stored = [k for k in keys if k not in self._new]
        self._new.difference_update(keys)
        with self.store.engine.begin() as conn:
            for i in range(0, len(stored), _CHUNK):
                conn.execute(
                    t.objects.delete().where(o.target == self.target, o.key.in_(stored[i : i + _CHUNK]))
                )
            bulk_insert(conn, t.objects, inserts)
            bulk_insert(conn, t.changelog, log_rows)
            if self.settle is not None:
                self.settle(conn)
        # Forget what is written, unless a change still to come needs it.
        for k in keys:
            row = self.rows.get(k) if self._pending.get(k, 0) > 0 else self.rows.pop(k, None)
            self.anchors[k] = None if row is None else row["anchor"]
        self.dirty.clear()
        self.log = []

    def _done(self, c: Change) -> None:
        if c.op != Op.CREATE and self._pending.get(c.key, 0) > 0:
            self._pending[c.key] -= 1

    def finish(self) -> None:
        """Flush and advance the target's version (the state cookie)."""
        self.flush()
        with self.store.engine.begin() as conn:
            self.store.bump_version(conn, self.target)


def apply_core(store: StateStore, changes: Iterable[Change], run_id: str, as_of: str) -> int:
    """Write identity changes in one transaction; returns how many were written."""
    changes = [c for c in changes if c.target == CORE]
    if not changes:
        return 0
    stamp = now_iso()
    i_c, u_c, n_c = t.identities.c, t.usernames.c, t.person_nins.c
    with store.engine.begin() as conn:
        known_users = _existing(
            conn, u_c.username, [c.attrs["username"] for c in changes if "username" in c.attrs]
        )
        known_nins = _existing(conn, n_c.nin, [c.attrs["nin"] for c in changes if c.attrs.get("nin")])
        new_ident, new_users, new_nins, new_alias = [], [], [], []
        for c in changes:
            a = c.attrs
            if a.get("nin") and a["nin"] not in known_nins:
                known_nins.add(a["nin"])
                new_nins.append({"nin": a["nin"], "person_id": c.person_id, "first_seen": stamp})
            if c.kind == "alias":
                new_alias.append({"sis_id": c.key, "person_id": a["person_id"], "created_at": stamp})
            elif c.op == Op.CREATE:
                new_ident.append(
                    {
                        "person_id": c.key,
                        "username": a["username"],
                        "nin": a.get("nin"),
                        "display_name": a.get("display_name"),
                        "roles": a.get("roles"),
                        "status": "active",
                        "inactive_since": None,
                        "created_at": stamp,
                        "updated_at": stamp,
                    }
                )
                if a["username"] not in known_users:
                    known_users.add(a["username"])
                    new_users.append(
                        {
                            "username": a["username"],
                            "person_id": c.key,
                            "nin": a.get("nin"),
                            "origin": "issued",
                            "created_at": stamp,
                            "note": None,
                        }
                    )
            elif c.op in (Op.ENABLE, Op.UPDATE):
                vals = {k: a[k] for k in ("nin", "display_name", "roles", "bridged_until") if k in a}
                if c.op == Op.ENABLE:
                    vals.update(status="active", inactive_since=None, bridged_until=None)
                conn.execute(
                    t.identities.update().where(i_c.person_id == c.key).values(updated_at=stamp, **vals)
                )
            elif c.op == Op.DISABLE:
                conn.execute(
                    t.identities.update()
                    .where(i_c.person_id == c.key)
                    .values(
                        status="inactive",
                        inactive_since=a.get("inactive_since", as_of),
                        bridged_until=None,
                        updated_at=stamp,
                    )
                )
            elif c.op == Op.PURGE:
                conn.execute(
                    t.identities.update()
                    .where(i_c.person_id == c.key)
                    .values(status="purged", nin=None, display_name=None, roles=None, updated_at=stamp)
                )
                conn.execute(t.objects.delete().where(t.objects.c.person_id == c.key))
        for table, rows in (
            (t.identities, new_ident),
            (t.usernames, new_users),
            (t.person_nins, new_nins),
            (t.aliases, new_alias),
        ):
            bulk_insert(conn, table, rows)
        bulk_insert(conn, t.changelog, [_log_row(run_id, stamp, c, "ok", None) for c in changes])
        store.bump_version(conn, CORE)
    return len(changes)


def _existing(conn: sa.Connection, col: sa.Column, values: list[str]) -> set[str]:
    out: set[str] = set()
    for i in range(0, len(values), _CHUNK):
        out.update(r[0] for r in conn.execute(sa.select(col).where(col.in_(values[i : i + _CHUNK]))))
    return out


def forget_objects(store: StateStore, target: str, keys: list[str], run_id: str, reason: str) -> int:
    """Forget objects found deleted by hand in the target, so the next run creates them again.

    A forgotten person is also taken out of the recorded members of the target's groups
    (else the re-created account would never be added back). Logged as op "forget".
    """
    if not keys:
        return 0
    o = t.objects.c
    stamp = now_iso()
    gone = set(keys)
    with store.engine.begin() as conn:
        rows = conn.execute(
            sa.select(o.key, o.kind, o.person_id, o.username).where(o.target == target, o.key.in_(keys))
        ).all()
        groups = conn.execute(
            sa.select(o.key, o.attrs, o.members).where(
                o.target == target, o.kind == "group", o.members.is_not(None)
            )
        ).all()
        for gkey, attrs_json, members_json in groups:
            members = json.loads(members_json)
            kept = [m for m in members if m[0] not in gone]
            if len(kept) != len(members):
                kept_json = dumps(kept)
                conn.execute(
                    t.objects.update()
                    .where(o.target == target, o.key == gkey)
                    .values(
                        members=kept_json,
                        digest=digest_json("group", attrs_json, kept_json),
                        updated_at=stamp,
                    )
                )
        conn.execute(t.objects.delete().where(o.target == target, o.key.in_(keys)))
        log = [
            {
                "run_id": run_id,
                "at": stamp,
                "target": target,
                "op": "forget",
                "kind": kind,
                "key": key,
                "person_id": pid,
                "username": user,
                "before": None,
                "after": None,
                "reason": mask_nins(reason),
                "result": "ok",
                "error": None,
            }
            for key, kind, pid, user in rows
        ]
        bulk_insert(conn, t.changelog, log)
        store.bump_version(conn, target)
    return len(rows)
