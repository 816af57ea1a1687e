"""Reconciling Microsoft 365 with the state store: user drift read with a Graph delta query.

Owns the read-back of the tenant's users through ``/users/delta`` and its comparison
with what the state store recorded for the target. The first run (or ``full``) reads
every user; later runs read only what changed since the stored deltaLink (kept in the
state store's meta table, one per target). An expired token (``syncStateNotFound``,
or 410 Gone) starts over with a full read. Kinds of drift:

- ``changed``: a managed attribute differs (edited by hand);
- ``state``: sign-in enabled where BAS blocked it, or the other way round;
- ``missing``: the user BAS manages is deleted (by hand) or, on a full read, not there;
- ``unmanaged``: a user with an employeeId BAS does not manage.

``repair`` writes the recorded values back for ``changed`` and ``state`` and restores
a soft-deleted ``missing`` user from deleted items. It never touches an unmanaged user.
Groups are not compared yet.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from connectors.base import FatalError, TransientError
from connectors.m365.graph import GraphClient, GraphError, Req
from connectors.m365.steps import USER_ATTRS, same, value
from provisioner.state.store import StateStore

SELECT = "id,accountEnabled," + ",".join(USER_ATTRS)


@dataclass
class Drift:
    """One difference between the tenant and the state store."""

    kind: str  # changed | state | missing | unmanaged
    key: str | None  # our key (None for unmanaged users)
    user_id: str
    detail: str
    attrs: dict[str, dict[str, Any]] = field(default_factory=dict)  # attr -> {expected, actual}
    repaired: bool = False

    def to_json(self) -> dict[str, Any]:
        """Plain dict for JSON output."""
        return asdict(self)


def delta_key(target: str) -> str:
    """The state store meta key of a target's deltaLink."""
    return f"m365_delta:{target}"


def read_delta(client: GraphClient, link: str | None) -> tuple[list[dict[str, Any]], str, bool]:
    """(users, new deltaLink, was it a full read) from a deltaLink, starting over when it expired."""
    for start in (link, None) if link else (None,):
        users: list[dict[str, Any]] = []
        try:
            url: str = start or f"/users/delta?$select={SELECT}"
            while True:
                resp = client.call("GET", url)
                if not resp.ok:
                    raise GraphError(resp, "GET /users/delta")
                users.extend(resp.body.get("value", ()))
                if resp.body.get("@odata.nextLink"):
                    url = resp.body["@odata.nextLink"]
                    continue
                return users, str(resp.body["@odata.deltaLink"]), start is None
        except GraphError as exc:
            expired = exc.resp.status == 410 or exc.resp.code.lower() in (
                "syncstatenotfound",
                "resyncrequired",
            )
            if start is None or not expired:
                raise FatalError(f"M365 reconcile: {exc}") from exc
    raise AssertionError("unreachable")


def reconcile(
    client: GraphClient,
    store: StateStore,
    target: str,
    stored: Iterable[Mapping[str, Any]],
    *,
    repair: bool = False,
    full: bool = False,
) -> list[Drift]:
    """Compare the tenant's users (delta since last time, or all) with the record; optionally repair."""
    mine = {o["anchor"]: o for o in stored if o["kind"] == "person" and o["anchor"]}
    managed_ids = {str(o["attrs"].get("employeeId") or o["key"]) for o in mine.values()}
    link = None if full else store.meta.get(delta_key(target))
    users, new_link, was_full = read_delta(client, link)
    drift: list[Drift] = []
    seen: set[str] = set()
    for u in users:
        uid = str(u["id"])
        seen.add(uid)
        rec = mine.get(uid)
        if "@removed" in u:
            if rec is not None and rec["status"] != "deleted":
                drift.append(
                    Drift("missing", rec["key"], uid, f"person {rec['key']} was deleted in the tenant")
                )
            continue
        if rec is None:
            eid = u.get("employeeId")
            if eid and str(eid) not in managed_ids:
                drift.append(
                    Drift("unmanaged", None, uid, f"{u.get('userPrincipalName')} has employeeId {eid}")
                )
            continue
        diffs = {
            k: {"expected": rec["attrs"].get(k), "actual": u.get(k)}
            for k in USER_ATTRS
            if k in u and k in rec["attrs"] and not same(rec["attrs"].get(k), u.get(k))
        }
        if diffs:
            drift.append(
                Drift("changed", rec["key"], uid, f"person {rec['key']}: {', '.join(sorted(diffs))}", diffs)
            )
        want_enabled = rec["status"] == "active"
        if "accountEnabled" in u and bool(u["accountEnabled"]) != want_enabled:
            drift.append(
                Drift(
                    "state",
                    rec["key"],
                    uid,
                    f"person {rec['key']}: sign-in {'blocked' if want_enabled else 'allowed'}",
                )
            )
    if was_full:
        for uid, rec in mine.items():
            if uid not in seen and rec["status"] != "deleted":
                drift.append(Drift("missing", rec["key"], uid, f"person {rec['key']} is not in the tenant"))
    if repair:
        _repair(client, drift, mine)
    store.meta.set(delta_key(target), new_link)
    return drift


def _repair(client: GraphClient, drift: list[Drift], mine: Mapping[str, Mapping[str, Any]]) -> None:
    """Write the recorded values back (one $batch round)."""
    reqs: list[tuple[Drift, Req]] = []
    for d in drift:
        rec = mine.get(d.user_id)
        if rec is None:
            continue
        if d.kind == "changed":
            body = {k: value(rec["attrs"].get(k)) for k in d.attrs}
            reqs.append((d, Req("PATCH", f"/users/{d.user_id}", body)))
        elif d.kind == "state":
            reqs.append(
                (d, Req("PATCH", f"/users/{d.user_id}", {"accountEnabled": rec["status"] == "active"}))
            )
        elif d.kind == "missing":
            reqs.append((d, Req("POST", f"/directory/deletedItems/{d.user_id}/restore", {})))
    if not reqs:
        return
    answers = client.send_all([r for _, r in reqs])
    for (d, _), a in zip(reqs, answers):
        if a.ok:
            d.repaired = True
        elif a.status in (429, 503):
            raise TransientError(f"M365 reconcile: repair of {d.key}: {a.describe()}")
        else:
            d.detail += f" (not repaired: {a.describe()})"
