"""Locks: an admin's `bas lock` as an input of the pure planning.

A lock keeps a person's accounts disabled in the targets that can disable (AD,
Microsoft 365: the kinds whose lifecycle policy disables first) until `bas unlock` or
its end day. It is not a side path: the runner hands each target's locked persons to
``plan_locks``, which turns them into planned changes of the same plan (a disable with
the lock's reason; an enable the lifecycle would make is held back while locked), so the
executor applies them and the changelog records them. A lock never deletes anything: a
locked person who stops in the SIS follows the normal lifecycle, which this leaves alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from provisioner.core.plan import Change, Op
from provisioner.core.rows import IndexRow
from provisioner.core.states import ObjectStatus

ALL_TARGETS = "*"  # a lock's target: every target that can disable


@dataclass(frozen=True, slots=True)
class Lock:
    """One lock as the state store keeps it."""

    person_id: str  # the canonical person id (the one target objects carry)
    target: str  # a target name, or ALL_TARGETS
    reason: str
    by: str
    until: str | None  # last day in force (inclusive); None: until `bas unlock`
    locked_at: str
    released_at: str | None = None
    released_by: str | None = None

    def in_force(self, as_of: str) -> bool:
        """Locked on ``as_of``: not released and its last day not passed."""
        return self.released_at is None and (self.until is None or as_of <= self.until)

    def text(self) -> str:
        """The reason as plans and the changelog give it."""
        until = f" until {self.until}" if self.until else ""
        return f"locked by {self.by}{until}: {self.reason}"

    def covers(self, target: str) -> bool:
        """True when this lock is about ``target``."""
        return self.target in (ALL_TARGETS, target)


def locked_in(locks: Iterable[Lock], target: str, as_of: str) -> dict[str, str]:
    """person_id -> lock text of the persons locked in ``target`` on ``as_of``."""
    out: dict[str, str] = {}
    for lock in sorted(locks, key=lambda x: x.locked_at):
        if lock.covers(target) and lock.in_force(as_of):
            out[lock.person_id] = lock.text()
    return out


def released_in(locks: Iterable[Lock], target: str, as_of: str) -> dict[str, tuple[str, str]]:
    """person_id -> (day, words) of the locks of ``target`` that ended (unlocked or expired)."""
    out: dict[str, tuple[str, str]] = {}
    for lock in sorted(locks, key=lambda x: x.locked_at):
        if not lock.covers(target) or lock.in_force(as_of):
            continue
        if lock.released_at is not None:
            out[lock.person_id] = (
                lock.released_at[:10],
                f"unlocked by {lock.released_by} on {lock.released_at[:10]} ({lock.text()})",
            )
        elif lock.until is not None:
            out[lock.person_id] = (lock.until, f"lock ended after {lock.until} ({lock.text()})")
    return out


def plan_locks(
    target: str,
    changes: Sequence[Change],
    index: Mapping[str, IndexRow],
    locked: Mapping[str, str],
    released: Mapping[str, tuple[str, str]] | None = None,
) -> list[Change]:
    """A target's changes with its locks applied (only for a target that can disable).

    ``locked``: person_id -> lock text (``locked_in``). A locked person's account that is
    active (or created in this plan) gets a disable with the lock's text as its reason;
    one disabled (or restored) stays so: the enable the lifecycle plans is dropped, and so
    is a move out of where the target parked it. Disables and deletes the lifecycle plans
    stand as they are; nothing here deletes. ``released``: locks ended (``released_in``):
    the enable that follows names the unlock.
    """
    released = released or {}
    if not locked and not released:
        return list(changes)
    rows = {r.person_id or key: (key, r) for key, r in index.items() if r.kind == "person"}
    out: list[Change] = []
    disabled_now: set[str] = set()
    created: dict[str, Change] = {}
    for c in changes:
        pid = c.person_id
        if c.kind != "person" or pid is None:
            out.append(c)
            continue
        if pid in locked:
            row = rows.get(pid, (None, None))[1]
            parked = row is not None and row.status != ObjectStatus.ACTIVE
            if c.op is Op.ENABLE or (c.op is Op.MOVE and parked):
                continue  # stays disabled (and where the target parked it) while locked
            if c.op is Op.DISABLE:
                disabled_now.add(pid)
            if c.op is Op.CREATE:
                created[pid] = c
        elif c.op is Op.ENABLE and pid in released:
            row = rows.get(pid, (None, None))[1]
            day, words = released[pid]
            if row is not None and (row.status_since or "") <= day:
                c = replace(c, reason=f"{words}; {c.reason}")
        out.append(c)
    for pid, text in sorted(locked.items()):
        if pid in disabled_now:
            continue
        key_row = rows.get(pid)
        if key_row is not None and key_row[1].status == ObjectStatus.ACTIVE:
            key, anchor, username = key_row[0], key_row[1].anchor, key_row[1].username
        elif pid in created:  # created in this plan: disabled right after (anchor from the create)
            key, anchor, username = created[pid].key, None, created[pid].username
        else:
            continue  # disabled already, or no account in this target
        out.append(
            Change(
                target=target,
                op=Op.DISABLE,
                kind="person",
                key=key,
                anchor=anchor,
                username=username,
                person_id=pid,
                reason=text,
            )
        )
    return out
