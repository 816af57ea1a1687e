"""The local cache of what was read from FINT, for ``sinceTimeStamp`` reads.

One file per resource under ``[source] cache_dir``, JSON lines: a header (format version,
resource, the ``/last-updated`` value the read started from (the next read asks for entries
changed after it), when the resource was last read in full, the number of entries), then
lines each a JSON array of up to ``_CHUNK`` entries in the slim form the reader keeps
(``projection.slim``: only what the mapping reads), keyed again on load by ``entry_key``.
Written and read a line at a time, so the file is never whole in memory. A file of another
version (version 1 was one JSON object holding the entries whole) is not read but replaced
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
import re
import sys
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_VERSION = 2  # 2: entries slim (projection.slim); 1: entries as FINT served them
_CHUNK = 5000  # entries per line: the file is never one string in memory, writing or reading
_VERSION_AT_START = re.compile(rb'\{\s*"version"\s*:\s*([0-9]+)\s*,')


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
            f = path.open("rb")
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("FINT cache %s unreadable (%s): reading %s in full", path.name, exc, resource)
            return None
        with f:
            try:
                # the version first, from the file's start: a version 1 file is one line of it all
                m = _VERSION_AT_START.match(f.read(64))
                if m is None:
                    raise ValueError("no version at the start")
                if int(m.group(1)) != _VERSION:
                    log.info("FINT cache %s has another format: reading %s in full", path.name, resource)
                    return None
                f.seek(0)
                head = json.loads(f.readline())
                if head.get("resource") != resource:
                    raise ValueError("another resource")
                entries = self._entries(f)
                if len(entries) != head["count"]:
                    raise ValueError(f"{len(entries)} entries, the header says {head['count']}")
                return CachedResource(int(head["since"]), float(head["full_at"]), entries)
            except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
                log.warning("FINT cache %s is corrupt (%s): reading %s in full", path.name, exc, resource)
                return None

    def _entries(self, lines: Iterable[bytes]) -> dict[str, dict[str, Any]]:
        """The entries, one line (a JSON array of them) at a time, keyed by ``entry_key``."""
        entries: dict[str, dict[str, Any]] = {}
        for line in lines:
            chunk = json.loads(line)
            if not isinstance(chunk, list):
                raise ValueError("a line that is not an array")
            for e in chunk:
                if not isinstance(e, dict):
                    raise ValueError("an entry that is not an object")
                if self.on_load is not None:
                    e = self.on_load(e)
                key = entry_key(e)
                if key is None:
                    raise ValueError("an entry without a self link or systemId")
                entries[sys.intern(key)] = e  # interned: an entry's key is its self path's string
        return entries

    def store(self, resource: str, cached: CachedResource) -> None:
        """Write the resource's cache atomically, 0600."""
        self.folder.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            os.chmod(self.folder, 0o700)
        target = self._file(resource)
        head = {"version": _VERSION, "resource": resource, "since": cached.since,
                "full_at": cached.full_at, "count": len(cached.entries)}  # fmt: skip
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-", suffix=".json")  # mkstemp: 0600
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_encode(head) + b"\n")
                values = iter(cached.entries.values())
                # dumps in chunks, not dump: dumps encodes in C, dump to a file in Python (10x
                # slower); chunks, not the whole: one string of the file is its size again
                while chunk := list(islice(values, _CHUNK)):
                    f.write(_encode(chunk) + b"\n")  # JSON escapes every newline in a string
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
