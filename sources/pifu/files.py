"""Which export file to read: the configured file, or the newest settled export in a folder.

A SIS writes its export into a folder now and then; BAS must never read one that is still
being written, and never fall back to an older export when the newest is broken (that
would roll the owner back in time). ``choose_export`` takes the newest file (by mtime)
matching the pattern; when it changed less than ``settle_seconds`` ago it is still being
written and the run waits (SourceError: try again later), and when it is broken the
reader refuses it. Files named ``*.part``, ``*.tmp`` or ``.*`` never count (temp names
of writers and of the SFTP pickup). ``file_sha256`` hashes an export without parsing it
(``PifuSource.unchanged``). ``atomic_file`` writes an export or a download so that a
reader never sees half of it.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from sources.base import SourceError, digest_text

_TEMP_SUFFIXES = (".part", ".tmp")


def is_candidate(name: str, pattern: str) -> bool:
    """Whether a file name can be an export: matches ``pattern`` and is no temp or hidden file."""
    from fnmatch import fnmatchcase

    if name.startswith(".") or name.endswith(_TEMP_SUFFIXES):
        return False
    return fnmatchcase(name, pattern)


def newest(entries: list[tuple[str, float, int]], pattern: str) -> tuple[str, float, int] | None:
    """The newest (name, mtime, size) candidate; the name breaks a tie in mtime."""
    found = [e for e in entries if is_candidate(e[0], pattern)]
    return max(found, key=lambda e: (e[1], e[0])) if found else None


def choose_export(path: Path, pattern: str, settle_seconds: float, *, now: float | None = None) -> Path:
    """The export to read: ``path`` itself when it is a file, else the newest settled file in it."""
    if path.is_file():
        return path
    if not path.is_dir():
        raise SourceError(f"source.path {path} is neither an export file nor a folder of exports")
    entries = []
    for p in path.iterdir():
        try:
            st = p.stat()
        except OSError:
            continue  # removed while listing
        if p.is_file():
            entries.append((p.name, st.st_mtime, st.st_size))
    pick = newest(entries, pattern)
    if pick is None:
        raise SourceError(f"no export in {path} (no file matches {pattern!r})")
    name, mtime, _size = pick
    age = (time.time() if now is None else now) - mtime
    if age < settle_seconds:
        raise SourceError(
            f"the newest export {path / name} changed {max(age, 0):.0f} s ago, less than settle_seconds"
            f" ({settle_seconds:g}): it may still be being written; the run waits for it"
        )
    return path / name


def file_sha256(path: Path) -> str:
    """The export digest of a file's bytes (as the reader makes it while parsing)."""
    h = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError as exc:
        raise SourceError(f"{path}: cannot read the export: {exc.strerror or exc}") from exc
    return digest_text(h)


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A new file written under a hidden temp name (0600, never a candidate), fsynced and renamed.

    The file holds personal data: 0600 whatever the umask. On any error the temp file goes
    and ``path`` is left as it was.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb", buffering=1 << 20) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)  # the rename itself survives a crash
    finally:
        os.close(dfd)
