"""The Feide file connector: the catalog as LDIF files (connectors/feide/ldap.py writes it live).

Owns what lands in ``output_dir`` after a run:

- ``feide-full-<run id>.ldif``: content records (RFC 2849) for every object the target
  holds that is not deleted: the owner's org entry, the containers under it
  (``people_ou``, ``units_ou``, as organizationalUnit entries), the schools, then the
  persons. Importing it into an empty directory gives the whole catalog, offline with
  OpenLDAP's ``slapadd`` or online with ``ldapadd``: it has no ``version: 1`` line, which
  slapadd (2.5) takes for an attribute of a record without a dn ("str2entry: entry -1
  has no dn") and ldapadd does not need. Written on every run that exports, or with
  ``full_every_hours`` set only when the newest full file is that old (or there is none).
- ``feide-delta-<run id>.ldif``, only when the run applied changes: change records in
  an order an LDAP server accepts in one pass: adds (org, its containers when the org
  itself is new, schools, persons; each with the full entry as the store holds it
  once the run is recorded), modrdn for moved entries and modify for updated ones
  (``replace`` for a new value, ``delete`` where the value became None or empty), then
  deletes (persons, schools, org) by the DN in ``Change.anchor``.
- ``latest-full.ldif``: a hard link to the newest full file (a copy where the file
  system has none), replaced atomically with each full file.

``accept`` checks a change and names the entry's DN as its anchor; ``export`` writes
the files from the accepted changes and the stored state before them
(connectors.base.Exporter). Files are written to dot-prefixed ``.tmp`` files beside
them and renamed into place, so an importer never sees a partial file. Full files beyond ``keep_full`` are
pruned (oldest first); delta files are kept as the record of what was sent.

Operations: CREATE, UPDATE, DELETE and MOVE (a changed ``dn``: the mapping's only
placement attribute) for ``org``, ``orgunit`` and ``person``; anything else is refused
with RejectedError. A subtree rename (a new base DN) is written as modrdn records but
is better done as a fresh full import.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TextIO

from connectors import files
from connectors.base import (
    AnchorResolver,
    Applied,
    Exporter,
    StoredLookup,
    StoredObject,
    after_apply,
    lookup_in,
)
from connectors.errors import FatalError, RejectedError
from connectors.feide.entries import KINDS, refuse_unsupported
from connectors.files import atomic_text_file, link_latest
from connectors.ldap import ldif
from mappings.feide import NIN_ATTRS, PLACEMENT_ATTRS, container_entries
from provisioner.config import FeideConfig, OwnerConfig
from provisioner.core import dn as dns
from provisioner.core.plan import Change, Op
from provisioner.core.states import ObjectStatus

_LEVEL = {"org": 0, "orgunit": 1, "person": 2}
LATEST_FULL = "latest-full.ldif"
_FULL_FILES = "feide-full-*.ldif"  # what is pruned, and whose newest says when the next is due

ObjKey = tuple[str, str]


class FeideLdifConnector(Exporter):
    """Writes full and delta LDIF files of the Feide catalog."""

    target = "feide"
    temp_glob = ".feide-*.tmp"
    nin_attrs = NIN_ATTRS

    def __init__(
        self, config: FeideConfig, owner: OwnerConfig, output_dir: Path, *, keep_full: int = 10
    ) -> None:
        self.config = config
        self.owner = owner
        self.output_dir = Path(output_dir)
        self.keep_full = keep_full
        self._run_id: str | None = None
        self._resolve: AnchorResolver | None = None
        # (op, kind, key, old DN, new DN, attrs) of the delta's records, in plan order.
        self._changes: list[tuple[Op, str, str, str | None, str, Mapping[str, Any]]] = []
        self._accepted: list[tuple[Change, str | None]] = []  # every accepted change, with its anchor
        self._dn: dict[ObjKey, str] = {}  # DNs as they stand after this run's changes so far
        self.written: list[Path] = []  # files the last export() wrote, for logs and tests

    # -- the Exporter contract --------------------------------------------------------

    def _start(self) -> None:
        self._changes = []
        self._accepted = []
        self._dn = {}

    def accept(self, change: Change) -> Applied:
        """Check one change and keep it for the files; its anchor is the entry's DN."""
        applied = self._accept(change)
        self._accepted.append((change, applied.anchor))
        return applied

    def _accept(self, change: Change) -> Applied:
        if self._run_id is None:
            raise FatalError("feide: accept() before begin()")
        refuse_unsupported(change, "the LDIF target creates, updates, moves and deletes entries")
        k = (change.kind, change.key)
        _check_attrs(change)
        if change.op is Op.CREATE:
            dn = change.place.get("dn")
            if not dn:
                raise RejectedError(f"feide: create of {change.kind}:{change.key} has no dn")
            if not change.attrs.get("objectClass"):
                raise RejectedError(f"feide: create of {change.kind}:{change.key} has no objectClass")
            self.check_nins(change.attrs)  # its NIN is made whole only as its record is written
            self._changes.append((Op.CREATE, change.kind, change.key, None, dn, change.attrs))
            self._dn[k] = dn
            return Applied(anchor=dn)
        old = self._dn.get(k) or change.anchor or (self._resolve(*k) if self._resolve else None)
        if change.op is Op.DELETE:
            self._dn.pop(k, None)
            if not old:
                return Applied(note="no DN known: never written, nothing to delete")
            self._changes.append((Op.DELETE, change.kind, change.key, old, old, {}))
            return Applied(anchor=old)
        new = change.place.get("dn") or old
        if not new:
            raise RejectedError(f"feide: no DN known for {change.kind}:{change.key}")
        self.check_nins(change.attrs)
        self._changes.append((change.op, change.kind, change.key, old or new, new, change.attrs))
        self._dn[k] = new
        return Applied(anchor=new)

    def exported(self, run_id: str) -> bool:
        """True when the delta file of ``run_id`` is in the output directory (renamed into place)."""
        return (self.output_dir / f"feide-delta-{files.run_name(run_id)}.ldif").exists()

    def recover(self, run_id: str) -> None:
        """Point latest-full.ldif at the full file of ``run_id`` (killed after its delta) and prune."""
        full = self.output_dir / f"feide-full-{files.run_name(run_id)}.ldif"
        if full.exists():
            self._link_latest(full)
            self._prune()

    def export(self, stored: Iterable[StoredObject], some: StoredLookup | None = None) -> None:
        """Write the full file (when due: ``full_every_hours``), the delta file (if the run had
        changes) and latest-full.ldif (with the full file)."""
        if self._run_id is None:
            raise FatalError("feide: export() before begin()")
        run = files.run_name(self._run_id)
        full_path = self.output_dir / f"feide-full-{run}.ldif"
        delta_path = self.output_dir / f"feide-delta-{run}.ldif"
        created = {(kind, key) for op, kind, key, *_ in self._changes if op is Op.CREATE}
        full = files.full_due(self.output_dir, _FULL_FILES, self.config.full_every_hours)
        # Without a full file the delta needs only the created objects' records (its other
        # records come from the changes): read by key, not the whole catalog.
        if full:
            current = after_apply(stored, self._accepted)
        else:
            current = after_apply((some or lookup_in(stored))({k for _, k in created}), self._accepted)
        try:
            with (
                tempfile.TemporaryFile("w+", encoding="utf-8", newline="\n", dir=self.output_dir) as persons,
                tempfile.TemporaryFile("w+", encoding="utf-8", newline="\n", dir=self.output_dir) as adds,
            ):
                # One pass over current: persons stream to a scratch file (the full file
                # needs the org and schools first, and current may be the whole catalog),
                # as do the add records of created persons. Each entry is rendered once.
                cache: ldif.LineCache = {}
                heads: list[tuple[int, str, str, str]] = []  # (level, key, kind, record)
                head_adds: dict[ObjKey, str] = {}
                found: set[ObjKey] = set()
                for obj in current:
                    if obj.status == ObjectStatus.DELETED or obj.kind not in _LEVEL:
                        continue
                    k = (obj.kind, obj.key)
                    if not full and k not in created:
                        continue  # no full file this run: only the delta's add records
                    dn = obj.attrs.get("dn") or obj.anchor
                    if not dn:
                        continue
                    dn_line = ldif.line("dn", dn)
                    # A stored record keeps its place (the DN) beside the attributes: not an attribute.
                    body = ldif.attr_block(self._whole(obj.kind, obj.key, obj.attrs), PLACEMENT_ATTRS, cache)
                    if k in created:
                        found.add(k)
                        rec = dn_line + "changetype: add\n" + body + "\n"
                        if obj.kind == "person":
                            adds.write(rec)
                        else:
                            head_adds[k] = rec
                    if obj.kind == "person":
                        persons.write(dn_line + body + "\n")
                    else:
                        heads.append((_LEVEL[obj.kind], obj.key, obj.kind, dn_line + body + "\n"))
                if full:
                    self._write_full(full_path, heads, persons)
                    self.written = [full_path]
                if self._changes:
                    with atomic_text_file(delta_path) as fh:
                        self._write_delta(fh, head_adds, adds, found)
                    self.written.append(delta_path)
            if full:
                self._link_latest(full_path)
                self._prune()
        except OSError as exc:  # disk full, permissions, the share gone
            raise FatalError(f"feide: cannot write to {self.output_dir}: {exc}") from exc

    def _whole(self, kind: str, key: str, attrs: Mapping[str, Any]) -> Mapping[str, Any]:
        """An entry's attributes as a file holds them: its NIN whole (checked at accept for a
        change; a stored entry's is its accepted change's)."""
        try:
            return self.whole_attrs(attrs)
        except RejectedError as exc:  # a file would lack a person's NIN: no file at all
            raise FatalError(f"feide: {kind}:{key}: {exc}") from exc

    def close(self) -> None:
        """Nothing to release (files are closed as they are written); safe to call twice."""
        self._resolve = None

    # -- writing ----------------------------------------------------------------------

    def _write_full(self, path: Path, heads: list[tuple[int, str, str, str]], persons: TextIO) -> None:
        """The full file: the org and its containers, the schools, then the spooled persons."""
        containers = "".join(ldif.content_record(d, a) for d, a in self._containers())
        with atomic_text_file(path) as fh:
            # No "version: 1" line: slapadd reads it as an attribute of a record
            # without a dn and refuses the file (ldapadd takes either).
            heads.sort()
            for _, _, kind, rec in heads:
                fh.write(rec)
                if kind == "org":
                    fh.write(containers)
            if not any(kind == "org" for _, _, kind, _ in heads):
                fh.write(containers)
            _copy(persons, fh)

    def _containers(self) -> list[tuple[str, dict[str, Any]]]:
        """The entries between the base DN and the people and units containers, parents first."""
        return container_entries(self.config)

    def _write_delta(
        self, fh: TextIO, head_adds: dict[ObjKey, str], adds: TextIO, found: set[ObjKey]
    ) -> None:
        """Adds parents first, then renames and modifies, then deletes children first."""
        fh.write(ldif.VERSION_LINE + "\n")
        by_level: list[list[str]] = [[], [], []]  # modrdn/modify records per level, in apply order
        deletes: list[tuple[int, int, str]] = []
        for i, (op, kind, key, old, new, attrs) in enumerate(self._changes):
            level = _LEVEL[kind]
            if op is Op.CREATE:
                if (kind, key) not in found:  # not in the store's record: the create's own attrs
                    rec = ldif.add_record(new, self._whole(kind, key, attrs))
                    if kind == "person":
                        adds.write(rec)
                    else:
                        head_adds[(kind, key)] = rec
            elif op is Op.DELETE:
                deletes.append((-level, i, ldif.delete_record(new)))
            else:
                rec = ldif.modify_record(new, self._whole(kind, key, attrs))
                by_level[level].append(_rename(old, new) + rec)
        for level, kind in enumerate(KINDS):
            for (k_kind, _), rec in sorted(head_adds.items()):
                if k_kind == kind:
                    fh.write(rec)
                    if kind == "org":
                        fh.write("".join(ldif.add_record(d, a) for d, a in self._containers()))
            if kind == "person":
                _copy(adds, fh)
            fh.write("".join(by_level[level]))
        fh.write("".join(rec for *_, rec in sorted(deletes)))

    def _link_latest(self, full_path: Path) -> None:
        """Point the latest-full file at the new full file, atomically."""
        link_latest(full_path, self.output_dir / LATEST_FULL)

    def _prune(self) -> None:
        """Remove full files beyond the newest ``keep_full`` (by modification time)."""
        if self.keep_full <= 0:
            return
        fulls = sorted(self.output_dir.glob(_FULL_FILES), key=lambda p: (p.stat().st_mtime_ns, p.name))
        for old in fulls[: -self.keep_full]:
            with contextlib.suppress(OSError):
                old.unlink()


_GOOD_NAMES: set[str] = set()  # attribute names already checked (few, seen on every change)


def _check_attrs(change: Change) -> None:
    """Refuse a change whose DN or attributes cannot be written as LDIF."""
    dn = change.place.get("dn")
    if dn is not None and not isinstance(dn, str):
        raise RejectedError(f"feide: dn of {change.kind}:{change.key} is not a string")
    for name, value in change.attrs.items():
        if name not in _GOOD_NAMES:
            if not ldif.is_attribute_name(name):
                raise RejectedError(
                    f"feide: {name!r} is not an LDAP attribute name ({change.kind}:{change.key})"
                )
            _GOOD_NAMES.add(name)
        if isinstance(value, str) or value is None:
            continue
        try:
            ldif.values_of(value)
        except TypeError as exc:
            raise RejectedError(f"feide: {name} of {change.kind}:{change.key}: {exc}") from exc


def _rename(old: str | None, new: str) -> str:
    """A modrdn record taking ``old`` to ``new`` ("" when the DN is unchanged)."""
    if not old or old == new:
        return ""
    old_parent, new_parent = dns.parent(old), dns.parent(new)
    return ldif.modrdn_record(old, dns.rdn(new), new_parent if new_parent != old_parent else None)


def _copy(src: TextIO, dst: TextIO) -> None:
    """Append the whole scratch file ``src`` to ``dst``."""
    src.flush()
    src.seek(0)
    shutil.copyfileobj(src, dst, 1 << 20)
