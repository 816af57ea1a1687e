"""The local cache of what was read from FINT, for ``sinceTimeStamp`` reads.

One JSON file per resource under ``[source] cache_dir``: its entries keyed by their self
link (``entry_key``), in the slim form the reader keeps (``projection.slim``: only what the
mapping reads), the ``/last-updated`` value the read started from (the next read asks for
entries changed after it) and when the resource was last read in full. The format has a
version: a file of another version (version 1 held entries whole) is not read but replaced
after one full read of its resource, so a cache is never read as a form it is not. The files hold
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
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_VERSION = 2  # 2: entries slim (projection.slim); 1: entries as FINT served them
_CHUNK = 5000  # entries encoded per write: the file is never one string in memory


@dataclass
class CachedResource:
    """One resource as last read."""

    since: int  # FINT's /last-updated (epoch ms) when the read started
    full_at: float  # wall-clock time (epoch s) of the last full read
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)


SLIM_LINK = "@"  # a slim entry's relation "rel" is its key "@rel" (no FINT field name has an @)


def relation(entry: Mapping[str, Any], rel: str) -> Any:
    """A relation's links as held: ``_links[rel]`` of a full entry, ``@rel`` of a slim one.

    A slim entry (``projection.slim``) has no ``_links``: its relations are keys of the entry
    itself, each link already a path, one link as a plain string.
    """
    raw = entry.get("_links")
    if isinstance(raw, dict):
        return raw.get(rel)
    return entry.get(SLIM_LINK + rel)


def entry_key(entry: Mapping[str, Any]) -> str | None:
    """An entry's identity: its first self link (path only, lowercased), else its systemId.

    Of a full entry as FINT serves it, or of a slim one (the systemId a plain string).
    """
    selfs = relation(entry, "self")
    for link in (selfs,) if isinstance(selfs, str) else selfs or ():
        if isinstance(link, str):
            return link  # slim: a path already
        href = link.get("href") if isinstance(link, dict) else None
        if isinstance(href, str) and href:
            return link_path(href)
    sid = entry.get("systemId")
    if isinstance(sid, dict):
        sid = sid.get("identifikatorverdi")
    return f"systemid:{sid}" if isinstance(sid, str) else None


def link_path(href: str) -> str:
    """A link's path, lowercased and without a trailing slash (links are compared by it)."""
    rest = href.split("://", 1)[-1]
    slash = rest.find("/")
    path = rest[slash:] if slash >= 0 else "/"
    return path.split("?", 1)[0].rstrip("/").lower()


class FintCache:
    """The cache folder: load and store one ``CachedResource`` per resource path."""

    def __init__(
        self, folder: Path, on_load: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    ) -> None:
        self.folder = folder
        self.on_load = on_load  # called on each entry loaded (the source interns its links again)

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
            del raw
            if data.get("resource") != resource:
                raise ValueError("another resource")
            if data.get("version") != _VERSION:
                log.info("FINT cache %s has another format: reading %s in full", path.name, resource)
                return None
            entries = data["entries"]
            if not isinstance(entries, dict) or not all(isinstance(e, dict) for e in entries.values()):
                raise ValueError("entries is not an object of objects")
            if self.on_load is not None:
                # keys interned: an entry's key is then the very string of its self path
                entries = {sys.intern(k): self.on_load(e) for k, e in entries.items()}
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
        head = {"version": _VERSION, "resource": resource, "since": cached.since, "full_at": cached.full_at}
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".json")  # mkstemp: 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_encode(head)[:-1] + b',"entries":{')
                items = list(cached.entries.items())
                for start in range(0, len(items), _CHUNK):
                    # dumps in chunks, not dump: dumps encodes in C, dump to a file in Python
                    # (10x slower); chunks, not the whole: one string of the file is its size again
                    chunk = _encode(dict(items[start : start + _CHUNK]))[1:-1]
                    f.write(b"," + chunk if start else chunk)
                f.write(b"}}")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise


def _encode(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass")
