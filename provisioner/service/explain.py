"""`bas person show`: one person explained from source facts, accounts and history.

The source is asked only about this person (a SQL source wraps each configured query in
a filtering sub-select, so this stays quick on an Oslo-size SIS).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

from provisioner.config import Config
from provisioner.core.locks import ALL_TARGETS
from provisioner.core.nin import mask, mask_nins, mask_text
from provisioner.core.plan import Op
from provisioner.service import changelog
from provisioner.state.history import Filter
from provisioner.state.store import StateStore
from sources.registry import open_source


def source_facts(cfg: Config, sis_ids: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Rows of the source that concern these SIS ids (read-only; NINs masked)."""
    with open_source(cfg) as src:
        out = src.facts(sis_ids)
    for p in out.get("person", []):
        p["nin"] = mask(p.get("nin"))
    return out


Facts = Callable[[Config, set[str]], dict[str, list[dict[str, Any]]]]


def explain(
    cfg: Config, store: StateStore, who: str, show_nin: bool = False, facts: Facts = source_facts
) -> dict[str, Any] | None:
    """Everything BAS knows about one person, or None if it knows nobody by that name.

    ``facts`` reads the source (the web console passes one that survives an unreachable SIS).
    """
    ids = store.identities.resolve(who)
    if not ids:
        return None
    ident = store.identities.record(ids)
    accounts = [
        {
            "target": r["target"],
            "kind": r["kind"],
            "key": r["key"],
            "anchor": r["anchor"],
            "status": r["status"],
            "since": r["status_since"],
            "attrs": r["attrs"],
        }
        for r in store.objects.of_persons(ids)
    ]
    groups: dict[str, list[str]] = {}
    for pid in ids:
        for target, key, attrs in store.objects.groups_of(pid):
            groups.setdefault(target, []).append(attrs.get("name") or key)
    nins = store.identities.nins(ids)
    removed = _removed(store, ids, {a["target"] for a in accounts})
    history = store.history.query(Filter(person=who, limit=100))
    result: dict[str, Any] = {
        "person_ids": sorted(ids),
        "identity": ident,
        "nins_seen": nins if show_nin else [mask(n) for n in nins],
        "source": facts(cfg, ids),
        "accounts": accounts,
        "removed": removed,
        "groups": {k: sorted(v) for k, v in groups.items()},
        "history": [changelog._present(r, show_nin) for r in history],
        **local_facts(store, ids),
    }
    if result["identity"] and not show_nin:
        result["identity"]["nin"] = mask(result["identity"]["nin"])
    if not show_nin:
        # An attribute may hold the NIN (an itslearning sourcedid with nin_as_sourcedid =
        # true, which is also that account's anchor; norEduPersonNIN is stored sealed).
        result["accounts"] = json.loads(mask_nins(json.dumps(accounts, ensure_ascii=False)))
    return result


def local_facts(store: StateStore, ids: set[str]) -> dict[str, Any]:
    """The person's locks (in force or not, today) and local record, for `bas person show`."""
    today = dt.date.today().isoformat()
    locks = [
        {
            "target": "every target that can disable" if x.target == ALL_TARGETS else x.target,
            "text": x.text(),
            "since": x.locked_at[:19],
            "in_force": x.in_force(today),
            "released": f"{x.released_at[:19]} by {x.released_by}" if x.released_at else None,
        }
        for x in store.local.locks(ids)
    ]
    records = [lp for lp in store.local.persons() if lp.person_id in ids]
    local = None
    if records:
        lp = records[0]
        local = {**lp.values(), "person_id": lp.person_id, "nin": mask(lp.nin)}
    return {"locks": locks, "local": local}


def _removed(store: StateStore, ids: set[str], current: set[str]) -> list[dict[str, Any]]:
    """The accounts BAS deleted (and the personal data it purged) that are gone now: the last each.

    A deleted account leaves the state store (a soft-deleted one stays, with its status);
    the changelog keeps what was done and when, so `person show` can say so.
    """
    return [
        {
            "target": r["target"],
            "op": r["op"],
            "at": r["at"],
            "run_id": r["run_id"],
            "reason": mask_text(r["reason"]),
        }
        for target, r in sorted(store.history.removals(ids).items())
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
    for lock in info.get("locks", ()):
        state = "LOCKED" if lock["in_force"] else "was locked"
        ended = f", unlocked {lock['released']}" if lock["released"] else ""
        lines.append(f"  {state:<10} in {lock['target']} since {lock['since']}: {lock['text']}{ended}")
    local = info.get("local")
    if local:
        kind = ", protected identity" if local["protected"] else ""
        lines.append(
            f"  local record {local['person_id']}{kind}: {local['role']} at {local['school_id']}"
            f" {local['start_date']}..{local['end_date']}" + (f" ({local['note']})" if local["note"] else "")
        )
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
        what = "personal data purged" if r["op"] == Op.PURGE else "deleted"
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
