"""Connectors for the worker-process tests: importable, so a worker can unpickle them."""

from __future__ import annotations

import os
import time
from collections.abc import Iterable

from connectors.base import Applied, Connector, StoredObject
from provisioner.core.plan import Change


class Recording(Connector):
    """Accepts every change; ``process_safe`` says whether the executor may use a worker."""

    def __init__(
        self, target: str, *, process_safe: bool, delay: float = 0.0, fail: str = "", stamp: bool = False
    ) -> None:
        self.target = target
        self.stamp = stamp  # each change's note also says when it was applied (time.time())
        self.process_safe = process_safe
        self.delay = delay
        self.fail = fail  # "" | "raise" | "exit": what apply does on the first change
        self.pid: int | None = None

    def begin(self, run_id: str, resolve: object) -> None:  # noqa: D102
        self.pid = os.getpid()

    def apply(self, change: Change) -> Applied:  # noqa: D102
        if self.fail == "raise":
            raise RuntimeError(f"boom in {self.target}")
        if self.fail == "exit":
            os._exit(3)
        if self.delay:
            time.sleep(self.delay)
        when = f" at {time.time()}" if self.stamp else ""
        return Applied(anchor=f"{self.target}:{change.key}", note=f"pid {os.getpid()}{when}")

    def finish(self, current: Iterable[StoredObject]) -> None:  # noqa: D102
        pass

    def close(self) -> None:  # noqa: D102
        pass
