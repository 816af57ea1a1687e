"""The typed states BAS records: object, identity, username origin, run, target outcome,
change result, daemon.

Each is a ``StrEnum`` whose values are the strings the state store has always held, so
stored rows, run summaries and the changelog read the same as before (no migration).
``RunStatus.of`` is the one place that decides how an applying run ended.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class ObjectStatus(StrEnum):
    """A stored target object's lifecycle state."""

    ACTIVE = "active"
    DISABLED = "disabled"
    DELETED = "deleted"  # soft-deleted: restorable (Microsoft 365 deleted items)


class IdentityStatus(StrEnum):
    """A person's identity record in the historic base."""

    ACTIVE = "active"
    INACTIVE = "inactive"
    PURGED = "purged"  # personal data removed after retention; username and NIN stay


class Origin(StrEnum):
    """How a username came into the historic base."""

    ISSUED = "issued"  # derivation gave it to a person
    RESERVED = "reserved"  # in use elsewhere (`bas usernames reserve`)
    ADOPTED = "adopted"  # an existing login bound to a person (provisioner.core.bindings)


class TargetOutcome(StrEnum):
    """How applying one target's plan went (the executor's TargetResult.status)."""

    APPLIED = "applied"
    HELD = "held"
    PLANNED = "planned"  # plan-only target: nothing sent
    FAILED = "failed"
    UNCHANGED = "unchanged"
    INTERRUPTED = "interrupted"


# A target that did its job in a run.
TARGET_OK = frozenset({TargetOutcome.APPLIED, TargetOutcome.UNCHANGED, TargetOutcome.PLANNED})


class ChangeResult(StrEnum):
    """A changelog row's result."""

    OK = "ok"
    REJECTED = "rejected"  # the target refused this one change
    FAILED = "failed"  # could not be done (gave up retrying, or the target stopped)
    SKIPPED = "skipped"  # not sent: it depended on a change that failed
    # Not applied, not an error: the target is not ready for it yet (hybrid Microsoft 365
    # waits for Entra Connect to sync the user); planned again next run.
    PENDING = "pending"


class PlanBasis(StrEnum):
    """How a plan was made, which decides what a run and `bas plan` say of it."""

    FULL = "full"  # derived and diffed from the whole source
    CERTIFIED = "certified"  # inputs unchanged: the certified plan stands (core.certificate)
    INCREMENTAL = "incremental"  # the certified plan patched for what changed (run.incremental)
    DRIFT = "drift"  # a reconcile's repair of a live target back to the state store's record


class RunStatus(StrEnum):
    """A run record's status (and a RunOutcome's, which adds LOCKED)."""

    RUNNING = "running"
    PLANNED = "planned"  # a dry run: planned, nothing applied
    DONE = "done"
    DONE_WITH_ERRORS = "done_with_errors"
    HELD = "held"  # a target's changes wait for `bas approve`
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # asked to stop (SIGTERM) between changes
    ABORTED = "aborted"  # the process ended without recording its end
    REFUSED = "refused"  # the source gate refused the snapshot
    DRIFT = "drift"  # a reconcile found drift it did not repair
    LOCKED = "locked"  # never stored: another run held the lock
    APPROVED = "approved"  # never stored: `bas approve` accepted a source refusal
    UNKNOWN = "unknown"  # never stored: `bas approve` of a run that does not exist
    STALE = "stale"  # never stored: a held plan that can no longer be approved

    @classmethod
    def of(cls, *, held: bool, outcomes: Iterable[TargetOutcome], errors: int) -> RunStatus:
        """How an applying run ended: the first rule that matches, in this order.

        ``held``: a target's changes wait for approval; ``outcomes``: every target's
        outcome; ``errors``: rejected and failed changes plus data errors.
        """
        seen = set(outcomes)
        for status, applies in (
            (cls.HELD, held),
            (cls.FAILED, TargetOutcome.FAILED in seen),
            (cls.INTERRUPTED, TargetOutcome.INTERRUPTED in seen),
            (cls.DONE_WITH_ERRORS, errors > 0),
        ):
            if applies:
                return status
        return cls.DONE


class DaemonState(StrEnum):
    """What a daemon reports in its heartbeat row (`bas status`)."""

    IDLE = "idle"
    RUNNING = "running"  # a run is in flight
    STOPPED = "stopped"


# Runs that went through: they planned afresh (older held plans are void) and their
# source counts are the gate's baseline.
RUNS_THROUGH = frozenset({RunStatus.DONE, RunStatus.DONE_WITH_ERRORS, RunStatus.HELD})
# Runs that applied everything they planned.
RUNS_DONE = frozenset({RunStatus.DONE, RunStatus.DONE_WITH_ERRORS})
