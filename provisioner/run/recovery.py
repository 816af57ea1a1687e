"""What a run that never finished left behind, put right by the next run under the run lock.

A run killed with SIGKILL, a crash or a power cut records nothing more. What it
applied is in the state store and the targets, and the next plan does the rest; two
things need tidying once the next run holds the lock (so no other run is live):

- its run record: the store records runs left 'running' as ``aborted`` when it gives
  out the lock (``StateStore.run_lock``); they are logged here;
- temp files half written beside the output files (``.<name>.<pid>.tmp``, see
  ``connectors.files``): removed from every file target's output directory.
"""

from __future__ import annotations

from pathlib import Path

import structlog

from connectors.files import clean_stale_temp
from provisioner.config import Config
from provisioner.kinds import kind_of

log = structlog.get_logger("bas.run")


def output_dirs(cfg: Config) -> list[Path]:
    """The folders the enabled file targets write into."""
    dirs = []
    for tcfg in cfg.enabled_targets().values():
        folder = kind_of(tcfg.kind).capabilities(tcfg).output_dir
        if folder is not None:
            dirs.append(cfg.path(folder))
    return sorted(set(dirs))


def tidy_after_killed_runs(cfg: Config, run_id: str, abandoned: list[str]) -> list[Path]:
    """Log the runs just recorded aborted and remove stale temp files; returns the files removed."""
    for old in abandoned:
        log.warning("run left running by a process that ended: recorded aborted", run_id=old, by_run=run_id)
    removed = [p for d in output_dirs(cfg) for p in clean_stale_temp(d)]
    if removed:
        log.info("temp files left by a killed run removed", run_id=run_id, files=[str(p) for p in removed])
    return removed
