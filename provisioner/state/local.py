"""The state store's local persons, locks and their audit (``store.local``).

Owns the tables ``local_persons``, ``person_locks`` and ``local_audit``. Every write
here is one transaction that also appends its audit row: who (the OS user or ``--by``),
when, what before and after, with NINs masked. Nothing is ever deleted: an ended local
person and a released lock stay as records, and ``local:<n>`` is never given again.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa

from provisioner.core.local import LOCAL_FIELDS, LocalPerson
from provisioner.core.locks import ALL_TARGETS, Lock
from provisioner.core.nin import mask
from provisioner.state import schema as t
from provisioner.state.common import now_iso

_LOCK_FIELDS = (
    "person_id",
    "target",
    "reason",
    "until",
    "locked_at",
    "locked_by",
    "released_at",
    "released_by",
)


def _person(row: Any) -> LocalPerson:
    return LocalPerson(row["local_id"], **{k: row[k] for k in LOCAL_FIELDS})


def _lock(row: Any) -> Lock:
    return Lock(
        row["person_id"],
        row["target"],
        row["reason"],
        row["locked_by"],
        row["until"],
        row["locked_at"],
        row["released_at"],
        row["released_by"],
    )


def _masked(values: Mapping[str, Any] | None) -> str | None:
    if values is None:
        return None
    out = dict(values)
    if out.get("nin"):
        out["nin"] = mask(out["nin"])
    return json.dumps(out, ensure_ascii=False, sort_keys=True, default=str)


class LocalRecords:
    """Local persons and locks, with their audit."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    # -- local persons ----------------------------------------------------------------

    def persons(self) -> list[LocalPerson]:
        """Every local person ever added (ended ones too), by local id."""
        with self.engine.connect() as c:
            rows = c.execute(sa.select(t.local_persons).order_by(t.local_persons.c.local_id)).mappings()
            return [_person(r) for r in rows]

    def get(self, local_id: int) -> LocalPerson | None:
        """One local person by number."""
        q = sa.select(t.local_persons).where(t.local_persons.c.local_id == local_id)
        with self.engine.connect() as c:
            row = c.execute(q).mappings().first()
        return _person(row) if row else None

    def by_ref(self, ref: str) -> LocalPerson | None:
        """One local person by the admin's own key."""
        q = sa.select(t.local_persons).where(t.local_persons.c.ref == ref)
        with self.engine.connect() as c:
            row = c.execute(q).mappings().first()
        return _person(row) if row else None

    def add(self, values: Mapping[str, Any], by: str, note: str | None = None) -> LocalPerson:
        """Add a local person (fields already checked); audited."""
        now = now_iso()
        row: dict[str, Any] = {k: values.get(k) for k in LOCAL_FIELDS}
        row["protected"] = bool(row["protected"])
        with self.engine.begin() as c:
            res = c.execute(
                t.local_persons.insert().values(
                    **row, created_at=now, created_by=by, updated_at=now, updated_by=by
                )
            )
            key = res.inserted_primary_key
            assert key is not None
            local_id = int(key[0])
            added = LocalPerson(local_id, **row)
            self._audit(c, now, by, "add", added.person_id, None, added.values(), note)
        return added

    def change(
        self, local_id: int, values: Mapping[str, Any], by: str, action: str = "set", note: str | None = None
    ) -> tuple[LocalPerson, LocalPerson]:
        """Change fields of a local person (``end`` sets the end date); (before, after); audited."""
        before = self.get(local_id)
        if before is None:
            raise KeyError(local_id)
        new = {k: v for k, v in values.items() if k in LOCAL_FIELDS}
        now = now_iso()
        with self.engine.begin() as c:
            c.execute(
                t.local_persons.update()
                .where(t.local_persons.c.local_id == local_id)
                .values(**new, updated_at=now, updated_by=by)
            )
            after = LocalPerson(local_id, **{**before.values(), **new})
            old = {k: v for k, v in before.values().items() if k in new}
            self._audit(c, now, by, action, before.person_id, old, new, note)
        return before, after

    # -- locks ------------------------------------------------------------------------

    def locks(self, person_ids: Iterable[str] | None = None) -> list[Lock]:
        """Every lock (released ones too), oldest first; only these persons' when given."""
        q = sa.select(t.person_locks).order_by(t.person_locks.c.id)
        if person_ids is not None:
            q = q.where(t.person_locks.c.person_id.in_(list(person_ids)))
        with self.engine.connect() as c:
            return [_lock(r) for r in c.execute(q).mappings()]

    def lock(
        self, person_id: str, targets: Iterable[str], reason: str, until: str | None, by: str
    ) -> list[Lock]:
        """Lock a person in these targets (ALL_TARGETS: every one); replaces their open locks there."""
        now = now_iso()
        made = []
        with self.engine.begin() as c:
            for target in targets:
                self._release(c, person_id, target, now, by, note="replaced by a new lock")
                row = {
                    "person_id": person_id,
                    "target": target,
                    "reason": reason,
                    "until": until,
                    "locked_at": now,
                    "locked_by": by,
                }
                c.execute(t.person_locks.insert().values(**row))
                made.append(_lock({**row, "released_at": None, "released_by": None}))
                self._audit(c, now, by, "lock", person_id, None, row, None)
        return made

    def unlock(self, person_id: str, target: str | None, by: str, others: Iterable[str] = ()) -> list[Lock]:
        """Release a person's open locks (all, or of one target); the ones released.

        Unlocking one target of a lock on every target keeps the lock on ``others`` (the
        other configured targets that can disable), as locks of their own.
        """
        now = now_iso()
        with self.engine.begin() as c:
            open_locks = [x for x in self._open(c, person_id) if target is None or x.covers(target)]
            for x in open_locks:
                self._release(c, person_id, x.target, now, by)
                if target is not None and x.target == ALL_TARGETS:
                    for other in others:
                        if other != target:
                            row = {
                                "person_id": person_id,
                                "target": other,
                                "reason": x.reason,
                                "until": x.until,
                                "locked_at": x.locked_at,
                                "locked_by": x.by,
                            }
                            c.execute(t.person_locks.insert().values(**row))
                            self._audit(
                                c, now, by, "lock", person_id, None, row, f"kept after unlock of {target}"
                            )
        return open_locks

    def _open(self, c: sa.Connection, person_id: str) -> list[Lock]:
        pl = t.person_locks.c
        q = sa.select(t.person_locks).where(pl.person_id == person_id, pl.released_at.is_(None))
        return [_lock(r) for r in c.execute(q).mappings()]

    def _release(
        self, c: sa.Connection, person_id: str, target: str, now: str, by: str, note: str | None = None
    ) -> None:
        pl = t.person_locks.c
        where = (pl.person_id == person_id, pl.target == target, pl.released_at.is_(None))
        for r in c.execute(sa.select(t.person_locks).where(*where)).mappings():
            before = {k: r[k] for k in _LOCK_FIELDS}
            self._audit(
                c, now, by, "unlock", person_id, before, {"released_at": now, "released_by": by}, note
            )
        c.execute(t.person_locks.update().where(*where).values(released_at=now, released_by=by))

    # -- the audit --------------------------------------------------------------------

    def audit(self, subjects: Iterable[str] | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Audit rows, oldest first (of these subjects when given; NINs are stored masked)."""
        a = t.local_audit.c
        q = sa.select(t.local_audit).order_by(a.id.desc()).limit(limit)
        if subjects is not None:
            q = q.where(a.subject.in_(list(subjects)))
        with self.engine.connect() as c:
            rows = [dict(r) for r in c.execute(q).mappings()]
        return rows[::-1]

    @staticmethod
    def _audit(
        c: sa.Connection,
        at: str,
        by: str,
        action: str,
        subject: str,
        before: Mapping[str, Any] | None,
        after: Mapping[str, Any] | None,
        note: str | None,
    ) -> None:
        c.execute(
            t.local_audit.insert().values(
                at=at,
                by=by,
                action=action,
                subject=subject,
                before=_masked(before),
                after=_masked(after),
                note=note,
            )
        )
