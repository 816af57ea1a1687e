"""Patching a plan for the few persons whose own row changed: pure, values in and out.

Most of what changes in a school's day is a person's name, e-mail or mobile: the SIS's
person row, nothing else. For those the plan made from the previous inputs (the
certified one, provisioner.core.certificate) is right for everyone else, so a run need
not derive, map and diff the whole owner again. This module holds the pure parts of
that patch (provisioner/run/incremental.py runs it):

- ``prints``: a fingerprint per SIS person row, split in what identifies the person
  (id, NIN, birth date) and the whole row, kept beside the certificate;
- ``changed_persons``: the persons whose row changed in nothing but those other fields
  (names, e-mail, mobile), or None when anything else differs;
- ``context``: the rows derive needs to judge those persons exactly as a full run does
  (their own rows, their groups with every member's rows, the students they are
  guardian of), a snapshot a few hundred rows long;
- ``splice_target`` and ``splice_core``: the previous changes with those persons'
  replaced by the recomputed ones, each where a full plan puts it (a full plan orders
  person objects by key within their phase, and identity changes by person id).

Anything the patch cannot prove equal to the full plan returns None, and the run plans
in full: the property tests check patched plan = full plan after every step.
"""

from __future__ import annotations

import hashlib
import marshal
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

from provisioner.core.model import Person, SourceSnapshot
from provisioner.core.plan import Change, Op

# A person's fingerprints: (what identifies them: id, NIN, birth date; the whole row).
Prints = Mapping[str, tuple[bytes, bytes]]

LIMIT = 500  # more changed persons than this: a full plan is about as cheap as the patch
_FIRST = frozenset({Op.CREATE, Op.RESTORE, Op.ENABLE, Op.MOVE, Op.UPDATE})  # the differ's first phase
_PERSON_RANK_BEFORE = frozenset({"org", "orgunit"})  # kinds a phase puts before persons


def _print(value: tuple[object, ...]) -> bytes:
    # marshal format 0: equal values give equal bytes (sources/sql.py, _encoded, says why)
    return hashlib.blake2b(marshal.dumps(value, 0), digest_size=12).digest()  # type: ignore[arg-type]


def prints(persons: Iterable[Person]) -> dict[str, tuple[bytes, bytes]] | None:
    """A fingerprint pair per SIS person id; None when an id appears twice (never patched)."""
    out: dict[str, tuple[bytes, bytes]] = {}
    for p in persons:
        if p.person_id in out:
            return None
        out[p.person_id] = (_print((p.person_id, p.nin, p.birth_date)), _print(tuple(p)))
    return out


def changed_persons(before: Prints, after: Prints) -> set[str] | None:
    """SIS ids whose row changed only in names, e-mail or mobile; None if anything else did.

    None also when persons came or went, or when more than LIMIT changed.
    """
    if before.keys() != after.keys():
        return None
    out: set[str] = set()
    for pid, (ident, whole) in after.items():
        was = before[pid]
        if whole == was[1]:
            continue
        if ident != was[0]:
            return None  # a new NIN or birth date: identities and aliases may follow
        out.add(pid)
        if len(out) > LIMIT:
            return None
    return out


def context(snap: SourceSnapshot, changed: set[str], *, max_rows: int = 20_000) -> SourceSnapshot | None:
    """The rows that judge ``changed`` persons as the whole snapshot does; None when too many.

    Their groups come with every member (a group with a member who cannot be judged is
    frozen, which decides the persons' Feide entitlements), and every guardian among them
    with their students (a guardian is active through them), closed under that rule. A
    guardianship is kept only when both ends are: one that names a guardian outside is
    about that guardian, not about anyone here.
    """
    groups = {m.group_id for m in snap.memberships if m.person_id in changed}
    memberships = tuple(m for m in snap.memberships if m.group_id in groups)
    ids = set(changed) | {m.person_id for m in memberships}
    guardian_of: dict[str, list[str]] = {}
    for g in snap.guardianships:
        guardian_of.setdefault(g.guardian_id, []).append(g.student_id)
    todo = list(ids)
    while todo:
        for sid in guardian_of.get(todo.pop(), ()):
            if sid not in ids:
                ids.add(sid)
                todo.append(sid)
        if len(ids) > max_rows:
            return None
    out = SourceSnapshot(
        schools=snap.schools,
        persons=tuple(p for p in snap.persons if p.person_id in ids),
        enrollments=tuple(e for e in snap.enrollments if e.person_id in ids),
        employments=tuple(e for e in snap.employments if e.person_id in ids),
        guardianships=tuple(g for g in snap.guardianships if g.guardian_id in ids and g.student_id in ids),
        groups=tuple(g for g in snap.groups if g.group_id in groups),
        memberships=memberships,
        digests=snap.digests,
    )
    if sum(out.counts().values()) > max_rows:
        return None
    return out


def shared_nins(persons: Iterable[Person]) -> set[str]:
    """NINs on more than one SIS person row (those persons are never patched)."""
    seen = Counter(p.nin.strip() for p in persons if p.nin and p.nin.strip())
    return {n for n, k in seen.items() if k > 1}


def splice_target(prev: Sequence[Change], new: Sequence[Change], keys: set[str]) -> tuple[Change, ...] | None:
    """One target's previous changes with those of person objects ``keys`` replaced by ``new``.

    A full plan puts a target's changes in phases (provisioner.core.diff.diff_target): the
    first (creates, restores, enables, moves, updates) ordered by kind, and within a kind
    by key; then member changes; then removals in stored order. A name change touches
    the first phase only: the removals recomputed must be the ones already planned, and
    they stay where they are. None when ``new`` holds anything else.
    """
    if any(c.kind != "person" or c.key not in keys for c in new):
        return None
    n = next((i for i, c in enumerate(prev) if c.op not in _FIRST), len(prev))
    head, tail = prev[:n], prev[n:]
    if [c for c in tail if c.kind == "person" and c.key in keys] != [c for c in new if c.op not in _FIRST]:
        return None
    kept = [c for c in head if not (c.kind == "person" and c.key in keys)]
    fresh = sorted((c for c in new if c.op in _FIRST), key=lambda c: c.key)  # stable: a key's ops keep order
    return (*_merged(kept, fresh, "person", _PERSON_RANK_BEFORE), *tail)


def splice_core(prev: Sequence[Change], new: Sequence[Change], keys: set[str]) -> tuple[Change, ...] | None:
    """The core's previous changes with the identity changes of ``keys`` replaced by ``new``.

    A full plan lists aliases first, then identity changes by person id (diff_core).
    """
    if any(c.kind != "identity" or c.key not in keys for c in new):
        return None
    kept = [c for c in prev if not (c.kind == "identity" and c.key in keys)]
    fresh = sorted(new, key=lambda c: c.key)
    return tuple(_merged(kept, fresh, "identity", frozenset({"alias"})))


def _merged(kept: list[Change], fresh: list[Change], kind: str, before: frozenset[str]) -> list[Change]:
    """``fresh`` (sorted by key) merged into the block of ``kind`` in ``kept`` by key.

    The block is where the kinds in ``before`` end and other kinds begin.
    """
    start = next((i for i, c in enumerate(kept) if c.kind not in before), len(kept))
    end = next((i for i in range(start, len(kept)) if kept[i].kind != kind), len(kept))
    block, out, j = kept[start:end], list(kept[:start]), 0
    for c in block:
        while j < len(fresh) and fresh[j].key < c.key:
            out.append(fresh[j])
            j += 1
        out.append(c)
    out.extend(fresh[j:])
    out.extend(kept[end:])
    return out
