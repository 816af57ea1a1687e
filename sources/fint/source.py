"""The FINT source plug-in: reads every resource (incrementally when the cache allows) into a snapshot.

Per resource, each run: ``/last-updated`` (L) first. Without a usable cache (none, corrupt,
older than ``full_every_hours``) the resource is read in full, page by page. With one: when
L and ``/cache/size`` equal the cached values nothing else is fetched (a quiet run: two
small requests per resource); otherwise the entries changed since the cached L are fetched
(``sinceTimeStamp``) and merged by self link, and when the merged count is not FINT's
``/cache/size`` (an entry was deleted: an incremental read does not show deletions) the
resource is read in full. The caches are written only after every resource was read, none
was refused and the snapshot was made, so a refused or failed run changes nothing.

A resource that comes back empty (a full read with no entries, or a cache that would become
empty) refuses the run (``SourceRefused``, naming it), unless it is listed in
``[source] may_be_empty``. Digests: one per canonical table (``table_digest``) plus
``fint:<resource>`` = "last-updated:size" per resource, which ``unchanged`` compares with
two small requests per resource, without downloading entries.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from provisioner.config import Config, read_secret
from provisioner.core.model import SourceSnapshot
from provisioner.core.safety import SourceRefused
from provisioner.source_config import FintSourceConfig
from sources.base import Source, SourceError, snapshot_digests
from sources.fint.cache import CachedResource, FintCache, entry_key
from sources.fint.client import Credentials, FintClient
from sources.fint.mapping import RESOURCES
from sources.fint.projection import intern_links, slim
from sources.fint.snapshot import to_snapshot

log = logging.getLogger(__name__)

DIGEST_PREFIX = "fint:"


class FintSource(Source):
    """The configured FINT API, read through its local cache."""

    kind = "fint"

    def __init__(
        self,
        cfg: Config,
        *,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], float] = time.time,
    ) -> None:
        scfg = cfg.source
        assert isinstance(scfg, FintSourceConfig)
        self.scfg = scfg
        self.now = now
        creds = Credentials(
            token_url=scfg.token_url,
            client_id=scfg.client_id,
            client_secret=read_secret(scfg.client_secret_file, cfg.base_dir, key="source.client_secret_file"),
            username=scfg.username,
            password=read_secret(scfg.password_file, cfg.base_dir, key="source.password_file"),
            scope=scfg.scope,
        )
        ca = str(cfg.path(scfg.ca_file)) if scfg.ca_file else None
        self.client = FintClient(
            scfg.base_url,
            creds,
            ca_file=ca,
            timeout=scfg.timeout,
            max_attempts=scfg.max_attempts,
            sleep=sleep,
        )
        self.cache = FintCache(cfg.path(scfg.cache_dir), on_load=intern_links)
        self.last_read: dict[str, str] = {}  # resource -> "full" | "incremental" | "quiet" (for logs, tests)

    # -- reading -----------------------------------------------------------------------

    def _read_resource(self, resource: str) -> tuple[CachedResource, str]:
        """The resource's entries now, and how they were got."""
        since = self.client.last_updated(resource)
        cached = self.cache.load(resource)
        if cached is not None and self.now() - cached.full_at > self.scfg.full_every_hours * 3600:
            cached = None
        if cached is not None:
            size = self.client.cache_size(resource)
            if since == cached.since and size == len(cached.entries):
                return cached, "quiet"
            merged = dict(cached.entries)
            for e in self.client.entries(resource, self.scfg.page_size, since=cached.since):
                s = slim(resource, e)
                key = entry_key(s)  # of the slim form: its interned self path
                if key is not None:
                    merged[key] = s
            if len(merged) == size:
                return CachedResource(since, cached.full_at, merged), "incremental"
            log.info(
                "FINT %s: %d cached entries, %d in FINT: reading it in full", resource, len(merged), size
            )
        entries: dict[str, dict[str, Any]] = {}
        unkeyed = 0
        for e in self.client.entries(resource, self.scfg.page_size):
            s = slim(resource, e)  # only what the mapping reads is kept, as the page goes by
            key = entry_key(s)  # of the slim form: its interned self path, not a copy
            if key is None:
                unkeyed += 1
                continue
            entries[key] = s
        if unkeyed:
            log.warning("FINT %s: %d entries without a self link or systemId skipped", resource, unkeyed)
        return CachedResource(since, self.now(), entries), "full"

    def read(self) -> SourceSnapshot:
        got: dict[str, CachedResource] = {}
        for resource in RESOURCES:
            got[resource], self.last_read[resource] = self._read_resource(resource)
        allowed = {r.strip("/") for r in self.scfg.may_be_empty}
        empty = tuple(r for r in RESOURCES if not got[r].entries and r not in allowed)
        if empty:
            raise SourceRefused(
                f"FINT resource(s) {', '.join(empty)} came back empty: a resource type that comes back"
                " empty refuses the run (fix the source; nothing was changed)",
                active=0,
                counts={r: len(got[r].entries) for r in RESOURCES},
                empty=empty,
            )
        snap, dropped = to_snapshot(
            {r: list(c.entries.values()) for r, c in got.items()}, self.scfg.school_levels
        )
        for what, n in sorted(dropped.items()):
            log.warning("FINT: %d %s dropped", n, what)
        digests = snapshot_digests(snap)
        for r, c in got.items():
            digests[DIGEST_PREFIX + r] = f"{c.since}:{len(c.entries)}"
        for r, c in got.items():
            if self.last_read[r] != "quiet":
                self.cache.store(r, c)
        log.info(
            "FINT read: %d requests, %d bytes (%s)",
            self.client.requests,
            self.client.bytes,
            ", ".join(f"{r.rsplit('/', 1)[-1]}={how}" for r, how in self.last_read.items()),
        )
        return SourceSnapshot(
            snap.schools, snap.persons, snap.enrollments, snap.employments,
            snap.guardianships, snap.groups, snap.memberships, digests=digests,
        )  # fmt: skip

    def unchanged(self, digests: Mapping[str, str]) -> bool:
        keys = [k for k in digests if k.startswith(DIGEST_PREFIX)]
        if {k[len(DIGEST_PREFIX) :] for k in keys} != set(RESOURCES):
            return False
        for k in keys:
            resource = k[len(DIGEST_PREFIX) :]
            now = f"{self.client.last_updated(resource)}:{self.client.cache_size(resource)}"
            if now != digests[k]:
                return False
        return True

    def describe(self) -> str:
        return f"fint {self.scfg.base_url} (client {self.scfg.client_id}, cache {self.scfg.cache_dir})"

    def close(self) -> None:
        self.client.close()


__all__ = ["FintSource", "SourceError"]
