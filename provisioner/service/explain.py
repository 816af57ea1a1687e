"""`bas person show`: one person explained from source facts, accounts and history.

The source is asked only about this person (each configured query wrapped in a
filtering sub-select), so this stays quick on an Oslo-size SIS.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from provisioner.config import Config
from provisioner.core.nin import mask, mask_nins, mask_text
from provisioner.service import changelog
from provisioner.state import schema as t
from provisioner.state.store import StateStore
from sources.sql import DEFAULT_QUERIES, source_engine

_FACTS = {
    "person": ("persons", "person_id"),
    "enrollments": ("enrollments", "person_id"),
    "employments": ("employments", "person_id"),
    "guardian_of": ("guardianships", "guardian_id"),
    "guardians": ("guardianships", "student_id"),
    "memberships": ("memberships", "person_id"),
}


def source_facts(cfg: Config, sis_ids: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Rows of the source that concern these SIS ids (read-only)."""
    queries = {**DEFAULT_QUERIES, **cfg.source.queries}
    engine = source_engine(cfg.source_db_url())
    out: dict[str, list[dict[str, Any]]] = {}
    try:
        with engine.connect() as c:
            for label, (qname, col) in _FACTS.items():
                q = sa.text(f"SELECT * FROM ({queries[qname]}) AS q WHERE q.{col} IN :ids").bindparams(
                    sa.bindparam("ids", expanding=True)
                )
                out[label] = [
                    {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in r.items()}
                    for r in c.execute(q, {"ids": sorted(sis_ids)}).mappings()
                ]
    finally:
        engine.dispose()
    for p in out.get("person", []):
        p["nin"] = mask(p.get("nin"))
    return out


def explain(cfg: Config, store: StateStore, who: str, show_nin: bool = False) -> dict[str, Any] | None:
    """Everything BAS knows about one person, or None if it knows nobody by that name."""
    ids = changelog.resolve_person(store, who)
    if not ids:
        return None
    with store.engine.connect() as c:
        ident = c.execute(sa.select(t.identities).where(t.identities.c.person_id.in_(ids))).mappings().first()
        o = t.objects.c
        accounts = [
            {
                "target": r["target"],
                "kind": r["kind"],
                "key": r["key"],
                "anchor": r["anchor"],
                "status": r["status"],
                "since": r["status_since"],
                "attrs": json.loads(r["attrs"]),
            }
            for r in c.execute(sa.select(t.objects).where(o.person_id.in_(ids)).order_by(o.target)).mappings()
        ]
        groups: dict[str, list[str]] = {}
        for pid in ids:
            q = sa.select(o.target, o.key, o.attrs).where(o.kind == "group", o.members.like(f'%"{pid}"%'))
            for target, key, attrs in c.execute(q):
                groups.setdefault(target, []).append(json.loads(attrs).get("name") or key)
        nins = [
            r[0] for r in c.execute(sa.select(t.person_nins.c.nin).where(t.person_nins.c.person_id.in_(ids)))
        ]
        removed = _removed(c, ids, {a["target"] for a in accounts})
    history = changelog.query(store, changelog.Filter(person=who, limit=100))
    result = {
        "person_ids": sorted(ids),
        "identity": dict(ident) if ident else None,
        "nins_seen": nins if show_nin else [mask(n) for n in nins],
        "source": source_facts(cfg, ids),
        "accounts": accounts,
        "removed": removed,
        "groups": {k: sorted(v) for k, v in groups.items()},
        "history": [changelog._present(r, show_nin) for r in history],
    }
    if result["identity"] and not show_nin:
        result["identity"]["nin"] = mask(result["identity"]["nin"])
    if not show_nin:
        # Any attribute may hold the NIN (norEduPersonNIN; an itslearning sourcedid with
        # nin_as_sourcedid = true, which is also that account's anchor).
        result["accounts"] = json.loads(mask_nins(json.dumps(accounts, ensure_ascii=False)))
    return result


def _removed(c: sa.Connection, ids: set[str], current: set[str]) -> list[dict[str, Any]]:
    """The accounts BAS deleted (and the personal data it purged) that are gone now: the last each.

    A deleted account leaves the state store (a soft-deleted one stays, with its status);
    the changelog keeps what was done and when, so `person show` can say so.
    """
    cl = t.changelog.c
    q = (
        sa.select(cl.target, cl.op, cl.at, cl.run_id, cl.reason)
        .where(cl.person_id.in_(ids), cl.kind == "person", cl.op.in_(("delete", "purge")), cl.result == "ok")
        .order_by(cl.id)
    )
    last = {r.target: r for r in c.execute(q)}  # the newest per target wins
    return [
        {"target": r.target, "op": r.op, "at": r.at, "run_id": r.run_id, "reason": mask_text(r.reason)}
        for target, r in sorted(last.items())
        if target not in current
    ]


def render_text(info: dict[str, Any]) -> str:
    """A readable report of explain()'s result."""
    lines: list[str] = []
    ident = info["identity"] or {}
    lines.append(
        f"Person {', '.join(info['person_ids'])}: {ident.get('display_name') or '(personal data purged)'}"
    )
    lines.append(
        f"  username   {ident.get('username', '-')}   status {ident.get('status', '-')}"
        + (f" since {ident['inactive_since']}" if ident.get("inactive_since") else "")
        + (f", bridged until {ident['bridged_until']}" if ident.get("bridged_until") else "")
    )
    lines.append(f"  NIN(s)     {', '.join(n for n in info['nins_seen'] if n) or '-'}")
    lines.append(f"  roles      {ident.get('roles') or '-'}")
    src = info["source"]
    lines.append("Source facts (SIS):")
    for e in src["enrollments"]:
        lines.append(
            f"  enrolled at {e['school_id']} grade {e['grade']} from {e['start_date']}"
            f" to {e['end_date'] or 'open'}"
        )
    for e in src["employments"]:
        end = e["end_date"] or "open"
        lines.append(f"  employed at {e['school_id']} as {e['role']} from {e['start_date']} to {end}")
    for g in src["guardian_of"]:
        lines.append(f"  guardian of {g['student_id']}")
    for g in src["guardians"]:
        lines.append(f"  has guardian {g['guardian_id']}")
    lines.append(f"  member of {len(src['memberships'])} SIS group(s)")
    lines.append("Accounts:")
    for a in info["accounts"]:
        lines.append(f"  {a['target']:<12} {a['status']:<9} since {a['since'] or '-'}  anchor {a['anchor']}")
    for r in info.get("removed", ()):
        what = "personal data purged" if r["op"] == "purge" else "deleted"
        lines.append(f"  {r['target']:<12} {what} {r['at'][:10]} (run {r['run_id']}): {r['reason']}")
    if not info["accounts"] and not info.get("removed"):
        lines.append("  (none applied)")
    for target, names in info["groups"].items():
        shown = ", ".join(names[:8]) + (f" … (+{len(names) - 8})" if len(names) > 8 else "")
        lines.append(f"  {target} groups: {shown}")
    lines.append("History:")
    for h in info["history"][-30:]:
        lines.append(f"  {h['at'][:19]}  {h['target']:<12} {h['op']:<14} {h['result']:<8} {h['reason']}")
    return "\n".join(lines)
