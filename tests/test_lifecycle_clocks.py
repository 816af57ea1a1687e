"""Lifecycle clocks count from the SIS end date; bridged persons are left as they are (diff, diff_core)."""

from __future__ import annotations

import pytest

from provisioner.core.diff import diff_core, diff_target
from provisioner.core.lifecycle import Policy
from provisioner.core.plan import Op
from provisioner.core.rows import IdentityRow, IndexRow

AD = Policy(disable_first=True, delete_after_days=90)
M365 = Policy(disable_first=True, delete_after_days=0, soft_delete=True, restore_within_days=30)
FEIDE_GRACE = Policy(disable_first=False, delete_after_days=14)
END = "2026-06-20"  # the SIS end date


def retire(
    policy: Policy,
    status: str,
    status_since: str,
    as_of: str,
    *,
    ended: dict[str, str] | None = None,
    bridged: dict[str, str] | None = None,
    inactive_since: str | None = None,
) -> list[tuple[Op, str]]:
    index = {"P": IndexRow("person", "anchor:P", status, status_since, "0" * 32, "P", "up")}
    ident = {"P": IdentityRow("up", None, "P", "inactive", inactive_since)}
    changes = diff_target(
        "t",
        [],
        [],
        index,
        {},
        policy=policy,
        placement=frozenset(),
        persons={},
        identities=ident,
        frozen=frozenset(),
        school_names={},
        as_of=as_of,
        bridged=bridged,
        ended={"P": END} if ended is None else ended,
    )
    return [(c.op, c.reason) for c in changes]


@pytest.mark.parametrize(
    ("policy", "status", "status_since", "as_of", "ops"),
    [
        # AD: disabled when BAS notices, deleted 90 days after the SIS end date
        (AD, "active", "2025-08-15", "2026-06-21", [Op.DISABLE]),
        (AD, "disabled", "2026-06-21", "2026-09-17", []),  # 89 days after the end
        (AD, "disabled", "2026-06-21", "2026-09-18", [Op.DELETE]),  # 90 days after the end
        # noticed 10 days late: still 90 days from the SIS end date, not from the disable
        (AD, "disabled", "2026-06-30", "2026-09-18", [Op.DELETE]),
        # noticed after more than 90 days: disabled and deleted in one run
        (AD, "active", "2025-08-15", "2026-09-20", [Op.DISABLE, Op.DELETE]),
        # Microsoft 365: blocked and soft-deleted the same day
        (M365, "active", "2025-08-15", "2026-06-21", [Op.DISABLE, Op.DELETE]),
        (M365, "deleted", "2026-06-21", "2026-06-30", []),
        # Feide with 14 days of grace: from the SIS end date
        (FEIDE_GRACE, "active", "2025-08-15", "2026-07-03", []),
        (FEIDE_GRACE, "active", "2025-08-15", "2026-07-04", [Op.DELETE]),
    ],
)
def test_clocks_from_the_sis_end_date(
    policy: Policy, status: str, status_since: str, as_of: str, ops: list[Op]
) -> None:
    got = retire(policy, status, status_since, as_of, inactive_since=as_of)
    assert [op for op, _ in got] == ops
    assert all(f"since {END} (SIS end date)" in why for _, why in got)


def test_without_an_sis_end_date_the_disable_starts_the_clock() -> None:
    """A person whose rows were removed from the SIS has no end date: counted from when BAS noticed."""
    assert retire(AD, "disabled", "2026-06-30", "2026-09-27", ended={}, inactive_since="2026-06-30") == []
    got = retire(AD, "disabled", "2026-06-30", "2026-09-28", ended={}, inactive_since="2026-06-30")
    assert [op for op, _ in got] == [Op.DELETE]
    assert "since 2026-06-30;" in got[0][1] and "SIS end date" not in got[0][1]


@pytest.mark.parametrize("policy", [AD, M365, FEIDE_GRACE, Policy(disable_first=False, delete_after_days=0)])
@pytest.mark.parametrize("status", ["active", "disabled"])
def test_bridged_person_is_left_as_it_is(policy: Policy, status: str) -> None:
    assert retire(policy, status, "2026-06-21", "2026-12-01", bridged={"P": "2026-08-15"}) == []


def _core(row: IdentityRow, **kw: object) -> list:
    return diff_core(
        {},
        {"P": row},
        new_usernames={},
        new_aliases={},
        frozen=frozenset(),
        live=frozenset(),
        retention_days=180,
        school_names={},
        as_of=kw.pop("as_of", "2026-07-01"),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def test_core_records_a_bridge_once() -> None:
    active = IdentityRow("up", None, "P", "active", None)
    (c,) = _core(active, bridged={"P": "2026-08-15"}, ended={"P": END})
    assert (c.op, dict(c.attrs), dict(c.before)) == (
        Op.UPDATE,
        {"bridged_until": "2026-08-15"},
        {"bridged_until": None},
    )
    assert c.reason.startswith(f"bridged until 2026-08-15: ended in SIS on {END} (SIS end date)")
    recorded = IdentityRow("up", None, "P", "active", None, bridged_until="2026-08-15")
    assert _core(recorded, bridged={"P": "2026-08-15"}, ended={"P": END}) == []
    # The new school's start moved: recorded again.
    (c,) = _core(recorded, bridged={"P": "2026-08-20"}, ended={"P": END})
    assert dict(c.attrs) == {"bridged_until": "2026-08-20"}


def test_core_stop_and_purge_count_from_the_sis_end_date() -> None:
    active = IdentityRow("up", None, "P", "active", None, bridged_until="2026-08-15")
    (c,) = _core(active, ended={"P": END}, as_of="2026-07-10")
    assert (c.op, dict(c.attrs)) == (Op.DISABLE, {"inactive_since": END})
    assert f"since {END} (SIS end date)" in c.reason
    gone = IdentityRow("up", None, "P", "inactive", END)
    assert _core(gone, as_of="2026-12-16") == []  # 179 days after the SIS end date
    assert [c.op for c in _core(gone, as_of="2026-12-17")] == [Op.PURGE]
