"""Microsoft 365 groups: the group steps of the connector (``connectors.m365.connector``).

Owns what BAS does to groups: a create looks for a group with the same mailNickname
and adopts it when its displayName matches too (a conflict otherwise); new groups get
their teachers as owners (``owners@odata.bind``, the configured fallback owner when
there are none, so no group is ownerless); owner changes add before they remove;
members are added with ``members@odata.bind`` (20 per PATCH, one by one via ``$ref``
when a PATCH fails on one value) and removed with ``$ref`` deletes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from connectors.base import Applied
from connectors.errors import RejectedError
from connectors.m365.graph import RETRY_STATUS, Req, odata_filter, odata_quote
from connectors.m365.steps import (
    BIND_LIMIT,
    GROUP_SELECT,
    GROUP_WRITABLE,
    Steps,
    StepsBase,
    already,
    graph_error,
    same,
    value,
)
from provisioner.core.plan import Change


class GroupSteps(StepsBase):
    """The group half of M365Connector (mixed in)."""

    def _owner_ids(self, pids: Iterable[str]) -> list[str]:
        return [a for a in (self._anchor("person", p) for p in pids) if a]

    def _create_group(self, c: Change) -> Steps:
        nick = str(c.attrs["mailNickname"])
        if self._groups is not None:
            found = list(self._groups.get(nick.lower(), ()))
        else:
            expr = f"mailNickname eq {odata_quote(nick)}"
            (r,) = yield [Req("GET", f"/groups?{odata_filter(expr)}&$select={GROUP_SELECT}")]
            if not r.ok:
                raise graph_error(r, f"look up group {nick}")
            found = list(r.body.get("value", ()))
        owners = self._owner_ids(c.links.get("owners") or ())
        note = None
        if not owners:
            fallback = yield from self._fallback_owner()
            owners = [fallback] if fallback else []
            note = "no teacher: the fallback owner owns it" if fallback else "created without an owner"
        if found:
            return (yield from self._adopt_group(c, found, owners))
        unified = c.attrs.get("groupType") == "m365"
        body: dict[str, Any] = {
            "displayName": c.attrs["displayName"],
            "mailNickname": nick,
            "mailEnabled": unified,
            "securityEnabled": not unified,
            "groupTypes": ["Unified"] if unified else [],
        }
        if value(c.attrs.get("description")) is not None:
            body["description"] = c.attrs["description"]
        if owners:
            body["owners@odata.bind"] = [self._bind(o) for o in owners[:BIND_LIMIT]]
        (r,) = yield [Req("POST", "/groups", body)]
        if not r.ok:
            raise graph_error(r, f"create group {nick}")
        gid = str(r.body["id"])
        self._anchors[("group", c.key)] = gid
        if self._groups is not None:
            self._groups.setdefault(nick.lower(), []).append({**body, "id": gid})
        rest = owners[BIND_LIMIT:]
        if rest:
            answers = yield [
                Req("POST", f"/groups/{gid}/owners/$ref", {"@odata.id": self._bind(o)}) for o in rest
            ]
            bad = [a for a in answers if not a.ok and not already(a)]
            if bad:
                raise graph_error(bad[0], f"group {nick} created ({gid}), but adding owners")
        return Applied(anchor=gid, note=note)

    def _adopt_group(self, c: Change, found: list[dict[str, Any]], owners: list[str]) -> Steps:
        nick = c.attrs["mailNickname"]
        matching = [g for g in found if g.get("displayName") == c.attrs.get("displayName")]
        if len(matching) != 1:
            raise RejectedError(
                f"M365: group {c.key}: mailNickname {nick!r} is used by {len(found)} group(s) with another"
                f" displayName ({', '.join(str(g.get('displayName')) for g in found)}); not taking it over"
            )
        g = matching[0]
        gid = str(g["id"])
        if not same(g.get("description"), c.attrs.get("description")):
            (r,) = yield [Req("PATCH", f"/groups/{gid}", {"description": value(c.attrs.get("description"))})]
            if not r.ok:
                raise graph_error(r, f"update adopted group {nick}")
        if owners:  # add only the owners it lacks: no write that changes nothing
            (r,) = yield [Req("GET", f"/groups/{gid}/owners?$select=id&$top=999")]
            have = {str(o.get("id")) for o in r.body.get("value", ())} if r.ok else set()
            owners = [o for o in owners if o not in have]
        if owners:
            answers = yield [
                Req("POST", f"/groups/{gid}/owners/$ref", {"@odata.id": self._bind(o)}) for o in owners
            ]
            bad = [a for a in answers if not a.ok and not already(a)]
            if bad:
                raise graph_error(bad[0], f"owners of adopted group {nick}")
        self._anchors[("group", c.key)] = gid
        return Applied(anchor=gid, note="already existed")

    def _update_group(self, c: Change) -> Steps:
        gid = self._need_anchor(c)
        patch = {k: value(c.attrs[k]) for k in GROUP_WRITABLE if k in c.attrs}
        if patch:
            (r,) = yield [Req("PATCH", f"/groups/{gid}", patch)]
            if r.status == 404:
                raise RejectedError(f"M365: group {c.key} ({gid}) is not in the tenant (deleted by hand?)")
            if not r.ok:
                raise graph_error(r, f"update group {c.key}")
        notes = []
        if "owners" in c.links:
            new = self._owner_ids(c.links.get("owners") or ())
            old = self._owner_ids(c.before.get("owners") or ())
            if not new:
                fallback = yield from self._fallback_owner()
                new = [fallback] if fallback else []
            adds = [o for o in new if o not in old]
            if adds:  # first the new owners, so the group is never without one
                answers = yield [
                    Req("POST", f"/groups/{gid}/owners/$ref", {"@odata.id": self._bind(o)}) for o in adds
                ]
                bad = [a for a in answers if not a.ok and not already(a)]
                if bad:
                    raise graph_error(bad[0], f"add owners of group {c.key}")
            drops = [o for o in old if o not in new]
            if drops:
                answers = yield [Req("DELETE", f"/groups/{gid}/owners/{o}/$ref") for o in drops]
                bad = [a for a in answers if not a.ok and a.status != 404]
                if bad:
                    raise graph_error(bad[0], f"remove owners of group {c.key}")
        fixed = sorted(k for k in c.attrs if k in ("groupType", "securityEnabled", "mailEnabled"))
        if fixed:
            notes.append(f"{', '.join(fixed)} cannot change in place (kept as created)")
        return Applied(anchor=gid, note="; ".join(notes) or None)

    def _members(self, c: Change, *, add: bool) -> Steps:
        gid = self._need_anchor(c)
        pid_of: dict[str, str] = {}
        unknown: list[str] = []
        for pid, _role in c.members:
            a = self._anchor("person", pid)
            if a:
                pid_of[a] = pid
            else:
                unknown.append(pid)
        ids = list(pid_of)
        what = f"{'add' if add else 'remove'} members of group {c.key}"
        if not add:
            answers = yield [Req("DELETE", f"/groups/{gid}/members/{i}/$ref") for i in ids]
            bad = [a for a in answers if not a.ok and a.status != 404]  # 404: not a member (any more)
            if bad:
                raise graph_error(bad[0], what)
            return Applied(anchor=gid)
        chunks = [ids[i : i + BIND_LIMIT] for i in range(0, len(ids), BIND_LIMIT)]
        answers = yield [
            Req("PATCH", f"/groups/{gid}", {"members@odata.bind": [self._bind(i) for i in ch]})
            for ch in chunks
        ]
        retry = []
        for ch, ans in zip(chunks, answers):
            if ans.ok:
                continue
            if ans.status == 404 and gid in ans.message:
                raise RejectedError(f"M365: group {c.key} ({gid}) is not in the tenant (deleted by hand?)")
            if ans.status in RETRY_STATUS:
                raise graph_error(ans, what)
            retry.extend(ch)  # one value stopped the batch (already a member, or gone): one by one
        missing: list[str] = []
        if retry:
            answers = yield [
                Req("POST", f"/groups/{gid}/members/$ref", {"@odata.id": self._bind(i)}) for i in retry
            ]
            for i, ans in zip(retry, answers):
                if ans.ok or already(ans):
                    continue
                if ans.status == 404 and gid not in ans.message:
                    missing.append(pid_of[i])
                else:
                    raise graph_error(ans, what)
        if unknown or missing:
            # Not recorded as done, so the next run plans these members again (adds are idempotent).
            raise RejectedError(
                f"M365: {what}: {len(ids) - len(missing)} added; not in the tenant yet: "
                + ", ".join(unknown + missing)
            )
        return Applied(anchor=gid)
