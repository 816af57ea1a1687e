"""What a run that never finished left behind, put right by the next run under the run lock.

A run killed with SIGKILL, a crash or a power cut records nothing more. What it
applied is in the state store and the targets, and the next plan does the rest; two
things need tidying once the next run holds the lock (so no other run is live):

- its run record: the store records runs left 'running' as ``aborted`` when it gives
  out the lock (``StateStore.run_lock``); they are logged here;
- temp files half written beside the output files (``.<name>.<pid>.tmp``, see
  ``connectors.files``): removed from every file target's output directory;
- a file target's export journal (provisioner/state/exports.py): when the killed run's
  delta file is in place, its journaled changes are recorded as applied (and its full
  file becomes latest-full); otherwise they were never written, and the plan has them again.
"""

from __future__ import annotations

from pathlib import Path

import structlog

from connectors.base import Exporter
from connectors.files import clean_stale_temp
from provisioner.apply.options import ApplyOptions
from provisioner.config import Config
from provisioner.kinds import kind_of
from provisioner.run.targets import build_connector
from provisioner.state import exports
from provisioner.state.store import StateStore

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


def settle_exports(cfg: Config, store: StateStore, run_id: str, options: ApplyOptions) -> None:
    """Record or drop what file targets of killed runs journaled; see the module docstring."""
    for target, killed in exports.pending(store):
        tcfg = cfg.enabled_targets().get(target)
        exp = build_connector(cfg, target) if tcfg is not None and tcfg.mode == "apply" else None
        if tcfg is None or not isinstance(exp, Exporter):
            log.warning("export journal of a target no longer exported is kept", target=target, run=killed)
            continue
        tlog = log.bind(run_id=run_id, target=target, killed_run=killed)
        if exp.exported(killed):
            soft = kind_of(tcfg.kind).policy(tcfg).soft_delete
            n = exports.replay(store, target, killed, soft, options.batch)
            exp.recover(killed)
            tlog.warning("changes a killed run wrote to its files are recorded now", changes=n)
        else:
            exports.drop(store, target, killed)
            tlog.warning("a killed run never finished its files: its changes are planned again")
