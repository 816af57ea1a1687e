"""A reconciliation run: read a live target back, report drift, and (on request) repair it.

The connector's reconcile reads the target and compares it with the state store; this
module makes it a run like any other: under the run lock, recorded in `bas runs`, and
with the one repair only the core can make — an object deleted by hand in the target is
forgotten in the state store (logged), so the next sync creates it again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from provisioner.config import Config
from provisioner.core.states import RunStatus
from provisioner.run.runner import new_run_id
from provisioner.state.store import StateStore
from provisioner.state.writer import forget_objects


def reconcile_ad(cfg: Config, store: StateStore, name: str, *, repair: bool) -> tuple[str, list[Any]]:
    """Reconcile one AD target; returns (run id, drift). Raises LockHeld, ConfigError, ConnectorError."""
    from connectors.ad.connector import link_from_config
    from connectors.ad.reconcile import reconcile

    def read(stored: list[dict[str, Any]]) -> list[Any]:
        link = link_from_config(cfg, cfg.targets[name])
        try:
            return reconcile(link, cfg.targets[name], stored, repair=repair)
        finally:
            link.close()

    return _reconcile_run(store, name, read, repair=repair)


def reconcile_feide(cfg: Config, store: StateStore, name: str, *, repair: bool) -> tuple[str, list[Any]]:
    """Reconcile a Feide target; returns (run id, drift). Raises LockHeld, ConfigError, ConnectorError."""
    from connectors.feide.reconcile import reconcile
    from provisioner.run.targets import feide_session

    def read(stored: list[dict[str, Any]]) -> list[Any]:
        tcfg = cfg.targets[name]
        session = feide_session(cfg, tcfg)
        try:
            return reconcile(session, tcfg, stored, repair=repair)
        finally:
            session.close()

    return _reconcile_run(store, name, read, repair=repair)


def reconcile_m365(
    cfg: Config, store: StateStore, name: str, *, repair: bool, full: bool
) -> tuple[str, list[Any]]:
    """Reconcile a Microsoft 365 target's users; returns (run id, drift). Raises as the others."""
    from connectors.m365.connector import client_from_config
    from connectors.m365.reconcile import reconcile

    def read(stored: list[dict[str, Any]]) -> list[Any]:
        client = client_from_config(cfg, cfg.targets[name])
        try:
            return reconcile(client, store, name, stored, repair=repair, full=full)
        finally:
            client.close()

    return _reconcile_run(store, name, read, repair=repair)


def _reconcile_run(
    store: StateStore, name: str, read: Callable[[list[dict[str, Any]]], list[Any]], *, repair: bool
) -> tuple[str, list[Any]]:
    """Run ``read`` as a recorded run under the run lock; forget missing objects on repair."""
    run_id = new_run_id()
    with store.runs.lock(run_id):
        store.runs.start(run_id, "reconcile", dt.date.today().isoformat())
        try:
            drift = read(list(store.objects.iterate(name)))
            if repair:
                # Missing and not brought back (Microsoft 365 restores from deleted items
                # first); an AD drift with a DN still exists, outside base_dn.
                gone = [
                    d
                    for d in drift
                    if d.kind == "missing" and d.key and not d.repaired and not getattr(d, "dn", "")
                ]
                forget_objects(
                    store,
                    name,
                    [d.key for d in gone],
                    run_id,
                    "deleted by hand in the target: forgotten, so the next sync creates it again",
                )
                for d in gone:
                    d.repaired = True
        except BaseException as exc:
            store.runs.finish(run_id, RunStatus.FAILED, error=f"{type(exc).__name__}: {exc}")
            raise
        summary: dict[str, int] = {}
        for d in drift:
            summary[d.kind] = summary.get(d.kind, 0) + 1
        store.runs.finish(
            run_id,
            RunStatus.DONE if all(d.repaired for d in drift) else RunStatus.DRIFT,
            summary={"drift": summary},
        )
    return run_id, drift
