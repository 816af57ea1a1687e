"""Querying the append-only changelog, and rendering rows as a table, JSON or CSV.

A person can be named by username, NIN or SIS id; membership changes that list the
person are found too. NINs are masked in every output unless the caller asks for
them explicitly; passwords are never stored, so none can be shown.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from provisioner.core.csv_cells import neutralise
from provisioner.core.nin import mask_text
from provisioner.state import schema as t
from provisioner.state.store import StateStore

COLUMNS = (
    "id",
    "run_id",
    "at",
    "target",
    "op",
    "kind",
    "key",
    "username",
    "result",
    "reason",
    "error",
    "before",
    "after",
)


@dataclass(frozen=True)
class Filter:
    """What to select; every field optional."""

    person: str | None = None  # username, NIN or SIS person id
    target: str | None = None
    run: str | None = None
    since: str | None = None  # ISO date or timestamp, inclusive
    until: str | None = None  # ISO date or timestamp, inclusive (a date means the whole day)
    op: str | None = None
    result: str | None = None
    limit: int = 200


def resolve_person(store: StateStore, who: str) -> set[str]:
    """Person ids (canonical and SIS aliases) a username, NIN or SIS id points to."""
    who = who.strip()
    ids: set[str] = set()
    with store.engine.connect() as c:
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


def query(store: StateStore, f: Filter) -> list[dict[str, Any]]:
    """Changelog rows matching the filter, oldest first (the newest ``limit`` of them)."""
    cl = t.changelog.c
    conds = []
    if f.person:
        ids = resolve_person(store, f.person)
        if not ids:
            return []
        member_hits = [cl.after.like(f'%"{pid}"%') for pid in ids]
        conds.append(
            sa.or_(
                cl.person_id.in_(ids),
                sa.and_(cl.op.in_(("add_members", "remove_members")), sa.or_(*member_hits)),
            )
        )
    if f.target:
        conds.append(cl.target == f.target)
    if f.run:
        conds.append(cl.run_id == f.run)
    if f.op:
        conds.append(cl.op == f.op)
    if f.result:
        conds.append(cl.result == f.result)
    if f.since:
        conds.append(cl.at >= f.since)
    if f.until:
        conds.append(cl.at <= (f.until + "T23:59:59~" if len(f.until) == 10 else f.until))
    q = sa.select(*[cl[c] for c in COLUMNS]).where(*conds).order_by(cl.id.desc()).limit(f.limit)
    with store.engine.connect() as c:
        rows = [dict(r) for r in c.execute(q).mappings()]
    rows.reverse()
    return rows


def _present(row: dict[str, Any], show_nin: bool) -> dict[str, Any]:
    out = dict(row)
    for k in ("before", "after"):
        if out.get(k):
            out[k] = json.loads(out[k])
    if not show_nin:
        out = json.loads(mask_text(json.dumps(out, ensure_ascii=False)))
    return out


def render(rows: Sequence[dict[str, Any]], fmt: str = "table", show_nin: bool = False) -> str:
    """Rows as 'table', 'json' or 'csv' text."""
    shown = [_present(r, show_nin) for r in rows]
    if fmt == "json":
        return json.dumps(shown, ensure_ascii=False, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in shown:
            w.writerow(
                {
                    k: neutralise(json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v)
                    for k, v in r.items()
                }
            )
        return buf.getvalue()
    return table(
        ["at", "run", "target", "op", "object", "username", "result", "reason"],
        [
            [
                r["at"][:19],
                r["run_id"],
                r["target"],
                r["op"],
                f"{r['kind']}:{r['key']}",
                r["username"] or "",
                r["result"] + (f" ({r['error']})" if r["error"] and r["result"] != "ok" else ""),
                r["reason"],
            ]
            for r in shown
        ],
    )


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], max_width: int = 70) -> str:
    """A plain aligned text table; long cells are cut with an ellipsis."""

    def cell(v: Any) -> str:
        s = "" if v is None else str(v)
        return s if len(s) <= max_width else s[: max_width - 1] + "…"

    body = [[cell(v) for v in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(headers)]
    lines = [
        "  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip(),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in body]
    return "\n".join(lines)
