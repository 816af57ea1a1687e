"""The web console's directory in the state store (``store.directory``; tables ``dir_*``).

Written once per derivation (provisioner/run/runner.py ``plan_run``): a person or group row
is rewritten only when its digest changed, persons who left are marked inactive (never
removed: the school that had them can still look them up), a frozen person or group
(broken record) keeps its last rows, and the data errors are replaced whole. Read by the
console (provisioner/web) for search, authorization and the data-quality page.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from provisioner.core.directory import (
    ErrorRow,
    GroupRow,
    PersonRow,
    error_rows,
    fold,
    group_rows,
    person_rows,
)
from provisioner.core.model import STUDENT, TEACHER, DataError, DesiredGroup, DesiredPerson, DesiredState
from provisioner.state import schema as t
from provisioner.state.common import CHUNK, batches, bulk_insert, bulk_transaction, contains

Row = dict[str, Any]
_PERSON_COLUMNS = tuple(c.name for c in t.dir_persons.columns)


@dataclass(frozen=True)
class Written:
    """How many rows one update wrote (for the log and the tests)."""

    persons: int
    left: int
    groups: int
    groups_gone: int
    errors: int


class Directory:
    """Reads and writes of the ``dir_*`` tables."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    # -- writing ---------------------------------------------------------------------------

    def update(
        self,
        state: DesiredState,
        frozen_persons: Iterable[str] = (),
        frozen_groups: Iterable[str] = (),
    ) -> Written:
        """Bring the directory in line with one derivation (see the module docstring).

        Rows are compared and written a batch at a time: on a first Oslo-size run the
        directory is about 1.5 million rows, which must not sit in memory beside the plan.
        """
        frozen_p, frozen_g = set(frozen_persons), set(frozen_groups)
        dp, dg = t.dir_persons.c, t.dir_groups.c
        with bulk_transaction(self.engine) as c:
            stored_p = dict(c.execute(sa.select(dp.person_id, dp.digest)).all())
            active_p = {r[0] for r in c.execute(sa.select(dp.person_id).where(dp.active.is_(True)))}
            changed = 0
            pairs = ((r, r.digest) for r in person_rows(state.persons))
            for batch in batches(((r, d) for r, d in pairs if stored_p.get(r.person_id) != d), _BATCH):
                self._write_persons(c, batch, [r.person_id for r, _ in batch if r.person_id in stored_p])
                changed += len(batch)
            del stored_p
            left = sorted(active_p - set(state.persons) - frozen_p)
            for i in range(0, len(left), CHUNK):
                # The digest is cleared with it: coming back, even unchanged, rewrites the row.
                c.execute(
                    t.dir_persons.update()
                    .where(dp.person_id.in_(left[i : i + CHUNK]))
                    .values(active=False, digest="")
                )
            stored_g = dict(c.execute(sa.select(dg.group_key, dg.digest)).all())
            seen: set[str] = set()

            def changed_groups() -> Iterator[tuple[GroupRow, str]]:
                for g in group_rows(state.groups):
                    seen.add(g.key)
                    d = g.digest
                    if stored_g.get(g.key) != d:
                        yield g, d

            new_g = 0
            for gbatch in batches(changed_groups(), _BATCH):
                self._write_groups(c, gbatch, [g.key for g, _ in gbatch if g.key in stored_g])
                new_g += len(gbatch)
            gone = sorted(set(stored_g) - seen - frozen_g)
            self._delete_groups(c, gone)
            c.execute(t.dir_schools.delete())
            bulk_insert(
                c,
                t.dir_schools,
                [{"school_id": s, "name": v.name or v.short_name} for s, v in state.schools.items()],
            )
            errors = self._place_errors(c, state, state.errors)
            c.execute(t.dir_errors.delete())
            bulk_insert(c, t.dir_errors, [_err(e) for e in errors])
        return Written(changed, len(left), new_g, len(gone), len(errors))

    def update_persons(self, persons: Mapping[str, DesiredPerson]) -> int:
        """Rewrite these active persons' rows where they changed (a patched plan's persons); how many."""
        dp = t.dir_persons.c
        return self._update(dp.person_id, dp.digest, list(person_rows(persons)), self._write_persons)

    def update_groups(self, groups: Mapping[str, DesiredGroup]) -> int:
        """Rewrite these active groups' rows where they changed (a patched plan's groups); how many."""
        dg = t.dir_groups.c
        return self._update(dg.group_key, dg.digest, list(group_rows(groups)), self._write_groups)

    def _update(
        self,
        key: sa.ColumnElement[str],
        digest: sa.ColumnElement[str],
        rows: list[Any],
        write: Callable[[sa.Connection, list[tuple[Any, str]], list[str]], None],
    ) -> int:
        """Write the rows (PersonRow or GroupRow) whose digest differs from the stored one's."""
        with self.engine.begin() as c:
            stored = _digests(c, key, digest, (r.key for r in rows))
            changed = [(r, r.digest) for r in rows if stored.get(r.key) != r.digest]
            for batch in batches(changed, _BATCH):
                write(c, batch, [r.key for r, _ in batch if r.key in stored])
        return len(changed)

    @staticmethod
    def _write_persons(c: sa.Connection, rows: list[tuple[PersonRow, str]], replace: list[str]) -> None:
        for i in range(0, len(replace), CHUNK):
            part = replace[i : i + CHUNK]
            c.execute(t.dir_persons.delete().where(t.dir_persons.c.person_id.in_(part)))
            c.execute(t.dir_affiliations.delete().where(t.dir_affiliations.c.person_id.in_(part)))
        bulk_insert(
            c,
            t.dir_persons,
            [
                {
                    "person_id": r.person_id,
                    "username": r.username,
                    "display_name": r.display_name,
                    "search": r.search,
                    "roles": r.roles,
                    "schools": r.schools,
                    "active": r.active,
                    "digest": digest,
                }
                for r, digest in rows
            ],
        )
        bulk_insert(
            c,
            t.dir_affiliations,
            [
                {"person_id": r.person_id, "school_id": s, "role": role}
                for r, _ in rows
                for s, role in sorted(set(r.affiliations))
            ],
        )

    @staticmethod
    def _delete_groups(c: sa.Connection, keys: list[str]) -> None:
        for i in range(0, len(keys), CHUNK):
            part = keys[i : i + CHUNK]
            c.execute(t.dir_groups.delete().where(t.dir_groups.c.group_key.in_(part)))
            c.execute(t.dir_members.delete().where(t.dir_members.c.group_key.in_(part)))

    @staticmethod
    def _write_groups(c: sa.Connection, rows: list[tuple[GroupRow, str]], stored: list[str]) -> None:
        """Write changed groups; a stored group's members change by difference, not rewritten.

        A run that moves one pupil changes two groups of thirty: two rows, not sixty.
        """
        m = t.dir_members.c
        old: dict[str, set[tuple[str, str]]] = {k: set() for k in stored}
        for i in range(0, len(stored), CHUNK):
            q = sa.select(m.group_key, m.person_id, m.role).where(m.group_key.in_(stored[i : i + CHUNK]))
            for key, pid, role in c.execute(q):
                old[key].add((pid, role))
            c.execute(t.dir_groups.delete().where(t.dir_groups.c.group_key.in_(stored[i : i + CHUNK])))
        bulk_insert(
            c,
            t.dir_groups,
            [
                {"group_key": g.key, "school_id": g.school_id, "name": g.name, "kind": g.kind, "digest": d}
                for g, d in rows
            ],
        )
        removed = [
            {"k": g.key, "p": p, "r": role}
            for g, _ in rows
            for p, role in old.get(g.key, set()) - set(g.members)
        ]
        if removed:
            c.execute(
                t.dir_members.delete().where(
                    m.group_key == sa.bindparam("k"),
                    m.person_id == sa.bindparam("p"),
                    m.role == sa.bindparam("r"),
                ),
                removed,
            )
        bulk_insert(
            c,
            t.dir_members,
            [
                {"group_key": g.key, "person_id": p, "role": role}
                for g, _ in rows
                for p, role in sorted(set(g.members) - old.get(g.key, set()))
            ],
        )

    @staticmethod
    def _place_errors(c: sa.Connection, state: DesiredState, errors: Iterable[DataError]) -> list[ErrorRow]:
        errors = list(errors)
        if not errors:
            return []
        # Persons and groups frozen or gone are not in this derivation: their last stored rows say where.
        wanted_p = {e.record.partition(":")[2].rpartition("/")[2] for e in errors}
        wanted_g = {e.record.partition(":")[2].partition("/")[0] for e in errors}
        stored_p: dict[str, set[str]] = {}
        stored_g: dict[str, str] = {}
        pl, gl = sorted(wanted_p), sorted(wanted_g)
        for i in range(0, len(pl), CHUNK):
            q = sa.select(t.dir_affiliations.c.person_id, t.dir_affiliations.c.school_id).where(
                t.dir_affiliations.c.person_id.in_(pl[i : i + CHUNK])
            )
            for pid, school in c.execute(q):
                stored_p.setdefault(pid, set()).add(school)
        for i in range(0, len(gl), CHUNK):
            q2 = sa.select(t.dir_groups.c.group_key, t.dir_groups.c.school_id).where(
                t.dir_groups.c.group_key.in_(gl[i : i + CHUNK])
            )
            stored_g.update(dict(c.execute(q2).all()))

        def schools_of(pid: str) -> Iterable[str]:
            p = state.persons.get(pid)
            return p.schools if p is not None else stored_p.get(pid, ())

        def school_of(gid: str) -> str | None:
            g = state.groups.get(gid)
            return g.school_id if g is not None else stored_g.get(gid)

        return error_rows(errors, schools_of, school_of)

    # -- reading ---------------------------------------------------------------------------

    def search(
        self,
        q: str,
        schools: Iterable[str] | None = None,
        limit: int = 50,
        within: sa.Select[Any] | None = None,
    ) -> list[dict[str, Any]]:
        """Persons whose name or username contains ``q`` (case-folded), active first, then by name.

        ``schools``: only persons with an affiliation there (None: everyone); ``within``: only
        the person ids this sub-select gives (a user's reach, provisioner/web/reach.py).
        """
        dp = t.dir_persons.c
        needle = fold(q)
        if not needle:
            return []
        query = sa.select(t.dir_persons).where(dp.search.like(contains(needle), escape="\\"))
        if schools is not None:
            query = query.where(dp.person_id.in_(self.at_schools(schools)))
        if within is not None:
            query = query.where(dp.person_id.in_(within))
        query = query.order_by(dp.active.desc(), dp.display_name, dp.person_id).limit(limit)
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(query).mappings()]

    def persons(self, person_ids: Iterable[str]) -> list[dict[str, Any]]:
        """The directory rows of these persons."""
        ids = sorted(set(person_ids))
        out: list[dict[str, Any]] = []
        with self.engine.connect() as c:
            for i in range(0, len(ids), CHUNK):
                q = sa.select(t.dir_persons).where(t.dir_persons.c.person_id.in_(ids[i : i + CHUNK]))
                out.extend(dict(r) for r in c.execute(q).mappings())
        return out

    def schools_of(self, person_ids: Iterable[str]) -> set[str]:
        """Every school these persons are (or, having left, were last) affiliated with."""
        a = t.dir_affiliations.c
        with self.engine.connect() as c:
            return {r[0] for r in c.execute(sa.select(a.school_id).where(a.person_id.in_(list(person_ids))))}

    def by_username(self, username: str) -> set[str]:
        """The person ids holding this username (usernames are stored in lower case)."""
        dp = t.dir_persons.c
        with self.engine.connect() as c:
            return {r[0] for r in c.execute(sa.select(dp.person_id).where(dp.username == username.lower()))}

    def pupils_by_group(self, teacher_ids: Iterable[str]) -> list[tuple[dict[str, Any], list[Row]]]:
        """The groups these persons teach, each with its pupils' directory rows (by group, then name)."""
        m1, m2, g, p = t.dir_members.alias("m1"), t.dir_members.alias("m2"), t.dir_groups, t.dir_persons
        q = (
            sa.select(g.c.group_key, g.c.school_id, g.c.name, g.c.kind, p)
            .select_from(m1)
            .join(g, g.c.group_key == m1.c.group_key)
            .join(m2, m2.c.group_key == m1.c.group_key)
            .join(p, p.c.person_id == m2.c.person_id)
            .where(m1.c.person_id.in_(sorted(teacher_ids)), m1.c.role == TEACHER, m2.c.role == STUDENT)
            .order_by(g.c.school_id, g.c.name, g.c.group_key, p.c.display_name, p.c.person_id)
        )
        out: list[tuple[dict[str, Any], list[Row]]] = []
        with self.engine.connect() as c:
            for r in c.execute(q).mappings():
                if not out or out[-1][0]["group_key"] != r["group_key"]:
                    group = {k: r[k] for k in ("group_key", "school_id", "name", "kind")}
                    out.append((group, []))
                out[-1][1].append({k: r[k] for k in _PERSON_COLUMNS})
        return out

    def pupils_of(self, teacher_ids: Iterable[str]) -> set[str]:
        """Students of the SIS groups where these persons are teachers."""
        with self.engine.connect() as c:
            return {r[0] for r in c.execute(self.pupils_select(teacher_ids))}

    @staticmethod
    def pupils_select(teacher_ids: Iterable[str]) -> sa.Select[Any]:
        """pupils_of as a sub-select (for other queries' IN)."""
        m1, m2 = t.dir_members.alias("m1"), t.dir_members.alias("m2")
        return (
            sa.select(m2.c.person_id)
            .join(m1, m1.c.group_key == m2.c.group_key)
            .where(m1.c.person_id.in_(sorted(teacher_ids)), m1.c.role == TEACHER, m2.c.role == STUDENT)
        )

    def groups_of(self, person_ids: Iterable[str]) -> list[dict[str, Any]]:
        """The SIS groups these persons are in (key, school, name, kind, role)."""
        g, m = t.dir_groups.c, t.dir_members.c
        q = (
            sa.select(g.group_key, g.school_id, g.name, g.kind, m.role)
            .join(t.dir_members, m.group_key == g.group_key)
            .where(m.person_id.in_(list(person_ids)))
            .order_by(g.school_id, g.name)
        )
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(q).mappings()]

    def school_names(self) -> dict[str, str]:
        """School id -> name, as of the newest derivation."""
        with self.engine.connect() as c:
            return dict(c.execute(sa.select(t.dir_schools.c.school_id, t.dir_schools.c.name)).all())

    def errors(self, schools: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """The newest derivation's data errors (at these schools; None: all, "" for no school)."""
        e = t.dir_errors.c
        q = sa.select(e.school_id, e.kind, e.record, e.message, e.person_id).order_by(e.school_id, e.id)
        if schools is not None:
            q = q.where(e.school_id.in_(list(schools)))
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(q).mappings()]

    @staticmethod
    def at_schools(schools: Iterable[str]) -> sa.Select[Any]:
        """A sub-select of the person ids affiliated with these schools (for other queries' IN)."""
        a = t.dir_affiliations.c
        return sa.select(a.person_id).where(a.school_id.in_(list(schools)))


_BATCH = 5_000  # persons or groups compared and written at a time


def _digests(
    c: sa.Connection, key: sa.ColumnElement[str], digest: sa.ColumnElement[str], keys: Iterable[str]
) -> dict[str, str]:
    """The stored digests of these rows (by their key column), a chunk of keys at a time."""
    ids = sorted(keys)
    out: dict[str, str] = {}
    for i in range(0, len(ids), CHUNK):
        out.update(c.execute(sa.select(key, digest).where(key.in_(ids[i : i + CHUNK]))).all())
    return out


def _err(e: ErrorRow) -> dict[str, Any]:
    return {
        "school_id": e.school_id,
        "kind": e.kind,
        "record": e.record,
        "message": e.message,
        "person_id": e.person_id,
    }
