"""Lifecycle policies: what a target does when a person stops or returns.

Each target kind makes its policy from its config (``TargetKind.policy`` in
``provisioner.kinds``). Defaults follow SPEC and are configurable per target:
- Microsoft 365: sign-in blocked and the user soft-deleted the same day; restored (not
  re-created) if they return within ``restore_within_days`` (30, Microsoft's purge).
- Active Directory: disabled at once, deleted after ``remove_after_days`` (90); a
  person who returns before that is re-enabled in place.
- Feide and itslearning: removed after ``remove_after_days`` of grace (0).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Policy:
    """How one target treats persons who stop and return."""

    disable_first: bool  # disable before deleting (AD, Microsoft 365)
    delete_after_days: int  # days from disable (or inactivity) to delete
    soft_delete: bool = False  # deleted objects can be restored (Microsoft 365)
    restore_within_days: int = 0


def days_between(start: str | None, end: str) -> int:
    """Whole days from ISO date ``start`` to ``end`` (0 when start is unknown)."""
    if not start:
        return 0
    return (dt.date.fromisoformat(end) - dt.date.fromisoformat(start[:10])).days
