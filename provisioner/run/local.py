"""What a run takes from the admin's local records: local persons merged, locks planned.

The runner reads ``LocalInputs`` once per plan (after counting the SIS tables for the
source gate), merges the local persons into the snapshot it derives from, passes each
target's changes through ``with_locks`` and adds the local digest to the source digests,
so the plan certificate (and `bas approve`) sees a local change as a changed input.
The rules themselves are pure: provisioner/core/local.py and provisioner/core/locks.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from provisioner.core.fetched import Fetched
from provisioner.core.lifecycle import Policy
from provisioner.core.local import LocalPerson, is_local, local_digest, merge
from provisioner.core.locks import Lock, locked_in, plan_locks, released_in
from provisioner.core.model import DataError, SourceSnapshot
from provisioner.core.plan import Change
from provisioner.core.rows import IndexRow
from provisioner.state.store import StateStore
from sources.base import Source

# The key of the local records' digest among a plan's source digests (no SIS query is
# called so: sources name theirs after tables or resources).
LOCAL_DIGEST = "bas:local"


@dataclass(frozen=True)
class LocalInputs:
    """The local persons and locks as one plan sees them, and their digest."""

    persons: tuple[LocalPerson, ...] = ()
    locks: tuple[Lock, ...] = ()

    @property
    def digest(self) -> str:
        """What the plan certificate compares (local persons and locks)."""
        return local_digest(self.persons, (_lock_row(x) for x in self.locks))


def _lock_row(lock: Lock) -> dict[str, str | None]:
    return {f: getattr(lock, f) for f in Lock.__dataclass_fields__}


def read_inputs(store: StateStore) -> LocalInputs:
    """Every local person and lock in the state store."""
    return LocalInputs(tuple(store.local.persons()), tuple(store.local.locks()))


def merged(
    snap: SourceSnapshot, inputs: LocalInputs, digests: dict[str, str]
) -> tuple[SourceSnapshot, tuple[DataError, ...]]:
    """The snapshot with the local persons in; records the local digest in ``digests``.

    Call it after the SIS tables were counted for the gate: the counts stay the SIS's.
    A source without digests is never certified: it gets no local digest either.
    """
    with_local_digest(digests, inputs)
    return merge(snap, inputs.persons)


def with_local_digest(digests: dict[str, str], inputs: LocalInputs) -> None:
    """Add the local records' digest to a source's digests (none when the source gave none)."""
    if digests:
        digests[LOCAL_DIGEST] = inputs.digest


def sis_count(*person_ids: Iterable[str]) -> int:
    """How many of these person ids (mappings or sets, disjoint) are SIS persons, not local ones."""
    return sum(1 for ids in person_ids for pid in ids if not is_local(pid))


def with_locks(
    target: str,
    changes: Sequence[Change],
    index: Mapping[str, IndexRow],
    inputs: LocalInputs,
    as_of: str,
    policy: Policy,
) -> list[Change]:
    """A target's changes with its locks planned; a target that cannot disable is left as it is."""
    if not inputs.locks or not policy.disable_first:
        return changes if isinstance(changes, list) else list(changes)
    return plan_locks(
        target,
        changes,
        index,
        locked_in(inputs.locks, target, as_of),
        released_in(inputs.locks, target, as_of),
    )


def read_unless_unchanged(store: StateStore, src: Source, digests: Mapping[str, str]) -> Fetched | None:
    """None when the source and local records are what ``digests`` were made from, else the source read."""
    if digests.get(LOCAL_DIGEST, LocalInputs().digest) != read_inputs(store).digest:
        return src.fetch()
    return src.read_unless({k: v for k, v in digests.items() if k != LOCAL_DIGEST})


def inputs_unchanged(store: StateStore, src: Source, digests: Mapping[str, str]) -> bool:
    """True when the source and the local records are what ``digests`` were made from.

    Digests without the local one (a plan from before local persons) were made from none.
    """
    if digests.get(LOCAL_DIGEST, LocalInputs().digest) != read_inputs(store).digest:
        return False
    return src.unchanged({k: v for k, v in digests.items() if k != LOCAL_DIGEST})
