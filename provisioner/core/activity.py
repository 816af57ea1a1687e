"""Activity on one day: active windows, the summer bridge and the SIS end date. Pure.

Each enrollment or employment gives an active window: its SIS start and end dates,
widened per role by ``days_before_start`` and ``days_after_end`` (LifecycleConfig).
A person is active on a day inside one of their windows. For a person who is not,
``Clocks`` keeps the last day of their latest window that has ended (the *SIS end
date*: every lifecycle clock counts from it, not from the day BAS noticed) and the first
day of their earliest window ahead. A person with both, no further apart than
``bridge_days``, is *bridged* until that first day: the school year's summer gap
between two schools is not leaving. Guardians follow their students (``Clocks.merge``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from provisioner.config import LifecycleConfig, RoleWindowConfig
from provisioner.core.lifecycle import days_between
from provisioner.core.model import EMPLOYEE_ROLES, STUDENT


class Window(NamedTuple):
    """First and last active day (ISO dates); ``end`` None: open-ended."""

    start: str
    end: str | None


def shift(day: str, days: int) -> str:
    """ISO date ``day`` moved by ``days``.

    A value that is no date is returned as it is: judging SIS dates is derive's job (a
    data error that freezes the person); no value may stop the run for others.
    """
    try:
        return (dt.date.fromisoformat(day[:10]) + dt.timedelta(days=days)).isoformat()
    except ValueError:
        return day


def role_window(role: str, cfg: LifecycleConfig) -> RoleWindowConfig:
    """The window settings of a role (students, or any employee role)."""
    if role == STUDENT:
        return cfg.students
    if role in EMPLOYEE_ROLES:
        return cfg.employees
    raise ValueError(f"no active window for role {role!r}")  # guardians follow their students


Memo = dict[tuple[str, int], str]  # (day, days) -> the day shifted


def window(role: str, start: str, end: str | None, cfg: LifecycleConfig, memo: Memo | None = None) -> Window:
    """The active window of one enrollment or employment (dates already validated).

    ``memo``: dates already shifted, kept by the caller for as long as it needs them
    (derive, over every row: few distinct dates). Not a module-wide cache, whose entries,
    made amid a derivation, would keep pages of its heap from being given back.
    """
    w = role_window(role, cfg)
    first = _shifted(start, -w.days_before_start, memo) if w.days_before_start else start
    last = _shifted(end, w.days_after_end, memo) if end is not None and w.days_after_end else end
    return Window(first, last)


def _shifted(day: str, days: int, memo: Memo | None) -> str:
    if memo is None:
        return shift(day, days)
    got = memo.get((day, days))
    if got is None:
        got = memo[day, days] = shift(day, days)
    return got


def is_active(w: Window, day: str) -> bool:
    """True when ``day`` lies inside the window."""
    return w.start <= day and (w.end is None or w.end >= day)


@dataclass
class Clocks:
    """For persons not active on ``day``: their latest window end before it, earliest start after."""

    day: str
    ended: dict[str, str] = field(default_factory=dict)  # person -> SIS end date (last active day)
    ahead: dict[str, str] = field(default_factory=dict)  # person -> first day of the next window

    def note(self, pid: str, w: Window) -> bool:
        """Record one window of a person; True when it makes them active on the day."""
        if is_active(w, self.day):
            return True
        if w.start > self.day:
            if pid not in self.ahead or w.start < self.ahead[pid]:
                self.ahead[pid] = w.start
        elif w.end is not None and (pid not in self.ended or w.end > self.ended[pid]):
            self.ended[pid] = w.end
        return False

    def merge(self, pid: str, other: Clocks, from_pids: Iterable[str]) -> None:
        """Give ``pid`` the clocks of ``from_pids`` in ``other`` too (a guardian's students)."""
        for src in from_pids:
            end, start = other.ended.get(src), other.ahead.get(src)
            if end is not None and (pid not in self.ended or end > self.ended[pid]):
                self.ended[pid] = end
            if start is not None and (pid not in self.ahead or start < self.ahead[pid]):
                self.ahead[pid] = start

    def bridged(self, active: Mapping[str, object] | set[str], bridge_days: int) -> dict[str, str]:
        """Persons not active whose next window starts within ``bridge_days`` of their end -> that start."""
        out = {}
        for pid, start in self.ahead.items():
            end = self.ended.get(pid)
            if pid in active or end is None:
                continue  # active, or nothing has ended: a newcomer waits for their start
            if days_between(end, start) <= bridge_days:
                out[pid] = start
        return out

    def end_dates(self, active: Mapping[str, object] | set[str]) -> dict[str, str]:
        """The SIS end date of every person noted who is not active on the day."""
        return {pid: end for pid, end in self.ended.items() if pid not in active}
