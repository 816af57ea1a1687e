"""Active windows per role, the summer bridge and the SIS end date (provisioner.core.activity, derive)."""

from __future__ import annotations

import gc
import sys

import pytest

from provisioner.config import ConfigError, LifecycleConfig, UsernameConfig, parse
from provisioner.core import activity
from provisioner.core.derive import Derivation, IdentityView, derive
from provisioner.core.model import GUARDIAN, STUDENT, TEACHER
from tests.sisbuilder import Sis

LC = LifecycleConfig()


def run(sis: Sis, as_of: str, lc: LifecycleConfig | None = None) -> Derivation:
    return derive(sis.snapshot(), as_of, IdentityView(), UsernameConfig(), lc)


def two_schools() -> Sis:
    return Sis().school("NORD", "974000001", "NORDBY").school("SOR", "974000002", "SORBY")


# -- windows ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "start", "end", "lc", "want"),
    [
        (STUDENT, "2026-08-15", "2027-06-20", LC, ("2026-08-15", "2027-06-20")),
        (STUDENT, "2026-08-15", None, LC, ("2026-08-15", None)),
        (TEACHER, "2026-08-15", "2027-06-20", LC, ("2026-08-08", "2027-06-20")),  # employees: 7 days early
        ("staff", "2026-03-01", None, LC, ("2026-02-22", None)),
        ("leader", "2026-01-05", "2026-01-31", LC, ("2025-12-29", "2026-01-31")),  # across a year
        (
            STUDENT,
            "2026-08-15",
            "2027-06-20",
            LifecycleConfig(students={"days_before_start": 3, "days_after_end": 14}),
            ("2026-08-12", "2027-07-04"),
        ),
        (
            TEACHER,
            "2026-08-15",
            None,
            LifecycleConfig(employees={"days_before_start": 0, "days_after_end": 30}),
            ("2026-08-15", None),  # open-ended stays open
        ),
    ],
)
def test_window(role: str, start: str, end: str | None, lc: LifecycleConfig, want: tuple) -> None:
    assert activity.window(role, start, end, lc) == want


def test_window_dates_are_shifted_once_per_memo_and_nothing_kept_without_one() -> None:
    lc = LifecycleConfig(employees={"days_before_start": 3, "days_after_end": 30})
    memo: activity.Memo = {}
    got = [activity.window(TEACHER, f"2026-08-{d:02d}", "2027-06-20", lc, memo) for d in (1, 2, 1)]
    assert got == [
        ("2026-07-29", "2027-07-20"),
        ("2026-07-30", "2027-07-20"),
        ("2026-07-29", "2027-07-20"),
    ]
    assert memo == {
        ("2026-08-01", -3): "2026-07-29",
        ("2026-08-02", -3): "2026-07-30",
        ("2027-06-20", 30): "2027-07-20",
    }
    assert got[0].start is got[2].start  # the memo's one string
    # Without a memo nothing outlives the call (a module-wide cache filled amid a
    # derivation kept pages of its heap from being given back).
    gc.collect()
    before = sys.getallocatedblocks()
    wins = [activity.window(TEACHER, f"2026-08-{d:02d}", None, lc) for d in range(1, 29)]
    del wins
    gc.collect()
    assert sys.getallocatedblocks() - before < 20


@pytest.mark.parametrize("bad", ["2026-13-01", "15.08.2026", "soon"])
def test_a_value_that_is_no_date_never_stops_the_run(bad: str) -> None:
    assert activity.window(TEACHER, bad, bad, LC) == (bad, bad)
    s = two_schools().employee("T", "SOR", start=bad).employee("OK", "SOR")
    assert "OK" in run(s, "2026-01-05").state.persons


def test_guardians_have_no_window_of_their_own() -> None:
    with pytest.raises(ValueError, match="guardian"):
        activity.window(GUARDIAN, "2026-08-15", None, LC)


@pytest.mark.parametrize(
    ("windows", "day", "active", "ended", "ahead", "bridged"),
    [
        ([("2025-08-15", "2026-06-20")], "2026-06-20", True, None, None, None),  # the last day
        ([("2025-08-15", "2026-06-20")], "2026-06-21", False, "2026-06-20", None, None),  # left
        # the summer between two schools: bridged until the new one starts
        (
            [("2025-08-15", "2026-06-20"), ("2026-08-15", None)],
            "2026-06-21",
            False,
            "2026-06-20",
            "2026-08-15",
            "2026-08-15",
        ),
        (
            [("2025-08-15", "2026-06-20"), ("2026-08-15", None)],
            "2026-08-14",
            False,
            "2026-06-20",
            "2026-08-15",
            "2026-08-15",
        ),
        ([("2025-08-15", "2026-06-20"), ("2026-08-15", None)], "2026-08-15", True, None, None, None),
        # exactly bridge_days (75) apart still bridges; 76 does not
        (
            [("2025-08-15", "2026-06-01"), ("2026-08-15", None)],
            "2026-07-01",
            False,
            "2026-06-01",
            "2026-08-15",
            "2026-08-15",
        ),
        (
            [("2025-08-15", "2026-05-31"), ("2026-08-15", None)],
            "2026-07-01",
            False,
            "2026-05-31",
            "2026-08-15",
            None,
        ),
        # a newcomer (nothing ended) waits for their start; no bridge
        ([("2026-08-15", None)], "2026-07-01", False, None, "2026-08-15", None),
        # the latest end and the earliest start count
        (
            [
                ("2024-08-15", "2025-06-20"),
                ("2025-08-15", "2026-06-20"),
                ("2026-09-01", None),
                ("2026-08-17", None),
            ],
            "2026-07-01",
            False,
            "2026-06-20",
            "2026-08-17",
            "2026-08-17",
        ),
        # one window still open: active, whatever else
        (
            [("2025-08-15", None), ("2025-08-15", "2026-06-20"), ("2026-08-15", None)],
            "2026-07-01",
            True,
            None,
            None,
            None,
        ),
    ],
)
def test_clocks_and_bridge(
    windows: list[tuple[str, str | None]],
    day: str,
    active: bool,
    ended: str | None,
    ahead: str | None,
    bridged: str | None,
) -> None:
    clocks = activity.Clocks(day)
    got_active = any([clocks.note("P", activity.Window(*w)) for w in windows])
    assert got_active is active
    act = {"P"} if got_active else set()
    assert clocks.end_dates(act).get("P") == ended
    assert (clocks.ahead.get("P") if not got_active else None) == ahead
    assert clocks.bridged(act, 75).get("P") == bridged


# -- derive ------------------------------------------------------------------------------------------------


def switcher() -> Sis:
    """A pupil who finishes 7th grade at NORD on 20 June and starts 8th at SOR on 15 August, a guardian."""
    s = two_schools()
    s.student("P", "NORD", "Pia", "Bytter", grade=7, start="2025-08-15", end="2026-06-20")
    s.enroll("P", "SOR", grade=8, start="2026-08-15")
    s.guardian("G", ["P"])
    s.student("STAY", "NORD", "Siv", "Blir", grade=6)
    return s


@pytest.mark.parametrize(
    ("day", "active", "bridged"),
    [
        ("2026-06-20", {"P", "G", "STAY"}, {}),
        ("2026-06-21", {"STAY"}, {"P": "2026-08-15", "G": "2026-08-15"}),
        ("2026-07-15", {"STAY"}, {"P": "2026-08-15", "G": "2026-08-15"}),
        ("2026-08-14", {"STAY"}, {"P": "2026-08-15", "G": "2026-08-15"}),
        ("2026-08-15", {"P", "G", "STAY"}, {}),
    ],
)
def test_derive_bridges_the_summer(day: str, active: set[str], bridged: dict[str, str]) -> None:
    d = run(switcher(), day)
    assert set(d.state.persons) == active
    assert dict(d.bridged) == bridged
    assert {pid: d.ended[pid] for pid in bridged} == {pid: "2026-06-20" for pid in bridged}


def test_derive_bridged_pupil_leaves_the_old_schools_groups() -> None:
    s = switcher()
    s.group(
        "NORD-7A",
        "NORD",
        "basis",
        "7A",
        grade=7,
        start="2025-08-15",
        end="2026-07-31",
        members=[("P", "student"), ("STAY", "student")],
    )
    d = run(s, "2026-07-01")
    assert d.state.groups["NORD-7A"].members == (("STAY", "student"),)
    assert all(pid != "P" for g in d.state.groups.values() for pid, _ in g.members)


def test_derive_no_bridge_when_the_new_enrollment_is_removed() -> None:
    s = switcher()
    s.enrollments = [e for e in s.enrollments if e.school_id != "SOR"]
    d = run(s, "2026-07-01")
    assert dict(d.bridged) == {}
    assert d.ended["P"] == "2026-06-20" and d.ended["G"] == "2026-06-20"


def test_derive_bridge_days_configurable() -> None:
    d = run(switcher(), "2026-07-01", LifecycleConfig(bridge_days=30))
    assert dict(d.bridged) == {}


@pytest.mark.parametrize(
    ("day", "lc", "active"),
    [
        ("2026-08-07", LC, False),
        ("2026-08-08", LC, True),  # a week before the first working day
        ("2026-08-14", LifecycleConfig(employees={"days_before_start": 0}), False),
        ("2027-06-20", LC, True),
        ("2027-06-21", LC, False),
        ("2027-07-20", LifecycleConfig(employees={"days_after_end": 30}), True),
        ("2027-07-21", LifecycleConfig(employees={"days_after_end": 30}), False),
    ],
)
def test_derive_employee_window(day: str, lc: LifecycleConfig, active: bool) -> None:
    s = two_schools().employee("T", "SOR", start="2026-08-15", end="2027-06-20")
    d = run(s, day, lc)
    assert ("T" in d.state.persons) is active
    if not active and day > "2027-06-20":
        assert d.ended["T"] == activity.window(TEACHER, "2026-08-15", "2027-06-20", lc).end


def test_derive_student_days_after_end_moves_the_sis_end_date() -> None:
    s = two_schools().student("P", "NORD", end="2026-06-20")
    lc = LifecycleConfig(students={"days_after_end": 10})
    assert "P" in run(s, "2026-06-30", lc).state.persons
    assert run(s, "2026-07-01", lc).ended["P"] == "2026-06-30"


# -- config ------------------------------------------------------------------------------------------------

_BASE = """
[owner]
name = "K"
org_number = "964000000"
realm = "k.no"
mail_domain = "k.no"
[source]
url = "sqlite://"
[state]
url = "sqlite://"
"""


def test_config_defaults_and_overrides() -> None:
    cfg = parse(_BASE)
    assert (cfg.lifecycle.bridge_days, cfg.lifecycle.students.days_before_start) == (75, 0)
    assert (cfg.lifecycle.employees.days_before_start, cfg.lifecycle.employees.days_after_end) == (7, 0)
    cfg = parse(_BASE + "[lifecycle]\nbridge_days = 60\n[lifecycle.employees]\ndays_after_end = 14\n")
    assert (cfg.lifecycle.bridge_days, cfg.lifecycle.employees.days_after_end) == (60, 14)
    assert cfg.lifecycle.employees.days_before_start == 7  # a partial table keeps the other default


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[lifecycle]\nbridge_days = -1\n", "lifecycle.bridge_days"),
        ("[lifecycle.students]\ndays_before_start = -3\n", "lifecycle.students.days_before_start"),
        ('[lifecycle.employees]\ndays_after_end = "x"\n', "lifecycle.employees.days_after_end"),
        ("[lifecycle.guardians]\ndays_after_end = 1\n", "lifecycle.guardians"),
        ("[lifecycle.students]\ndays_befor_start = 1\n", "lifecycle.students.days_befor_start"),
    ],
)
def test_config_errors_name_the_key(text: str, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse(_BASE + text)
