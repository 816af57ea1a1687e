"""Writing output files safely: atomically, durably, and readable by the owner only.

Export files carry personal data (the Feide LDIF carries NINs), so they are created
with mode 0600; the drop directory's importer runs as the same service user. Also the
small things every exporter (connectors.base.Exporter) does alike: its output directory
made ready, a run id made safe for a file name.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from connectors.errors import FatalError
from provisioner import faults

_TEMP_NAME = re.compile(r"\..+\.[0-9]+\.tmp")  # ".<name>.<pid>.tmp", as the writers below name them
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def run_name(run_id: str) -> str:
    """A run id as it appears in file names: anything but letters, digits and ``._-`` as ``_``."""
    return _UNSAFE.sub("_", run_id) or "run"


def prepare_dir(directory: Path, temp_glob: str, target: str) -> None:
    """Make an exporter's output directory and remove the temp files (``temp_glob``) a crashed run left.

    Raises FatalError when the directory cannot be made: the target cannot run at all.
    """
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FatalError(f"{target}: cannot create output directory {directory}: {exc}") from exc
    for stale in directory.glob(temp_glob):  # ours, and importers ignore them anyway
        with contextlib.suppress(OSError):
            stale.unlink()


@contextlib.contextmanager
def atomic_text_file(path: Path) -> Iterator[TextIO]:
    """Open a temp file beside ``path`` for writing; on success fsync and rename it over.

    On any exception the temp file is removed and ``path`` is untouched, so a reader
    never sees a partial file. The temp name starts with a dot and ends in ``.tmp`` so
    importers that pick up ``*.xml`` or ``*.ldif`` ignore it.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "w", encoding="utf-8", newline="\n", buffering=1 << 20) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)
    faults.point("file:" + "-".join(path.name.split("-")[:2]))  # e.g. "file:ims-delta" (tests only)


def fsync_dir(directory: Path) -> None:
    """Make renames in a directory durable (best effort: not every platform can)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def full_due(directory: Path, pattern: str, hours: int) -> bool:
    """Whether a run writes a full file: every run (``hours`` 0), else when the newest full
    file (``pattern`` in ``directory``) was written ``hours`` ago or more, or there is none.

    The files themselves say when: a full file removed by hand, or never written (a new
    drop directory), is written again by the next run that exports.
    """
    if hours <= 0:
        return True
    newest = None
    for path in directory.glob(pattern):
        with contextlib.suppress(FileNotFoundError):  # pruned by another run meanwhile
            newest = max(newest or 0.0, path.stat().st_mtime)
    return newest is None or time.time() - newest >= hours * 3600


def link_latest(full_path: Path, latest: Path) -> None:
    """Point ``latest`` at the newest full file, atomically (a hard link, or a copy where links fail)."""
    tmp = latest.with_name(f".{latest.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(full_path, tmp)
    except OSError:
        _copy_private(full_path, tmp)  # no hard links on this file system
    os.replace(tmp, latest)
    fsync_dir(latest.parent)


def _copy_private(src: Path, dst: Path) -> None:
    """Copy a file into a new owner-only (0600) file, whatever the umask: it holds personal data."""
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with open(fd, "wb") as out, open(src, "rb") as inp:
        shutil.copyfileobj(inp, out, 1 << 20)
        out.flush()
        os.fsync(out.fileno())


def clean_stale_temp(directory: Path) -> list[Path]:
    """Remove the temp files (``.<name>.<pid>.tmp``) a killed run left in ``directory``.

    Call it under the run lock, before any writer starts: then no live process owns one.
    Other files, dotfiles of other programs included, are left alone. Returns the removed.
    """
    try:
        entries = list(directory.iterdir())
    except OSError:
        return []  # not made yet, or not ours to read
    removed = []
    for p in entries:
        if _TEMP_NAME.fullmatch(p.name) and not p.is_symlink() and p.is_file():
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed
