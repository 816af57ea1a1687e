"""Fingerprints of each group's membership rows: which groups' members changed, and how.

A pupil who moves to another class changes a few groups' membership rows and nothing
else. The plan made from the previous inputs (the certified one) is then right for
every object but those groups and the persons whose rows changed, so a run need not
derive, map and diff the whole owner (provisioner/run/incremental.py patches it). This
module holds the pure parts of finding them:

- ``GroupPrints``: per group id (sorted), a fingerprint of the group's rows as read, in
  the order read; the rows themselves, kept as compressed JSON in ``BUCKETS`` buckets
  (by a CRC of the group id), so that a later run can tell what a changed group held
  before; and the persons and groups the run that read them froze
  (its derivation's). Nothing a person is judged by comes from memberships, so a run
  whose only change is membership rows freezes the same persons, and the same groups
  outside those it changed;
- ``changed_groups``: the groups whose rows came, went or differ, the persons on a row
  added to or removed from one of them, and the fingerprints now.

A group id that is no text (a NULL: validation reports it), or a value marshal or JSON
cannot write (a driver's date), gives no fingerprints: such a source is never patched
for memberships.
"""

from __future__ import annotations

import hashlib
import marshal
import zlib
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from provisioner.core.jsontext import compact, loads

BUCKETS = 64  # a changed group rewrites its bucket: about a 64th of the rows, compressed
# More changed groups than this: not patched, before any context is made; the context's
# size decides (provisioner.core.patch.context_bound). At Oslo size 250 changed groups had
# a context of 204,000 rows (patched in 10.8 s), 1,000 groups one of 579,000.
LIMIT = 500
# Past the context bound a wide patch takes them (provisioner.core.patch.WIDE_SHARE): up to
# the owner's groups divided by this. 1 % of an Oslo-size owner's membership rows, gone
# at random, are rows of about 40 % of its groups.
WIDE_SHARE = 2


def limit_for(groups: int) -> int:
    """The most changed groups a patch takes, of an owner with this many groups."""
    return max(LIMIT, groups // WIDE_SHARE)


PRINT_SIZE = 12  # bytes of one group's fingerprint

# A membership row in GroupMembership's field order (group_id, person_id, role), values
# as the source read them.
Row = tuple[Any, ...]


@dataclass(frozen=True)
class GroupPrints:
    """Each group's membership rows fingerprinted and kept, and what the run froze.

    ``prints`` holds PRINT_SIZE bytes per id, at the id's position in ``ids``;
    ``buckets`` one compressed body per bucket: the [group id, rows] pairs of the groups
    whose id falls in it, by id, as JSON (the state store keeps them: nothing it reads
    back is unpickled or unmarshalled).
    """

    ids: tuple[str, ...]
    prints: bytes
    buckets: tuple[bytes, ...]
    frozen_persons: frozenset[str] = frozenset()
    frozen_groups: frozenset[str] = frozenset()

    @classmethod
    def of(cls, rows: Iterable[Row]) -> GroupPrints | None:
        """The fingerprints of these rows (nothing frozen yet: the caller adds the run's)."""
        by = _grouped(rows)
        if by is None:
            return None
        ids = tuple(sorted(by))
        prints: dict[str, bytes] = {}
        buckets: list[bytes] = []
        # A bucket at a time: the marshalled rows of an Oslo-size owner are ~60 MB.
        for part in _by_bucket(ids):
            for g in part:
                blob = _blob(by[g])
                if blob is None:
                    return None
                prints[g] = _print(blob)
            body = _pack([(g, by[g]) for g in part])
            if body is None:
                return None
            buckets.append(body)
        return cls(ids, b"".join(prints[g] for g in ids), tuple(buckets))

    def frozen(self, persons: Iterable[str], groups: Iterable[str]) -> GroupPrints:
        """The same fingerprints, with the persons and groups a run froze."""
        return GroupPrints(self.ids, self.prints, self.buckets, frozenset(persons), frozenset(groups))


@dataclass(frozen=True)
class ChangedGroups:
    """What changed in the membership rows since a GroupPrints was made."""

    groups: frozenset[str]  # ids whose rows came, went or differ
    persons: frozenset[str]  # person ids on a row added to or removed from one of them
    prints: GroupPrints  # the rows' fingerprints now, with the frozen persons and groups of before
    rows: int  # how many rows there are now
    was: Mapping[str, list[Row]] = field(default_factory=dict)  # the changed groups' rows before


def changed_groups(before: GroupPrints, rows: Iterable[Row], limit: int = LIMIT) -> ChangedGroups | None:
    """The groups whose rows changed since ``before``; None when more than ``limit`` did, or
    the rows give no fingerprints, or a changed row holds a person id that is no text."""
    by = _grouped(rows)
    if by is None:
        return None
    old = {g: before.prints[i * PRINT_SIZE : (i + 1) * PRINT_SIZE] for i, g in enumerate(before.ids)}
    blobs: dict[str, bytes] = {}
    changed: set[str] = set(old.keys() - by.keys())  # groups with no row left
    for g, group_rows in by.items():
        blob = _blob(group_rows)
        if blob is None:
            return None
        if old.get(g) != _print(blob):
            changed.add(g)
            if len(changed) > limit:
                return None
            blobs[g] = blob
    ids = tuple(sorted(by))
    prints = b"".join(_print(blobs[g]) if g in blobs else old[g] for g in ids)
    return _changed(before, by, changed, blobs, (ids, prints), sum(map(len, by.values())))


def changed_among(
    before: GroupPrints, rows: Iterable[Row], candidates: Collection[str], count: int, limit: int = LIMIT
) -> ChangedGroups | None:
    """What changed_groups(before, every row now) finds, fingerprinting only these rows: when
    the caller proved that only groups ``candidates`` can have changed (the table without
    the rows that name a joiner is the table as it was), and ``rows`` are all of their rows
    now, in the order read (of the ``count`` rows there are). A joiner's few groups then cost
    what they hold, not a million rows."""
    by = _grouped(rows)
    if by is None or not by.keys() <= set(candidates):
        return None
    at = {g: bisect_left(before.ids, g) for g in candidates}
    had = {g for g, i in at.items() if i < len(before.ids) and before.ids[i] == g}
    changed = had - by.keys()  # groups with no row left
    blobs: dict[str, bytes] = {}
    for g, group_rows in by.items():
        blob = _blob(group_rows)
        if blob is None:
            return None
        i = at[g]
        if g not in had or before.prints[i * PRINT_SIZE : (i + 1) * PRINT_SIZE] != _print(blob):
            changed.add(g)
            blobs[g] = blob
    if len(changed) > limit:
        return None
    if changed - by.keys() or by.keys() - had:  # a group came or went: ids and positions change
        old = {g: before.prints[i * PRINT_SIZE : (i + 1) * PRINT_SIZE] for i, g in enumerate(before.ids)}
        ids = tuple(sorted(set(before.ids).difference(changed - by.keys()).union(by)))
        prints = b"".join(_print(blobs[g]) if g in blobs else old[g] for g in ids)
    else:
        ids, buf = before.ids, bytearray(before.prints)
        for g, blob in blobs.items():
            buf[at[g] * PRINT_SIZE : (at[g] + 1) * PRINT_SIZE] = _print(blob)
        prints = bytes(buf)
    return _changed(before, by, changed, blobs, (ids, prints), count)


def _changed(
    before: GroupPrints,
    by: Mapping[str, list[Row]],
    changed: set[str],
    blobs: Mapping[str, bytes],
    now: tuple[tuple[str, ...], bytes],
    count: int,
) -> ChangedGroups | None:
    """The changed groups' rows then, the persons on rows that came or went, and the
    fingerprints now (ids and prints ``now``; the changed groups' buckets packed again)."""
    was: dict[str, list[Row]] = {g: [] for g in changed}  # (a group not kept: none)
    buckets = list(before.buckets)
    # Each bucket a changed group falls in is unpacked once, for its rows then and to be
    # packed again (1 % of an Oslo-size owner's rows going touches every bucket).
    for n in sorted({_bucket(g) for g in changed}):
        kept = {}
        for g, rows in _unpack(before.buckets[n]):
            if g in changed:
                was[g] = rows
            else:
                kept[g] = rows
        kept.update((g, by[g]) for g in blobs if _bucket(g) == n)
        body = _pack(sorted(kept.items()))
        if body is None:
            return None
        buckets[n] = body
    persons: set[Any] = set()
    for g in changed:
        persons.update(r[1] for r in set(was[g]).symmetric_difference(by.get(g, ())))
    if not all(type(p) is str for p in persons):
        return None
    now_prints = GroupPrints(*now, tuple(buckets), before.frozen_persons, before.frozen_groups)
    return ChangedGroups(frozenset(changed), frozenset(persons), now_prints, count, was)


def _grouped(rows: Iterable[Row]) -> Mapping[str, list[Row]] | None:
    """The rows by group id, each group's in the order read; None when an id is no text."""
    by: defaultdict[Any, list[Row]] = defaultdict(list)
    for r in rows:
        by[r[0]].append(r)
    if not set(map(type, by)) <= {str}:
        return None
    return by


def _bucket(group_id: str) -> int:
    # A CRC, not hash(): that one differs between processes.
    return zlib.crc32(group_id.encode("utf-8", "surrogatepass")) % BUCKETS


def _by_bucket(ids: Iterable[str]) -> list[list[str]]:
    parts: list[list[str]] = [[] for _ in range(BUCKETS)]
    for g in ids:
        parts[_bucket(g)].append(g)
    return parts


def _blob(rows: list[Row]) -> bytes | None:
    """One group's rows as bytes, the same bytes for the same rows (marshal format 0, as
    provisioner.core.patch fingerprints persons); None for a value marshal cannot write."""
    try:
        return marshal.dumps(rows, 0)
    except ValueError:
        return None


def _print(blob: bytes) -> bytes:
    return hashlib.blake2b(blob, digest_size=PRINT_SIZE).digest()


def _pack(groups: list[tuple[str, list[Row]]]) -> bytes | None:
    """Groups' rows as compressed JSON; None for a value JSON cannot write."""
    try:
        text = compact(groups)
    except (TypeError, ValueError):
        return None
    return zlib.compress(text.encode("utf-8", "surrogatepass"), 1)


def _unpack(body: bytes) -> list[tuple[str, list[Row]]]:
    """Inverse of _pack (ValueError, TypeError, zlib.error: unreadable)."""
    text = zlib.decompress(body).decode(
        "utf-8", "surrogatepass"
    )  # a lone surrogate read from a broken export
    return [(g, [tuple(r) for r in rows]) for g, rows in loads(text)]
