"""The next stored row of a target object once the target accepted a change.

The differ decides which changes a run makes; ``transition`` is the one place that
says what each accepted change leaves in the state store. The writer
(provisioner/state/writer.py) calls it for every change a target accepted, so the
store's record of a target follows the same rules everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from provisioner.core.plan import Change, Op
from provisioner.core.rows import ObjectRow
from provisioner.core.states import ObjectStatus

# Changes that take the object out of the store's record (unless soft-deleted).
_GONE = frozenset({Op.DELETE, Op.PURGE, Op.FORGET})


def transition(
    row: ObjectRow | None, change: Change, *, as_of: str, anchor: str | None = None, soft_delete: bool = False
) -> ObjectRow | None:
    """The row after ``change`` was applied to the object stored as ``row`` (None: not stored).

    ``anchor``: the id the target reported (a create's new id, or a restore's when the
    target created the object again); ``soft_delete``: a deleted person stays recorded as
    deleted (restorable) instead of being forgotten. Returns None when the object is gone.
    """
    op = change.op
    attrs = change.attrs
    if op == Op.RESTORE and attrs and anchor in (None, change.anchor):
        # A restore carries the desired attributes only so that a target finding nothing
        # to restore (purged) can create the object again, under a new anchor. Restored
        # as it was deleted, the object keeps its stored attributes (an update later in
        # the plan records what it changes, and is planned again if it fails).
        attrs = {}
    if row is None and op in _GONE:
        return None
    if op == Op.CREATE or row is None:
        fresh = ObjectRow(
            kind=change.kind,
            anchor=anchor or change.anchor,
            status=ObjectStatus.ACTIVE,
            status_since=as_of,
            person_id=change.person_id,
            username=change.username,
            attrs=attrs if op == Op.CREATE else {},  # shared with the change; copied on update
            members=frozenset() if change.kind == "group" else None,
        )
        if op == Op.CREATE:
            return fresh
        # A change to an object the store does not hold (a saved plan applied late): it is
        # recorded as the change leaves it, as if it had been created just before.
        row = fresh
    next_row = _next(row, op, change, attrs, as_of, soft_delete)
    if next_row is not None and anchor:
        next_row = next_row._replace(anchor=anchor)
    return next_row


def _next(
    row: ObjectRow, op: Op, change: Change, attrs: Mapping[str, Any], as_of: str, soft_delete: bool
) -> ObjectRow | None:
    """An existing row after one change (``attrs``: the change's, as transition reads them)."""
    if op in (Op.UPDATE, Op.MOVE):
        return row._replace(attrs={**row.attrs, **change.attrs})
    if op == Op.DISABLE:
        return row._replace(status=ObjectStatus.DISABLED, status_since=as_of)
    if op == Op.ENABLE:
        # An enable carries the placement it was put back into.
        merged = {**row.attrs, **change.attrs} if change.attrs else row.attrs
        return row._replace(status=ObjectStatus.ACTIVE, status_since=as_of, attrs=merged)
    if op == Op.RESTORE:
        # With attributes left, nothing was left to restore: created again from them.
        return row._replace(
            status=ObjectStatus.DISABLED, status_since=as_of, attrs=dict(attrs) if attrs else row.attrs
        )
    if op == Op.DELETE:
        if soft_delete and row.kind == "person":
            return row._replace(status=ObjectStatus.DELETED, status_since=as_of)
        return None
    if op == Op.ADD_MEMBERS:
        return row._replace(members=(row.members or frozenset()) | frozenset(change.members))
    if op == Op.REMOVE_MEMBERS:
        return row._replace(members=(row.members or frozenset()) - frozenset(change.members))
    return None  # PURGE, FORGET: the object's record goes
