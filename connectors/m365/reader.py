"""Reading Microsoft 365 back for a reconcile: the tenant's users, as the differ sees the state store.

Owns the read of the tenant's users through a Graph delta query (``/users/delta``) and
its description as a ``provisioner.core.drift.LiveView``. A full read (no cursor)
reads every user; an incremental one continues from the deltaLink kept from the last
reconcile (the view's ``cursor`` is the new one) and reads only what changed since:
recorded users it did not see are ``unread`` (unchanged). An expired link
(``syncStateNotFound``, ``resyncRequired`` or 410 Gone) starts over with a full read.

Each recorded user seen: its managed attributes (``USER_ATTRS``, compared as the
connector writes them) and its sign-in state; a user removed in the delta, or (on a
full read) not there at all, is "deleted": a soft-deleting target restores it from
deleted items (the restore creates it again if it was purged). A user with an
employeeId BAS does not manage is a note, never touched. Groups are not compared yet:
they are ``unread``. Synced users (hybrid): their sign-in state is AD's, so it is never
drift here (read as recorded).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from connectors.base import Reader
from connectors.errors import FatalError
from connectors.m365.graph import GraphClient, GraphError
from connectors.m365.steps import USER_ATTRS, same
from provisioner.core.drift import DriftKind, LiveView, Note, Recorded

SELECT = "id,accountEnabled," + ",".join(USER_ATTRS)


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


def read_users(
    client: GraphClient, recorded: Sequence[Recorded], cursor: str | None, *, synced: bool = False
) -> LiveView:
    """The tenant's users (all, or those changed since ``cursor``) matched with the recorded ones."""
    live = [r for r in recorded if r.status != "deleted"]
    mine = {r.anchor: r for r in live if r.kind == "person" and r.anchor}
    managed_ids = {str(r.attrs.get("employeeId") or r.key) for r in mine.values()}
    users, new_link, was_full = read_delta(client, cursor)
    view = LiveView(cursor=new_link)
    view.unread = {r.key for r in live if r.kind != "person"}
    seen: set[str] = set()
    for u in users:
        uid = str(u["id"])
        seen.add(uid)
        rec = mine.get(uid)
        if rec is None:
            eid = u.get("employeeId")
            if "@removed" not in u and eid and str(eid) not in managed_ids:
                detail = f"{u.get('userPrincipalName')} has employeeId {eid}"
                view.notes.append(Note(DriftKind.UNMANAGED, "person", None, uid, detail))
            continue
        if "@removed" in u:
            view.found(rec, "deleted", dict(rec.attrs))
            continue
        attrs = {
            k: u.get(k) if k in USER_ATTRS and k in u and not same(v, u.get(k)) else v
            for k, v in rec.attrs.items()
        }
        enabled = (
            bool(u["accountEnabled"]) if "accountEnabled" in u and not synced else rec.status == "active"
        )
        view.found(rec, "active" if enabled else "disabled", attrs)
    for uid, rec in mine.items():
        if uid not in seen:
            if was_full:
                view.found(rec, "deleted", dict(rec.attrs))  # in deleted items, or purged
            else:
                view.unread.add(rec.key)
    # A recorded person never created (no anchor) has nothing to read back.
    view.unread |= {r.key for r in live if r.kind == "person" and not r.anchor}
    return view


class M365Reader(Reader):
    """The Microsoft 365 target's reader: ``read_users`` (a delta query) over its own client."""

    def __init__(self, client: GraphClient, *, synced: bool = False) -> None:
        self.client = client
        self.synced = synced  # users synced from AD: their sign-in state is AD's

    def read(self, recorded: Sequence[Recorded], cursor: str | None) -> LiveView:
        """The users changed since ``cursor`` (all of them without one)."""
        return read_users(self.client, recorded, cursor, synced=self.synced)

    def close(self) -> None:
        """Close the HTTP session."""
        self.client.close()
