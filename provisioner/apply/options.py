"""ApplyOptions: how the executor applies a plan, one frozen value passed down.

The runner builds it from the config (``runner.apply_options``) and hands it to the
executor, which hands it on to the worker processes; nothing about applying is decided
by a module-level switch, so a test or a caller changes it for one call only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from provisioner.logs import LogSettings

# Changes per state-store transaction. At Oslo size a worker recording Feide's 104,000
# changes peaked at 596 MB with 20,000 and at 443 MB with 5,000 (the rows and changelog
# entries of one transaction are held until it commits), for about 1 s more.
DEFAULT_BATCH = 5000


@dataclass(frozen=True)
class ApplyOptions:
    """How one apply runs: its transaction size, whether workers are used, how children log."""

    batch: int = DEFAULT_BATCH  # changes per state-store transaction
    workers: bool = True  # False: every target in this process (tests comparing both ways)
    log: LogSettings = field(default_factory=LogSettings)  # worker processes log like this

    def __post_init__(self) -> None:
        if self.batch < 1:
            raise ValueError(f"batch must be at least 1, not {self.batch}")
