"""Identities and usernames: the historic base that derivation reads and apply grows.

A username, once issued, reserved or bound, stays in ``usernames`` for ever; the
identity of a person who left keeps it (and their NINs) after personal data is purged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from provisioner.core.derive import IdentityView
from provisioner.core.plan import CORE
from provisioner.core.rows import IdentityRow
from provisioner.core.states import IdentityStatus, Origin
from provisioner.state import schema as t
from provisioner.state.common import CHUNK, bulk_insert, now_iso
from provisioner.state.meta import Versions


class Identities:
    """The historic base: identities, usernames, NINs seen and SIS id aliases."""

    def __init__(self, engine: sa.Engine, versions: Versions) -> None:
        self.engine = engine
        self.versions = versions

    def view(self) -> IdentityView:
        """The historic base as derivation needs it."""
        with self.engine.connect() as c:
            u = t.usernames.c

            # Bound logins of persons not yet known (provisioner.core.bindings), then every identity.
            # Raw driver rows (the cursor): SQLAlchemy's Row objects cost several times more here.
            def rows(q: sa.Select[Any]) -> Any:
                return c.execute(q).cursor

            by_person = dict(rows(sa.select(u.person_id, u.username).where(u.origin == Origin.ADOPTED)))
            by_person.update(rows(sa.select(t.identities.c.person_id, t.identities.c.username)))
            by_nin = dict(rows(sa.select(t.person_nins.c.nin, t.person_nins.c.person_id)))
            al = dict(rows(sa.select(t.aliases.c.sis_id, t.aliases.c.person_id)))
            taken = _taken(c)  # in the same transaction as the rest
        return IdentityView(username_by_person=by_person, person_by_nin=by_nin, aliases=al, taken=taken)

    def view_of(self, sis_ids: Iterable[str], nins: Iterable[str]) -> IdentityView:
        """The historic base as derivation needs it for these SIS ids and NINs only.

        Enough to derive persons who all hold a username already (a patched plan,
        provisioner/run/incremental.py): ``taken`` is left empty (``taken_lookup()`` when one is issued).
        """
        ids, nins = sorted(set(sis_ids)), sorted(set(nins))
        u, i, n, a = t.usernames.c, t.identities.c, t.person_nins.c, t.aliases.c
        by_person: dict[str, str] = {}
        by_nin: dict[str, str] = {}
        al: dict[str, str] = {}
        with self.engine.connect() as c:
            for k in range(0, len(ids), CHUNK):
                part = ids[k : k + CHUNK]
                al.update(c.execute(sa.select(a.sis_id, a.person_id).where(a.sis_id.in_(part))).all())
            known = sorted(set(ids) | set(al.values()))
            for k in range(0, len(known), CHUNK):
                part = known[k : k + CHUNK]
                adopted = sa.select(u.person_id, u.username).where(
                    u.origin == Origin.ADOPTED, u.person_id.in_(part)
                )
                by_person.update(c.execute(adopted).all())
                by_person.update(
                    c.execute(sa.select(i.person_id, i.username).where(i.person_id.in_(part))).all()
                )
            for k in range(0, len(nins), CHUNK):
                by_nin.update(
                    c.execute(sa.select(n.nin, n.person_id).where(n.nin.in_(nins[k : k + CHUNK]))).all()
                )
        return IdentityView(username_by_person=by_person, person_by_nin=by_nin, aliases=al)

    def taken_lookup(self) -> TakenUsernames:
        """Every username ever issued, reserved or bound, as ``view().taken`` holds them, asked
        of the store one at a time (a patch issues a joiner's: a few names, not 250,000 read)."""
        return TakenUsernames(self.engine)

    def all(self, person_ids: Iterable[str] | None = None) -> dict[str, IdentityRow]:
        """Every identity row by person id (or those of these persons)."""
        cols = t.identities.c
        q = sa.select(
            cols.person_id,
            cols.username,
            cols.nin,
            cols.display_name,
            cols.status,
            cols.inactive_since,
            cols.roles,
            cols.bridged_until,
        )
        with self.engine.connect() as c:
            if person_ids is None:
                rows = c.execute(q).cursor.fetchall()
            else:
                ids, rows = sorted(set(person_ids)), []
                for k in range(0, len(ids), CHUNK):
                    rows.extend(c.execute(q.where(cols.person_id.in_(ids[k : k + CHUNK]))).cursor.fetchall())
        return {r[0]: IdentityRow(r[1], r[2], r[3], IdentityStatus(r[4]), *r[5:]) for r in rows}

    def reserve_usernames(self, names: Iterable[str], note: str) -> tuple[int, int]:
        """Add usernames in use elsewhere to the historic base; returns (added, already known)."""
        names = sorted(set(names))
        with self.engine.begin() as c:
            known: set[str] = set()
            for i in range(0, len(names), CHUNK):
                q = sa.select(t.usernames.c.username).where(t.usernames.c.username.in_(names[i : i + CHUNK]))
                known.update(r[0] for r in c.execute(q))
            new = [
                {
                    "username": u,
                    "person_id": None,
                    "nin": None,
                    "origin": Origin.RESERVED,
                    "created_at": now_iso(),
                    "note": note,
                }
                for u in names
                if u not in known
            ]
            bulk_insert(c, t.usernames, new)
            if new:
                self.versions.bump(c, CORE)  # fewer names are free: plans made before are stale
        return len(new), len(known)

    def bind_usernames(self, pairs: Iterable[tuple[str, str]], note: str) -> tuple[int, int, list[str]]:
        """Record existing logins of persons (provisioner.core.bindings); returns (bound, already, conflicts).

        A binding is kept in the historic base with origin "adopted"; derivation then gives
        the person this username when they first come. Conflicts are reported, never forced.
        """
        pairs = list(pairs)
        u, i = t.usernames.c, t.identities.c
        bound, already, conflicts = 0, 0, []
        with self.engine.begin() as c:
            for start in range(0, len(pairs), CHUNK):
                chunk = pairs[start : start + CHUNK]
                names = {
                    r[0]: r[1]
                    for r in c.execute(
                        sa.select(u.username, u.person_id).where(u.username.in_([n for _, n in chunk]))
                    )
                }
                idents = dict(
                    c.execute(
                        sa.select(i.person_id, i.username).where(i.person_id.in_([p for p, _ in chunk]))
                    ).all()
                )
                for pid, name in chunk:
                    holder = names.get(name, "missing")
                    has = idents.get(pid)
                    if has == name or holder == pid:
                        already += 1
                    elif has is not None:
                        conflicts.append(f"person {pid} already has username {has!r}; not bound to {name!r}")
                    elif holder not in ("missing", None):
                        conflicts.append(f"username {name!r} belongs to person {holder}; not bound to {pid}")
                    else:
                        # A person has at most one binding: a new one replaces an older one.
                        c.execute(
                            t.usernames.delete().where(
                                u.person_id == pid, u.origin == Origin.ADOPTED, u.username != name
                            )
                        )
                        row = {"person_id": pid, "origin": Origin.ADOPTED, "note": note}
                        if holder is None:  # reserved (in use elsewhere): now known to be this person's
                            c.execute(t.usernames.update().where(u.username == name).values(**row))
                        else:
                            c.execute(t.usernames.insert().values(username=name, created_at=now_iso(), **row))
                        names[name] = pid
                        bound += 1
            if bound:
                self.versions.bump(c, CORE)
        return bound, already, conflicts

    def username_record(self, username: str) -> dict[str, Any] | None:
        """The historic base's row for a username."""
        with self.engine.connect() as c:
            row = (
                c.execute(sa.select(t.usernames).where(t.usernames.c.username == username.lower()))
                .mappings()
                .first()
            )
        return dict(row) if row else None

    def resolve(self, who: str) -> set[str]:
        """Person ids (canonical and SIS aliases) a username, NIN or SIS id points to."""
        who = who.strip()
        ids: set[str] = set()
        with self.engine.connect() as c:
            for q in (
                sa.select(t.usernames.c.person_id).where(t.usernames.c.username == who.lower()),
                sa.select(t.identities.c.person_id).where(t.identities.c.username == who.lower()),
                sa.select(t.person_nins.c.person_id).where(t.person_nins.c.nin == who),
                sa.select(t.identities.c.person_id).where(t.identities.c.person_id == who),
                sa.select(t.aliases.c.person_id).where(t.aliases.c.sis_id == who),
            ):
                ids.update(r[0] for r in c.execute(q) if r[0])
            if ids:
                al = sa.select(t.aliases.c.sis_id).where(t.aliases.c.person_id.in_(ids))
                ids.update(r[0] for r in c.execute(al))
        return ids

    def record(self, person_ids: Iterable[str]) -> dict[str, Any] | None:
        """The whole identity row of one of these person ids (the first found), if any."""
        q = sa.select(t.identities).where(t.identities.c.person_id.in_(list(person_ids)))
        with self.engine.connect() as c:
            row = c.execute(q).mappings().first()
        return dict(row) if row else None

    def nins(self, person_ids: Iterable[str]) -> list[str]:
        """Every NIN seen for these person ids."""
        n = t.person_nins.c
        with self.engine.connect() as c:
            return [r[0] for r in c.execute(sa.select(n.nin).where(n.person_id.in_(list(person_ids))))]


class TakenUsernames:
    """Whether a username was ever issued, reserved or bound: the usernames table asked for one
    name at a time, each answer kept. Compared in Python, as the set ``view().taken`` does,
    whatever the database's collation (one that ignores case or accents would find another)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._known: dict[str, bool] = {}

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        if name not in self._known:
            u = t.usernames.c.username
            with self.engine.connect() as c:
                self._known[name] = name in c.execute(sa.select(u).where(u == name)).scalars().all()
        return self._known[name]


def _taken(c: sa.Connection) -> frozenset[str]:
    # Raw driver rows (the cursor): SQLAlchemy's Row objects cost several times more here.
    cursor: Any = c.execute(sa.select(t.usernames.c.username)).cursor
    return frozenset(r[0] for r in cursor)
