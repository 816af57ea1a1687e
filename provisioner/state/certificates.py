"""Keeping the plan certificate (provisioner.core.certificate): its digests and plan in ``meta``,
each target's changes apart in ``plan_parts``.

A target's changes are stored as compressed JSON chunks (provisioner.core.stored), each
under a name of its content, and the certificate lists them. Certifying the same changes
again (a quiet run, or the plan an apply predicts, where plan-only targets keep theirs)
writes no chunk; a patch that replaced a few chunks writes only those (a state store of
a million pending changes then writes a few hundred kB, not all of them). A quiet run
reads the chunks as bytes and decodes none of them. The
certificate and its parts are replaced in one transaction, and parts no certificate
names are dropped there too, so a killed run leaves either the old pair or the new one.
The person fingerprints a patch compares with (provisioner.core.patch), and the
membership ones (provisioner.core.memberships), are kept there too: an index per source
and pieces named by their content, cut where the ids say (not by position: a joiner would
shift them all), which a patched run mostly shares with the run before (a run that
changed no membership row names the same pieces under its own source).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from functools import partial
from itertools import chain
from typing import Any

import sqlalchemy as sa

from provisioner.core.certificate import Certificate
from provisioner.core.memberships import BUCKETS, GroupPrints
from provisioner.core.memberships import PRINT_SIZE as GROUP_PRINT_SIZE
from provisioner.core.patch import BLOCK, BLOCK_PRINT_SIZE, PRINT_SIZE, PersonPrints
from provisioner.core.plan import Plan, TargetPlan
from provisioner.core.stored import (
    StoredChanges,
    encode,
    from_stored,
    meta_of,
    pack_keys,
)
from provisioner.state import schema as t

_CERT = "plan_certificate"  # meta key
# Which fingerprints (carry_prints): of persons' rows, of each group's membership rows, of
# each person's enrollment and employment rows (provisioner.core.affiliations). The last
# two are of one kind (GroupPrints), kept under their name.
PERSONS, GROUPS, AFFILIATIONS = "persons", "groups", "affils"
_PIECE = "print-"  # parts holding a piece of person fingerprints, named by its content
# Parts holding a chunk of changes (0) and the keys it changes with its last change (1),
# named by the chunk's content. The keys are of persons, identities and groups; earlier
# versions kept the persons' only, under "chunk-", and no last change, under "chunk2-":
# named by the same content, those would be taken as they are (and never get a last
# change), so these have a name of their own. The old ones are dropped with the
# certificate they belong to; one read back still serves (its last changes decoded).
_CHUNK = "chunk3-"
# What a fingerprints index lists the pieces of, each under its key (a list of part names).
_PERSON_KEYS = ("ids", "ident", "whole")
_GROUP_KEYS = ("ids", "prints", "buckets")


def _is_prints(part: sa.ColumnElement[str]) -> sa.ColumnElement[bool]:
    return sa.or_(
        *(part.like(prefix + "%") for prefix in (f"{PERSONS}-", f"{GROUPS}-", f"{AFFILIATIONS}-", _PIECE))
    )


class Certificates:
    """The stored plan certificate."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def load(self) -> Certificate | None:
        """The certificate, its changes as stored (undecoded); None when there is none or it is unreadable.

        Unreadable: written by another version, or broken; the next run plans in full and
        replaces it.
        """
        with self.engine.connect() as c:
            text = c.execute(sa.select(t.meta.c.value).where(t.meta.c.key == _CERT)).scalar()
            if text is None:
                return None
            try:
                d = json.loads(text)
                plan = Plan.from_json(d["plan"])
                stored = {name: meta for name, meta in d["stored"].items()}
                cert = Certificate(str(d["key"]), dict(d["source"]), plan)
            except (ValueError, KeyError, TypeError, AttributeError):
                return None
            wanted = [n for m in stored.values() if isinstance(m, dict) for n in m.get("chunks", ())]
            parts = _parts(c, [n for n in wanted if isinstance(n, str)])
        targets = []
        for tp in plan.targets:
            meta = stored.get(tp.target)
            if meta is not None:
                try:
                    names = meta["chunks"]
                    if not all(n in parts and len(parts[n]) == 2 for n in names):
                        return None  # its changes are gone: never certify a plan that lost some
                    chunks = tuple(parts[n][0] for n in names)
                    # The keys beside each chunk are read if a patch asks (stored.Unreadable then).
                    changes = from_stored(meta, chunks, tuple(parts[n][1] for n in names))
                except (ValueError, KeyError, TypeError, zlib.error):
                    return None  # written by another version
                tp = replace(tp, changes=changes)
            targets.append(tp)
        return replace(cert, plan=replace(plan, targets=tuple(targets)))

    def save(self, cert: Certificate | None) -> Plan | None:
        """Replace the certificate (None: drop it); the plan as stored (its changes encoded).

        Chunks already stored (a certified plan certified again, or the chunks a patch kept)
        are named, not rewritten.
        """
        with self.engine.begin() as c:
            c.execute(t.meta.delete().where(t.meta.c.key == _CERT))
            if cert is None:  # the person fingerprints stay: the next certificate keeps those of its source
                c.execute(t.plan_parts.delete().where(~_is_prints(t.plan_parts.c.part)))
                return None
            part = t.plan_parts.c.part
            kept = {r for (r,) in c.execute(sa.select(part).where(part.like(_CHUNK + "%")).distinct())}
            targets: list[TargetPlan] = []
            stored: dict[str, dict[str, Any]] = {}
            for tp in cert.plan.targets:
                if not tp.changes:
                    targets.append(tp)
                    continue
                changes, names = _stored(c, tp, kept)
                stored[tp.target] = {**meta_of(changes), "chunks": names}
                targets.append(replace(tp, changes=changes))
            bare = replace(cert.plan, targets=tuple(replace(tp, changes=()) for tp in targets))
            body = {"key": cert.key, "source": dict(cert.source), "plan": bare.to_json(), "stored": stored}
            c.execute(t.meta.insert().values(key=_CERT, value=json.dumps(body, ensure_ascii=False)))
            named = [n for m in stored.values() for n in m["chunks"]]
            named += _prints_parts(c, cert.source)
            named += _group_prints_parts(c, cert.source, GROUPS) + _group_prints_parts(
                c, cert.source, AFFILIATIONS
            )
            c.execute(t.plan_parts.delete().where(t.plan_parts.c.part.not_in(named)))
        return replace(cert.plan, targets=tuple(targets))

    def save_prints(self, source: Mapping[str, str], prints: PersonPrints) -> None:
        """Keep the person fingerprints of the source these digests describe (provisioner.core.patch).

        Kept while the certificate is of that source (save them before it). They are stored
        in pieces (cut where the ids say, _cuts) named by their content, so the fingerprints
        of a patched run write only the pieces of rows that changed or came: the rest are the
        pieces already stored. An id holding NUL is not kept (then no plan is patched: the
        next change plans in full).
        """
        if not _no_nul(prints.ids):
            return  # an id holds NUL
        lists = _in_pieces(prints.ids, (prints.ident, PRINT_SIZE), (prints.whole, PRINT_SIZE))
        index, names, bodies = _named_lists(_PERSON_KEYS, lists)
        head = [json.dumps(index).encode(), prints.blocks, prints.nins]
        self._save_index(_prints_ref(source), _PERSON_KEYS, names, bodies, head)

    def prints(self, source: Mapping[str, str]) -> PersonPrints | None:
        """The person fingerprints kept for the source these digests describe, if any."""
        p = t.plan_parts.c
        with self.engine.connect() as c:
            head = [
                bytes(r[0])
                for r in c.execute(sa.select(p.body).where(p.part == _prints_ref(source)).order_by(p.seq))
            ]
            if len(head) != 3:
                return None  # none, or written by another version
            try:
                index = json.loads(head[0])
                lists = _lists(index, *_PERSON_KEYS)
            except (ValueError, KeyError, TypeError):
                return None
            got = _read_lists(c, lists) if lists is not None else None
        if got is None:
            return None  # written by another version, or a piece is gone
        ids, ident, whole = _ids_of(got[0]), b"".join(got[1]), b"".join(got[2])
        blocks = -(-len(ids) // BLOCK) * BLOCK_PRINT_SIZE
        if not len(whole) == len(ident) == len(ids) * PRINT_SIZE or len(head[1]) != blocks:
            return None  # written by another version
        return PersonPrints(ids, whole, ident, head[1], head[2])

    def save_group_prints(self, source: Mapping[str, str], prints: GroupPrints, of: str = GROUPS) -> None:
        """Keep the membership fingerprints of the source these digests describe (``of``
        AFFILIATIONS: those of each person's enrollments and employments, the same kind).

        As the person fingerprints (save_prints): pieces named by their content, so a run
        that changed a few groups writes their buckets and pieces only. A group id holding
        NUL is not kept (then no plan is patched for memberships).
        """
        if not _no_nul(prints.ids):
            return
        lists = [*_in_pieces(prints.ids, (prints.prints, GROUP_PRINT_SIZE)), list(prints.buckets)]
        index, names, bodies = _named_lists(_GROUP_KEYS, lists)
        index |= {
            "frozen_persons": sorted(prints.frozen_persons),
            "frozen_groups": sorted(prints.frozen_groups),
        }
        head = [json.dumps(index).encode()]
        self._save_index(_group_prints_ref(source, of), _GROUP_KEYS, names, bodies, head)

    def group_prints(self, source: Mapping[str, str], of: str = GROUPS) -> GroupPrints | None:
        """The membership fingerprints kept for the source these digests describe, if any
        (``of`` AFFILIATIONS: the enrollment and employment ones)."""
        with self.engine.connect() as c:
            index = _group_head(c, source, of)
            frozen = _frozen_in(index)
            if frozen is None:
                return None
            try:
                lists = _lists(index, *_GROUP_KEYS)
            except (ValueError, KeyError, TypeError):
                return None
            got = _read_lists(c, lists) if lists is not None and len(lists[2]) == BUCKETS else None
        if got is None:
            return None  # written by another version, or a piece is gone
        ids, prints = _ids_of(got[0]), b"".join(got[1])
        if len(prints) != len(ids) * GROUP_PRINT_SIZE:
            return None
        return GroupPrints(ids, prints, tuple(got[2])).frozen(*frozen)

    def frozen(self, source: Mapping[str, str]) -> tuple[frozenset[str], frozenset[str]] | None:
        """The persons and groups frozen as kept with the membership fingerprints of this
        source (their head only: no fingerprint read), if any."""
        with self.engine.connect() as c:
            return _frozen_in(_group_head(c, source, GROUPS))

    def carry_prints(self, before: Mapping[str, str], after: Mapping[str, str], *, which: str) -> None:
        """Keep the fingerprints of source ``before`` for source ``after`` too (``which``: PERSONS,
        GROUPS or AFFILIATIONS): the tables they are of did not change between them."""

        def ref(source: Mapping[str, str]) -> str:
            return _prints_ref(source) if which == PERSONS else _group_prints_ref(source, which)

        p = t.plan_parts.c
        with self.engine.begin() as c:
            if c.execute(sa.select(p.seq).where(p.part == ref(after)).limit(1)).first() is not None:
                return
            rows = c.execute(sa.select(p.seq, p.body).where(p.part == ref(before))).all()
            if rows:
                c.execute(t.plan_parts.insert(), [{"part": ref(after), "seq": q, "body": b} for q, b in rows])

    def _save_index(
        self, ref: str, keys: tuple[str, ...], names: list[str], bodies: list[bytes], head: list[bytes]
    ) -> None:
        """Store the pieces not stored yet and the index ``head`` under ``ref`` (unless there
        already, naming its pieces under ``keys``: one an earlier version wrote is replaced)."""
        p = t.plan_parts.c
        with self.engine.begin() as c:
            if c.execute(sa.select(p.seq).where(p.part == ref).limit(1)).first() is not None:
                if len(_index_parts(c, ref, keys)) > 1:
                    return
                c.execute(t.plan_parts.delete().where(p.part == ref))
            have = {r for (r,) in c.execute(sa.select(p.part).where(p.part.in_(names)).distinct())}
            new = {n: b for n, b in zip(names, bodies) if n not in have}
            rows = [{"part": n, "seq": 0, "body": b} for n, b in new.items()]
            rows += [{"part": ref, "seq": i, "body": b} for i, b in enumerate(head)]
            c.execute(t.plan_parts.insert(), rows)


def _prints_ref(source: Mapping[str, str]) -> str:
    """The part name of the person fingerprints of one source (its digests name it)."""
    return f"{PERSONS}-" + hashlib.sha256(json.dumps(sorted(source.items())).encode()).hexdigest()[:24]


def _prints_parts(c: sa.Connection, source: Mapping[str, str]) -> list[str]:
    """The parts the person fingerprints of one source are made of (none when there are none)."""
    return _index_parts(c, _prints_ref(source), _PERSON_KEYS)


def _group_prints_ref(source: Mapping[str, str], of: str) -> str:
    """The part name of the membership (or affiliation) fingerprints of one source (its digests name it)."""
    if of not in (GROUPS, AFFILIATIONS):
        raise ValueError(f"no fingerprints of {of!r}")
    return of + "-" + _prints_ref(source).removeprefix(f"{PERSONS}-")


def _group_prints_parts(c: sa.Connection, source: Mapping[str, str], of: str) -> list[str]:
    """The parts the membership (or affiliation) fingerprints of one source are made of
    (none when there are none)."""
    return _index_parts(c, _group_prints_ref(source, of), _GROUP_KEYS)


def _index_parts(c: sa.Connection, ref: str, keys: tuple[str, ...]) -> list[str]:
    """The index part ``ref`` and the parts it names under ``keys``. Only ``ref`` when there
    is no index, or it cannot be read (written by another version: its pieces go)."""
    p = t.plan_parts.c
    index = c.execute(sa.select(p.body).where(p.part == ref, p.seq == 0)).scalar()
    try:
        lists = _lists(json.loads(bytes(index)), *keys) if index is not None else None
    except (ValueError, KeyError, TypeError):
        lists = None
    return [ref] if lists is None else [ref, *(n for names in lists for n in names)]


def _lists(index: Any, *keys: str) -> list[list[str]] | None:
    """The lists of part names an index holds under ``keys``; None when one is not a list of texts."""
    lists = [index[k] for k in keys]
    ok = all(isinstance(names, list) and all(isinstance(n, str) for n in names) for names in lists)
    return lists if ok else None


# Pieces of fingerprints are cut after each id whose CRC has these bits clear (about every
# 4,096 ids), and after _MAX_PIECE ids in any case.
_CUT_MASK = 0xFFF
_MAX_PIECE = 4 * BLOCK


def _cuts(ids: Sequence[str]) -> list[tuple[int, int]]:
    """Where fingerprints kept in id order are cut into pieces: (start, end) of each.

    Cut where the ids say, not every so many: a person (or group) who comes or goes then
    changes only the piece they fall in, and a patched run writes that one (a joiner whose
    id sorts first shifted every piece cut by position: 6 MB written, and a WAL checkpoint).
    """
    try:  # str.encode as it is is twice as fast as with arguments: 0.03 s for 255,000 ids
        crcs = list(map(zlib.crc32, map(str.encode, ids)))
    except UnicodeEncodeError:  # a lone surrogate read from a broken export: the same bytes otherwise
        crcs = list(map(zlib.crc32, map(partial(str.encode, encoding="utf-8", errors="surrogatepass"), ids)))
    ends = [i + 1 for i, crc in enumerate(crcs) if not crc & _CUT_MASK]
    out: list[tuple[int, int]] = []
    start = 0
    for end in [*ends, len(ids)]:
        while end - start > _MAX_PIECE:
            out.append((start, start + _MAX_PIECE))
            start += _MAX_PIECE
        if end > start:
            out.append((start, end))
            start = end
    return out


def _no_nul(ids: Sequence[str]) -> bool:
    """Whether no id holds NUL (the pieces join ids with it): one C pass over the joined ids."""
    return "\x00".join(ids).count("\x00") == max(len(ids) - 1, 0)


def _in_pieces(ids: Sequence[str], *prints: tuple[bytes, int]) -> list[list[bytes]]:
    """The ids (compressed, joined by NUL) and each (fingerprints, bytes per id), cut into
    the same pieces (_cuts): one list of bodies each."""
    cuts = _cuts(ids)
    pieces = [[zlib.compress("\x00".join(ids[a:b]).encode("utf-8", "surrogatepass"), 1) for a, b in cuts]]
    pieces += [[body[a * size : b * size] for a, b in cuts] for body, size in prints]
    return pieces


def _named_lists(
    keys: tuple[str, ...], lists: list[list[bytes]]
) -> tuple[dict[str, Any], list[str], list[bytes]]:
    """An index naming each list's pieces under its key, and every piece's name and body."""
    named = [[_named(_PIECE, b) for b in bodies] for bodies in lists]
    return dict(zip(keys, named)), list(chain.from_iterable(named)), list(chain.from_iterable(lists))


def _read_lists(c: sa.Connection, lists: list[list[str]]) -> list[list[bytes]] | None:
    """The bodies of the pieces an index names, list by list; None when one is gone."""
    pieces = {part: bodies[0] for part, bodies in _parts(c, list(chain.from_iterable(lists))).items()}
    if not all(n in pieces for names in lists for n in names):
        return None
    return [[pieces[n] for n in names] for names in lists]


def _ids_of(pieces: list[bytes]) -> tuple[str, ...]:
    """The ids kept in these pieces, in order (each piece holds at least one)."""
    texts = (zlib.decompress(body).decode("utf-8", "surrogatepass") for body in pieces)
    return tuple(chain.from_iterable(text.split("\x00") for text in texts))


def _named(prefix: str, body: bytes) -> str:
    """The name of a part holding ``body``: by its content, so the same body is stored once."""
    return prefix + hashlib.blake2b(body, digest_size=12).hexdigest()


def _stored(c: sa.Connection, tp: TargetPlan, kept: set[str]) -> tuple[StoredChanges, list[str]]:
    """A target's changes as stored, and the names of their chunks; chunks not stored yet written now."""
    changes = tp.changes if isinstance(tp.changes, StoredChanges) else encode(tp.changes, keep=True)
    names = [_named(_CHUNK, b) for b in changes.chunks]
    rows = []
    for i, (name, body) in enumerate(zip(names, changes.chunks)):
        if name not in kept:  # (the keys of chunks stored already are not even read)
            # As recorded, or (a chunk an earlier version stored, read back) decoded once, here.
            rows.append({"part": name, "seq": 0, "body": body})
            rows.append(
                {"part": name, "seq": 1, "body": pack_keys(changes.chunk_keys[i], changes.last_change(i))}
            )
            kept.add(name)
    if rows:
        c.execute(t.plan_parts.insert(), rows)
    return changes, names


def _parts(c: sa.Connection, names: list[str]) -> dict[str, list[bytes]]:
    """The bodies of these parts, in order, by part."""
    if not names:
        return {}
    p = t.plan_parts.c
    rows = c.execute(sa.select(p.part, p.body).where(p.part.in_(set(names))).order_by(p.part, p.seq))
    out: dict[str, list[bytes]] = defaultdict(list)
    for part, body in rows:
        out[part].append(bytes(body))
    return out


def _group_head(c: sa.Connection, source: Mapping[str, str], of: str) -> Any:
    """The index kept at the head of group fingerprints (JSON), or None: none kept, or unreadable."""
    p = t.plan_parts.c
    head = c.execute(sa.select(p.body).where(p.part == _group_prints_ref(source, of), p.seq == 0)).scalar()
    try:
        return None if head is None else json.loads(bytes(head))
    except ValueError:
        return None


def _frozen_in(index: Any) -> tuple[frozenset[str], frozenset[str]] | None:
    """The persons and groups frozen, as a group fingerprints' head keeps them (None: not there)."""
    try:
        return frozenset(index["frozen_persons"]), frozenset(index["frozen_groups"])
    except (KeyError, TypeError):
        return None
