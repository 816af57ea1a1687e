"""Patching a plan for the few persons whose own row changed: pure, values in and out.

Most of what changes in a school's day is a person's name, e-mail or mobile: the SIS's
person row, nothing else. For those the plan made from the previous inputs (the
certified one, provisioner.core.certificate) is right for everyone else, so a run need
not derive, map and diff the whole owner again. This module holds the pure parts of
that patch (provisioner/run/incremental.py runs it):

- ``PersonPrints``: a fingerprint per SIS person row, of what identifies the person
  (id, birth date) and of the whole row, and one digest of all NINs, kept beside the
  certificate;
- ``changed_persons``: the persons whose row changed in nothing but those other fields
  (names, e-mail, mobile), or None when anything else differs;
- ``context``: the rows derive needs to judge those persons exactly as a full run does
  (their own rows, their groups with every member's rows, the students they are
  guardian of), a snapshot a few hundred rows long;
- ``splice_target``, ``splice_stored`` and ``splice_core``: the previous changes with
  those persons' (and, for a patch of memberships, provisioner.core.memberships, those
  groups') replaced by the recomputed ones, each where a full plan puts it (a full plan
  orders person and group objects by key within their kind and phase, and identity
  changes by person id).

Anything the patch cannot prove equal to the full plan returns None, and the run plans
in full: the property tests check patched plan = full plan after every step.
"""

from __future__ import annotations

import hashlib
import marshal
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from typing import Any

from provisioner.core.fetched import Converted, Fetched
from provisioner.core.model import SourceSnapshot
from provisioner.core.plan import Change, Op
from provisioner.core.stored import StoredChanges

LIMIT = 500  # more changed persons than this: a full plan is about as cheap as the patch
_FIRST = frozenset({Op.CREATE, Op.RESTORE, Op.ENABLE, Op.MOVE, Op.UPDATE})  # the differ's first phase
_PERSON_RANK_BEFORE = frozenset({"org", "orgunit"})  # kinds a phase puts before persons
_GROUP_RANK_BEFORE = _PERSON_RANK_BEFORE | {"person"}  # and before groups
_PHASED = _FIRST | {Op.ADD_MEMBERS, Op.REMOVE_MEMBERS}  # the phases before removals
PRINT_SIZE = 12  # bytes of one row's fingerprint
BLOCK = 4096  # rows fingerprinted together (in person-id order)
BLOCK_PRINT_SIZE = 16  # bytes of one block's fingerprint


# A person row in the model's field order (provisioner.core.model.Person): the record, or
# the row as the source read it (provisioner.core.fetched), whose values may be another
# driver type than the record's (a date): a fingerprint tells that a row changed, and
# raw values that are the same make the same record.
Row = tuple[Any, ...]
_ID, _NIN = itemgetter(0), itemgetter(1)
_key = attrgetter("key")


def _bytes(value: object) -> bytes:
    """Values as bytes, the same bytes for the same values.

    marshal format 0: equal values give equal bytes (sources/sql.py, _encoded, says
    why); a value marshal cannot write (a driver's date) goes through repr instead.
    """
    try:
        return b"m" + marshal.dumps(value, 0)  # type: ignore[arg-type]
    except ValueError:
        return b"r" + repr(value).encode("utf-8", "surrogatepass")


def _print(value: tuple[object, ...]) -> bytes:
    return hashlib.blake2b(_bytes(value), digest_size=PRINT_SIZE).digest()


@dataclass(frozen=True)
class PersonPrints:
    """A fingerprint of every SIS person row, in person-id order, kept beside the certificate.

    ``whole`` holds one per row, ``ident`` one of what identifies the person (id and
    birth date), each PRINT_SIZE bytes at the row's position in ``ids``; ``blocks`` one
    of each BLOCK rows together, so that a run fingerprints a row alone only in the
    blocks that changed. NINs are left out of all three: a fingerprint of one row's NIN
    could be found by trying every NIN of that birth date. They are in ``nins`` instead,
    one digest of every NIN in the order of ``ids`` (so of every (id, NIN) pair), which
    tells that some NIN changed and nothing about any one.
    """

    ids: tuple[str, ...]
    whole: bytes
    ident: bytes
    blocks: bytes
    nins: bytes

    @classmethod
    def of(cls, persons: Iterable[Row]) -> PersonPrints | None:
        """The fingerprints of these rows; None when an id is missing or appears twice (never patched)."""
        rows = _by_id(persons)
        if rows is None:
            return None
        ids = tuple(map(_ID, rows))
        if len(set(ids)) != len(ids):
            return None
        whole = b"".join(_print(_no_nin(r)) for r in rows)
        ident = b"".join(_print(_ident(r)) for r in rows)
        blocks = b"".join(_block(rows, at) for at in range(0, len(rows), BLOCK))
        return cls(ids, whole, ident, blocks, _nins(rows))


def _by_id(persons: Iterable[Row]) -> list[Row] | None:
    """The rows in person-id order; None when an id is no text (a NULL: validation reports it)."""
    rows = list(persons)
    if not set(map(type, map(_ID, rows))) <= {str}:
        return None
    return sorted(rows, key=_ID)


def _no_nin(r: Row) -> tuple[object, ...]:
    return (r[0], *r[2:])


def _ident(r: Row) -> tuple[object, ...]:
    return (r[0], r[5])  # id and birth date


def _block(rows: Sequence[Row], at: int) -> bytes:
    """The fingerprint of BLOCK rows from ``at``: one marshal call for them all, no NIN."""
    part = rows[at : at + BLOCK]
    value = (list(map(_ID, part)), [r[2:] for r in part])  # a slice of a record is a plain tuple
    return hashlib.blake2b(_bytes(value), digest_size=BLOCK_PRINT_SIZE).digest()


def _nins(rows: Sequence[Row]) -> bytes:
    # The NINs in id order: ``ids`` is kept beside, and compared first, so this digest
    # need not take the ids again (half the bytes to marshal).
    return hashlib.sha256(_bytes(list(map(_NIN, rows)))).digest()


def changed_persons(before: PersonPrints, persons: Sequence[Row]) -> tuple[set[str], PersonPrints] | None:
    """SIS ids whose row changed only in names, e-mail or mobile, and the rows' fingerprints now.

    None when anything else differs: persons came or went, an id, NIN or birth date
    changed, or more than LIMIT rows did. Blocks are fingerprinted, and only in a block
    that changed each row: a row that did not change keeps its fingerprints.
    """
    rows = _by_id(persons)
    if rows is None:
        return None
    ids = tuple(map(_ID, rows))
    if ids != before.ids or _nins(rows) != before.nins:
        return None  # persons came or went, or a NIN changed: identities and aliases may follow
    changed: set[str] = set()
    whole, blocks = bytearray(before.whole), bytearray()
    for n, at in enumerate(range(0, len(rows), BLOCK)):
        block = _block(rows, at)
        blocks += block
        if block == before.blocks[n * BLOCK_PRINT_SIZE : (n + 1) * BLOCK_PRINT_SIZE]:
            continue
        for i in range(at, min(at + BLOCK, len(rows))):
            r, span = rows[i], slice(i * PRINT_SIZE, (i + 1) * PRINT_SIZE)
            now = _print(_no_nin(r))
            if now == before.whole[span]:
                continue
            if _print(_ident(r)) != before.ident[span]:
                return None  # a new birth date
            whole[span] = now
            changed.add(r[0])
            if len(changed) > LIMIT:
                return None
    return changed, PersonPrints(ids, bytes(whole), before.ident, bytes(blocks), before.nins)


def context(
    read: Fetched | SourceSnapshot,
    changed: Iterable[str],
    *,
    groups: Iterable[str] = (),
    every_group: bool = False,
    max_rows: int = 20_000,
) -> SourceSnapshot | None:
    """The rows that judge ``changed`` persons as the whole snapshot does; None when too many.

    Their groups and ``groups`` come with every member (a group with a member who cannot
    be judged is frozen, which decides the persons' Feide entitlements), and every
    guardian among them with their students (a guardian is active through them), closed
    under that rule. A guardianship is kept only when both ends are: one that names a
    guardian outside is about that guardian, not about anyone here. ``every_group``: every
    group row too, members or not (a group's name in AD and Microsoft 365 depends on its
    namesakes); those are not counted against ``max_rows``. Only these rows are made
    records of (provisioner.core.fetched).
    """
    src = Converted(read) if isinstance(read, SourceSnapshot) else read
    changed = set(changed)
    groups = {m.group_id for m in src.where("memberships", "person_id", changed)} | set(groups)
    memberships = src.where("memberships", "group_id", groups)
    ids = changed | {m.person_id for m in memberships}
    todo = set(ids)
    while todo:  # guardians here bring their students, who may be guardians too
        found = {g.student_id for g in src.where("guardianships", "guardian_id", todo)} - ids
        ids |= found
        todo = found
        if len(ids) > max_rows:
            return None
    out = SourceSnapshot(
        schools=src.table("schools"),
        persons=src.where("persons", "person_id", ids),
        enrollments=src.where("enrollments", "person_id", ids),
        employments=src.where("employments", "person_id", ids),
        guardianships=tuple(g for g in src.where("guardianships", "guardian_id", ids) if g.student_id in ids),
        groups=src.table("groups") if every_group else src.where("groups", "group_id", groups),
        memberships=memberships,
        digests=src.digests,
    )
    counted = out.counts()
    if every_group:
        del counted["groups"]
    if sum(counted.values()) > max_rows:
        return None
    return out


def splice_target(
    prev: Sequence[Change], new: Sequence[Change], keys: set[str], groups: Collection[str] = frozenset()
) -> tuple[Change, ...] | None:
    """One target's previous changes with those of person objects ``keys`` and group objects
    ``groups`` replaced by ``new``.

    A full plan puts a target's changes in phases (provisioner.core.diff.diff_target): the
    first (creates, restores, enables, moves, updates) ordered by kind, and within a kind
    by key (every mapping yields its persons and its groups by key); then member
    additions, and member removals, of groups by key; then removals in stored order. A
    patch leaves removals as they were: the removals recomputed must be the ones already
    planned, and they stay where they are. None when ``new`` holds anything else, or a
    block is not in the order the splice relies on.
    """

    def ours(c: Change) -> bool:
        return (c.kind == "person" and c.key in keys) or (c.kind == "group" and c.key in groups)

    if not all(map(ours, new)):
        return None
    phases = _phases(prev)
    if phases is None:
        return None
    first, adds, removes, tail = phases
    if [c for c in tail if ours(c)] != [c for c in new if c.op not in _PHASED]:
        return None
    out: list[Change] = []
    for block, ops, kinds in (
        (first, _FIRST, (("person", _PERSON_RANK_BEFORE), ("group", _GROUP_RANK_BEFORE))),
        (adds, {Op.ADD_MEMBERS}, (("group", _GROUP_RANK_BEFORE),)),
        (removes, {Op.REMOVE_MEMBERS}, (("group", _GROUP_RANK_BEFORE),)),
    ):
        kept = [c for c in block if not ours(c)]
        for kind, before in kinds:
            fresh = sorted((c for c in new if c.op in ops and c.kind == kind), key=_key)  # stable
            merged = _merged(kept, fresh, kind, before)
            if merged is None:
                return None
            kept = merged
        out.extend(kept)
    return (*out, *tail)


def _phases(
    changes: Sequence[Change],
) -> tuple[Sequence[Change], Sequence[Change], Sequence[Change], Sequence[Change]] | None:
    """A target's changes cut into the differ's phases; None when they are not in that shape."""
    n1 = next((i for i, c in enumerate(changes) if c.op not in _FIRST), len(changes))
    n2 = next((i for i in range(n1, len(changes)) if changes[i].op != Op.ADD_MEMBERS), len(changes))
    n3 = next((i for i in range(n2, len(changes)) if changes[i].op != Op.REMOVE_MEMBERS), len(changes))
    tail = changes[n3:]
    if any(c.op in _PHASED for c in tail):
        return None
    return changes[:n1], changes[n1:n2], changes[n2:n3], tail


def splice_stored(
    prev: StoredChanges, new: Sequence[Change], keys: set[str], groups: Collection[str] = frozenset()
) -> StoredChanges | None:
    """``splice_target`` on the chunks that hold the changes of ``keys`` and ``groups``, the
    others left encoded.

    A plan-only target keeps a pending change for nearly everyone (AD while an owner rolls
    BAS out): patching one person must not decode and encode all of them. Each run of
    consecutive chunks that change a person of ``keys`` or a group of ``groups`` is
    spliced as a whole plan would be, with the new changes of the objects it holds: exact
    when every object given a change of a phase had one of that phase already, in one run
    (it goes where that one was). A pupil's own update and their groups' member changes
    are in far-apart chunks: two runs of a chunk or two, not everything between. None
    otherwise: the caller splices it all.
    """
    wanted = keys | set(groups)
    touched = [i for i, k in enumerate(prev.chunk_keys) if k & wanted]
    runs = _runs(touched)
    olds = [prev.decode_chunks(lo, hi) for lo, hi in runs]
    where: dict[tuple[str, str, str], int] = {}
    for n, old in enumerate(olds):
        for c in old:
            if c.key in wanted and where.setdefault((c.kind, c.key, _phase(c.op)), n) != n:
                return None  # one object's changes of a phase in two runs
    parts: list[list[Change]] = [[] for _ in runs]
    for c in new:
        at = where.get((c.kind, c.key, _phase(c.op)))
        if at is None:
            return None  # a change where it had none: its place may be in no run here
        parts[at].append(c)
    out = prev
    for (lo, hi), old, part in reversed(list(zip(runs, olds, parts))):  # the last first: lo stays put
        spliced = splice_target(old, part, keys, groups)
        if spliced is None:
            return None
        out = out.replaced(lo, hi, old, spliced)
    return out if runs else None


def _runs(indexes: list[int]) -> list[tuple[int, int]]:
    """Sorted indexes as runs of consecutive ones, (first, last) each."""
    runs: list[tuple[int, int]] = []
    for n in indexes:
        if runs and runs[-1][1] == n - 1:
            runs[-1] = (runs[-1][0], n)
        else:
            runs.append((n, n))
    return runs


def _phase(op: Op) -> str:
    """The differ's phase of a change: first, member additions, member removals, or removals."""
    if op in _FIRST:
        return "first"
    return op.value if op in (Op.ADD_MEMBERS, Op.REMOVE_MEMBERS) else "removal"


def splice_core(prev: Sequence[Change], new: Sequence[Change], keys: set[str]) -> tuple[Change, ...] | None:
    """The core's previous changes with the identity changes of ``keys`` replaced by ``new``.

    A full plan lists aliases first, then identity changes by person id (diff_core).
    """
    if any(c.kind != "identity" or c.key not in keys for c in new):
        return None
    kept = [c for c in prev if not (c.kind == "identity" and c.key in keys)]
    merged = _merged(kept, sorted(new, key=_key), "identity", frozenset({"alias"}))
    return None if merged is None else tuple(merged)


def _merged(
    kept: list[Change], fresh: list[Change], kind: str, before: frozenset[str]
) -> list[Change] | None:
    """``fresh`` (sorted by key) merged into the block of ``kind`` in ``kept`` by key.

    The block is where the kinds in ``before`` end and other kinds begin; None when it is
    not in key order (then a merge could not put a change where a full plan has it).
    """
    start = next((i for i, c in enumerate(kept) if c.kind not in before), len(kept))
    end = next((i for i in range(start, len(kept)) if kept[i].kind != kind), len(kept))
    block, out, j = kept[start:end], list(kept[:start]), 0
    if any(block[i].key > block[i + 1].key for i in range(len(block) - 1)):
        return None
    for c in block:
        while j < len(fresh) and fresh[j].key < c.key:
            out.append(fresh[j])
            j += 1
        out.append(c)
    out.extend(fresh[j:])
    out.extend(kept[end:])
    return out
