"""How applying one target went: the ``TargetResult`` the executor, its workers and the runner share.

Its own module, below the executor and the worker processes, so that a worker returns it
and the runner reads it without importing the executor that starts the workers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from provisioner.core.states import TargetOutcome


@dataclass
class TargetResult:
    """How applying one target went."""

    target: str
    status: TargetOutcome
    ok: int = 0
    rejected: int = 0
    failed: int = 0
    skipped: int = 0  # not sent: depended on a change that failed (planned again next run)
    pending: int = 0  # the target is not ready for them yet (no error; planned again next run)
    errors: list[str] = field(default_factory=list)  # the first few, for the summary
    delivered: int = 0  # files a delivering file target shipped this run (Exporter.deliver)
    waiting: int = 0  # files it has written that still wait for delivery after this run

    def to_json(self) -> dict:
        """Plain dict for run summaries (the delivery counts only for a target that delivers)."""
        out = {
            "status": self.status,
            "ok": self.ok,
            "rejected": self.rejected,
            "failed": self.failed,
            "skipped": self.skipped,
            "pending": self.pending,
            "errors": self.errors[:20],
        }
        if self.delivered or self.waiting:
            out |= {"delivered": self.delivered, "waiting": self.waiting}
        return out
