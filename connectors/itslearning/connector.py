"""The itslearning connector: IMS Enterprise 1.1 files in a drop directory.

Owns what the itslearning importer finds in ``output_dir`` after a run:

- ``ims-full-<UTC time>-<run id>.xml``: every object the target holds that is not
  deleted: persons, then the owner, schools and groups (each with a parent
  relationship), then one membership per group. No recstatus: a full import makes
  itslearning hold exactly this. Written on every run that exports, or with
  ``full_every_hours`` set only when the newest full file is that old (or there is none):
  with the daemon polling every minute, a 290 MB file (Oslo size) each run that changes
  anything would be written and uploaded for one new pupil.
- ``ims-delta-<UTC time>-<run id>.xml``, only when the run applied changes: recstatus 1
  (add) and 2 (update) with the object's whole current record, 3 (delete) with its
  sourcedid only (plus the empty name/description the XSD requires), and memberships
  whose member roles carry recstatus 1 or 3.
- ``latest-full.xml``: a hard link to the newest full file (a copy where the file
  system has no hard links), replaced atomically with each full file, for an importer
  set up to read one fixed name. A hard link rather than a symlink because importers that fetch over
  SMB/SFTP or move the file away after reading do not follow symlinks.

The time prefix makes the names sort by time whatever the run id looks like. Every
file is written to a dot-prefixed ``.tmp`` beside it and renamed into place, so the
importer never sees a partial file. Old full files beyond ``keep_full`` are removed
(each is the size of the whole population); delta files are kept as the record of
what was sent. ``export`` refuses (FatalError) to write a full file without persons:
itslearning's full import removes whatever a file lacks.

With ``[targets.NAME.sftp]`` set, the files are also delivered to itslearning's import
endpoint over SFTP (``deliver``, connectors/itslearning/delivery.py), in the order they
were written, each once; what is written but not yet delivered waits for the next run.

``accept`` checks a change and names its sourcedid as the anchor; ``export`` writes the
files from the accepted changes and the stored state before them (connectors.base.Exporter).
Guardian -> student links: the XSD's person has no relationship element, so they go
in the person's ``<extension>`` as IMS ``<relationship relation="2">`` elements
(label "Child", itslearning's relation type) naming each student's sourcedid.
"""

from __future__ import annotations

import contextlib
import pickle
import tempfile
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, TextIO

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
from connectors.itslearning import delivery, ims_xml
from mappings.itslearning import ORG_KEY, org_sourcedid, school_sourcedid
from provisioner.config import ItslearningConfig, OwnerConfig
from provisioner.core.plan import Change, Op
from provisioner.core.states import ObjectStatus

KINDS = ("person", "org", "orgunit", "group")
_GROUP_LEVEL = {"org": 0, "orgunit": 1, "group": 2}
LATEST_FULL = "latest-full.xml"
_FULL_FILES = "ims-full-*.xml"  # what is pruned, and whose newest says when the next is due

ObjKey = tuple[str, str]


def _sourcedid(obj: StoredObject) -> str:
    """The sourcedid an object is written under: the mapping's, else its anchor or key."""
    return obj.attrs.get("sourcedid") or obj.anchor or obj.key


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ItslearningConnector(Exporter):
    """Writes IMS Enterprise 1.1 full and delta files for itslearning's importer."""

    temp_glob = ".ims-*.tmp"

    def __init__(
        self,
        config: ItslearningConfig,
        owner: OwnerConfig,
        output_dir: Path,
        *,
        keep_full: int = 5,
        clock: Callable[[], datetime] | None = None,
        name: str = "itslearning",
        base_dir: str = ".",
    ) -> None:
        self.target = name  # the target's name in the config ([targets.<name>])
        self.config = config
        self.owner = owner
        self.output_dir = Path(output_dir)
        self.keep_full = keep_full
        self._clock = clock or _utc_now  # a module function: the connector pickles (workers)
        self._run_id: str | None = None
        self._resolve: AnchorResolver | None = None
        self._changes: list[tuple[Change, str | None]] = []  # accepted, with their anchors
        self.written: list[Path] = []  # files the last export() wrote, for logs and tests
        sftp = config.sftp
        self.delivery = (
            None
            if sftp is None
            else delivery.Delivery(sftp, self.output_dir, base_dir, f"targets.{name}.sftp")
        )

    # -- the Exporter contract --------------------------------------------------------

    def _start(self) -> None:
        self._changes = []

    def accept(self, change: Change) -> Applied:
        """Check one change and keep it for the files; its anchor is the object's sourcedid."""
        if self._run_id is None:
            raise FatalError("itslearning: accept() before begin()")
        if change.kind not in KINDS:
            raise RejectedError(
                f"itslearning: unknown object kind {change.kind!r} ({change.kind}:{change.key})"
            )
        if change.op in (Op.ADD_MEMBERS, Op.REMOVE_MEMBERS):
            if change.kind != "group":
                raise RejectedError(
                    f"itslearning: {change.op.value} applies to groups only, not {change.kind}"
                )
        elif change.op not in (Op.CREATE, Op.UPDATE, Op.DELETE):
            # itslearning has no disabled or soft-deleted state: a person who stops is
            # removed (after the configured grace), so DISABLE/ENABLE/MOVE/RESTORE never fit.
            raise RejectedError(
                f"itslearning: operation {change.op.value!r} is not supported "
                f"({change.kind}:{change.key}); the file target only creates, updates and deletes"
            )
        sid = change.attrs.get("sourcedid") if change.op in (Op.CREATE, Op.UPDATE) else None
        anchor = sid or self._anchor(change.kind, change.key, change.anchor)
        self._changes.append((change, anchor))
        return Applied(anchor=anchor)

    def exported(self, run_id: str) -> bool:
        """True when the delta file of ``run_id`` is in the drop directory (renamed into place)."""
        return any(self.output_dir.glob(f"ims-delta-*-{files.run_name(run_id)}.xml"))

    def recover(self, run_id: str) -> None:
        """Point latest-full.xml at the full file of ``run_id`` (killed after its delta) and prune."""
        full = sorted(self.output_dir.glob(f"ims-full-*-{files.run_name(run_id)}.xml"))
        if full:
            self._link_latest(full[-1])
            self._prune()

    def export(self, stored: Iterable[StoredObject], some: StoredLookup | None = None) -> None:
        """Write the full file (when due: ``full_every_hours``), the delta file (if changes
        were accepted) and latest-full.xml (with the full file)."""
        if self._run_id is None:
            raise FatalError("itslearning: export() before begin()")
        now = self._clock().astimezone(UTC)
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        run = files.run_name(self._run_id)
        full_path = self.output_dir / f"ims-full-{stamp}-{run}.xml"
        delta_path = self.output_dir / f"ims-delta-{stamp}-{run}.xml"
        datetime_text = now.strftime("%Y-%m-%dT%H:%M:%SZ")
        # Updated objects need their whole record from the store, created groups their
        # members; a created person carries its whole record already. (Keeping every
        # created record doubled peak memory on a first run at Oslo size.)
        wanted = {
            (c.kind, c.key)
            for c, _ in self._changes
            if c.op is Op.UPDATE or (c.op is Op.CREATE and c.kind == "group")
        }
        full = files.full_due(self.output_dir, _FULL_FILES, self.config.full_every_hours)
        try:
            if full:
                with files.atomic_text_file(full_path) as fh:
                    index = self._write_full(fh, after_apply(stored, self._changes), datetime_text, wanted)
                self.written = [full_path]
            else:  # the delta's sourcedids and records, read by key (not the whole target)
                index = self._delta_index(some or lookup_in(stored), wanted)
            if self._changes:
                with files.atomic_text_file(delta_path) as fh:
                    self._write_delta(fh, index, datetime_text)
                self.written.append(delta_path)
            if full:
                self._link_latest(full_path)
                self._prune()
        except OSError as exc:  # disk full, permissions, the share gone: nothing more to do this run
            raise FatalError(f"itslearning: cannot write to {self.output_dir}: {exc}") from exc

    def deliver(self) -> int:
        """Upload the files not yet delivered, oldest first (none without ``sftp``); how many went."""
        return self.delivery.run() if self.delivery is not None else 0

    def waiting(self) -> int:
        """How many written files wait for delivery (0 without ``sftp``)."""
        return len(self.delivery.waiting()) if self.delivery is not None else 0

    def close(self) -> None:
        """Nothing to release (files are closed as they are written); safe to call twice."""
        self._resolve = None

    # -- writing ----------------------------------------------------------------------

    def _anchor(self, kind: str, key: str, anchor: str | None = None) -> str:
        """The given anchor, else the one the state store holds, else the key."""
        if anchor:
            return anchor
        found = self._resolve(kind, key) if self._resolve else None
        return found or key

    def _org_parent(self, idx: _Index) -> str:
        """The owner's sourcedid, the parent of every school."""
        found = idx.group_sid.get(("org", ORG_KEY)) or (
            self._resolve("org", ORG_KEY) if self._resolve else None
        )
        return found or org_sourcedid(self.owner)

    def _write_full(
        self, fh: TextIO, current: Iterable[StoredObject], datetime_text: str, wanted: set[ObjKey]
    ) -> _Index:
        """Stream the full file in one pass over ``current``; return what the delta needs."""
        w = ims_xml.ImsWriter(fh, self.config.source_name)
        w.start(self.config.source_name, datetime_text)
        idx = _Index()
        esc = idx.esc_person
        groups: list[StoredObject] = []
        # Guardians wait in a scratch file until every student's sourcedid is known:
        # held in memory, 150,000 of them cost ~150 MB at Oslo size.
        with tempfile.TemporaryFile(dir=self.output_dir, prefix=".ims-") as guardians:
            self._full_pass(w, current, wanted, idx, guardians, groups)
            guardians.seek(0)
            while True:
                # One unpickler per record, as each was pickled with the memo cleared: one
                # for all kept every record read (~150 MB) and resolved a value held twice
                # in a record to the first record's (a guardian got another's family name).
                try:
                    key, attrs = pickle.load(guardians)  # noqa: S301 - our own scratch file, written above
                except EOFError:
                    break
                w.person(idx.person_sid[key], attrs, children=_children(attrs, idx))
        groups.sort(key=lambda o: (_GROUP_LEVEL[o.kind], o.key))
        for obj in groups:
            w.group(
                _sourcedid(obj), obj.attrs, _GROUP_LEVEL[obj.kind], self._parent(obj.kind, obj.attrs, idx)
            )
        for obj in groups:
            if obj.members:
                # Members who are not (or no longer) persons of this target would make
                # the importer fail the membership; they are left out.
                w.membership(_sourcedid(obj), [(esc[p], r, None) for p, r in obj.members if p in esc])
        w.end()
        return idx

    def _delta_index(self, some: StoredLookup, wanted: set[ObjKey]) -> _Index:
        """What the delta needs when no full file is written: the objects its changes name
        (with their members and the owner), then those their records refer to (a
        guardian's students, a group's school), read by key in two rounds.

        The delta is the same as the one written beside a full file, whose index comes
        from every object (tests/test_connector_itslearning.py checks it); reading every
        object for it cost ~2 s at Oslo size on a run that added one pupil.
        """
        idx = _Index()
        named = {ORG_KEY}
        for c, _ in self._changes:
            named.add(c.key)
            named.update(p for p, _ in c.members or ())
        self._full_pass(None, after_apply(some(named), self._changes), wanted, idx, None, None)
        referred = set[str]()
        for c, _ in self._changes:
            rec = idx.records.get((c.kind, c.key))
            attrs = rec.attrs if rec is not None else c.record() if c.op is Op.CREATE else {}
            referred.update(attrs.get("students") or ())
            if c.kind in _GROUP_LEVEL and attrs.get("school"):
                referred.add(attrs["school"])
            if c.op is Op.CREATE and rec is not None and rec.members and not c.members:  # stored members
                referred.update(p for p, _ in rec.members)
        # Every changed object was read in the first round: these are as stored.
        self._full_pass(None, some(referred - named), wanted, idx, None, None)
        return idx

    def _full_pass(
        self,
        w: ims_xml.ImsWriter | None,
        current: Iterable[StoredObject],
        wanted: set[ObjKey],
        idx: _Index,
        guardians: BinaryIO | None,
        groups: list[StoredObject] | None,
    ) -> None:
        """One pass over ``current``: persons written, guardians spooled, groups collected;
        without a writer (no full file this run), only ``idx``: what the delta needs."""
        esc = idx.esc_person
        text = ims_xml.text
        spool = None if guardians is None else pickle.Pickler(guardians, protocol=pickle.HIGHEST_PROTOCOL)
        for obj in current:
            kind = obj.kind
            if (kind, obj.key) in wanted:
                idx.records[(kind, obj.key)] = obj
            if kind == "person":
                sid = _sourcedid(obj)
                idx.person_sid[obj.key] = sid
                if obj.status == ObjectStatus.DELETED:
                    continue
                esc[obj.key] = text(sid)
                if w is None or spool is None:
                    continue
                if obj.attrs.get("students"):
                    spool.dump((obj.key, obj.attrs))  # their students' sourcedids may not be known yet
                    spool.clear_memo()
                else:
                    w.person(sid, obj.attrs)
            elif kind in _GROUP_LEVEL:
                idx.group_sid[(kind, obj.key)] = _sourcedid(obj)
                if groups is not None and obj.status != ObjectStatus.DELETED:
                    groups.append(obj)
        if not esc and w is not None:
            # A full import makes itslearning delete whatever the file lacks: an empty
            # file (a wiped or mis-pointed state store) would remove every account. (A
            # delta alone removes only what it names.)
            raise FatalError("itslearning: the target holds no persons; refusing to write an empty full file")

    def _parent(self, kind: str, attrs: Mapping[str, Any], idx: _Index) -> str | None:
        """The sourcedid of an org unit's or group's parent; None for the owner."""
        if kind == "org":
            return None
        if kind == "orgunit":
            return self._org_parent(idx)
        school = attrs.get("school")
        if not school:
            return self._org_parent(idx)
        return idx.group_sid.get(("orgunit", school)) or school_sourcedid(school)

    def _write_delta(self, fh: TextIO, idx: _Index, datetime_text: str) -> None:
        """The run's changes, collapsed per object, in the XSD's order."""
        status: dict[ObjKey, str] = {}  # (kind, key) -> final recstatus
        old_sid: dict[ObjKey, str] = {}  # sourcedids replaced this run (Old/New)
        deleted_sid: dict[ObjKey, str] = {}
        # group key -> the member pairs of its changes with their recstatus, in plan order;
        # resolved a group at a time as it is written (a first run adds ~1M pairs: one
        # dict entry each, all at once, cost ~100 MB at Oslo size).
        members: dict[str, list[tuple[Iterable[tuple[str, str]], str]]] = {}
        for c, _ in self._changes:
            k = (c.kind, c.key)
            if c.op is Op.CREATE:
                status[k] = ims_xml.RECSTATUS_ADD
                if c.kind == "group":
                    rec = idx.records.get(k)
                    adds = c.members or (rec.members if rec and rec.members else ())
                    members.setdefault(c.key, []).append((adds, ims_xml.RECSTATUS_ADD))
            elif c.op is Op.UPDATE:
                if status.get(k) != ims_xml.RECSTATUS_ADD:
                    status[k] = ims_xml.RECSTATUS_UPDATE
                before = c.before.get("sourcedid")
                if before and before != c.attrs.get("sourcedid", before):
                    old_sid.setdefault(k, before)
            elif c.op is Op.DELETE:
                status[k] = ims_xml.RECSTATUS_DELETE
                deleted_sid[k] = self._anchor(c.kind, c.key, c.anchor)
            else:
                rs = ims_xml.RECSTATUS_ADD if c.op is Op.ADD_MEMBERS else ims_xml.RECSTATUS_DELETE
                members.setdefault(c.key, []).append((c.members, rs))
        created = {(c.kind, c.key): c for c, _ in self._changes if c.op is Op.CREATE}

        def record(k: ObjKey) -> Any:
            # The object's whole current record; a create's own attrs if the store has
            # none (made as it is written). An update without a record is left out rather
            # than written half-empty (which would blank the name in itslearning).
            rec = idx.records.get(k)
            if rec is not None:
                return rec.attrs
            made = created.get(k)
            return made.record() if made is not None else None

        w = ims_xml.ImsWriter(fh, self.config.source_name)
        w.start(self.config.source_name, datetime_text)
        for k, rs in status.items():
            kind, key = k
            if kind != "person":
                continue
            if rs == ims_xml.RECSTATUS_DELETE:
                w.deleted_person(deleted_sid[k])
            elif (attrs := record(k)) is not None:
                sid = idx.person_sid.get(key) or attrs.get("sourcedid") or self._anchor(kind, key)
                w.person(sid, attrs, rs, old_sid.get(k), _children(attrs, idx))
        groups = sorted(((k, rs) for k, rs in status.items() if k[0] in _GROUP_LEVEL), key=_delta_group_order)
        for k, rs in groups:
            kind, key = k
            if rs == ims_xml.RECSTATUS_DELETE:
                w.deleted_group(deleted_sid[k])
            elif (attrs := record(k)) is not None:
                sid = idx.group_sid.get(k) or attrs.get("sourcedid") or self._anchor(kind, key)
                w.group(sid, attrs, _GROUP_LEVEL[kind], self._parent(kind, attrs, idx), rs, old_sid.get(k))
        live = idx.esc_person
        for gkey in sorted(members):
            if status.get(("group", gkey)) == ims_xml.RECSTATUS_DELETE:
                continue  # the group is gone, and its memberships with it
            box: dict[tuple[str, str], str] = {}
            for pairs, rs in members[gkey]:
                box.update(dict.fromkeys(pairs, rs))  # a later change to the same member wins
            rows = []
            for (pid, role), rs in sorted(box.items()):
                esc = live.get(pid)
                if esc is None:
                    if rs == ims_xml.RECSTATUS_ADD:
                        continue  # not a person of this target (e.g. its create was rejected)
                    esc = ims_xml.text(idx.person_sid.get(pid) or self._anchor("person", pid))
                rows.append((esc, role, rs))
            w.membership(idx.group_sid.get(("group", gkey)) or self._anchor("group", gkey), rows)
        w.end()

    def _link_latest(self, full_path: Path) -> None:
        """Point the latest-full file at the new full file, atomically."""
        files.link_latest(full_path, self.output_dir / LATEST_FULL)

    def _prune(self) -> None:
        """Remove full files beyond the newest ``keep_full``."""
        if self.keep_full <= 0:
            return
        fulls = sorted(self.output_dir.glob(_FULL_FILES))
        for old in fulls[: -self.keep_full]:
            with contextlib.suppress(OSError):
                old.unlink()


def _children(attrs: Mapping[str, Any], idx: _Index) -> list[str]:
    """Sourcedids of a guardian's students that are live persons of this target."""
    return [idx.person_sid[s] for s in attrs.get("students") or () if s in idx.esc_person]


def _delta_group_order(entry: tuple[ObjKey, str]) -> tuple[int, int, str]:
    """Parents before children when adding or updating, children first when deleting."""
    (kind, key), rs = entry
    level = _GROUP_LEVEL[kind]
    return (1, -level, key) if rs == ims_xml.RECSTATUS_DELETE else (0, level, key)


class _Index:
    """What one pass over ``current`` learns for the delta and for member references."""

    __slots__ = ("esc_person", "group_sid", "person_sid", "records")

    def __init__(self) -> None:
        self.esc_person: dict[str, str] = {}  # live person_id -> escaped sourcedid
        self.person_sid: dict[str, str] = {}  # every person_id in current -> sourcedid
        self.group_sid: dict[ObjKey, str] = {}  # (kind, key) of org/orgunit/group -> sourcedid
        self.records: dict[ObjKey, StoredObject] = {}  # current records of updated objects and created groups
