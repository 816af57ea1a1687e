"""Delivering the itslearning files to its import endpoint over SFTP: in the order written, each once.

Owns the upload of the full and delta files that ``connectors.itslearning.connector``
writes into ``output_dir``, and the delivery journal beside them (``.delivery.json``,
0600, replaced atomically): which files itslearning has, and which one was half way.

What itslearning's IMS Enterprise import does with a file (its developer documentation,
https://developer.itslearning.com/The-IMS-E-import-application-and-filter..html): a
Windows service reads the XML document, moves it to a backup area, and compares what it
read with its "filter" (the data of the previous import) to find what to create, update
and delete. It says nothing specific about the SFTP drop itself, so BAS assumes what such
importers need (as other SFTP roster drops document): the importer takes any complete
``*.xml`` file in its folder, possibly the moment it appears, and moves it away. Hence:

- a file is uploaded under a hidden temp name (``.<name>.part``, no ``.xml`` ending), its
  remote size checked against the local one, and only then renamed to its own name;
- files go one at a time in the order they were written (the UTC time in their names,
  then their modification time, a run's full file before its delta), so the importer never
  sees a delta before the files written before it; a file that cannot go stops the rest;
- the journal records a file before its rename (``renaming``) and after it (``sent``),
  each durably: a run that dies in between finds out on resume whether the rename happened
  (the temp file is gone) instead of uploading the file again. A file recorded ``sent`` is
  never sent again, whatever happens remotely (the importer moves files away, so the remote
  folder cannot tell what it had);
- when the journal does not exist yet (delivery just configured), files older than the
  newest full file are recorded ``skipped``: they were written before delivery was set up,
  and the newest full file carries all they did. Likewise a full file the connector prunes
  (it keeps the newest ``keep_full``) before it could be delivered is not sent: a newer
  full file carries it; delta files are never pruned, so none is missed;
- ``deliver`` chooses the files: ``all`` (the default), or only ``full`` files (an import
  set up to take each file as the whole population, as the page above describes), or only
  ``delta`` files (an import set up for IMS recstatus changes). The others are never sent.

Errors are typed: a refused connection, a timeout or a connection lost mid-file is tried
again within the run (``attempts``, backing off from ``retry_delay`` with jitter), then
``TransientError`` (the target fails this run; the next run resumes where this one stopped).
A changed or unknown host key, a refused login, a missing secret, or a remote folder
that does not exist or refuses writing is ``FatalError`` naming the setting.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paramiko

from connectors import files
from connectors.errors import FatalError, TransientError
from provisioner import faults
from provisioner import sftp as sftp_login
from provisioner.config import SftpDeliveryConfig

JOURNAL = ".delivery.json"
SENT, RENAMING, SKIPPED = "sent", "renaming", "skipped"
_FILE = re.compile(r"ims-(full|delta)-(\d{8}T\d{6}Z)-.+\.xml")
ALL = ("full", "delta")


def written(output_dir: Path, kinds: tuple[str, ...] = ALL) -> list[Path]:
    """The full and delta files (of ``kinds``) in ``output_dir``, in the order they were written."""
    found = []
    for p in output_dir.iterdir() if output_dir.is_dir() else ():
        m = _FILE.fullmatch(p.name)
        if m and m.group(1) in kinds and p.is_file():
            found.append(((m.group(2), p.stat().st_mtime_ns, m.group(1) == "delta", p.name), p))
    return [p for _, p in sorted(found)]


def backoff(attempt: int, base: float, jitter: float) -> float:
    """Seconds to wait after failed attempt number ``attempt`` (1, 2, ...): doubling, plus up to half again.

    ``jitter`` is in [0, 1): several BAS installations failing at once do not come back at once.
    """
    return base * 2 ** (attempt - 1) * (1 + jitter / 2)


class Journal:
    """What was delivered: file name -> {state, size, at}; saved atomically into ``output_dir``."""

    def __init__(self, output_dir: Path) -> None:
        self.path = output_dir / JOURNAL
        self.fresh = not self.path.exists()
        self.entries: dict[str, dict[str, Any]] = {}
        if not self.fresh:
            try:
                self.entries = json.loads(self.path.read_text(encoding="utf-8"))["files"]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                # Guessing would re-send or skip files: an admin decides (remove it to start afresh).
                raise FatalError(f"itslearning: delivery journal {self.path} unreadable: {exc}") from exc

    def state(self, name: str) -> str | None:
        entry = self.entries.get(name)
        return entry.get("state") if entry else None

    def mark(self, name: str, state: str, size: int) -> None:
        """Record a file's state, durably (the file replaced atomically, fsynced)."""
        at = datetime.now(UTC).isoformat(timespec="seconds")
        self.entries[name] = {"state": state, "size": size, "at": at}
        self.save()

    def save(self) -> None:
        here = {p.name for p in written(self.path.parent)}
        keep = {k: v for k, v in self.entries.items() if k in here}  # pruned files need no record
        with files.atomic_text_file(self.path) as fh:
            json.dump({"version": 1, "files": keep}, fh, indent=1, sort_keys=True)
        self.fresh = False


def waiting(output_dir: Path, journal: Journal | None = None, kinds: tuple[str, ...] = ALL) -> list[Path]:
    """The files (of ``kinds``) not yet delivered, in order; with no journal, from the newest full file on."""
    journal = journal or Journal(output_dir)
    todo = [p for p in written(output_dir) if journal.state(p.name) not in (SENT, SKIPPED)]
    if journal.fresh:
        fulls = [i for i, p in enumerate(todo) if p.name.startswith("ims-full-")]
        todo = todo[fulls[-1] :] if fulls else todo
    return [p for p in todo if p.name.split("-", 2)[1] in kinds]


class Delivery:
    """Uploads the waiting files of one target to ``cfg.remote_dir``; see the module docstring."""

    def __init__(
        self,
        cfg: SftpDeliveryConfig,
        output_dir: Path,
        base_dir: str,
        key: str,
        *,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cfg = cfg
        self.output_dir = output_dir
        self.base_dir = base_dir
        self.key = key  # the settings' table in messages: "targets.itslearning.sftp"
        self.sleep = sleep
        self.where = f"SFTP {cfg.username}@{cfg.host}:{cfg.port}"
        self.kinds = ALL if cfg.deliver == "all" else (cfg.deliver,)

    def waiting(self) -> list[Path]:
        """The files this delivery has still to send, in order."""
        return waiting(self.output_dir, kinds=self.kinds)

    def run(self) -> int:
        """Deliver every waiting file; returns how many went. TransientError / FatalError: see the module."""
        journal = Journal(self.output_dir)
        todo = waiting(self.output_dir, journal, self.kinds)
        if not todo:
            return 0
        if journal.fresh:  # delivery just configured: record what came before as skipped
            for p in written(self.output_dir):
                if p not in todo:
                    journal.entries[p.name] = {"state": SKIPPED, "size": p.stat().st_size}
            journal.save()
        last = ""
        for attempt in range(1, self.cfg.attempts + 1):
            try:
                self._session(journal, waiting(self.output_dir, journal, self.kinds))
                break
            except sftp_login.SftpError as exc:
                if exc.fatal:
                    raise FatalError(f"itslearning: {exc}") from exc
                last = str(exc)
            except (OSError, EOFError, paramiko.SSHException) as exc:
                if not sftp_login.lost(exc):
                    raise FatalError(
                        f"itslearning: {self.where}: {self.cfg.remote_dir}: {exc}"
                        f" (check {self.key}.remote_dir: the folder must exist and be writable)"
                    ) from exc
                last = f"{self.where}: connection lost: {exc or type(exc).__name__}"
            if attempt < self.cfg.attempts:
                self.sleep(backoff(attempt, self.cfg.retry_delay, random.random()))  # noqa: S311 - jitter
        else:
            left = len(waiting(self.output_dir, journal, self.kinds))
            raise TransientError(
                f"itslearning: delivery failed after {self.cfg.attempts} attempts ({last});"
                f" {left} files wait for the next run"
            )
        return sum(journal.state(p.name) == SENT for p in todo)

    def probe(self) -> str:
        """Log in and list ``remote_dir`` (read-only, for `bas config check`)."""
        try:
            client = sftp_login.connect(self.cfg, self.base_dir, self.key)
        except sftp_login.SftpError as exc:
            raise FatalError(f"itslearning: {exc}") from exc
        try:
            sftp = sftp_login.open_sftp(client, self.cfg.timeout)
            try:
                names = sftp.listdir(self.cfg.remote_dir)
            finally:
                sftp.close()
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise FatalError(
                f"{self.key}.remote_dir: {self.where}: cannot list {self.cfg.remote_dir}: {exc}"
            ) from exc
        finally:
            client.close()
        listed = f"{self.cfg.remote_dir} listable ({len(names)} entries)"
        return f"{self.where}: host key pinned and matching, {listed}"

    # -- one session ------------------------------------------------------------------

    def _session(self, journal: Journal, todo: list[Path]) -> None:
        """Log in and send ``todo`` in order, each recorded as it goes."""
        client = sftp_login.connect(self.cfg, self.base_dir, self.key)
        try:
            sftp = sftp_login.open_sftp(client, self.cfg.timeout)
            try:
                for path in todo:
                    self._send(sftp, path, journal)
            finally:
                with contextlib.suppress(Exception):
                    sftp.close()
        finally:
            client.close()

    def _remote(self, name: str) -> str:
        folder = self.cfg.remote_dir.rstrip("/")
        return f"{folder}/{name}" if folder else name

    def _send(self, sftp: paramiko.SFTPClient, path: Path, journal: Journal) -> None:
        """Upload one file under its temp name, check its size, rename it (recorded before and after)."""
        name = path.name
        final, temp = self._remote(name), self._remote(f".{name}.part")
        size = path.stat().st_size
        if journal.state(name) == RENAMING and not self._exists(sftp, temp):
            pass  # renamed before the last run died (and maybe taken by the importer since)
        else:
            if journal.state(name) != RENAMING:
                self._upload(sftp, path, temp, size)
                journal.mark(name, RENAMING, size)
            try:
                sftp.rename(temp, final)
            except OSError as exc:
                if sftp_login.lost(exc):
                    raise
                # e.g. a file of that name is there already: not ours to replace
                raise OSError(None, f"cannot rename {temp} to {final}: {exc}") from exc
            faults.point("delivery:renamed")  # a kill here: renamed, not yet recorded (tests only)
        journal.mark(name, SENT, size)

    def _upload(self, sftp: paramiko.SFTPClient, path: Path, temp: str, size: int) -> None:
        try:
            fh = path.open("rb")
        except OSError as exc:
            raise FatalError(f"itslearning: cannot read {path}: {exc}") from exc
        with fh:
            sftp.putfo(fh, temp, file_size=size, confirm=False)
        got = sftp.stat(temp).st_size
        if got != size:  # a full remote disk, a quota: the upload stopped short
            raise OSError(None, f"{temp} has {got} bytes after the upload, not {size}")

    @staticmethod
    def _exists(sftp: paramiko.SFTPClient, remote: str) -> bool:
        try:
            sftp.stat(remote)
        except FileNotFoundError:
            return False
        return True
