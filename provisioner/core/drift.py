"""Drift: what changed in a live target behind BAS's back, as planned changes with reasons.

Pure. What is desired is what the state store says BAS last wrote (``Recorded``), so a
reconcile needs no SIS read: drift is a difference between the target and BAS's own
record, and putting the record back is what a repair means. (The runner's full plan
would also fold in whatever changed in the SIS since the last sync; that is the next
sync's job, and mixing the two would make "drift" reasons lie.)

A target's *reader* (``connectors/<kind>/reader.py``) reads the live target and describes
it as a ``LiveView``: the same index and details the differ takes from the state store,
keyed by the stored keys and in the stored vocabulary (a value the target holds in an
equivalent spelling is reported as recorded, so only real differences remain).
``diff_drift`` hands both to ``provisioner.core.diff.diff_target`` and gives each change a
drift reason:

- "drift: changed outside BAS (title)"   an update back to the recorded values;
- "drift: moved outside BAS (ou)"        a move back to the recorded place;
- "drift: disabled outside BAS" / "drift: enabled outside BAS"   the recorded state;
- "drift: members removed|added outside BAS"   the recorded memberships;
- "drift: deleted outside BAS; ..."      restored (a soft-deleting target: RESTORE and
  ENABLE), or forgotten (FORGET: the state store drops the object, so the next sync
  creates it again; nothing is written to the target).

Objects under the target's base that BAS does not manage, and managed ones found
outside it, are ``Note``s: reported, never changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from provisioner.core.diff import diff_target
from provisioner.core.lifecycle import Policy
from provisioner.core.model import TargetObject, split_record
from provisioner.core.plan import Change, Op
from provisioner.core.rows import IndexRow
from provisioner.core.states import ObjectStatus

DELETED = "drift: deleted outside BAS"
FORGOTTEN = f"{DELETED}; forgotten, so the next sync creates it again"
RESTORED = f"{DELETED}; restored"
DISABLED = "drift: disabled outside BAS"
ENABLED = "drift: enabled outside BAS"
MEMBERS_REMOVED = "drift: members removed outside BAS"
MEMBERS_ADDED = "drift: members added outside BAS"


class DriftKind(StrEnum):
    """How an object drifted (what `bas X reconcile` prints first on each line)."""

    CHANGED = "changed"
    MOVED = "moved"
    STATE = "state"
    MEMBERS = "members"
    MISSING = "missing"
    UNMANAGED = "unmanaged"


@dataclass(frozen=True, slots=True)
class Recorded:
    """One object as the state store says BAS last wrote it."""

    kind: str
    key: str
    anchor: str | None
    status: str  # active | disabled | deleted
    attrs: Mapping[str, Any]
    members: tuple[tuple[str, str], ...] | None = None
    person_id: str | None = None
    username: str | None = None


@dataclass(frozen=True, slots=True)
class Note:
    """Drift that is reported and never repaired (an unmanaged object, one outside the base)."""

    kind: DriftKind
    object_kind: str
    key: str | None  # our key (None for an object BAS does not manage)
    where: str  # its DN, userPrincipalName or id
    detail: str


@dataclass
class LiveView:
    """A live target as its reader saw it, in the differ's terms.

    ``index``/``details``: the live row and (attributes, members) of every recorded
    object found, keyed by the stored key; ``status`` in the row is the live one
    (active, disabled, or deleted for a soft-deleted object). ``gone``: recorded keys
    not in the target at all. ``unread``: keys the reader did not look at (an
    incremental read that saw no change to them), taken as recorded. ``cursor``: where
    an incremental reader continues next time (Microsoft 365's deltaLink), if any.
    """

    index: dict[str, IndexRow] = field(default_factory=dict)
    details: dict[str, tuple[dict[str, Any], list[tuple[str, str]] | None]] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)
    unread: set[str] = field(default_factory=set)
    notes: list[Note] = field(default_factory=list)
    cursor: str | None = None

    def found(
        self,
        rec: Recorded,
        status: str,
        attrs: dict[str, Any],
        members: list[tuple[str, str]] | None = None,
    ) -> None:
        """Record the live state of one recorded object (``status``: an ObjectStatus value)."""
        live = ObjectStatus(status)
        self.index[rec.key] = IndexRow(rec.kind, rec.anchor, live, None, "", rec.person_id, rec.username)
        self.details[rec.key] = (attrs, members)


def live_value(recorded: Any, values: Sequence[str], equal: bool) -> Any:
    """What a reader reports for one attribute: the recorded value when the target holds an
    equivalent one (``equal``), else the live values (one value as itself, none as None)."""
    if equal:
        return recorded
    if not values:
        return None
    return values[0] if len(values) == 1 else list(values)


def diff_drift(
    target: str,
    recorded: Iterable[Recorded],
    live: LiveView,
    *,
    policy: Policy,
    placement: frozenset[str],
    links: frozenset[str] = frozenset(),
    as_of: str,
) -> list[Change]:
    """The changes that put a target back to what BAS recorded, each with its drift reason.

    ``placement`` and ``links``: the kind's names of place and link values, which the
    recorded flat records are split by (a change of place is a move)."""
    objs = [r for r in recorded if r.status != "deleted" and r.key not in live.unread]
    outside = {n.key for n in live.notes if n.kind is DriftKind.MISSING}
    gone = {r.key for r in objs if r.key in live.gone or (r.key not in live.index and r.key not in outside)}
    gone_persons = {r.person_id or r.key for r in objs if r.key in gone and r.kind == "person"}
    want = [r for r in objs if r.key in live.index]
    desired = [_desired(r, gone_persons, placement, links) for r in want]
    index: dict[str, IndexRow] = {}
    extra: list[Change] = []
    for r in want:
        row = live.index[r.key]
        if r.status == ObjectStatus.DISABLED:
            # Disabled by BAS: its state is compared here; diff_target compares the rest.
            if row.status == ObjectStatus.ACTIVE:
                extra.append(_change(target, r, Op.DISABLE, ENABLED))
            row = replace(row, status=ObjectStatus.ACTIVE)
        index[r.key] = replace(row, status_since=as_of, digest="")
    changes = diff_target(
        target,
        desired,
        ["\0"] * len(desired),  # never a stored digest: every object's attributes are compared
        index,
        live.details,
        policy=policy,
        placement=placement,
        links=links,
        persons={},
        identities={},
        frozen=frozenset(),
        school_names={},
        as_of=as_of,
    )
    out = [replace(c, reason=_reason(c, index)) for c in changes]
    forget = [_change(target, r, Op.FORGET, FORGOTTEN) for r in objs if r.key in gone]
    return out + extra + forget


def _desired(
    r: Recorded, gone_persons: set[str], placement: frozenset[str], links: frozenset[str]
) -> TargetObject:
    """The recorded object as the target should hold it (members found gone left out)."""
    attrs, place, linked = split_record(r.attrs, placement, links)
    members = None if r.members is None else tuple(m for m in r.members if m[0] not in gone_persons)
    return TargetObject(r.kind, r.key, attrs, members, r.username, r.person_id, place=place, links=linked)


def _change(target: str, r: Recorded, op: Op, reason: str) -> Change:
    return Change(
        target=target,
        op=op,
        kind=r.kind,
        key=r.key,
        reason=reason,
        anchor=r.anchor,
        username=r.username,
        person_id=r.person_id,
    )


def _reason(c: Change, index: Mapping[str, IndexRow]) -> str:
    row = index.get(c.key)
    deleted = row is not None and row.status == "deleted"
    if c.op in (Op.RESTORE, Op.CREATE) or (c.op is Op.ENABLE and deleted):
        return RESTORED
    if c.op is Op.ENABLE:
        return DISABLED
    if c.op is Op.UPDATE:
        return f"drift: changed outside BAS ({', '.join(sorted(c.record()))})"
    if c.op is Op.MOVE:
        return f"drift: moved outside BAS ({', '.join(sorted(c.record()))})"
    if c.op is Op.ADD_MEMBERS:
        return MEMBERS_REMOVED
    if c.op is Op.REMOVE_MEMBERS:
        return MEMBERS_ADDED
    return c.reason


def drift_kind(c: Change) -> DriftKind:
    """How the object of a drift repair drifted, for the reconcile report."""
    if c.reason.startswith(DELETED):
        return DriftKind.MISSING
    if c.op is Op.UPDATE:
        return DriftKind.CHANGED
    if c.op is Op.MOVE:
        return DriftKind.MOVED
    if c.op in (Op.ADD_MEMBERS, Op.REMOVE_MEMBERS):
        return DriftKind.MEMBERS
    return DriftKind.STATE


def drift_attrs(c: Change) -> dict[str, Any]:
    """What differs, as ``{attr: {"expected": recorded, "actual": live}}`` (members by person)."""
    if c.op is Op.ADD_MEMBERS:
        return {"member": {"expected_missing": [m[0] for m in c.members]}}
    if c.op is Op.REMOVE_MEMBERS:
        return {"member": {"unexpected": [m[0] for m in c.members]}}
    if c.op in (Op.UPDATE, Op.MOVE):
        return {k: {"expected": v, "actual": c.before.get(k)} for k, v in c.record().items()}
    return {}
