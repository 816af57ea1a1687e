"""Plans are data: the changes one run intends, per target, each with its reason.

A plan is built by the differ, printed or saved by the CLI, and applied by the
executor; dry-run is the same plan, not applied. ``Plan.to_json``/``Plan.from_json``
round-trip exactly, so a saved plan can be reviewed and applied later (``bas apply``),
guarded by the state cookie it carries.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from provisioner.core.jsontext import compact, loads
from provisioner.core.model import DataError, record_of
from provisioner.core.quickinit import quick_init
from provisioner.core.states import PlanBasis

PLAN_FORMAT = 1

# The pseudo-target for identity changes (usernames issued, persons going inactive or
# returning, purges). It has no connector: the executor applies it to the state store.
CORE = "core"


class Op(StrEnum):
    """What a change does; the order is the plan table's column order (`bas plan`)."""

    CREATE = "create"
    UPDATE = "update"  # only the changed attributes
    MOVE = "move"  # placement change (AD OU, school)
    DISABLE = "disable"
    ENABLE = "enable"
    RESTORE = "restore"  # undo a soft delete (Microsoft 365 deleted items, AD disabled OU)
    # A new password for a person's account (a delegated reset, provisioner/run/password.py).
    # It changes no stored attribute: the object's row stays as it is, only the changelog
    # records it; the password itself travels in ``Change.secret``, never in a plan's JSON.
    SET_PASSWORD = "set_password"  # noqa: S105 (an operation name)
    DELETE = "delete"
    ADD_MEMBERS = "add_members"
    REMOVE_MEMBERS = "remove_members"
    PURGE = "purge"  # core only: personal data removed after retention
    FORGET = "forget"  # state store only: an object deleted by hand is dropped, the next sync creates it


_EMPTY: dict[str, Any] = {}

# Operations that take something away; these count against the safety thresholds. A
# forget writes nothing to the target, but a repair forgetting many objects is as suspect.
DESTRUCTIVE_OPS = frozenset({Op.DISABLE, Op.DELETE, Op.FORGET})
# ... and with membership removals, every operation the safety limits count.
REMOVING_OPS = DESTRUCTIVE_OPS | {Op.REMOVE_MEMBERS}


@quick_init
@dataclass(frozen=True, slots=True)
class Change:
    """One planned change to one object in one target."""

    target: str
    op: Op
    kind: str  # person | group | org | orgunit
    key: str  # our stable key: person_id, group key, school id, "org"
    reason: str  # the source fact or rule behind it
    anchor: str | None = None  # the target's immutable id (None until created)
    username: str | None = None
    person_id: str | None = None
    # attrs: create: all; update: new values. before: update/move: the old values of what
    # changed (attributes, placement, links). place (TargetObject.place): create, restore,
    # enable: all; move: the new values. links (TargetObject.links): create: all; update:
    # the changed ones. A change without them shares one empty dict (never mutated): at
    # Oslo size a plan holds about a million changes, and most carry no ``before``.
    attrs: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    before: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    members: tuple[tuple[str, str], ...] = ()  # add/remove members: (person_id, role)
    place: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    links: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)
    # SET_PASSWORD only: the new password, held in memory for the one apply. It is left out
    # of to_json (so of saved and held plans, the certificate and the runs table), of repr
    # (so of logs and tracebacks) and of comparisons; the changelog never records it.
    secret: str | None = field(default=None, repr=False, compare=False)

    def record(self) -> Mapping[str, Any]:
        """Attributes, placement and links as one mapping, as the state store keeps them."""
        return record_of(self.attrs, self.place, self.links)

    def to_json(self) -> dict[str, Any]:
        """Plain dict; empty fields left out to keep saved plans small (``secret`` never written)."""
        out: dict[str, Any] = {
            "target": self.target,
            "op": self.op.value,
            "kind": self.kind,
            "key": self.key,
            "reason": self.reason,
        }
        if self.anchor is not None:
            out["anchor"] = self.anchor
        if self.username is not None:
            out["username"] = self.username
        if self.person_id is not None:
            out["person_id"] = self.person_id
        if self.attrs:
            out["attrs"] = dict(self.attrs)
        if self.before:
            out["before"] = dict(self.before)
        if self.members:
            out["members"] = [list(m) for m in self.members]
        if self.place:
            out["place"] = dict(self.place)
        if self.links:
            out["links"] = dict(self.links)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Change:
        """Inverse of to_json (a change read back carries no secret)."""
        return cls(
            target=data["target"],
            op=Op(data["op"]),
            kind=data["kind"],
            key=data["key"],
            reason=data["reason"],
            anchor=data.get("anchor"),
            username=data.get("username"),
            person_id=data.get("person_id"),
            attrs=dict(data["attrs"]) if data.get("attrs") else _EMPTY,
            before=dict(data["before"]) if data.get("before") else _EMPTY,
            members=tuple((m[0], m[1]) for m in data.get("members", ())),
            place=dict(data["place"]) if data.get("place") else _EMPTY,
            links=dict(data["links"]) if data.get("links") else _EMPTY,
        )


@dataclass(frozen=True, slots=True)
class Hold:
    """Why a target's changes are held back until an admin approves them."""

    rule: str  # a provisioner.core.safety.HoldRule value
    message: str

    def to_json(self) -> dict[str, str]:
        """Plain dict."""
        return {"rule": self.rule, "message": self.message}


class OpCounted(Sequence[Change]):
    """Changes that know how many of each operation they hold without being decoded.

    The base of provisioner.core.stored's encoded changes, declared here so that a plan
    counts them without importing the module that encodes them (which builds on this one).
    """

    __slots__ = ()
    op_counts: dict[str, int]


@dataclass(frozen=True, slots=True)
class TargetPlan:
    """The changes for one target, and whether they are held or only planned."""

    target: str
    # A tuple, or changes held encoded (provisioner.core.stored): StoredChanges in a certified
    # plan or a plan-only target, PackedChanges in a live target until applied.
    changes: Sequence[Change]
    population: int = 0  # objects the target holds before this plan (for percent thresholds)
    dry_run: bool = False  # the target is configured plan-only (no live connector yet, or by choice)
    hold: Hold | None = None

    def counts(self) -> dict[str, int]:
        """Changes by operation (encoded changes know theirs without being decoded)."""
        if isinstance(self.changes, OpCounted):
            return dict(self.changes.op_counts)
        return dict(Counter(c.op.value for c in self.changes))

    def ops(self) -> frozenset[Op]:
        """The operations this target's changes take."""
        return frozenset(Op(k) for k in self.counts())

    def to_json(self) -> dict[str, Any]:
        """Plain dict."""
        return {
            "target": self.target,
            "population": self.population,
            "dry_run": self.dry_run,
            "hold": self.hold.to_json() if self.hold else None,
            "changes": [c.to_json() for c in self.changes],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TargetPlan:
        """Inverse of to_json."""
        hold = data.get("hold")
        return cls(
            target=data["target"],
            changes=tuple(Change.from_json(c) for c in data["changes"]),
            population=data.get("population", 0),
            dry_run=data.get("dry_run", False),
            hold=Hold(**hold) if hold else None,
        )


@dataclass(frozen=True, slots=True)
class Plan:
    """One run's intended changes for every target, with what it was computed from."""

    run_id: str
    created_at: str  # ISO timestamp (UTC)
    as_of: str  # the day activity was evaluated for
    cookie: Mapping[str, int]  # state version per target (and core) when planned
    targets: tuple[TargetPlan, ...]
    errors: tuple[DataError, ...] = ()
    source_counts: Mapping[str, int] = field(default_factory=dict)
    active_persons: int = 0
    source_digests: Mapping[str, str] = field(default_factory=dict)  # per query, for the certificate
    basis: PlanBasis = PlanBasis.FULL
    # The safety gate's inputs: schools present in the source (None: not recorded), the
    # schools gone since the last good run (they hold the plan), and the config digest an
    # approval must still match.
    schools: tuple[str, ...] | None = None
    schools_gone: tuple[str, ...] = ()
    config_digest: str = ""

    def target(self, name: str) -> TargetPlan | None:
        """The plan of one target, if it is in this plan."""
        for tp in self.targets:
            if tp.target == name:
                return tp
        return None

    def changes(self) -> Iterable[Change]:
        """Every change, target by target."""
        for tp in self.targets:
            yield from tp.changes

    def is_empty(self) -> bool:
        """True when no target has anything to do."""
        return all(not tp.changes for tp in self.targets)

    def summary(self) -> dict[str, dict[str, int]]:
        """Counts by target and operation."""
        return {tp.target: tp.counts() for tp in self.targets}

    def to_json(self) -> dict[str, Any]:
        """Plain dict, JSON-serialisable."""
        return {
            "format": PLAN_FORMAT,
            "run_id": self.run_id,
            "created_at": self.created_at,
            "as_of": self.as_of,
            "cookie": dict(self.cookie),
            "source_counts": dict(self.source_counts),
            "active_persons": self.active_persons,
            "source_digests": dict(self.source_digests),
            "basis": self.basis.value,
            "schools": None if self.schools is None else list(self.schools),
            "schools_gone": list(self.schools_gone),
            "config_digest": self.config_digest,
            "errors": [e.to_json() for e in self.errors],
            "targets": [tp.to_json() for tp in self.targets],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Plan:
        """Inverse of to_json; rejects plans written in another format."""
        if data.get("format") != PLAN_FORMAT:
            raise ValueError(f"unsupported plan format {data.get('format')!r} (expected {PLAN_FORMAT})")
        return cls(
            run_id=data["run_id"],
            created_at=data["created_at"],
            as_of=data["as_of"],
            cookie=dict(data["cookie"]),
            targets=tuple(TargetPlan.from_json(t) for t in data["targets"]),
            errors=tuple(DataError(**e) for e in data.get("errors", ())),
            source_counts=dict(data.get("source_counts", {})),
            active_persons=data.get("active_persons", 0),
            source_digests=dict(data.get("source_digests", {})),
            basis=PlanBasis(data.get("basis", PlanBasis.FULL)),
            schools=None if data.get("schools") is None else tuple(data["schools"]),
            schools_gone=tuple(data.get("schools_gone", ())),
            config_digest=data.get("config_digest", ""),
        )

    def dumps(self) -> str:
        """The plan as JSON text."""
        return compact(self.to_json())

    @classmethod
    def loads(cls, text: str) -> Plan:
        """Parse a plan saved by ``dumps``."""
        return cls.from_json(loads(text))
