"""Prometheus metrics of `bas daemon` (prometheus-client), served on a local address.

The registry has the process and platform collectors too (process_resident_memory_bytes,
process_cpu_seconds_total, process_open_fds, python_info).

Counters and the run-duration histogram count what this process did; the health
gauges (failed objects, held runs, last success and files waiting for delivery per
target) come from the state store after every run, so they are right after a restart
too. "Seconds since the last successful run" is computed at scrape time, so it keeps
growing while runs fail.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from provisioner.service.status import Health, iso_to_epoch


class _SinceSuccess(Collector):
    """bas_seconds_since_last_success{target}, evaluated when scraped."""

    def __init__(self) -> None:
        self.last: dict[str, float | None] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        fam = GaugeMetricFamily(
            "bas_seconds_since_last_success",
            "Seconds since the target's last successful run (+Inf: never)",
            labels=["target"],
        )
        now = time.time()
        for target, ts in sorted(self.last.items()):
            fam.add_metric([target], now - ts if ts is not None else float("inf"))
        yield fam


class Metrics:
    """The daemon's metrics in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.runs = Counter("bas_runs", "Runs by outcome", ["outcome"], registry=r)
        self.duration = Histogram(
            "bas_run_duration_seconds",
            "Run duration",
            ["kind"],
            buckets=(1, 5, 15, 60, 300, 900, 1800, 3600, 7200, 14400),
            registry=r,
        )
        self.changes = Counter(
            "bas_changes", "Changes applied or attempted", ["target", "op", "result"], registry=r
        )
        self.failed_objects = Gauge(
            "bas_failed_objects",
            "Objects the last run could not change (retried next run)",
            ["target"],
            registry=r,
        )
        self.held_runs = Gauge("bas_held_runs", "Held runs waiting for approval", registry=r)
        self.waiting_files = Gauge(
            "bas_files_waiting_delivery",
            "Files a file target wrote that were not delivered yet (itslearning over SFTP)",
            ["target"],
            registry=r,
        )
        self.last_success = Gauge(
            "bas_last_success_timestamp_seconds",
            "Time of the target's last successful run",
            ["target"],
            registry=r,
        )
        self.drift = Gauge(
            "bas_drift_objects",
            "Objects the last reconcile found changed outside BAS (repaired or not), unmanaged ones included",
            ["target"],
            registry=r,
        )
        self.patch_mismatches = Counter(
            "bas_patch_mismatches",
            "Nightly full runs whose plan differed from the patch of the same inputs (the full plan is used)",
            registry=r,
        )
        self.since = _SinceSuccess()
        r.register(self.since)
        # The daemon's own memory, CPU and open files (process_*), and the Python it runs on
        # (python_info). Each run is a child process that ends with it: its memory is not here.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)

    def observe_run(
        self, outcome: str, kind: str, seconds: float, changes: Iterable[tuple[Any, ...]]
    ) -> None:
        """Count one run, its duration and its changes (target, op, result, count)."""
        self.runs.labels(outcome).inc()
        self.duration.labels(kind).observe(seconds)
        for target, op, result, n in changes:
            self.changes.labels(target, op, result).inc(n)

    def observe_drift(self, drifted: Mapping[str, int]) -> None:
        """Set bas_drift_objects from the last reconcile of each target read."""
        for target, n in drifted.items():
            self.drift.labels(target).set(n)

    def update_health(self, health: Health) -> None:
        """Set the gauges from the state store's view."""
        self.held_runs.set(len(health.held))
        for target in health.targets:
            self.failed_objects.labels(target).set(health.failed_counts.get(target, 0))
        for target, th in health.targets.items():
            self.waiting_files.labels(target).set(th.waiting)
            ts = iso_to_epoch(th.last_success_at)
            self.since.last[target] = ts
            if ts is not None:
                self.last_success.labels(target).set(ts)

    def serve(self, listen: str) -> tuple[Any, str]:
        """Serve /metrics on host:port (port 0: any free one); returns (server, actual address)."""
        host, port = listen.rsplit(":", 1)
        server, _thread = start_http_server(int(port), addr=host, registry=self.registry)
        return server, f"{host}:{server.server_port}"
