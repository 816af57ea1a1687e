"""Shared pieces of the Microsoft 365 connector's steps (``connectors.m365.connector``, ``.groups``).

A step function is a generator: it yields the requests of its next step (a list, sent
together with other changes' requests in $batch requests) and receives their answers;
it returns ``Applied`` or raises a typed connector error. ``StepsBase`` holds what the
user, synced-user and group steps share: anchors made this run, the fallback owner,
binds, and licences per role (one assignLicense request gives the role's SKUs and
removes the managed ones it no longer has:
https://learn.microsoft.com/graph/api/user-assignlicense).
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any
from urllib.parse import quote

from connectors.base import AnchorResolver, Applied
from connectors.errors import ConnectorError, FatalError, RejectedError, TransientError
from connectors.m365.graph import RETRY_STATUS, Req, Resp
from provisioner.config import M365Config
from provisioner.core.plan import Change

USER_ATTRS = (
    "userPrincipalName",
    "mailNickname",
    "displayName",
    "givenName",
    "surname",
    "employeeId",
    "usageLocation",
    "department",
    "jobTitle",
)
GROUP_WRITABLE = ("displayName", "mailNickname", "description")
GROUP_SELECT = "id,displayName,mailNickname,description,groupTypes,securityEnabled,mailEnabled"
BIND_LIMIT = 20  # members@odata.bind / owners@odata.bind values per request

Steps = Generator[list[Req], list[Resp], Applied]


def value(v: Any) -> Any:
    """A mapped value as Graph takes it: empty strings clear the property (null)."""
    return None if v == "" else v


def same(a: Any, b: Any) -> bool:
    return (value(a) or None) == (value(b) or None)


def already(r: Resp) -> bool:
    """Adding a member or owner that is there already: the end state is what we want."""
    return r.status == 400 and "already exist" in r.message


def graph_error(r: Resp, what: str) -> ConnectorError:
    """A Graph answer as a typed connector error: retryable statuses are transient."""
    if r.status in RETRY_STATUS:
        return TransientError(f"M365: {what}: {r.describe()}", r.retry_after())
    if r.status == 401:
        return FatalError(f"M365: {what}: {r.describe()} (app credentials?)")
    return RejectedError(f"M365: {what}: {r.describe()}")


class StepsBase:
    """State and lookups the user and group steps share."""

    config: M365Config
    graph_root: str
    managed_skus: set[str]
    _resolve: AnchorResolver | None
    _anchors: dict[tuple[str, str], str]
    _recreated: dict[tuple[str, str], str]  # (kind, key) -> new id, purged objects created again
    _groups: dict[str, list[dict[str, Any]]] | None
    _fallback: str | None

    def _anchor(self, kind: str, key: str, given: str | None = None) -> str | None:
        # A restore that created a purged user again gave it a new id, and the enable and
        # update planned after it still carry the old one: the new one wins. Only a re-create
        # that succeeded counts, so changes after a failed one still fail on the old id.
        return (
            self._recreated.get((kind, key))
            or given
            or self._anchors.get((kind, key))
            or (self._resolve(kind, key) if self._resolve is not None else None)
        )

    def _remade(self, c: Change) -> bool:
        """True when a restore of this object created it again earlier in this run."""
        return (c.kind, c.key) in self._recreated

    def _need_anchor(self, c: Change) -> str:
        anchor = self._anchor(c.kind, c.key, c.anchor)
        if not anchor:
            raise RejectedError(f"M365: {c.kind} {c.key} has no id recorded (never created?)")
        return anchor

    def _bind(self, ident: str) -> str:
        return f"{self.graph_root}/directoryObjects/{ident}"

    def _fallback_owner(self) -> Generator[list[Req], list[Resp], str | None]:
        upn = self.config.fallback_owner
        if not upn:
            return None
        if self._fallback is None:
            (r,) = yield [Req("GET", f"/users/{quote(upn, safe='@')}?$select=id")]
            if not r.ok:
                raise graph_error(r, f"fallback_owner {upn}")
            self._fallback = str(r.body["id"])
        return self._fallback

    # -- licences per role --------------------------------------------------------------

    @staticmethod
    def _role(c: Change) -> str:
        """The role whose ``licenses`` a user gets: its jobTitle (cloud), or ``role`` (synced)."""
        return str(c.attrs.get("role") or c.attrs.get("jobTitle") or "")

    def _license_req(self, c: Change, uid: str, assigned: list[Mapping[str, Any]]) -> Req | None:
        """The one assignLicense request that gives the role's SKUs and removes stale managed ones."""
        lics = self.config.licenses.get(self._role(c), ())  # type: ignore[call-overload]
        want = {lic.sku_id.lower(): sorted(lic.disabled_plans) for lic in lics}
        have = {str(a.get("skuId", "")).lower(): sorted(a.get("disabledPlans") or []) for a in assigned}
        add = [{"skuId": s, "disabledPlans": plans} for s, plans in want.items() if have.get(s) != plans]
        remove = [s for s in have if s in self.managed_skus and s not in want]
        if not add and not remove:
            return None
        return Req("POST", f"/users/{uid}/assignLicense", {"addLicenses": add, "removeLicenses": remove})

    def _check_licenses(self, c: Change, uid: str, r: Resp, state: str) -> None:
        if not r.ok:
            upn = c.attrs.get("userPrincipalName") or c.username or c.key
            raise graph_error(r, f"user {upn} {state} ({uid}), but licences for {self._role(c)!r}")

    def _licenses(self, c: Change, uid: str, assigned: list[Mapping[str, Any]]) -> Steps:
        """Assign the role's SKUs and remove managed SKUs the role no longer has (one write, or none)."""
        req = self._license_req(c, uid, assigned)
        if req is not None:
            (r,) = yield [req]
            self._check_licenses(c, uid, r, "updated")
        return Applied(anchor=uid)


def refuse(message: str) -> Steps:
    """A step that refuses its change at once."""
    raise RejectedError(message)
    yield []  # a generator, like every other step function
