"""Plans are data: JSON round-trip (examples and a property), helpers, format guard."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from provisioner.core.model import DataError
from provisioner.core.plan import CORE, PLAN_FORMAT, Change, Hold, Op, Plan, TargetPlan


def example_plan() -> Plan:
    create = Change(
        "itslearning",
        Op.CREATE,
        "person",
        "S1",
        "active in SIS: student at NORDBY",
        username="olanor",
        person_id="S1",
        attrs={"given": "Åse «Ø»", "n": 3, "ok": True, "none": None},
        place={"ou": "OU=Nordby «N»"},
        links={"students": ["S2", "S3"]},
    )
    update = Change(
        "itslearning",
        Op.UPDATE,
        "person",
        "S2",
        "changed in SIS: family",
        anchor="S2",
        attrs={"family": "Ny 😀"},
        before={"family": "Gammel"},
    )
    members = Change(
        "itslearning", Op.ADD_MEMBERS, "group", "G1", "joined", members=(("S1", "01"), ("T1", "02"))
    )
    ident = Change(CORE, Op.DISABLE, "identity", "S9", "stopped", attrs={"inactive_since": "2025-10-01"})
    return Plan(
        run_id="20251001T120000Z-abc123",
        created_at="2025-10-01T12:00:00+00:00",
        as_of="2025-10-01",
        cookie={CORE: 3, "itslearning": 7},
        targets=(
            TargetPlan(CORE, (ident,), population=10),
            TargetPlan(
                "itslearning", (create, update, members), population=40, hold=Hold("max_deletes", "x")
            ),
            TargetPlan("ad", (), dry_run=True),
        ),
        errors=(DataError("invalid_nin", "person:X", "NIN 010101***** is invalid"),),
        source_counts={"persons": 12, "schools": 2},
        active_persons=11,
    )


def test_round_trip_example() -> None:
    plan = example_plan()
    text = plan.dumps()
    assert "Åse «Ø»" in text and "😀" in text  # not escaped
    again = Plan.loads(text)
    assert again == plan
    assert again.dumps() == text
    assert isinstance(again.targets[1].changes[0].op, Op)
    create = again.targets[1].changes[0]
    assert (create.place, create.links) == ({"ou": "OU=Nordby «N»"}, {"students": ["S2", "S3"]})
    assert json.loads(text)["targets"][1]["changes"][0]["links"] == {"students": ["S2", "S3"]}


def test_empty_fields_are_left_out() -> None:
    data = json.loads(example_plan().dumps())
    ident = data["targets"][0]["changes"][0]
    assert set(ident) == {"target", "op", "kind", "key", "reason", "attrs"}
    assert data["format"] == PLAN_FORMAT


def test_other_format_is_rejected() -> None:
    data = json.loads(example_plan().dumps())
    data["format"] = PLAN_FORMAT + 1
    with pytest.raises(ValueError, match="unsupported plan format"):
        Plan.loads(json.dumps(data))


def test_helpers() -> None:
    plan = example_plan()
    assert plan.target("ad") == plan.targets[2] and plan.target("feide") is None
    assert len(list(plan.changes())) == 4
    assert not plan.is_empty()
    assert plan.summary() == {
        CORE: {"disable": 1},
        "itslearning": {"create": 1, "update": 1, "add_members": 1},
        "ad": {},
    }
    empty = Plan("r", "t", "2025-10-01", {}, (TargetPlan("ad", ()),))
    assert empty.is_empty()


# -- property: any plan survives dumps/loads ------------------------------------------------------------

text = st.text(max_size=12)
scalar = st.none() | st.booleans() | st.integers(min_value=-(2**53), max_value=2**53) | text
value = (
    scalar | st.lists(text, max_size=4) | st.lists(st.integers(min_value=-1000, max_value=1000), max_size=3)
)
attrs = st.dictionaries(text, value, max_size=5)
members = st.lists(st.tuples(text, text), max_size=4).map(tuple)

changes = st.builds(
    Change,
    target=text,
    op=st.sampled_from(list(Op)),
    kind=st.sampled_from(["person", "group", "org", "orgunit", "identity", "alias"]),
    key=text,
    reason=text,
    anchor=st.none() | text,
    username=st.none() | text,
    person_id=st.none() | text,
    attrs=attrs,
    before=attrs,
    members=members,
    place=attrs,
    links=attrs,
)
holds = st.none() | st.builds(Hold, rule=st.sampled_from(["max_deletes", "max_delete_percent"]), message=text)
target_plans = st.builds(
    TargetPlan,
    target=text,
    changes=st.lists(changes, max_size=5).map(tuple),
    population=st.integers(min_value=0, max_value=10**6),
    dry_run=st.booleans(),
    hold=holds,
)
plans = st.builds(
    Plan,
    run_id=text,
    created_at=text,
    as_of=text,
    cookie=st.dictionaries(text, st.integers(min_value=0, max_value=10**9), max_size=4),
    targets=st.lists(target_plans, max_size=4).map(tuple),
    errors=st.lists(st.builds(DataError, kind=text, record=text, message=text), max_size=3).map(tuple),
    source_counts=st.dictionaries(text, st.integers(min_value=0, max_value=10**7), max_size=4),
    active_persons=st.integers(min_value=0, max_value=10**6),
)


@settings(max_examples=150, deadline=None)
@given(plans)
def test_any_plan_round_trips(plan: Plan) -> None:
    text_ = plan.dumps()
    again = Plan.loads(text_)
    assert again == plan
    assert again.dumps() == text_
