"""The PIFU source plug-in: ``PifuSource(cfg)`` as the source registry opens it for a run.

Reads ``[source]`` of kind ``pifu`` (``provisioner.source_config.PifuSourceConfig``):
with ``sftp`` set it first picks the newest settled export up from the SIS's export
server into the local ``path`` folder (``sources.pifu.sftp``); then it reads the export
``sources.pifu.files.choose_export`` names. ``unchanged`` hashes that file and compares
it with the ``export`` digest of the snapshot the digests came from: no parse.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from pathlib import Path

from provisioner.config import Config
from provisioner.core.model import SourceSnapshot
from provisioner.source_config import PifuSourceConfig
from sources.base import Source, SourceError
from sources.pifu.files import choose_export, file_sha256
from sources.pifu.reader import ExportInfo, read_export


class PifuSource(Source):
    """PIFU-IMS 1.2 export files, local or picked up over SFTP."""

    kind = "pifu"

    def __init__(self, cfg: Config) -> None:
        scfg = cfg.source
        assert isinstance(scfg, PifuSourceConfig)
        self.scfg = scfg
        self.path = cfg.path(scfg.path)
        self.base_dir = cfg.base_dir
        self.owner_org = cfg.owner.org_number
        self.last: ExportInfo | None = None  # the export the last read() read

    def export_path(self) -> Path:
        """The export a read now would read (after an SFTP pickup, when configured)."""
        if self.scfg.sftp is not None:
            from sources.pifu.sftp import pickup

            pickup(self.scfg.sftp, self.path, self.scfg.pattern, self.scfg.settle_seconds, self.base_dir)
        return choose_export(self.path, self.scfg.pattern, self.scfg.settle_seconds)

    def read(self) -> SourceSnapshot:
        snap, self.last = read_export(
            self.export_path(), school_levels=self.scfg.school_levels, owner_org=self.owner_org
        )
        return snap

    def unchanged(self, digests: Mapping[str, str]) -> bool:
        want = digests.get("export")
        if not want:
            return False
        try:
            return file_sha256(self.export_path()) == want
        except SourceError:
            return False  # nothing readable now: certainly not what was read then

    def describe(self) -> str:
        where = str(self.path)
        if self.scfg.sftp is not None:
            s = self.scfg.sftp
            where = f"sftp://{s.username}@{s.host}:{s.port}/{s.remote_dir} via {self.path}"
        info = self.last
        if info is None:
            try:
                p = choose_export(self.path, self.scfg.pattern, self.scfg.settle_seconds)
                st = p.stat()
            except (SourceError, OSError) as exc:
                return f"pifu {where} ({exc})"
            return f"pifu {where}: {p.name}, {st.st_size} bytes, changed {_when(st.st_mtime)}"
        return f"pifu {where}: read {info.path.name}, {info.size} bytes, changed {_when(info.mtime)}"


def _when(mtime: float) -> str:
    return dt.datetime.fromtimestamp(mtime, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
