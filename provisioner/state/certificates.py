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
and pieces named by their content, which a patched run mostly shares with the run before
(a run that changed no membership row names the same pieces under its own source).
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import sqlalchemy as sa

from provisioner.core.certificate import Certificate
from provisioner.core.memberships import BUCKETS, GroupPrints
from provisioner.core.memberships import PRINT_SIZE as GROUP_PRINT_SIZE
from provisioner.core.patch import BLOCK, BLOCK_PRINT_SIZE, PRINT_SIZE, PersonPrints
from provisioner.core.plan import Plan, TargetPlan
from provisioner.core.stored import StoredChanges, encode, from_meta, meta_of, pack_keys, unpack_keys
from provisioner.state import schema as t

_CERT = "plan_certificate"  # meta key
# Which fingerprints (carry_prints): of persons' rows, of each group's membership rows, of
# each person's enrollment and employment rows (provisioner.core.affiliations). The last
# two are of one kind (GroupPrints), kept under their name.
PERSONS, GROUPS, AFFILIATIONS = "persons", "groups", "affils"
_PIECE = "print-"  # parts holding a piece of person fingerprints, named by its content
# Parts holding a chunk of changes (0) and the keys it changes (1), named by the chunk's
# content. The keys are of persons, identities and groups; an earlier version kept the
# persons' only, under "chunk-": named by the same content, those would be taken as they
# are, so these have a name of their own (the old ones are dropped with the certificate).
_CHUNK = "chunk2-"


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
                    keys = tuple(unpack_keys(parts[n][1]) for n in names)
                    changes = from_meta(meta, chunks, keys)
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
        in pieces named by their content, so the fingerprints of a patched run write only
        the blocks of rows that changed: the rest are the pieces already stored. An id
        holding NUL is not kept (then no plan is patched: the next change plans in full).
        """
        joined = "\x00".join(prints.ids)
        if joined.count("\x00") != max(len(prints.ids) - 1, 0):
            return  # an id holds NUL (one C pass over the joined ids, not one per id)
        ids = zlib.compress(joined.encode("utf-8", "surrogatepass"), 1)
        step = BLOCK * PRINT_SIZE
        bodies = [
            ids,
            prints.ident,
            *(prints.whole[at : at + step] for at in range(0, len(prints.whole), step)),
        ]
        names = [_named(_PIECE, b) for b in bodies]
        index = json.dumps({"ids": names[0], "ident": names[1], "whole": names[2:]}).encode()
        self._save_index(_prints_ref(source), names, bodies, [index, prints.blocks, prints.nins])

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
                names = [index["ids"], index["ident"], *index["whole"]]
            except (ValueError, KeyError, TypeError):
                return None
            pieces = {part: bodies[0] for part, bodies in _parts(c, names).items()}
        if not all(n in pieces for n in names):
            return None
        text = zlib.decompress(pieces[names[0]]).decode("utf-8", "surrogatepass")
        ids = tuple(text.split("\x00")) if text else ()  # "" is no ids, not one empty id
        whole = b"".join(pieces[n] for n in names[2:])
        blocks = -(-len(ids) // BLOCK) * BLOCK_PRINT_SIZE
        if not len(whole) == len(pieces[names[1]]) == len(ids) * PRINT_SIZE or len(head[1]) != blocks:
            return None  # written by another version
        return PersonPrints(ids, whole, pieces[names[1]], head[1], head[2])

    def save_group_prints(self, source: Mapping[str, str], prints: GroupPrints, of: str = GROUPS) -> None:
        """Keep the membership fingerprints of the source these digests describe (``of``
        AFFILIATIONS: those of each person's enrollments and employments, the same kind).

        As the person fingerprints (save_prints): pieces named by their content, so a run
        that changed a few groups writes their buckets only. A group id holding NUL is not
        kept (then no plan is patched for memberships).
        """
        joined = "\x00".join(prints.ids)
        if joined.count("\x00") != max(len(prints.ids) - 1, 0):
            return
        bodies = [zlib.compress(joined.encode("utf-8", "surrogatepass"), 1), prints.prints, *prints.buckets]
        names = [_named(_PIECE, b) for b in bodies]
        index = {
            "ids": names[0],
            "prints": names[1],
            "buckets": names[2:],
            "frozen_persons": sorted(prints.frozen_persons),
            "frozen_groups": sorted(prints.frozen_groups),
        }
        self._save_index(_group_prints_ref(source, of), names, bodies, [json.dumps(index).encode()])

    def group_prints(self, source: Mapping[str, str], of: str = GROUPS) -> GroupPrints | None:
        """The membership fingerprints kept for the source these digests describe, if any
        (``of`` AFFILIATIONS: the enrollment and employment ones)."""
        p = t.plan_parts.c
        with self.engine.connect() as c:
            head = c.execute(
                sa.select(p.body).where(p.part == _group_prints_ref(source, of), p.seq == 0)
            ).scalar()
            if head is None:
                return None
            try:
                index = json.loads(bytes(head))
                names = [index["ids"], index["prints"], *index["buckets"]]
                frozen = frozenset(index["frozen_persons"]), frozenset(index["frozen_groups"])
            except (ValueError, KeyError, TypeError):
                return None
            pieces = {part: bodies[0] for part, bodies in _parts(c, names).items()}
        if not all(n in pieces for n in names) or len(names) != BUCKETS + 2:
            return None  # written by another version
        text = zlib.decompress(pieces[names[0]]).decode("utf-8", "surrogatepass")
        ids = tuple(text.split("\x00")) if text else ()
        if len(pieces[names[1]]) != len(ids) * GROUP_PRINT_SIZE:
            return None
        return GroupPrints(ids, pieces[names[1]], tuple(pieces[n] for n in names[2:])).frozen(*frozen)

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

    def _save_index(self, ref: str, names: list[str], bodies: list[bytes], head: list[bytes]) -> None:
        """Store the pieces not stored yet and the index ``head`` under ``ref`` (unless there already)."""
        p = t.plan_parts.c
        with self.engine.begin() as c:
            if c.execute(sa.select(p.seq).where(p.part == ref).limit(1)).first() is not None:
                return
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
    return _index_parts(c, _prints_ref(source), ("ids", "ident"), "whole")


def _group_prints_ref(source: Mapping[str, str], of: str) -> str:
    """The part name of the membership (or affiliation) fingerprints of one source (its digests name it)."""
    if of not in (GROUPS, AFFILIATIONS):
        raise ValueError(f"no fingerprints of {of!r}")
    return of + "-" + _prints_ref(source).removeprefix(f"{PERSONS}-")


def _group_prints_parts(c: sa.Connection, source: Mapping[str, str], of: str) -> list[str]:
    """The parts the membership (or affiliation) fingerprints of one source are made of
    (none when there are none)."""
    return _index_parts(c, _group_prints_ref(source, of), ("ids", "prints"), "buckets")


def _index_parts(c: sa.Connection, ref: str, one: tuple[str, ...], many: str) -> list[str]:
    """The index part ``ref`` and the parts it names: one under each key of ``one``, a list
    under ``many``. Only ``ref`` when there is no index, or it cannot be read."""
    p = t.plan_parts.c
    index = c.execute(sa.select(p.body).where(p.part == ref, p.seq == 0)).scalar()
    try:
        d = json.loads(bytes(index)) if index is not None else {}
        return [ref, *(d[k] for k in one), *d[many]] if d else [ref]
    except (ValueError, KeyError, TypeError):
        return [ref]


def _named(prefix: str, body: bytes) -> str:
    """The name of a part holding ``body``: by its content, so the same body is stored once."""
    return prefix + hashlib.blake2b(body, digest_size=12).hexdigest()


def _stored(c: sa.Connection, tp: TargetPlan, kept: set[str]) -> tuple[StoredChanges, list[str]]:
    """A target's changes as stored, and the names of their chunks; chunks not stored yet written now."""
    changes = tp.changes if isinstance(tp.changes, StoredChanges) else encode(tp.changes, keep=True)
    names = [_named(_CHUNK, b) for b in changes.chunks]
    rows = []
    for name, body, keys in zip(names, changes.chunks, changes.chunk_keys):
        if name not in kept:
            rows.append({"part": name, "seq": 0, "body": body})
            rows.append({"part": name, "seq": 1, "body": pack_keys(keys)})
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
