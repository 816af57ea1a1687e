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

# Bound once: transition runs for every change a run applies (about a million at Oslo
# size), and rows are built positionally for the same reason.
_ACTIVE, _DISABLED, _DELETED = ObjectStatus.ACTIVE, ObjectStatus.DISABLED, ObjectStatus.DELETED
_CREATE, _UPDATE, _MOVE, _RESTORE = Op.CREATE, Op.UPDATE, Op.MOVE, Op.RESTORE
# Changes that take the object out of the store's record (unless soft-deleted).
_GONE = (Op.DELETE, Op.PURGE, Op.FORGET)


def transition(
    row: ObjectRow | None,
    change: Change,
    *,
    as_of: str,
    anchor: str | None = None,
    soft_delete: bool = False,
    record: Mapping[str, Any] | None = None,
) -> ObjectRow | None:
    """The row after ``change`` was applied to the object stored as ``row`` (None: not stored).

    ``anchor``: the id the target reported (a create's new id, or a restore's when the
    target created the object again); ``soft_delete``: a deleted person stays recorded as
    deleted (restorable) instead of being forgotten. ``record``: ``change.record()`` when
    the caller has it already (the stored attributes are the change's attributes, place
    and links in one mapping). Returns None when the object is gone.
    """
    op = change.op
    if op is Op.SET_PASSWORD:
        return row  # a new password changes nothing the store records
    attrs = change.record() if record is None else record
    if op is _RESTORE and attrs and anchor in (None, change.anchor):
        # A restore carries the desired attributes only so that a target finding nothing
        # to restore (purged) can create the object again, under a new anchor. Restored
        # as it was deleted, the object keeps its stored attributes (an update later in
        # the plan records what it changes, and is planned again if it fails).
        attrs = {}
    if row is None or op is _CREATE:
        if op in _GONE:
            return None  # not stored: nothing to take away
        row = ObjectRow(
            change.kind,
            anchor or change.anchor,
            _ACTIVE,
            as_of,
            change.person_id,
            change.username,
            attrs if op is _CREATE else {},  # shared with the change; copied on update
            frozenset() if change.kind == "group" else None,
        )
        if op is _CREATE:
            return row
        # A change to an object the store does not hold (a saved plan applied late): it is
        # recorded as the change leaves it, as if it had been created just before.
    kind, old_anchor, status, since, person_id, username, old_attrs, members = row
    if op is _UPDATE or op is _MOVE:
        old_attrs = {**old_attrs, **attrs}
    elif op is Op.DISABLE:
        status, since = _DISABLED, as_of
    elif op is Op.ENABLE:
        status, since = _ACTIVE, as_of
        if attrs:  # an enable carries the placement it was put back into
            old_attrs = {**old_attrs, **attrs}
    elif op is _RESTORE:
        status, since = _DISABLED, as_of
        if attrs:  # nothing was left to restore: created again from these attributes
            old_attrs = dict(attrs)
    elif op is Op.ADD_MEMBERS:
        members = (members or frozenset()) | frozenset(change.members)
    elif op is Op.REMOVE_MEMBERS:
        members = (members or frozenset()) - frozenset(change.members)
    elif op is Op.DELETE and soft_delete and kind == "person":
        status, since = _DELETED, as_of
    else:  # DELETE (not soft), PURGE, FORGET: the object's record goes
        return None
    return ObjectRow(kind, anchor or old_anchor, status, since, person_id, username, old_attrs, members)
