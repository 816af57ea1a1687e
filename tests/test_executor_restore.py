"""What the state store records for a restore: the old attributes, unless the target created the object again.

Through the differ and the executor with a scripted connector: a restore carries the
desired attributes (so a target that finds the object purged can create it again), but
a restored object is as it was deleted, so an update after it that fails is planned
again; a restore answered with a new anchor (created again) stores the desired ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.base import Applied, Connector
from connectors.errors import RejectedError
from provisioner.apply.executor import apply_plan
from provisioner.core.diff import compared, diff_target
from provisioner.core.lifecycle import Policy
from provisioner.core.model import TargetObject
from provisioner.core.plan import Change, Op, Plan, TargetPlan
from provisioner.state.common import now_iso
from provisioner.state.store import StateStore
from tests.sisbuilder import desired_student

M365 = Policy(disable_first=True, delete_after_days=0, soft_delete=True, restore_within_days=30)
PERSON = desired_student("S1")


class Scripted(Connector):
    """Accepts every change; a restore answers ``restore_anchor`` (created again), updates may fail."""

    def __init__(self, restore_anchor: str | None = None, reject_updates: bool = False) -> None:
        self.target = "m365"
        self.restore_anchor, self.reject_updates = restore_anchor, reject_updates
        self.seen: list[Change] = []

    def begin(self, run_id: str, resolve: Any) -> None:
        self.resolve = resolve

    def apply(self, change: Change) -> Applied:
        self.seen.append(change)
        if change.op is Op.CREATE:
            return Applied(anchor="id-1")
        if change.op is Op.UPDATE and self.reject_updates:
            raise RejectedError("refused")
        if change.op is Op.RESTORE and self.restore_anchor:
            return Applied(anchor=self.restore_anchor, note="purged; created again")
        return Applied(anchor=self.resolve(change.kind, change.key))

    def finish(self, current: Any) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[StateStore]:
    s = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    yield s
    s.close()


def run(store: StateStore, as_of: str, name: str | None, conn: Scripted | None = None) -> list[Change]:
    """Plan S1 (present with this name, or gone when None) and apply it; the changes planned."""
    objs = (
        [TargetObject("person", "S1", {"upn": "s1@x", "name": name}, username="us1", person_id="S1")]
        if name
        else []
    )
    index = store.objects.index("m365")
    got = compared(objs, index)
    changes = diff_target(
        "m365",
        got.desired,
        got.digests,
        index,
        store.objects.details("m365", got.stored),
        unchanged=got.unchanged,
        policy=M365,
        placement=frozenset(),
        persons={"S1": PERSON} if name else {},
        identities={},
        frozen=frozenset(),
        school_names={},
        as_of=as_of,
    )
    plan = Plan(
        f"r-{as_of}", now_iso(), as_of, store.versions.current(), (TargetPlan("m365", tuple(changes)),)
    )
    apply_plan(plan, store, {"m365": conn or Scripted()}, soft_delete={"m365": True})
    return changes


def stored(store: StateStore) -> dict[str, Any]:
    return next(o for o in store.objects.iterate("m365") if o["key"] == "S1")


def deleted_s1(store: StateStore) -> None:
    run(store, "2025-09-01", "Ola")
    run(store, "2025-09-10", None)
    assert stored(store)["status"] == "deleted"


def test_restored_object_keeps_its_old_attributes_so_a_failed_update_comes_again(store: StateStore) -> None:
    deleted_s1(store)
    changes = run(store, "2025-09-20", "Ola B", Scripted(reject_updates=True))
    assert [c.op for c in changes] == [Op.RESTORE, Op.ENABLE, Op.UPDATE]
    assert changes[0].attrs == {"upn": "s1@x", "name": "Ola B"}
    row = stored(store)
    assert row["status"] == "active" and row["anchor"] == "id-1" and row["attrs"]["name"] == "Ola"
    again = run(store, "2025-09-21", "Ola B")
    assert [(c.op, dict(c.attrs)) for c in again] == [(Op.UPDATE, {"name": "Ola B"})]
    assert stored(store)["attrs"]["name"] == "Ola B"
    assert run(store, "2025-09-22", "Ola B") == []


def test_object_created_again_by_a_restore_stores_the_desired_attributes(store: StateStore) -> None:
    deleted_s1(store)
    changes = run(store, "2025-09-20", "Ola B", Scripted(restore_anchor="id-2", reject_updates=True))
    assert [c.op for c in changes] == [Op.RESTORE, Op.ENABLE, Op.UPDATE]
    row = stored(store)
    assert row["status"] == "active" and row["anchor"] == "id-2" and row["attrs"]["name"] == "Ola B"
    assert run(store, "2025-09-21", "Ola B") == []
