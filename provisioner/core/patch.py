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
from bisect import bisect_left
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from operator import attrgetter, itemgetter
from typing import Any, NamedTuple

from provisioner.core import stored
from provisioner.core.fetched import Converted, Fetched
from provisioner.core.model import TABLES, SourceSnapshot
from provisioner.core.plan import Change, Op
from provisioner.core.stored import Last, StoredChanges, last_of
from provisioner.core.valuebytes import bulk_bytes, value_bytes

# More changed persons than this (or than a share of the owner's, ``person_limit``): not
# patched, before any context is made. The context's size decides between a patch of its
# rows and a wide patch, which derives everyone (at Oslo size 700 renamed persons had a
# context of 214,000 rows, 2,542 one of 597,000).
LIMIT = 1_000
# A wide patch (provisioner/run/incremental.py) derives everyone, as a full plan does, and
# maps and diffs only the persons and groups that changed: it pays while they are few
# beside everyone, and holds what changed for them (their rows then, the chunks of their
# pending changes) besides. At most the owner's persons divided by this.
WIDE_SHARE = 8
# A wide patch decodes at most this many of a target's stored changes (~1.4 KB each
# decoded): a plan-only target's 100,000-odd pending ones, spread over every chunk by
# thousands of changed persons, would cost more memory than the full plan it replaces.
WIDE_DECODED = 20_000
# A context may hold this many rows, or an eighth of the owner's if more. Measured at Oslo
# size (1.55M rows; a full plan-only dry run ~30 s, peak RSS ~1,070 MB), dry patches with
# AD and Microsoft 365 plan-only: 700 renamed persons (214,000 context rows) 7.7 s, peak
# 955 MB; 250 changed groups (204,000) 10.8 s, 1,070 MB; 40 leavers, whose context is
# derived twice (195,000) 13.4 s, 972 MB. A quarter of the owner took 10.7-20.5 s but
# peaked at up to 1,200 MB, more than the full plan it replaces.
MIN_CONTEXT_ROWS = 20_000
CONTEXT_SHARE = 8  # the owner's rows divided by this
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


def _print(value: tuple[object, ...]) -> bytes:
    return hashlib.blake2b(value_bytes(value), digest_size=PRINT_SIZE).digest()


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
    """The fingerprint of BLOCK rows from ``at``, no NIN: their columns, one pickle call for them all."""
    columns = list(zip(*rows[at : at + BLOCK]))  # made in C, and plain tuples whatever the rows are
    del columns[1]
    return hashlib.blake2b(bulk_bytes(columns), digest_size=BLOCK_PRINT_SIZE).digest()


def _nins(rows: Sequence[Row]) -> bytes:
    # The NINs in id order: ``ids`` is kept beside, and compared first, so this digest
    # need not take the ids again (half the bytes to encode).
    return hashlib.sha256(bulk_bytes(list(map(_NIN, rows)))).digest()


class ChangedPersons(NamedTuple):
    """What changed in the persons table since a PersonPrints was made."""

    changed: set[str]  # ids whose row changed in names, e-mail or mobile only
    prints: PersonPrints  # the rows' fingerprints now
    joined: frozenset[str] = frozenset()  # ids that came (a joiner), with rows of their own


def changed_persons(
    before: PersonPrints, persons: Sequence[Row], limit: int = LIMIT
) -> ChangedPersons | None:
    """SIS ids whose row changed only in names, e-mail or mobile, the ids that came, and the
    rows' fingerprints now.

    None when anything else differs: persons went, an id, NIN or birth date changed, or
    more than ``limit`` rows changed or came. Blocks are fingerprinted, and only in a block
    that changed each row: a row that did not change keeps its fingerprints. Persons who
    came are left out of that comparison (the blocks are of the rows there were), and put
    in their places in the fingerprints now.
    """
    rows = _by_id(persons)
    if rows is None:
        return None
    ids = tuple(map(_ID, rows))
    joined: frozenset[str] = frozenset()
    old = rows
    if ids != before.ids:
        joined = frozenset(ids).difference(before.ids)
        if len(ids) - len(joined) != len(before.ids) or len(joined) > limit:
            return None  # persons went (or an id is there twice)
        old = [r for r in rows if r[0] not in joined]
        if tuple(map(_ID, old)) != before.ids:
            return None
    if _nins(old) != before.nins:
        return None  # a NIN changed: identities and aliases may follow
    changed: set[str] = set()
    whole, blocks = bytearray(before.whole), bytearray()
    for n, at in enumerate(range(0, len(old), BLOCK)):
        block = _block(old, at)
        blocks += block
        if block == before.blocks[n * BLOCK_PRINT_SIZE : (n + 1) * BLOCK_PRINT_SIZE]:
            continue
        for i in range(at, min(at + BLOCK, len(old))):
            r, span = old[i], slice(i * PRINT_SIZE, (i + 1) * PRINT_SIZE)
            now = _print(_no_nin(r))
            if now == before.whole[span]:
                continue
            if _print(_ident(r)) != before.ident[span]:
                return None  # a new birth date
            whole[span] = now
            changed.add(r[0])
            if len(changed) + len(joined) > limit:
                return None
    prints = PersonPrints(before.ids, bytes(whole), before.ident, bytes(blocks), before.nins)
    if joined:
        prints = _with_joined(rows, joined, prints)
    return ChangedPersons(changed, prints, joined)


def _with_joined(rows: Sequence[Row], joined: frozenset[str], was: PersonPrints) -> PersonPrints:
    """The fingerprints of ``rows``: ``was``'s (of the rows there were, in their order) as
    they are, the joiners' made and put at their rows' places; the blocks again from the
    first joiner's on (the rows after it moved)."""
    ids = tuple(map(_ID, rows))
    at = sorted(bisect_left(ids, j) for j in joined)  # the joiners' places now, in order
    wholes, idents, start = [], [], 0  # start: where the rows there were go on from
    for n, i in enumerate(at):
        upto = (i - n) * PRINT_SIZE  # i - n rows there were before this joiner
        wholes += [was.whole[start:upto], _print(_no_nin(rows[i]))]
        idents += [was.ident[start:upto], _print(_ident(rows[i]))]
        start = upto
    wholes.append(was.whole[start:])
    idents.append(was.ident[start:])
    first = at[0] // BLOCK  # the blocks before the first joiner's hold the same rows
    blocks = [was.blocks[: first * BLOCK_PRINT_SIZE]]
    blocks += [_block(rows, n) for n in range(first * BLOCK, len(rows), BLOCK)]
    return PersonPrints(ids, b"".join(wholes), b"".join(idents), b"".join(blocks), _nins(rows))


def context(
    read: Fetched | SourceSnapshot,
    changed: Iterable[str],
    *,
    groups: Iterable[str] = (),
    every_group: bool = False,
    schools: Collection[str] = (),
    max_rows: int | None = None,
) -> SourceSnapshot | None:
    """The rows that judge ``changed`` persons as the whole snapshot does; None when too many.

    Their groups and ``groups`` come with every member (a group with a member who cannot
    be judged is frozen, which decides the persons' Feide entitlements), and every
    guardian among them with their students (a guardian is active through them), closed
    under that rule. A guardianship is kept only when both ends are: one that names a
    guardian outside is about that guardian, not about anyone here. ``every_group``: every
    group row too, members or not (a group's name in AD and Microsoft 365 depends on its
    namesakes); those are not counted against ``max_rows``. ``schools``: everyone with an
    enrollment or employment there too, and the guardians of those pupils (the members
    of those schools' school-wide groups, when persons join them). Only these rows are
    made records of (provisioner.core.fetched). ``max_rows``: by default ``context_bound``.
    """
    src = Converted(read) if isinstance(read, SourceSnapshot) else read
    if max_rows is None:
        max_rows = context_bound(src)
    changed = set(changed)
    groups = {m.group_id for m in src.where("memberships", "person_id", changed)} | set(groups)
    memberships = src.where("memberships", "group_id", groups)
    if len(memberships) > max_rows:
        return None  # (before the persons' rows are made records of)
    ids = changed | {m.person_id for m in memberships}
    if schools:
        pupils = {e.person_id for e in src.where("enrollments", "school_id", schools)}
        ids |= pupils | {e.person_id for e in src.where("employments", "school_id", schools)}
        ids |= {g.guardian_id for g in src.where("guardianships", "student_id", pupils)}
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


def person_limit(read: Fetched) -> int:
    """The most persons a patch takes (changed, joined, moved, or on a changed membership row)."""
    return max(LIMIT, read.count("persons") // WIDE_SHARE)


def context_bound(read: Fetched) -> int:
    """The most rows a patch's context may hold: an eighth of the owner's rows, past which
    a patch needs as much memory as the full plan (MIN_CONTEXT_ROWS for a small owner,
    whose full plan is cheap either way)."""
    return max(MIN_CONTEXT_ROWS, sum(read.count(name) for name in TABLES) // CONTEXT_SHARE)


def splice_target(
    prev: Sequence[Change], new: Sequence[Change], keys: set[str], groups: Collection[str] = frozenset()
) -> tuple[Change, ...] | None:
    """One target's previous changes with those of person objects ``keys`` and group objects
    ``groups`` replaced by ``new``.

    A full plan puts a target's changes in phases (provisioner.core.diff.diff_target): the
    first (creates, restores, enables, moves, updates) ordered by kind, and within a kind
    by key (every mapping yields its persons and its groups by key); then member
    additions, and member removals, of groups by key; then removals (disables, deletes),
    groups' before persons', each kind's by key. None when ``new`` holds anything else, or
    a block is not in the order the splice relies on (a plan an earlier version made).
    """

    def ours(c: Change) -> bool:
        return (c.kind == "person" and c.key in keys) or (c.kind == "group" and c.key in groups)

    if not all(map(ours, new)):
        return None
    phases = _phases(prev)
    if phases is None:
        return None
    first, adds, removes, tail = phases
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
    gone = [c for c in tail if not ours(c)]
    if any(c.kind not in _GONE_RANK for c in gone):
        return None
    for kind in ("group", "person"):  # the differ's removal order: groups first
        fresh = sorted((c for c in new if c.op not in _PHASED and c.kind == kind), key=_key)  # stable
        merged = _merged(gone, fresh, kind, _GONE_BEFORE[kind])
        if merged is None:
            return None
        gone = merged
    return (*out, *gone)


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
    prev: StoredChanges,
    new: Sequence[Change],
    keys: set[str],
    groups: Collection[str] = frozenset(),
    most: int | None = None,
) -> StoredChanges | None:
    """``splice_target`` on the chunks that hold the changes of ``keys`` and ``groups``, or
    their places, the others left encoded.

    A plan-only target keeps a pending change for nearly everyone (AD while an owner rolls
    BAS out): patching one person must not decode and encode all of them. Each run of
    consecutive chunks that change a person of ``keys`` or a group of ``groups`` is
    spliced as a whole plan would be, with the new changes of the objects it holds: an
    object with a change of a phase already gets its new one where that one was; one with
    none (a joiner's creation) where the full plan's order puts it, in the chunk a binary
    search finds (``_chunk_for``). A pupil's own update and their groups' member changes
    are in far-apart chunks: two runs of a chunk or two, not everything between. None
    when an object's changes of a phase are in two runs: the caller splices it all; or
    when more than ``most`` changes would be decoded (by chunks of stored.CHUNK).
    """
    wanted = keys | set(groups)
    chunks: dict[int, list[Change]] = {}

    def chunk(i: int) -> list[Change]:
        if i not in chunks:
            chunks[i] = prev.decode_chunks(i, i)
        return chunks[i]

    def last(i: int) -> Last | None:
        return prev.chunk_last[i] or (last_of(held[-1]) if (held := chunk(i)) else None)  # decoded once

    touched = {i for i, k in enumerate(prev.chunk_keys) if k & wanted}
    if most is not None and len(touched) * stored.CHUNK > most:
        return None
    had = {(c.kind, c.key, _phase(c.op)) for i in touched for c in chunk(i) if c.key in wanted}
    placed: dict[int, int] = {}  # a new change with no change of its phase before (by position) -> its chunk
    for n, c in enumerate(new):
        if (c.kind, c.key, _phase(c.op)) not in had:
            at = _chunk_for(len(prev.chunks), last, c)
            if at is None:
                return None
            placed[n] = at
    touched.update(placed.values())
    runs = _runs(sorted(touched))
    olds = [[c for i in range(lo, hi + 1) for c in chunk(i)] for lo, hi in runs]
    run_of = {i: r for r, (lo, hi) in enumerate(runs) for i in range(lo, hi + 1)}
    where: dict[tuple[str, str, str], int] = {}
    for r, old in enumerate(olds):
        for c in old:
            if c.key in wanted and where.setdefault((c.kind, c.key, _phase(c.op)), r) != r:
                return None  # one object's changes of a phase in two runs
    parts: list[list[Change]] = [[] for _ in runs]
    for n, c in enumerate(new):
        parts[run_of[placed[n]] if n in placed else where[(c.kind, c.key, _phase(c.op))]].append(c)
    out = prev
    for (lo, hi), old, part in reversed(list(zip(runs, olds, parts))):  # the last first: lo stays put
        spliced = splice_target(old, part, keys, groups)
        if spliced is None:
            return None
        out = out.replaced(lo, hi, old, spliced)
    return out if runs else None


_PHASE_RANK = {"first": 0, Op.ADD_MEMBERS.value: 1, Op.REMOVE_MEMBERS.value: 2, "removal": 3}
_KIND_RANK = {"org": 0, "orgunit": 0, "person": 1, "group": 2}  # within the first phase
_GONE_RANK = {"group": 0, "person": 1, "orgunit": 2, "org": 3}  # within the removals
_GONE_BEFORE = {"group": frozenset(), "person": frozenset({"group"})}  # kinds removed before each


def _chunk_for(count: int, last: Callable[[int], Last | None], c: Change) -> int | None:
    """The chunk that holds the place of new change ``c`` (of a person or group) in a full
    plan's order: the first whose last change comes before it in no way (log2 of the
    chunks asked for their last change: recorded beside each chunk, or decoded). None
    when a chunk is empty."""
    if _phase(c.op) not in _PHASE_RANK or c.kind not in _KIND_RANK or not count:
        return None
    lo, hi = 0, count - 1
    while lo < hi:
        mid = (lo + hi) // 2
        held = last(mid)
        if held is None:
            return None
        if _before(held, c):
            lo = mid + 1
        else:
            hi = mid
    return lo


def _before(x: Last, c: Change) -> bool:
    """Whether a full plan puts change ``x`` (its operation, kind and key) before new change
    ``c`` (differ's order: phases; in the first, the school owner and schools, then
    persons by key, then groups by key; member additions and removals of groups by key;
    removals last, groups' before persons', each kind's by key)."""
    op, kind, key = x
    px, pc = _PHASE_RANK[_phase(Op(op))], _PHASE_RANK[_phase(c.op)]
    if px != pc:
        return px < pc
    if pc in (0, 3):
        # A kind of no rank: last of the first phase, first of the removals (the differ's 9).
        kx = _KIND_RANK.get(kind, 3) if pc == 0 else _GONE_RANK.get(kind, -1)
        kc = _KIND_RANK[c.kind] if pc == 0 else _GONE_RANK[c.kind]
        if kx != kc:
            return kx < kc
    return key < c.key


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
