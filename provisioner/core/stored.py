"""A target plan's changes kept encoded: read only when someone looks at them.

A plan-only target (AD or Microsoft 365 while an owner rolls BAS out) keeps the same
100,000-odd pending changes run after run. A run whose inputs did not change reuses the
certified plan (provisioner.core.certificate); decoding those changes again, only to
count them and see that none removes anything, would cost more than the run itself.
So a certified plan holds each target's changes as ``StoredChanges``: the compressed
JSON chunks as the state store keeps them (provisioner.state.certificates), with what
the run needs without them (how many, of which operations, and what they remove, for
the safety limits). Iterating, indexing or comparing decodes them once.

A live target's changes are held the same way between planning and apply, packed
(``PackedChanges``, pickled rather than JSON: faster, and only this run reads them), so
that a first run's ~650,000 changes are not all held as objects at once.

Pure: the chunks are bytes in memory; nothing here reads the store.
"""

from __future__ import annotations

import json
import pickle
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import fields
from itertools import islice
from operator import attrgetter
from typing import Any, overload

from provisioner.core.jsontext import compact, loads
from provisioner.core.plan import DESTRUCTIVE_OPS, Change, Op, OpCounted
from provisioner.core.pool import Pool

# Changes per compressed chunk: bounds the memory of encoding a large plan, and what a
# patch for one person decodes and encodes again in a plan-only target (at Oslo size a
# one-person plan took 2.37-2.45 s with 5,000 and 2.21-2.32 s with 1,000; the quiet run
# 1.69 s with either).
CHUNK = 1_000
_LEVEL = 1  # zlib's fastest level: JSON of changes still shrinks about tenfold
# Changes per packed chunk (PackedChanges): values are shared within a chunk, and showing
# the first few unpacks one.
PACK_CHUNK = 10_000
# A change's fields in the order Change(*fields) takes them (pickled as a plain tuple:
# pickling the dataclass itself took twice as long).
_fields_of = attrgetter(*(f.name for f in fields(Change)))
_KEYED_KINDS = frozenset({"person", "identity", "group"})  # whose keys a chunk records
_OPS = frozenset(op.value for op in Op)

# (operation, kind, key) of a chunk's last change: all a patch needs of a chunk to find
# where a new change goes in a full plan's order (provisioner.core.patch), kept beside its
# keys so that finding it decodes no chunk. None: not known (an earlier version stored
# the chunk), the chunk is decoded to find it.
Last = tuple[str, str, str]


def last_of(c: Change) -> Last:
    """A change's (operation, kind, key): what a chunk records of its last one."""
    return (c.op.value, c.kind, c.key)


class CountedChanges(OpCounted):
    """Changes held encoded in chunks, with what a run needs without decoding them.

    How many, of which operations, and what they remove (for the safety limits). The
    encodings: ``StoredChanges`` (JSON, as the state store keeps a certificate's) and
    ``PackedChanges`` (pickled, a live target's between planning and apply).
    """

    __slots__ = ("chunks", "size", "op_counts", "destructive", "member_removals")

    def __init__(
        self,
        chunks: tuple[bytes, ...],
        size: int,
        op_counts: Mapping[str, int],
        destructive: frozenset[tuple[str, str]],
        member_removals: int,
    ) -> None:
        self.chunks = chunks
        self.size = size
        self.op_counts = dict(op_counts)
        self.destructive = destructive  # (kind, key) of objects disabled, deleted or forgotten
        self.member_removals = member_removals  # (person, role) pairs removed from groups

    def _read(self, chunk: bytes) -> Iterator[Change]:
        """The changes of one chunk, decoded."""
        raise NotImplementedError

    def decode_chunks(self, lo: int, hi: int) -> list[Change]:
        """The changes of chunks ``lo`` to ``hi`` (both included), decoded (not kept)."""
        out: list[Change] = []
        for chunk in self.chunks[lo : hi + 1]:
            out.extend(self._read(chunk))
        return out

    def decoded(self) -> tuple[Change, ...]:
        """Every change, decoded."""
        return tuple(self.decode_chunks(0, len(self.chunks) - 1))

    def stream(self) -> Iterator[Change]:
        """Every change in order, a chunk decoded at a time and none kept.

        Counted as it goes: chunks that decode to another number of changes than recorded
        raise at the end, as ``StoredChanges.decoded`` does (a caller that zips two streams
        after comparing their sizes would otherwise stop at the shorter one unwarned).
        """
        seen = 0
        for chunk in self.chunks:
            for change in self._read(chunk):
                seen += 1
                yield change
        if seen != self.size:
            raise ValueError(f"stored changes hold {seen} changes, not the {self.size} recorded")

    def head(self, n: int) -> tuple[Change, ...]:
        """The first ``n`` changes: only the chunks that hold them are decoded."""
        return tuple(islice(self.stream(), n))

    def ops(self) -> frozenset[Op]:
        """The operations among the changes, without decoding them."""
        return frozenset(Op(k) for k in self.op_counts)

    def __len__(self) -> int:
        return self.size

    def __bool__(self) -> bool:
        return self.size > 0

    @overload
    def __getitem__(self, i: int) -> Change: ...

    @overload
    def __getitem__(self, i: slice) -> tuple[Change, ...]: ...

    def __getitem__(self, i: int | slice) -> Change | tuple[Change, ...]:
        if isinstance(i, slice) and _is_head(i):
            # The first few (what `bas plan` shows of each target): all 290,000 pending AD
            # and Microsoft 365 changes of an Oslo-size owner took ~15 s to decode, to
            # print ten lines.
            return self.head(i.stop)
        return self.decoded()[i]

    def __iter__(self) -> Iterator[Change]:
        return iter(self.decoded())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, CountedChanges):
            return self.size == other.size and self.decoded() == other.decoded()
        if isinstance(other, tuple | list):
            return self.size == len(other) and self.decoded() == tuple(other)
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.decoded())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.size} changes, {self.op_counts})"


class StoredChanges(CountedChanges):
    """Encoded changes with their counts; a sequence of Change once decoded (cached).

    The state store keeps each chunk under a name of its content
    (provisioner.state.certificates), so certifying the same changes again, or a patch
    that replaced a few chunks, writes only the chunks it has not stored yet.
    """

    __slots__ = ("_chunk_keys", "_chunk_last", "_records", "_keys", "_decoded")

    def __init__(
        self,
        chunks: tuple[bytes, ...],
        size: int,
        op_counts: Mapping[str, int],
        destructive: frozenset[tuple[str, str]],
        member_removals: int,
        chunk_keys: tuple[frozenset[str], ...] | None = None,
        chunk_last: tuple[Last | None, ...] | None = None,
        records: tuple[bytes, ...] | None = None,
    ) -> None:
        super().__init__(chunks, size, op_counts, destructive, member_removals)
        # per chunk, the keys of the person objects, identities and groups it changes: a plan
        # patched for some persons or groups (provisioner/run/incremental.py) decodes only
        # the chunks with theirs (a person and a group of the same key: both chunks, safely)
        self._chunk_keys = chunk_keys if chunk_keys is not None else (frozenset(),) * len(chunks)
        self._chunk_last = chunk_last if chunk_last is not None else (None,) * len(chunks)
        # Or both as the state store keeps them beside each chunk (pack_keys), read when
        # first asked for: only a patch asks. A quiet run and an apply never do, and at
        # Oslo size, all four targets pending, they are ~940,000 keys: 0.4 s to read and
        # ~60 MB held for the whole run (and in each worker, for its target's).
        self._records = records
        if records is not None and len(records) != len(chunks):
            raise ValueError(f"{len(chunks)} chunks stored, {len(records)} described")
        self._keys: frozenset[str] | None = None
        self._decoded: tuple[Change, ...] | None = None

    @property
    def chunk_keys(self) -> tuple[frozenset[str], ...]:
        """Per chunk, the keys of the person objects, identities and groups it changes."""
        self._read_records()
        return self._chunk_keys

    @property
    def chunk_last(self) -> tuple[Last | None, ...]:
        """Per chunk, its last change as recorded (None: not known, found by decoding it)."""
        self._read_records()
        return self._chunk_last

    def _read_records(self) -> None:
        """The stored records of the chunks' keys and last changes, read once (Unreadable:
        one is not what pack_keys writes)."""
        if self._records is None:
            return
        try:
            got = [unpack_record(body) for body in self._records]
        except (ValueError, TypeError, KeyError, zlib.error) as exc:
            raise Unreadable(f"the keys stored beside a chunk cannot be read: {exc}") from exc
        self._chunk_keys = tuple(keys for keys, _ in got)
        self._chunk_last = tuple(last for _, last in got)
        self._records = None

    @property
    def keys(self) -> frozenset[str]:
        """The keys of the person objects, identities and groups changed (in any chunk)."""
        if self._keys is None:
            self._keys = frozenset().union(*self.chunk_keys)
        return self._keys

    def _read(self, chunk: bytes) -> Iterator[Change]:
        return _decode(chunk)

    def last_change(self, i: int) -> Last | None:
        """Chunk ``i``'s last change: as recorded, or (a chunk an earlier version stored) found
        by decoding it; None for an empty chunk."""
        known = self.chunk_last[i]
        if known is None and (held := self.decode_chunks(i, i)):
            known = last_of(held[-1])
        return known

    def replaced(self, lo: int, hi: int, old: Sequence[Change], new: Sequence[Change]) -> StoredChanges:
        """These changes with chunks ``lo`` to ``hi`` (which hold ``old``) holding ``new`` instead.

        The counts follow by difference. A destructive (kind, key) only ``old`` has is
        dropped: the caller replaces changes of objects no other chunk changes.
        """
        part = encode(new)
        counts = Counter(self.op_counts)
        counts.subtract(Counter(c.op.value for c in old))
        counts.update(part.op_counts)
        gone = _destructive(old) - part.destructive
        return StoredChanges(
            self.chunks[:lo] + part.chunks + self.chunks[hi + 1 :],
            self.size - len(old) + len(new),
            {op: n for op, n in counts.items() if n},
            (self.destructive - gone) | part.destructive,
            self.member_removals - _member_removals(old) + part.member_removals,
            self.chunk_keys[:lo] + part.chunk_keys + self.chunk_keys[hi + 1 :],
            self.chunk_last[:lo] + part.chunk_last + self.chunk_last[hi + 1 :],
        )

    def decoded(self) -> tuple[Change, ...]:
        """The changes, decoded once."""
        if self._decoded is None:
            out = self.decode_chunks(0, len(self.chunks) - 1)
            if len(out) != self.size:
                raise ValueError(f"stored changes hold {len(out)} changes, not the {self.size} recorded")
            self._decoded = tuple(out)
        return self._decoded

    def stream(self) -> Iterator[Change]:
        """Every change in order: decoded already, or a chunk at a time (and none kept)."""
        return iter(self._decoded) if self._decoded is not None else super().stream()

    def text(self) -> Iterator[bytes]:
        """The changes' JSON records as one text, in pieces (a chunk decompressed at a time,
        without its own brackets, and the commas between): the same text whatever the
        chunking, so two stored plans whose texts are equal hold the same changes (a record
        decodes to one change). Nothing is parsed: for 145,000 pending AD changes at Oslo
        size, about 0.1 s against 2.4 s to decode them."""
        first = True
        for chunk in self.chunks:
            inner = _inflate(chunk)[1:-1]  # a chunk is a JSON array of records
            if inner:
                if not first:
                    yield b","
                yield inner
                first = False

    def __reduce__(self) -> tuple[Any, ...]:
        # Worker processes get the encoded chunks, not a decoded copy as well.
        # The keys too, as they are: still packed when no one read them here.
        args = (self.chunks, self.size, self.op_counts, self.destructive, self.member_removals)
        if self._records is not None:
            return (StoredChanges, (*args, None, None, self._records))
        return (StoredChanges, (*args, self._chunk_keys, self._chunk_last))


def encode(changes: Iterable[Change], *, keep: bool = False) -> StoredChanges:
    """Encode changes in compressed JSON chunks, counting as it goes (never all in one text).

    ``keep``: the changes (a tuple) stay at hand as the decoded ones: encoding a plan the
    run goes on to apply does not make it decode them again.
    """
    chunks: list[bytes] = []
    tally = _Tally()
    chunk_keys: list[frozenset[str]] = []
    chunk_last: list[Last | None] = []
    keys: set[str] = set()
    batch: list[dict[str, Any]] = []
    for c in changes:
        tally.add(c)
        if c.kind in _KEYED_KINDS:
            keys.add(c.key)
        batch.append(c.to_json())
        if len(batch) == CHUNK:
            chunks.append(_compress(batch))
            chunk_keys.append(frozenset(keys))
            chunk_last.append(last_of(c))
            batch, keys = [], set()
    if batch:
        chunks.append(_compress(batch))
        chunk_keys.append(frozenset(keys))
        chunk_last.append(last_of(c))
    out = StoredChanges(tuple(chunks), *tally.counted(), tuple(chunk_keys), tuple(chunk_last))
    if keep and isinstance(changes, tuple):
        out._decoded = changes
    return out


class PackedChanges(CountedChanges):
    """A live target's changes between planning and apply: pickled chunks, unpacked when read.

    A first run at Oslo size plans ~650,000 changes for its live targets and core. Held
    as objects from planning to the end of apply, they kept the planning heap's arenas
    from being given back, and a worker applying a target unpickled its own copy: the
    run peaked at ~1.6 GB. Packed, they are ~30 MB of bytes; the executor unpacks one
    target's at a time (``at_hand``), and they are freed once it is applied. Nothing is
    cached: each read unpacks afresh (the executor reads once per target).

    Pickle, as these bytes are made by this process, for this process or the worker it
    starts: never stored and never read from outside. It keeps values shared within a
    chunk (provisioner.core.pool). Stored plans and certificates are JSON (StoredChanges).
    """

    __slots__ = ()

    def _read(self, chunk: bytes) -> Iterator[Change]:
        return _unpack(chunk)

    def __reduce__(self) -> tuple[Any, ...]:
        # A worker gets the packed chunks and unpacks them itself.
        return (
            PackedChanges,
            (self.chunks, self.size, self.op_counts, self.destructive, self.member_removals),
        )


def pack(changes: Iterable[Change]) -> PackedChanges:
    """Pack changes in compressed pickled chunks, counting as it goes."""
    chunks: list[bytes] = []
    tally = _Tally()
    batch: list[tuple[Any, ...]] = []
    for c in changes:
        tally.add(c)
        batch.append(_fields_of(c))
        if len(batch) == PACK_CHUNK:
            chunks.append(zlib.compress(pickle.dumps(batch, pickle.HIGHEST_PROTOCOL), _LEVEL))
            batch = []
    if batch:
        chunks.append(zlib.compress(pickle.dumps(batch, pickle.HIGHEST_PROTOCOL), _LEVEL))
    return PackedChanges(tuple(chunks), *tally.counted())


def at_hand(changes: Sequence[Change]) -> Sequence[Change]:
    """Changes to work through more than once: encoded ones decoded into a tuple that only
    the caller holds, others as they are.

    Not ``StoredChanges.decoded``, which keeps what it decoded in the plan: a sync that
    applied a certified plan (``bas plan``, then ``bas sync``: a first run's ~940,000
    changes at Oslo size) kept every target's decoded changes after applying it, and
    peaked at 3.1 GB. Decoded here, a target's are freed once it is applied, and made of
    pooled values (provisioner.core.pool) as a plan's are when made: JSON makes each
    value afresh, and a worker applying a first run's Feide changes so held 0.9 GB.
    """
    if isinstance(changes, StoredChanges) and changes._decoded is None:
        pool = Pool()
        return tuple(map(pool.change, changes.stream()))  # stream counts: raises if a chunk lost some
    return changes.decoded() if isinstance(changes, CountedChanges) else changes


def _unpack(chunk: bytes) -> Iterator[Change]:
    return (Change(*f) for f in pickle.loads(_inflate(chunk)))  # noqa: S301 (this process's own bytes)


def _inflate(chunk: bytes) -> bytes:
    """A chunk decompressed; a damaged one is a ValueError, as one that decodes to another
    count than recorded is (the nightly check takes either as a difference)."""
    try:
        return zlib.decompress(chunk)
    except zlib.error as e:
        raise ValueError(f"a chunk of stored changes does not decompress ({e})") from e


class _Tally:
    """What encoded changes know of themselves, counted as they are encoded."""

    __slots__ = ("counts", "destructive", "members")

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.destructive: set[tuple[str, str]] = set()
        self.members = 0

    def add(self, c: Change) -> None:
        self.counts[c.op.value] += 1
        if c.op in DESTRUCTIVE_OPS:
            self.destructive.add((c.kind, c.key))
        elif c.op == Op.REMOVE_MEMBERS:
            self.members += len(c.members)

    def counted(self) -> tuple[int, Counter[str], frozenset[tuple[str, str]], int]:
        """(size, op counts, destructive, member removals), as the encoded changes take them."""
        return sum(self.counts.values()), self.counts, frozenset(self.destructive), self.members


def _is_head(i: slice) -> bool:
    """A slice of the first changes: [:n] or [0:n] with n given, not negative."""
    return i.start in (None, 0) and i.step in (None, 1) and i.stop is not None and i.stop >= 0


def _decode(chunk: bytes) -> Iterator[Change]:
    text = _inflate(chunk).decode("utf-8", "surrogatepass")
    return (Change.from_json(d) for d in loads(text))


def _destructive(changes: Iterable[Change]) -> set[tuple[str, str]]:
    return {(c.kind, c.key) for c in changes if c.op in DESTRUCTIVE_OPS}


def _member_removals(changes: Iterable[Change]) -> int:
    return sum(len(c.members) for c in changes if c.op == Op.REMOVE_MEMBERS)


def _compress(batch: list[dict[str, Any]]) -> bytes:
    text = compact(batch)
    return zlib.compress(text.encode("utf-8", "surrogatepass"), _LEVEL)


def meta_of(s: StoredChanges) -> dict[str, Any]:
    """What a certificate records of stored changes besides the chunks and their keys (JSON-able)."""
    return {
        "count": s.size,
        "counts": s.op_counts,
        "destructive": sorted([k, key] for k, key in s.destructive),
        "member_removals": s.member_removals,
    }


Records = tuple[bytes, ...]  # per chunk, its keys and last change as pack_keys stores them


def from_stored(meta: Mapping[str, Any], chunks: tuple[bytes, ...], records: Records) -> StoredChanges:
    """Inverse of meta_of, given the chunks and the records stored beside them (pack_keys),
    which are read only when a patch asks for the keys (KeyError, ValueError: unreadable meta)."""
    return StoredChanges(chunks, *_counted(meta), records=records)


def _counted(meta: Mapping[str, Any]) -> tuple[int, dict[str, int], frozenset[tuple[str, str]], int]:
    """What meta_of records of the changes, read back."""
    return (
        int(meta["count"]),
        dict(meta["counts"]),
        frozenset((k, key) for k, key in meta["destructive"]),
        int(meta["member_removals"]),
    )


class Unreadable(ValueError):
    """What a certificate stored beside its chunks cannot be read: the run plans in full."""


def pack_keys(keys: frozenset[str], last: Last | None = None) -> bytes:
    """One chunk's keys, and its last change when known, as stored beside it (in an object:
    a list is how an earlier version stored the keys of persons alone, which a patch of
    groups must not trust)."""
    record: dict[str, Any] = {"keys": sorted(keys)}
    if last is not None:
        record["last"] = list(last)
    text = json.dumps(record, ensure_ascii=False)
    return zlib.compress(text.encode("utf-8", "surrogatepass"), 1)


def unpack_record(body: bytes) -> tuple[frozenset[str], Last | None]:
    """Inverse of pack_keys: the keys (ValueError, TypeError, KeyError, zlib.error:
    unreadable) and the last change (None when not there or not one: found by decoding)."""
    record = json.loads(zlib.decompress(body).decode("utf-8", "surrogatepass"))
    keys = record["keys"]
    if not isinstance(keys, list):
        raise ValueError("a chunk's keys are not a list")
    last = record.get("last")
    known = isinstance(last, list) and len(last) == 3 and all(isinstance(v, str) for v in last)
    # frozenset: TypeError for a list or an object among the keys (pack_keys writes text)
    return frozenset(keys), (last[0], last[1], last[2]) if known and last[0] in _OPS else None
