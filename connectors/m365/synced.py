"""Users Entra Connect syncs from AD (hybrid, ``users = "synced"``): the steps BAS may take on them.

Owns what the Microsoft 365 connector does to a synced user; it never creates, renames
or deletes one, and never sends a write Graph refuses on an on-premises-mastered
property (names, userPrincipalName, mailNickname, employeeId, department, jobTitle,
accountEnabled, passwordProfile, ...: Graph answers 400 ``Request_BadRequest`` "Unable
to update the specified properties for on-premises mastered Directory Sync objects",
https://github.com/microsoftgraph/microsoft-graph-docs/issues/7301 and /issues/18038).
What it writes is cloud-only: usageLocation and licences.

- Create = claim the synced user: the user whose ``onPremisesImmutableId`` is the base64
  of the person's AD objectGUID (the AD target's anchor in the state store; Entra
  Connect's source anchor, objectGUID or ms-DS-ConsistencyGuid, which it fills from the
  objectGUID), else the one whose ``employeeId`` is the person_id. Both
  are read with ``$filter`` eq on the user resource's filterable properties
  (https://learn.microsoft.com/graph/api/resources/user: onPremisesImmutableId,
  onPremisesSyncEnabled, employeeId). Found: usageLocation set and licences assigned,
  the user's id is the anchor. Not there yet (the sync runs every 30 minutes), or only a
  cloud-only user with that employeeId that Entra Connect has still to match: a
  ``PendingError``, planned again next run. A synced user with another AD account's
  immutable id, or several users with the employeeId: a ``RejectedError`` naming them.
- Update: usageLocation, and licences when the role changed.
- Disable (a stop): ``POST /users/{id}/revokeSignInSessions`` the same day
  (https://learn.microsoft.com/graph/api/user-revokesigninsessions); the sign-in block
  comes from the AD disable through the sync. Enable: nothing to send (AD's).
- Delete (``remove_after_days`` after the stop): the licences BAS manages are removed and
  BAS forgets the user; the user itself is left to AD (the AD delete removes it).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Generator, Mapping, Sequence
from typing import Any

from connectors.base import AnchorResolver, Applied
from connectors.errors import PendingError, RejectedError
from connectors.m365.graph import Req, Resp, odata_filter, odata_quote
from connectors.m365.steps import Steps, StepsBase, graph_error, refuse
from provisioner.core.plan import Change, Op

SYNC_PROPS = "onPremisesImmutableId,onPremisesSyncEnabled"
SYNCED_SELECT = f"id,userPrincipalName,employeeId,usageLocation,assignedLicenses,{SYNC_PROPS}"


def immutable_id(object_guid: str) -> str:
    """Entra Connect's default onPremisesImmutableId: the objectGUID's bytes (as AD stores them) in base64."""
    return base64.b64encode(uuid.UUID(object_guid).bytes_le).decode("ascii")


class SyncedSteps(StepsBase):
    """The synced-user half of M365Connector (mixed in)."""

    _users: dict[str, dict[str, dict[str, Any]]] | None
    _ad_resolve: AnchorResolver | None

    def _synced_steps(self, c: Change) -> Steps:
        step = {
            Op.CREATE: self._claim,
            Op.UPDATE: self._update_synced,
            Op.DISABLE: self._revoke,
            Op.ENABLE: self._enabled_by_ad,
            Op.DELETE: self._release,
        }.get(c.op)
        if step is None:
            return refuse(f"M365: person {c.key}: {c.op.value} of a user synced from AD is AD's (never sent)")
        return step(c)

    def _immutable_id(self, pid: str) -> str | None:
        guid = self._ad_resolve("person", pid) if self._ad_resolve is not None else None
        return immutable_id(guid) if guid else None

    def _find_synced(
        self, pid: str, iid: str | None
    ) -> Generator[list[Req], list[Resp], list[dict[str, Any]]]:
        """Users with this immutable id or employeeId (from the bulk index, else one $filter request)."""
        if self._users is not None:
            found = [self._users["iid"].get(iid or ""), self._users["eid"].get(pid.lower())]
            return [u for i, u in enumerate(found) if u is not None and u not in found[:i]]
        expr = f"employeeId eq {odata_quote(pid)}"
        if iid:
            expr = f"onPremisesImmutableId eq {odata_quote(iid)} or {expr}"
        (r,) = yield [Req("GET", f"/users?{odata_filter(expr)}&$select={SYNCED_SELECT}")]
        if not r.ok:
            raise graph_error(r, f"look up the synced user of person {pid}")
        return list(r.body.get("value", ()))

    def _claim(self, c: Change) -> Steps:
        pid = c.key
        iid = self._immutable_id(pid)
        found = yield from self._find_synced(pid, iid)
        user, matched = _match(c, pid, iid, found)
        uid = str(user["id"])
        reqs = []
        if user.get("usageLocation") != c.attrs.get("usageLocation"):
            reqs.append(Req("PATCH", f"/users/{uid}", {"usageLocation": c.attrs.get("usageLocation")}))
        answers: list[Resp] = (yield reqs) if reqs else []
        if answers and not answers[0].ok:
            raise graph_error(answers[0], f"set usageLocation of synced user {user.get('userPrincipalName')}")
        self._anchors[("person", c.key)] = uid
        yield from self._licenses(c, uid, user.get("assignedLicenses") or [])
        note = f"synced user {user.get('userPrincipalName')} found (matched by {matched})"
        return Applied(anchor=uid, note=note, extra={"matched_by": matched})

    def _update_synced(self, c: Change) -> Steps:
        uid = self._need_anchor(c)
        if "usageLocation" in c.attrs:
            (r,) = yield [Req("PATCH", f"/users/{uid}", {"usageLocation": c.attrs["usageLocation"]})]
            if r.status == 404:
                raise RejectedError(
                    f"M365: person {c.key} ({uid}) is not in the tenant (removed by the sync?)"
                )
            if not r.ok:
                raise graph_error(r, f"update synced person {c.key}")
        if "role" in c.attrs and self.config.licenses:
            (r,) = yield [Req("GET", f"/users/{uid}?$select=id,assignedLicenses")]
            if not r.ok:
                raise graph_error(r, f"read licences of person {c.key}")
            yield from self._licenses(c, uid, r.body.get("assignedLicenses") or [])
        return Applied(anchor=uid)

    def _revoke(self, c: Change) -> Steps:
        uid = self._need_anchor(c)
        (r,) = yield [Req("POST", f"/users/{uid}/revokeSignInSessions", {})]
        if r.status == 404:
            return Applied(anchor=uid, note="not in the tenant: no sessions to revoke")
        if not r.ok:
            raise graph_error(r, f"revoke sessions of person {c.key}")
        return Applied(anchor=uid, note="sessions revoked; the sign-in block comes from AD through the sync")

    def _enabled_by_ad(self, c: Change) -> Steps:
        uid = self._need_anchor(c)
        yield from ()
        return Applied(anchor=uid, note="sign-in follows the AD account through the sync: nothing to send")

    def _release(self, c: Change) -> Steps:
        uid = self._anchor(c.kind, c.key, c.anchor)
        if not uid:
            return Applied(note="never found: nothing to release")
        (r,) = yield [Req("GET", f"/users/{uid}?$select=id,assignedLicenses")]
        if r.status == 404:
            return Applied(anchor=uid, note="gone from the tenant (deleted in AD)")
        if not r.ok:
            raise graph_error(r, f"read licences of person {c.key}")
        mine = [
            str(a.get("skuId"))
            for a in r.body.get("assignedLicenses") or []
            if str(a.get("skuId", "")).lower() in self.managed_skus
        ]
        if mine:
            (r,) = yield [
                Req("POST", f"/users/{uid}/assignLicense", {"addLicenses": [], "removeLicenses": mine})
            ]
            if not r.ok:
                raise graph_error(r, f"release the licences of person {c.key}")
        return Applied(anchor=uid, note="licences released; the user is AD's to delete (not deleted here)")


def _match(
    c: Change, pid: str, iid: str | None, found: Sequence[Mapping[str, Any]]
) -> tuple[Mapping[str, Any], str]:
    """The synced user of this person and how it was matched; PendingError or RejectedError otherwise."""
    who = f"person {pid} ({c.username})"
    by_iid = [u for u in found if iid and u.get("onPremisesImmutableId") == iid]
    if by_iid:
        return by_iid[0], "onPremisesImmutableId"
    own = [u for u in found if str(u.get("employeeId") or "").lower() == pid.lower()]
    if len(own) > 1:
        ids = ", ".join(str(u.get("userPrincipalName")) for u in own)
        raise RejectedError(f"M365: {who}: several users have employeeId {pid} ({ids})")
    if not own:
        anchor = f"onPremisesImmutableId {iid} or " if iid else ""
        raise PendingError(
            f"M365: {who}: no user with {anchor}employeeId {pid} yet (waiting for Entra Connect)"
        )
    user = own[0]
    upn = user.get("userPrincipalName")
    if not user.get("onPremisesSyncEnabled"):
        raise PendingError(
            f"M365: {who}: {upn} has employeeId {pid} but is a cloud-only user: waiting for Entra Connect to"
            " match it to the AD account (or remove it)"
        )
    other = user.get("onPremisesImmutableId")
    if iid and other and other != iid:
        raise RejectedError(
            f"M365: {who}: {upn} has employeeId {pid} but is synced from another AD account"
            f" (onPremisesImmutableId {other}, this person's is {iid}); not taking it"
        )
    return user, "employeeId"
