"""Lifecycle policies per target kind: what happens when a person stops or returns.

Defaults follow SPEC and are configurable per target:
- Microsoft 365: sign-in blocked and the user soft-deleted the same day; restored (not
  re-created) if they return within ``restore_within_days`` (30, Microsoft's purge).
- Active Directory: disabled at once, deleted after ``remove_after_days`` (90); a
  person who returns before that is re-enabled in place.
- Feide and itslearning: removed after ``remove_after_days`` of grace (0).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Policy:
    """How one target treats persons who stop and return."""

    disable_first: bool  # disable before deleting (AD, Microsoft 365)
    delete_after_days: int  # days from disable (or inactivity) to delete
    soft_delete: bool = False  # deleted objects can be restored (Microsoft 365)
    restore_within_days: int = 0


def policy_for(target_cfg: Any) -> Policy:
    """The policy of a configured target."""
    if target_cfg.kind == "m365":
        return Policy(
            disable_first=True,
            delete_after_days=0,
            soft_delete=True,
            restore_within_days=target_cfg.restore_within_days,
        )
    if target_cfg.kind == "ad":
        return Policy(disable_first=True, delete_after_days=target_cfg.remove_after_days)
    return Policy(disable_first=False, delete_after_days=target_cfg.remove_after_days)


def days_between(start: str | None, end: str) -> int:
    """Whole days from ISO date ``start`` to ``end`` (0 when start is unknown)."""
    if not start:
        return 0
    return (dt.date.fromisoformat(end) - dt.date.fromisoformat(start[:10])).days
