"""Persons a target does not hold this run, and the group changes that name them.

A person's create (or restore) that failed, or that is pending (hybrid Microsoft 365
waits for Entra Connect to sync the user), leaves no account in the target. A group
change naming such a person must neither send it nor be recorded with it: the state
store records only what the target holds, so the next run plans the rest again.

``Absent`` keeps those persons (key -> FAILED or PENDING). ``narrowed`` takes them out of
a group's member adds, and pending ones out of its links too (the owners of a Microsoft
365 group: a connector leaves an owner it cannot resolve out, and a pending one is to
be added once synced). What is then left to do decides the change's outcome: nothing
left of a member add is Skipped (a failed create) or pending (every missing member is
pending); an update whose links end as they were and that changes nothing else is pending.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from connectors.errors import PendingError
from provisioner.core.plan import Change, Op
from provisioner.core.states import ChangeResult


class Skipped(Exception):
    """A change not sent, because what it depends on failed earlier in this run."""


Absent = dict[str, ChangeResult]  # person key -> FAILED or PENDING (its account is not there)


def note_absent(absent: Absent, change: Change, result: ChangeResult) -> None:
    """Remember a person whose create or restore did not leave an account in the target."""
    if change.kind == "person" and change.op in (Op.CREATE, Op.RESTORE):  # a restore may create again
        absent[change.key] = result


def narrowed(change: Change, absent: Absent) -> tuple[Change, Skipped | PendingError | None]:
    """The change without persons the target lacks, and its outcome when nothing is left to send."""
    if not absent or change.kind != "group":
        return change, None
    if change.op is Op.ADD_MEMBERS:
        return _members(change, absent)
    if change.op in (Op.CREATE, Op.UPDATE) and change.links:
        return _links(change, {k: r for k, r in absent.items() if r is ChangeResult.PENDING})
    return change, None


def _members(change: Change, absent: Absent) -> tuple[Change, Skipped | PendingError | None]:
    kept = tuple(m for m in change.members if m[0] not in absent)
    if len(kept) == len(change.members):
        return change, None
    if kept:
        return replace(change, members=kept), None
    if all(absent[m[0]] is ChangeResult.PENDING for m in change.members):
        return change, PendingError("every member's account is still to come (pending); added once there")
    return change, Skipped("every member's account could not be created this run; added next run")


def _links(change: Change, pending: Absent) -> tuple[Change, PendingError | None]:
    links: dict[str, Any] = {}
    dropped: list[str] = []
    for name, keys in change.links.items():
        if isinstance(keys, (list, tuple)):
            kept = [k for k in keys if k not in pending]
            dropped += [k for k in keys if k in pending]
            links[name] = kept
        else:
            links[name] = keys
    if not dropped:
        return change, None
    if change.op is Op.UPDATE and not change.attrs and _same(links, change.before):
        who = ", ".join(sorted(set(dropped)))
        return change, PendingError(f"{', '.join(sorted(links))} {who}: account still to come (pending)")
    return replace(change, links=links), None


def _same(links: Mapping[str, Any], before: Mapping[str, Any]) -> bool:
    return all(sorted(v) == sorted(before.get(k) or ()) for k, v in links.items() if isinstance(v, list))
