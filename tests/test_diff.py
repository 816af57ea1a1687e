"""The differ: target objects against stored rows, lifecycle policies, ordering, identities."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from provisioner.core.diff import compared, diff_core, diff_target
from provisioner.core.lifecycle import Policy
from provisioner.core.model import STUDENT, DesiredPerson, TargetObject
from provisioner.core.plan import CORE, Change, Op, Plan, TargetPlan
from provisioner.core.rows import IdentityRow, IndexRow, digest

AS_OF = "2025-10-01"
FEIDE = Policy(disable_first=False, delete_after_days=0)
AD = Policy(disable_first=True, delete_after_days=90)
M365 = Policy(disable_first=True, delete_after_days=0, soft_delete=True, restore_within_days=30)


def dp(
    pid: str, *, role: str = STUDENT, school: str = "NORD", name: str = "Ola Nordmann", nin: str | None = None
):
    given, _, family = name.partition(" ")
    return DesiredPerson(
        person_id=pid,
        username=f"u{pid.lower()}",
        nin=nin,
        given_name=given,
        middle_name=None,
        family_name=family,
        display_name=name,
        birth_date=None,
        email=None,
        mobile=None,
        roles=(role,),
        affiliations=((school, role),),
        primary_school=school,
        grade=None,
    )


def pobj(
    pid: str, place: Mapping[str, Any] | None = None, links: Mapping[str, Any] | None = None, **attrs: Any
) -> TargetObject:
    return TargetObject(
        "person",
        pid,
        {"name": f"Person {pid}", **attrs},
        username=f"u{pid.lower()}",
        person_id=pid,
        place=place or {},
        links=links or {},
    )


def gobj(key: str, members: tuple[tuple[str, str], ...] = (), **attrs: Any) -> TargetObject:
    return TargetObject("group", key, {"name": key, **attrs}, members=members)


def uobj(key: str, **attrs: Any) -> TargetObject:
    return TargetObject("orgunit", key, {"name": key, **attrs})


def dig(o: TargetObject) -> str:
    return digest(o.kind, o.record(), o.members)


def row(
    o: TargetObject | None = None,
    *,
    kind: str = "person",
    status: str = "active",
    since: str = "2025-08-15",
    digest_: str | None = None,
    pid: str | None = None,
) -> IndexRow:
    """The index row of an object stored as ``o`` (or a stored object of a kind that is gone)."""
    if o is not None:
        return IndexRow(o.kind, f"anchor:{o.key}", status, since, digest_ or dig(o), o.person_id, o.username)
    return IndexRow(kind, "anchor:x", status, since, digest_ or "0" * 32, pid, pid and f"u{pid.lower()}")


def stored(o: TargetObject) -> tuple[dict[str, Any], list | None]:
    return dict(o.record()), None if o.members is None else list(o.members)


def run(
    desired: list[TargetObject],
    index: Mapping[str, IndexRow] | None = None,
    details: Mapping[str, tuple[Mapping[str, Any], list | None]] | None = None,
    *,
    policy: Policy = FEIDE,
    placement: frozenset[str] = frozenset(),
    links: frozenset[str] = frozenset(),
    persons: Mapping[str, DesiredPerson] | None = None,
    identities: Mapping[str, IdentityRow] | None = None,
    frozen: frozenset[str] = frozenset(),
    as_of: str = AS_OF,
    changed_in: str = "SIS",
) -> list[Change]:
    if persons is None:
        persons = {o.key: dp(o.key) for o in desired if o.kind == "person"}
    return diff_target(
        "t",
        desired,
        [dig(o) for o in desired],
        index or {},
        details or {},
        policy=policy,
        placement=placement,
        links=links,
        persons=persons,
        identities=identities or {},
        frozen=frozen,
        school_names={"NORD": "Nordby"},
        as_of=as_of,
        changed_in=changed_in,
    )


def ops(changes: list[Change]) -> list[tuple[str, str]]:
    return [(c.op.value, c.key) for c in changes]


# -- creates, no-ops, updates, moves, members ------------------------------------------------------


def test_create_person_and_group_with_members() -> None:
    p, g = pobj("S1"), gobj("G1", (("S1", "01"),))
    changes = run([p, g])
    assert ops(changes) == [("create", "S1"), ("create", "G1"), ("add_members", "G1")]
    c = changes[0]
    assert c.attrs == p.attrs and c.username == "us1" and c.person_id == "S1" and c.anchor is None
    assert "student at Nordby" in c.reason
    assert changes[2].members == (("S1", "01"),)


def test_no_op_when_digest_equal() -> None:
    p, g = pobj("S1"), gobj("G1", (("S1", "01"),))
    # Details are never consulted for equal digests (even if they disagree).
    assert run([p, g], {"S1": row(p), "G1": row(g)}, {"S1": ({"name": "other"}, None)}) == []


def test_update_only_changed_attrs_with_before_values() -> None:
    old = pobj("S1", a=1, b="x", c=["x"], e="gone")
    new = pobj("S1", a=1, b="y", c=("x", "y"), d="new")
    (c,) = run([new], {"S1": row(old)}, {"S1": stored(old)})
    assert c.op == Op.UPDATE and c.anchor == "anchor:S1"
    assert c.attrs == {"b": "y", "c": ["x", "y"], "d": "new", "e": None}
    assert c.before == {"b": "x", "c": ["x"], "d": None, "e": "gone"}
    assert c.reason == "changed in SIS: b, c, d, e"


def test_after_a_config_change_updates_and_moves_say_their_values_may_come_from_it() -> None:
    """The runner passes "SIS or config" while the target was last brought in line under another config."""
    old = pobj("S1", {"ou": "OU=A"}, title="x")
    new = pobj("S1", {"ou": "OU=B"}, title="y")
    changes = run(
        [new], {"S1": row(old)}, {"S1": stored(old)}, placement=frozenset({"ou"}), changed_in="SIS or config"
    )
    assert [(c.op, c.reason) for c in changes] == [
        (Op.MOVE, "changed in SIS or config: ou"),
        (Op.UPDATE, "changed in SIS or config: title"),
    ]


def test_tuple_and_list_values_compare_equal() -> None:
    old = pobj("S1", c=["x", "y"], n=None)
    new = pobj("S1", c=("x", "y"))
    assert run([new], {"S1": row(old, digest_="f" * 32)}, {"S1": stored(old)}) == []


def test_placement_change_is_a_move_before_the_update() -> None:
    old = pobj("S1", {"ou": "OU=A"}, title="x")
    new = pobj("S1", {"ou": "OU=B"}, title="y")
    changes = run([new], {"S1": row(old)}, {"S1": stored(old)}, placement=frozenset({"ou"}))
    assert [(c.op, dict(c.record()), dict(c.before)) for c in changes] == [
        (Op.MOVE, {"ou": "OU=B"}, {"ou": "OU=A"}),
        (Op.UPDATE, {"title": "y"}, {"title": "x"}),
    ]
    assert (changes[0].place, changes[0].attrs, changes[1].attrs) == ({"ou": "OU=B"}, {}, {"title": "y"})


def test_links_are_updated_apart_from_attributes_and_a_dropped_one_is_sorted_by_the_kind() -> None:
    old = pobj("G1", {"ou": "OU=A"}, {"students": ["S1"], "school": "NORD"}, title="x")
    new = pobj("G1", {"ou": "OU=A"}, {"school": "SOR"}, title="x")
    changes = run(
        [new],
        {"G1": row(old)},
        {"G1": stored(old)},
        placement=frozenset({"ou"}),
        links=frozenset({"students"}),
    )
    assert [(c.op, dict(c.attrs), dict(c.links), dict(c.before)) for c in changes] == [
        (Op.UPDATE, {}, {"school": "SOR", "students": None}, {"school": "NORD", "students": ["S1"]}),
    ]
    assert changes[0].reason == "changed in SIS: school, students"
    gone = pobj("G1", {}, {"school": "SOR"}, title="x")  # the stored ou is a placement of the kind
    (move,) = run([gone], {"G1": row(new)}, {"G1": stored(new)}, placement=frozenset({"ou"}))
    assert (move.op, dict(move.place), dict(move.before)) == (Op.MOVE, {"ou": None}, {"ou": "OU=A"})


def test_members_added_and_removed() -> None:
    old = gobj("G1", (("A", "01"), ("B", "01"), ("T", "02")))
    new = gobj("G1", (("A", "01"), ("C", "01"), ("T", "01")))
    changes = run([new], {"G1": row(old)}, {"G1": stored(old)})
    assert [(c.op, c.members) for c in changes] == [
        (Op.ADD_MEMBERS, (("C", "01"), ("T", "01"))),
        (Op.REMOVE_MEMBERS, (("B", "01"), ("T", "02"))),
    ]
    assert all(c.anchor == "anchor:G1" for c in changes)


def test_group_stored_without_members_gets_all_added() -> None:
    new = gobj("G1", (("A", "01"),))
    changes = run([new], {"G1": row(new, digest_="f" * 32)}, {"G1": ({"name": "G1"}, None)})
    assert ops(changes) == [("add_members", "G1")]


def test_frozen_members_are_not_removed_from_groups() -> None:
    old = gobj("school:NORD:students", (("A", ""), ("FROZEN", ""), ("GONE", "")))
    new = gobj("school:NORD:students", (("A", ""),))
    (c,) = run([new], {new.key: row(old)}, {new.key: stored(old)}, frozen=frozenset({"FROZEN"}))
    assert c.op == Op.REMOVE_MEMBERS and c.members == (("GONE", ""),)


# -- lifecycle per policy --------------------------------------------------------------------------


def test_feide_and_itslearning_remove_at_once() -> None:
    gone = pobj("S1")
    (c,) = run([], {"S1": row(gone)}, persons={})
    assert (c.op, c.anchor, c.username, c.person_id) == (Op.DELETE, "anchor:S1", "us1", "S1")
    assert "no active enrollment" in c.reason


@pytest.mark.parametrize(
    ("inactive_since", "deleted"),
    [(None, False), ("2025-09-28", False), ("2025-09-24", True), ("2025-01-01", True)],
)
def test_feide_grace_days(inactive_since: str | None, deleted: bool) -> None:
    gone = pobj("S1")
    idents = {"S1": IdentityRow("us1", None, "x", "inactive", inactive_since)}
    grace = Policy(disable_first=False, delete_after_days=7)
    changes = run([], {"S1": row(gone)}, persons={}, identities=idents, policy=grace)
    assert ops(changes) == ([("delete", "S1")] if deleted else [])


@pytest.mark.parametrize("grace", [0, 7])
def test_still_active_but_out_of_scope_is_removed_without_grace(grace: int) -> None:
    policy = Policy(disable_first=False, delete_after_days=grace)
    (c,) = run([], {"G1P": row(pobj("G1P"))}, persons={"G1P": dp("G1P")}, policy=policy)
    assert c.op == Op.DELETE and "no longer in scope" in c.reason


def test_ad_disables_at_once() -> None:
    changes = run([], {"S1": row(pobj("S1"))}, persons={}, policy=AD)
    assert ops(changes) == [("disable", "S1")]


@pytest.mark.parametrize(
    ("since", "deleted"), [("2025-07-04", False), ("2025-07-03", True), ("2024-01-01", True)]
)
def test_ad_deletes_90_days_after_disable(since: str, deleted: bool) -> None:
    changes = run([], {"S1": row(pobj("S1"), status="disabled", since=since)}, persons={}, policy=AD)
    assert ops(changes) == ([("delete", "S1")] if deleted else [])
    if deleted:
        assert f"disabled since {since}" in changes[0].reason


def test_ad_returning_person_is_enabled_in_place() -> None:
    old = pobj("S1", {"ou": "OU=Deaktiverte"}, title="x")
    new = pobj("S1", {"ou": "OU=NORD"}, title="y")
    changes = run(
        [new],
        {"S1": row(old, status="disabled", since="2025-09-01")},
        {"S1": stored(old)},
        policy=AD,
        placement=frozenset({"ou"}),
    )
    assert [c.op for c in changes] == [Op.ENABLE, Op.MOVE, Op.UPDATE]
    assert changes[0].anchor == "anchor:S1" and changes[0].reason.startswith("active again")
    assert changes[0].place == {"ou": "OU=NORD"}  # the enable carries where the person belongs now


def test_ad_returning_disabled_person_with_same_attrs_is_enabled() -> None:
    o = pobj("S1")
    changes = run([o], {"S1": row(o, status="disabled", since="2025-09-01")}, {"S1": stored(o)}, policy=AD)
    assert ops(changes) == [("enable", "S1")]


def test_m365_disables_and_deletes_the_same_day() -> None:
    changes = run([], {"S1": row(pobj("S1"))}, persons={}, policy=M365)
    assert ops(changes) == [("disable", "S1"), ("delete", "S1")]
    assert "same day" in changes[1].reason


def test_m365_soft_deleted_not_desired_is_left_alone() -> None:
    assert (
        run([], {"S1": row(pobj("S1"), status="deleted", since="2025-09-01")}, persons={}, policy=M365) == []
    )


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        ("2025-10-01", ["restore", "enable"]),
        ("2025-09-02", ["restore", "enable"]),  # 29 days
        ("2025-09-01", ["create"]),  # 30 days: Microsoft has purged it
        ("2025-01-01", ["create"]),
    ],
)
def test_m365_restore_within_30_days_else_create(since: str, expected: list[str]) -> None:
    o = pobj("S1")
    changes = run([o], {"S1": row(o, status="deleted", since=since)}, {"S1": stored(o)}, policy=M365)
    assert [c.op.value for c in changes] == expected
    if expected[0] == "restore":
        assert all(c.anchor == "anchor:S1" for c in changes)
    else:
        assert changes[0].anchor is None and changes[0].attrs == o.attrs


def test_m365_restore_carries_the_desired_attributes_through_a_saved_plan() -> None:
    # A restore that finds the user purged creates it again from these attributes.
    o = pobj("S1", upn="s1@x", surname="Berg")
    was = {**o.attrs, "surname": "Hansen"}
    index = {"S1": row(o, status="deleted", since="2025-09-20", digest_="1" * 32)}
    changes = run([o], index, {"S1": (was, None)}, policy=M365)
    assert [c.op for c in changes] == [Op.RESTORE, Op.ENABLE, Op.UPDATE]
    restore = changes[0]
    assert (
        restore.anchor == "anchor:S1"
        and restore.attrs == o.attrs
        and restore.reason.startswith("active again")
    )
    assert changes[1].attrs == {}  # no placement in Microsoft 365
    assert dict(changes[2].attrs) == {"surname": "Berg"} and dict(changes[2].before) == {"surname": "Hansen"}
    saved = Plan("r", "2025-10-01T00:00:00Z", AS_OF, {"t": 1}, (TargetPlan("t", tuple(changes)),))
    assert Plan.loads(saved.dumps()).target("t").changes[0] == restore


def test_deleted_rows_are_recreated_when_target_has_no_soft_delete() -> None:
    o = pobj("S1")
    assert ops(run([o], {"S1": row(o, status="deleted")}, {"S1": stored(o)}, policy=AD)) == [("create", "S1")]


def test_groups_and_units_no_longer_desired_are_deleted() -> None:
    index = {
        "G1": row(kind="group"),
        "NORD": row(kind="orgunit"),
        "S1": row(pobj("S1")),
    }
    changes = run([], index, persons={}, policy=AD)
    assert ops(changes) == [("delete", "G1"), ("disable", "S1"), ("delete", "NORD")]
    assert "group G1 is no longer active" in changes[0].reason


def test_frozen_objects_are_left_alone() -> None:
    index = {"G1": row(kind="group"), "S1": row(pobj("S1")), "S2": row(pobj("S2"))}
    changes = run([], index, persons={}, frozen=frozenset({"G1", "S1"}))
    assert ops(changes) == [("delete", "S2")]


# -- ordering --------------------------------------------------------------------------------------


def test_order_creates_adds_removes_deletes() -> None:
    g_old = gobj("G1", (("OLD", "01"),))
    g_new = gobj("G1", (("NEW", "01"),))
    desired = [gobj("G2", (("NEW", "01"),)), g_new, pobj("NEW"), uobj("SOR")]
    index = {
        "G1": row(g_old),
        "GONE": row(pobj("GONE")),
        "OLDGROUP": row(kind="group"),
        "OLDUNIT": row(kind="orgunit"),
    }
    changes = run(desired, index, {"G1": stored(g_old)}, persons={"NEW": dp("NEW")})
    assert ops(changes) == [
        ("create", "SOR"),
        ("create", "NEW"),
        ("create", "G2"),
        ("add_members", "G2"),
        ("add_members", "G1"),
        ("remove_members", "G1"),
        ("delete", "OLDGROUP"),
        ("delete", "GONE"),
        ("delete", "OLDUNIT"),
    ]


def test_removals_go_groups_first_then_persons_each_by_key_whatever_order_the_index_was_read_in() -> None:
    """A patch puts a new removal where a full plan does (provisioner.core.patch): by key."""
    index = {
        "S3": row(pobj("S3")),
        "G2": row(kind="group"),
        "S1": row(pobj("S1")),
        "NORD": row(kind="orgunit"),
        "G1": row(kind="group"),
        "S2": row(pobj("S2")),
    }
    changes = run([], index, persons={}, policy=AD)
    assert ops(changes) == [
        ("delete", "G1"),
        ("delete", "G2"),
        ("disable", "S1"),
        ("disable", "S2"),
        ("disable", "S3"),
        ("delete", "NORD"),
    ]
    m365 = run([], {"S2": row(pobj("S2")), "S1": row(pobj("S1"))}, persons={}, policy=M365)
    assert ops(m365) == [("disable", "S1"), ("delete", "S1"), ("disable", "S2"), ("delete", "S2")]


# -- compared ---------------------------------------------------------------------------------


def test_compared_names_the_stored_objects_whose_details_the_differ_needs() -> None:
    same, changed, disabled, new = pobj("A"), pobj("B"), pobj("C"), pobj("D")
    index = {
        "A": row(same),
        "B": row(changed, digest_="f" * 32),
        "C": row(disabled, status="disabled"),
    }
    objs = [same, changed, disabled, new]
    assert compared(objs, index).stored == ["B", "C"]


def test_compared_keeps_what_the_differ_must_see_and_names_the_rest() -> None:
    same, changed, disabled, deleted, new = pobj("A"), pobj("B"), pobj("C"), pobj("D"), pobj("E")
    index = {
        "A": row(same),
        "B": row(changed, digest_="f" * 32),
        "C": row(disabled, status="disabled"),
        "D": row(deleted, status="deleted"),
    }
    got = compared(iter([same, changed, disabled, deleted, new]), index)  # one pass, as a mapping yields
    assert [o.key for o in got.desired] == ["B", "C", "D", "E"]
    assert got.digests == [dig(changed), dig(disabled), dig(deleted), ""]
    assert got.unchanged == {"A"}
    assert got.stored == ["B", "C", "D"]


# What may happen to one object between the stored row and the desired one.
_FATES = ("same", "changed", "disabled", "deleted", "new", "gone")


@given(st.lists(st.sampled_from(_FATES), max_size=12), st.sampled_from([FEIDE, AD, M365]))
def test_diffing_only_the_compared_objects_plans_what_diffing_all_does(
    fates: list[str], policy: Policy
) -> None:
    """Leaving unchanged objects out (and naming them) changes nothing in the plan."""
    desired: list[TargetObject] = []
    index: dict[str, IndexRow] = {}
    details: dict[str, tuple[dict[str, Any], list | None]] = {}
    for n, fate in enumerate(fates):
        key = f"K{n:02d}"
        o = gobj(key, ((f"P{n}", "01"),)) if n % 3 == 0 else pobj(key)
        if fate != "gone":
            desired.append(o)
        if fate == "new":
            continue
        old = replace(o, attrs={**o.attrs, "name": "old"}) if fate == "changed" else o
        status = fate if fate in ("disabled", "deleted") else "active"
        index[key] = row(old, status=status, since="2025-09-20")
        details[key] = stored(old)
    persons = {o.key: dp(o.key) for o in desired if o.kind == "person"}
    common: dict[str, Any] = dict(
        policy=policy,
        placement=frozenset(),
        persons=persons,
        identities={},
        frozen=frozenset(),
        school_names={},
        as_of=AS_OF,
    )
    whole = diff_target(
        "t", desired, [dig(o) if o.key in index else "" for o in desired], index, details, **common
    )
    got = compared(desired, index)
    part = diff_target("t", got.desired, got.digests, index, details, unchanged=got.unchanged, **common)
    assert part == whole


# -- diff_core -------------------------------------------------------------------------------------


def core(
    persons: Mapping[str, DesiredPerson],
    identities: Mapping[str, IdentityRow],
    *,
    new_usernames: Mapping[str, str] | None = None,
    new_aliases: Mapping[str, str] | None = None,
    frozen: frozenset[str] = frozenset(),
    live: set[str] | None = None,
    retention: int = 180,
    as_of: str = AS_OF,
    inactive_nins: Mapping[str, str] | None = None,
) -> list[Change]:
    return diff_core(
        persons,
        identities,
        new_usernames=new_usernames or {},
        new_aliases=new_aliases or {},
        frozen=frozen,
        live=live or set(),
        retention_days=retention,
        school_names={"NORD": "Nordby"},
        as_of=as_of,
        inactive_nins=inactive_nins,
    )


@pytest.mark.parametrize(
    ("status", "known", "expected"),
    [
        ("inactive", "41010112345", [(Op.UPDATE, {"nin": "01010112345"})]),  # away: recorded
        ("active", "41010112345", [(Op.UPDATE, {"nin": "01010112345"}), (Op.DISABLE, None)]),  # leaving now
        ("inactive", "01010112345", []),  # already known
        ("purged", None, []),  # personal data gone: not brought back
    ],
)
def test_core_records_the_new_nin_of_a_person_who_is_away(
    status: str, known: str | None, expected: list[tuple[Op, dict | None]]
) -> None:
    idents = {"S1": ident("S1", status, since="2025-01-01" if status != "active" else None, nin=known)}
    out = core({}, idents, inactive_nins={"S1": "01010112345"}, retention=100000)
    assert [(c.op, c.attrs if c.op is Op.UPDATE else None) for c in out] == expected
    assert all("0101011" not in c.reason for c in out)  # never a NIN in the reason


def ident(pid: str, status: str = "active", since: str | None = None, **kw: Any) -> IdentityRow:
    base = {
        "username": f"u{pid.lower()}",
        "nin": None,
        "display_name": "Ola Nordmann",
        "roles": "student@NORD",
    }
    base.update(kw)
    return IdentityRow(base["username"], base["nin"], base["display_name"], status, since, base["roles"])


def test_core_new_identity_is_created() -> None:
    p = dp("S1", nin="12345678901")
    (c,) = core({"S1": p}, {}, new_usernames={"S1": "us1"})
    assert (c.target, c.op, c.kind, c.key, c.username) == (CORE, Op.CREATE, "identity", "S1", "us1")
    assert c.attrs == {
        "username": "us1",
        "nin": "12345678901",
        "display_name": "Ola Nordmann",
        "roles": "student@NORD",
    }
    assert c.reason.endswith("username issued")
    (c2,) = core({"S1": p}, {})
    assert c2.reason.endswith("username from the historic base")


def test_core_no_change_for_unchanged_active_identity() -> None:
    assert core({"S1": dp("S1")}, {"S1": ident("S1")}) == []


def test_core_update_of_roles() -> None:
    (c,) = core({"S1": dp("S1")}, {"S1": ident("S1", roles="teacher@NORD")})
    assert (c.op, c.attrs, c.before) == (Op.UPDATE, {"roles": "student@NORD"}, {"roles": "teacher@NORD"})


def test_core_update_of_nin_and_name() -> None:
    p = dp("S1", nin="22222222222", name="Ola Ny")
    (c,) = core({"S1": p}, {"S1": ident("S1", nin="11111111111")})
    assert c.op == Op.UPDATE
    assert c.attrs == {"nin": "22222222222", "display_name": "Ola Ny"}
    assert c.before == {"nin": "11111111111", "display_name": "Ola Nordmann"}


@pytest.mark.parametrize("status", ["inactive", "purged"])
def test_core_returning_person_is_enabled(status: str) -> None:
    (c,) = core({"S1": dp("S1")}, {"S1": ident("S1", status, "2025-01-01")})
    assert c.op == Op.ENABLE and c.username == "us1" and c.reason.startswith("returns")


def test_core_stopped_person_is_disabled() -> None:
    (c,) = core({}, {"S1": ident("S1")})
    assert c.op == Op.DISABLE and c.attrs == {"inactive_since": AS_OF}


@pytest.mark.parametrize(
    ("since", "live", "frozen", "purged"),
    [
        ("2025-04-04", set(), frozenset(), True),  # 180 days
        ("2025-04-05", set(), frozenset(), False),  # 179 days
        ("2020-01-01", {"S1"}, frozenset(), False),  # a target still holds an object
        ("2020-01-01", set(), frozenset({"S1"}), False),  # frozen
    ],
)
def test_core_purge_only_past_retention_without_live_objects(
    since: str, live: set[str], frozen: frozenset[str], purged: bool
) -> None:
    changes = core({}, {"S1": ident("S1", "inactive", since)}, live=live, frozen=frozen)
    assert ops(changes) == ([("purge", "S1")] if purged else [])


def test_core_purged_and_frozen_identities_are_left_alone() -> None:
    assert (
        core({}, {"S1": ident("S1", "purged", "2020-01-01"), "S2": ident("S2")}, frozen=frozenset({"S2"}))
        == []
    )


def test_core_new_alias() -> None:
    changes = core(
        {"OLD": dp("OLD")}, {"OLD": ident("OLD", "inactive", "2025-06-20")}, new_aliases={"NEW": "OLD"}
    )
    assert [(c.op, c.kind, c.key) for c in changes] == [
        (Op.CREATE, "alias", "NEW"),
        (Op.ENABLE, "identity", "OLD"),
    ]
    assert changes[0].attrs == {"person_id": "OLD"}
