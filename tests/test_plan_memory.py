"""What a plan holds until it is applied: one object per distinct value, live targets packed."""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path
from typing import Any

import pytest

from provisioner.core import stored
from provisioner.core.diff import compared
from provisioner.core.model import TargetObject
from provisioner.core.plan import CORE, Change, Op, TargetPlan
from provisioner.core.pool import Pool
from provisioner.core.safety import planned_removals
from provisioner.core.states import PlanBasis
from tests.sisbuilder import small_sis
from tests.test_pipeline import DAY1, Env, ok


def fresh(text: str) -> str:
    """An equal string that is a new object (as a driver or a mapping makes them)."""
    return "".join(list(text))


def person(key: str, **attrs: Any) -> TargetObject:
    return TargetObject("person", key, attrs, person_id=key, place={"dn": fresh(f"uid={key},ou=people")})


# -- the pool --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "shared"),
    [
        ({"sn": fresh("Berg")}, {"sn": fresh("Berg")}, True),  # equal text: one object
        ({"oc": [fresh("top"), fresh("person")]}, {"oc": [fresh("top"), fresh("person")]}, True),
        ({"oc": [fresh("top")]}, {"oc": [fresh("top"), fresh("person")]}, False),  # not equal
        ({"n": [1, fresh("a")]}, {"n": [1, fresh("a")]}, False),  # only lists of text
        ({"sn": fresh("Berg")}, {"sn": fresh("Dahl")}, False),
    ],
)
def test_the_pool_shares_equal_values_and_changes_none(a: dict, b: dict, shared: bool) -> None:
    pool = Pool()
    pa, pb = pool.values(dict(a)), pool.values(dict(b))
    assert pa == a and pb == b
    (va,), (vb,) = pa.values(), pb.values()
    assert (va is vb) == shared


def test_the_pool_keeps_every_value_its_type() -> None:
    """1 and True are equal keys: sharing them would make a flag a number."""
    pool = Pool()
    got = [pool.values({"x": v}) for v in (1, True, 1.0, None, fresh("1"), [True], [1])]
    assert [type(g["x"]) for g in got] == [int, bool, float, type(None), str, list, list]
    assert [g["x"] for g in got] == [1, True, 1.0, None, "1", [True], [1]]
    empty: dict[str, Any] = {}
    assert pool.values(empty) is empty


def test_the_objects_kept_for_the_differ_are_made_of_shared_values() -> None:
    """``compared`` keeps the new and changed objects; each equal value among them is one object."""
    members = lambda: tuple((fresh(p), fresh("student")) for p in ("S1", "S2"))  # noqa: E731
    objs = [
        person("S1", sn=fresh("Berg"), oc=[fresh("top"), fresh("person")]),
        person("S2", sn=fresh("Berg"), oc=[fresh("top"), fresh("person")]),
        TargetObject("group", "G1", {"cn": fresh("5A")}, members=members()),
        TargetObject("group", "G2", {"cn": fresh("5B")}, members=members()),
    ]
    got = compared(iter(objs), {}, Pool())
    assert got.desired == objs  # the same values
    s1, s2, g1, g2 = got.desired
    assert s1.attrs["sn"] is s2.attrs["sn"] and s1.attrs["oc"] is s2.attrs["oc"]
    assert g1.members is not None and g2.members is not None
    assert all(x is y for x, y in zip(g1.members, g2.members, strict=True))
    assert s1.place == {"dn": "uid=S1,ou=people"} and (s1.key, s1.person_id) == ("S1", "S1")


def test_a_pooled_object_keeps_every_field() -> None:
    """``Pool.obj`` builds the object anew: every field, one the test does not set included, is kept."""
    o = TargetObject(
        "person",
        "S1",
        {"sn": fresh("Berg")},
        members=((fresh("S2"), fresh("guardian")),),
        username=fresh("olanor"),
        person_id=fresh("S1"),
        place={"dn": fresh("uid=S1")},
        links={"students": [fresh("S2")]},
    )
    unset = [f.name for f in dataclasses.fields(o) if getattr(o, f.name) in (None, {}, f.default)]
    assert unset == []  # a field added to TargetObject: set it above too
    assert Pool().obj(o) == o


# -- packed changes ----------------------------------------------------------------------------

CHANGES = (
    Change(
        "feide", Op.CREATE, "person", "S1", "new", attrs={"cn": "Å\udcff", "oc": ["top"]}, place={"dn": "x"}
    ),
    Change("feide", Op.DELETE, "person", "S2", "gone", anchor="uuid-2"),
    Change("feide", Op.DISABLE, "person", "S2", "gone"),
    Change("feide", Op.REMOVE_MEMBERS, "group", "G1", "left", members=(("S2", "student"), ("S3", "student"))),
    Change("ad", Op.SET_PASSWORD, "person", "S4", "reset by an admin", secret="Hemmelig-1"),
)


def test_packed_changes_read_back_as_planned_and_count_what_they_remove() -> None:
    p = stored.pack(CHANGES)
    assert p == CHANGES and list(p) == list(CHANGES) and p[1:3] == CHANGES[1:3] and p[-1] == CHANGES[-1]
    assert [c.secret for c in p] == [None, None, None, None, "Hemmelig-1"]  # applied from the packed plan
    assert len(p) == 5 and p.op_counts == {
        "create": 1,
        "delete": 1,
        "disable": 1,
        "remove_members": 1,
        "set_password": 1,
    }
    assert p.destructive == {("person", "S2")} and p.member_removals == 2
    assert planned_removals(p) == planned_removals(CHANGES)
    assert TargetPlan("feide", p).counts() == TargetPlan("feide", CHANGES).counts()
    assert p == stored.encode(CHANGES) and stored.encode(CHANGES) == p
    assert not stored.pack(())


def test_packed_changes_are_unpacked_afresh_and_travel_packed() -> None:
    """Nothing unpacked is kept (it is freed once applied); a worker gets the packed bytes."""
    p = stored.pack(CHANGES)
    first, again = p.decoded(), p.decoded()
    assert first == again and all(a is not b for a, b in zip(first, again, strict=True))
    assert stored.at_hand(p) == CHANGES and stored.at_hand(CHANGES) is CHANGES
    sent = pickle.loads(pickle.dumps(p))
    assert isinstance(sent, stored.PackedChanges) and sent.chunks is not None and sent.chunks == p.chunks
    assert sent == CHANGES and sent.op_counts == p.op_counts


def test_the_first_packed_changes_are_read_without_unpacking_the_rest() -> None:
    changes = tuple(
        Change("feide", Op.CREATE, "person", f"S{n:05d}", "new") for n in range(stored.PACK_CHUNK + 5)
    )
    p = stored.pack(changes)
    assert len(p.chunks) == 2
    unread = stored.PackedChanges((p.chunks[0], b"never read"), p.size, p.op_counts, p.destructive, 0)
    assert (
        unread[:3] == changes[:3]
        and unread[:0] == ()
        and unread[: stored.PACK_CHUNK] == changes[: stored.PACK_CHUNK]
    )
    with pytest.raises(ValueError, match="does not decompress"):
        unread[: stored.PACK_CHUNK + 1]


def test_a_plan_to_apply_holds_its_live_targets_and_core_packed(tmp_path: Path) -> None:
    """Made to be applied, a plan holds its live targets' changes and core's packed, not as
    objects; a plan-only one keeps its changes encoded for the certificate, as before."""
    env = Env(tmp_path, small_sis())
    out = ok(env.sync(DAY1))
    assert out.plan is not None
    kinds = {tp.target: type(tp.changes) for tp in out.plan.targets}
    assert kinds[CORE] is stored.PackedChanges and kinds["itslearning"] is stored.PackedChanges
    assert all(k in (stored.PackedChanges, stored.StoredChanges) for k in kinds.values()), kinds
    core = out.plan.target(CORE)
    assert core is not None and len(core.changes) == len(env.store.identities.all()) > 0
    assert env.persons("itslearning"), "applied from the packed plan"
    env.store.close()


# -- a certified plan applied ----------------------------------------------------------------


def test_a_pooled_change_keeps_every_field() -> None:
    """``Pool.change`` builds the change anew: every field, one the test does not set
    included, is kept (the secret too), and equal values of two changes become one object."""
    c = Change(
        fresh("feide"),
        Op.UPDATE,
        fresh("person"),
        fresh("S1"),
        fresh("name changed"),
        anchor=fresh("uuid-1"),
        username=fresh("olanor"),
        person_id=fresh("S1"),
        attrs={"sn": fresh("Berg"), "oc": [fresh("top"), fresh("person")]},
        before={"sn": fresh("Dahl")},
        members=((fresh("S2"), fresh("guardian")),),
        place={"dn": fresh("uid=S1")},
        links={"students": [fresh("S2")]},
        secret=fresh("Hemmelig-1"),
    )
    unset = [f.name for f in dataclasses.fields(c) if getattr(c, f.name) in (None, {}, (), f.default)]
    assert unset == []  # a field added to Change: set it above too
    pool = Pool()
    got = pool.change(c)
    assert got == c and got.secret == c.secret and got.to_json() == c.to_json()
    other = pool.change(
        dataclasses.replace(c, key=fresh("S3"), attrs={"sn": fresh("Berg"), "oc": ["top", "person"]})
    )
    assert other.attrs["sn"] is got.attrs["sn"] and other.attrs["oc"] is got.attrs["oc"]
    assert other.reason is got.reason and other.members[0] is got.members[0]
    assert (
        pool.change(Change("ad", Op.DELETE, "person", "S4", "gone")).attrs
        is Change("ad", Op.DELETE, "person", "S4", "gone").attrs
    )


def test_stored_changes_at_hand_are_pooled_and_not_kept() -> None:
    """A stored (JSON) target's changes, as the executor takes them: equal to the planned
    ones, made of shared values, and not kept in the StoredChanges (the plan holds that
    to the end of the run); decoded already (a patch did), those are taken as they are."""
    changes = tuple(
        Change(
            "feide", Op.CREATE, "person", f"S{n}", "new pupil", attrs={"oc": ["top", "person"], "o": "Skole"}
        )
        for n in range(2_500)
    )
    s = stored.encode(changes)
    got = stored.at_hand(s)
    assert got == changes and s._decoded is None
    assert got[0].attrs["oc"] is got[2_499].attrs["oc"] and got[0].reason is got[1_200].reason
    assert stored.at_hand(s)[0] is not got[0]  # decoded afresh: nothing was kept
    kept = stored.encode(changes, keep=True)
    assert stored.at_hand(kept) is changes


def test_a_certified_plan_applied_keeps_none_of_its_changes_decoded(tmp_path: Path) -> None:
    """``bas plan``, then ``bas sync``: the sync applies the certified plan, whose targets'
    changes are stored JSON. Once applied, none of them is held decoded in the plan (at
    Oslo size, held to the end of the run they took the run to 3.1 GB), and the store has
    what a sync without the plan before it records."""
    env = Env(tmp_path, small_sis())
    planned = env.sync(DAY1, dry_run=True)
    assert planned.exit_code == 0 and planned.plan is not None and planned.plan.basis is PlanBasis.FULL
    out = ok(env.sync(DAY1))
    assert out.plan is not None and out.plan.basis is PlanBasis.CERTIFIED
    held = {tp.target: tp.changes for tp in out.plan.targets}
    assert held and all(isinstance(c, stored.StoredChanges) for c in held.values()), held
    assert {t: c._decoded for t, c in held.items() if isinstance(c, stored.StoredChanges)} == dict.fromkeys(
        held
    )
    (tmp_path / "fresh").mkdir()
    other = Env(tmp_path / "fresh", small_sis())
    ok(other.sync(DAY1))
    for target in ("itslearning", "feide"):
        # (a sealed NIN differs: each store seals with its own key)
        mine, theirs = ({k: _unsealed(o) for k, o in e.objects(target).items()} for e in (env, other))
        assert mine and mine == theirs
    env.store.close()
    other.store.close()


def _unsealed(o: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return o["kind"], {k: v for k, v in o["attrs"].items() if k != "norEduPersonNIN"}
