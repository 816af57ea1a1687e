"""The local cache of what was read from FINT, for ``sinceTimeStamp`` reads.

One JSON file per resource under ``[source] cache_dir``: its entries keyed by their self
link (``entry_key``), the ``/last-updated`` value the read started from (the next read asks
for entries changed after it) and when the resource was last read in full. The files hold
personal data: the folder is 0700, each file 0600 whatever the umask, written to a temp
file, fsynced and renamed, so a crash leaves the old file or the new one. A file that is
missing, unreadable or not what this module wrote is treated as no cache (a full read),
never as an error.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_VERSION = 1


@dataclass
class CachedResource:
    """One resource as last read."""

    since: int  # FINT's /last-updated (epoch ms) when the read started
    full_at: float  # wall-clock time (epoch s) of the last full read
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)


def entry_key(entry: dict[str, Any]) -> str | None:
    """An entry's identity: its first self link (path only, lowercased), else its systemId."""
    links = entry.get("_links")
    if isinstance(links, dict):
        for link in links.get("self") or ():
            href = link.get("href") if isinstance(link, dict) else None
            if isinstance(href, str) and href:
                return link_path(href)
    sid = entry.get("systemId")
    if isinstance(sid, dict) and isinstance(sid.get("identifikatorverdi"), str):
        return f"systemid:{sid['identifikatorverdi']}"
    return None


def link_path(href: str) -> str:
    """A link's path, lowercased and without a trailing slash (links are compared by it)."""
    rest = href.split("://", 1)[-1]
    slash = rest.find("/")
    path = rest[slash:] if slash >= 0 else "/"
    return path.split("?", 1)[0].rstrip("/").lower()


class FintCache:
    """The cache folder: load and store one ``CachedResource`` per resource path."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _file(self, resource: str) -> Path:
        return self.folder / (resource.strip("/").replace("/", "__") + ".json")

    def load(self, resource: str) -> CachedResource | None:
        """The cached resource, or None (no file, or one that cannot be used: logged)."""
        path = self._file(resource)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("FINT cache %s unreadable (%s): reading %s in full", path.name, exc, resource)
            return None
        try:
            data = json.loads(raw)
            if data.get("version") != _VERSION or data.get("resource") != resource:
                raise ValueError("another version or resource")
            entries = data["entries"]
            if not isinstance(entries, dict):
                raise ValueError("entries is not an object")
            return CachedResource(int(data["since"]), float(data["full_at"]), entries)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            log.warning("FINT cache %s is corrupt (%s): reading %s in full", path.name, exc, resource)
            return None

    def store(self, resource: str, cached: CachedResource) -> None:
        """Write the resource's cache atomically, 0600."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(self.folder, 0o700)
        target = self._file(resource)
        body = {
            "version": _VERSION,
            "resource": resource,
            "since": cached.since,
            "full_at": cached.full_at,
            "entries": cached.entries,
        }
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".json")  # mkstemp: 0600
        try:
            with os.fdopen(fd, "wb") as f:
                # dumps, not dump: dumps encodes in C, dump to a file in Python (10x slower)
                f.write(
                    json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(
                        "utf-8", "surrogatepass"
                    )
                )
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
