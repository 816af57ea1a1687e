"""The directory behind the local Graph (tests/fake_graph.py): users, groups, deleted items, delta.

``Directory.handle(method, path, query, body)`` answers one Graph v1.0 request as the
documented contract says (status, JSON body, Graph's error shape) without any HTTP:
the server calls it for plain requests and for each request inside a ``$batch``.
Thread-safe (one lock). See tests/fake_graph.py for what the fake simplifies.
"""

from __future__ import annotations

import re
import threading
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote

GRAPH_ROOT = "https://graph.microsoft.com/v1.0"
USER_PROPS = (
    "id",
    "accountEnabled",
    "displayName",
    "givenName",
    "surname",
    "mailNickname",
    "userPrincipalName",
    "employeeId",
    "usageLocation",
    "department",
    "jobTitle",
    "assignedLicenses",
    "onPremisesImmutableId",
    "onPremisesSyncEnabled",
)
USER_WRITABLE = frozenset(USER_PROPS) - {"id", "assignedLicenses", "onPremisesSyncEnabled"} | {
    "passwordProfile"
}
# What Entra Connect masters on a synced user (AD's attributes): Graph refuses to write them
# (tests/fake_graph.py says where this list simplifies). usageLocation and licences stay writable.
ON_PREMISES_MASTERED = (
    frozenset(USER_PROPS) - {"id", "usageLocation", "assignedLicenses", "onPremisesSyncEnabled"}
) | {"passwordProfile"}
GROUP_PROPS = (
    "id",
    "displayName",
    "mailNickname",
    "description",
    "securityEnabled",
    "mailEnabled",
    "groupTypes",
)
GROUP_WRITABLE = frozenset({"displayName", "mailNickname", "description"})
REQUIRED_USER = ("accountEnabled", "displayName", "mailNickname", "userPrincipalName", "passwordProfile")
BIND_LIMIT = 20  # members@odata.bind / owners@odata.bind values per request

Answer = tuple[int, Any, dict[str, str]]


def error(status: int, code: str, message: str, details: list[dict[str, str]] | None = None) -> Answer:
    """Graph's error body."""
    body: dict[str, Any] = {"error": {"code": code, "message": message, "innerError": {"date": "now"}}}
    if details:
        body["error"]["details"] = details
    return status, body, {}


def not_found(ident: str) -> Answer:
    """Request_ResourceNotFound as Graph words it."""
    return error(
        404,
        "Request_ResourceNotFound",
        f"Resource '{ident}' does not exist or one of its queried reference-property objects"
        " are not present.",
    )


def conflict(prop: str) -> Answer:
    """The duplicate-value error (Request_BadRequest with an ObjectConflict detail)."""
    return error(
        400,
        "Request_BadRequest",
        f"Another object with the same value for property {prop} already exists.",
        [{"code": "ObjectConflict", "target": prop}],
    )


def on_premises_mastered() -> Answer:
    """Graph's answer to a write of an AD-mastered property of a synced user (or its delete)."""
    return bad(
        "Unable to update the specified properties for on-premises mastered Directory Sync objects or"
        " objects currently undergoing migration."
    )


def bad(message: str) -> Answer:
    """Request_BadRequest."""
    return error(400, "Request_BadRequest", message)


def already(rel: str) -> Answer:
    """Adding a member or owner that is there already."""
    return bad(
        f"One or more added object references already exist for the following modified properties: '{rel}'."
    )


# -- $filter: eq / startswith joined by 'and' / 'or', string, bool and null literals --------

_TOKEN = re.compile(r"\s*(?:(\()|(\))|('(?:[^']|'')*')|(\w+(?:/\w+)?)|(,))")


def parse_filter(text: str) -> Any:
    """A tiny OData $filter parser -> nested tuples; ValueError on what it does not know."""
    toks: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise ValueError(f"bad $filter near {text[pos:]!r}")
        pos = m.end()
        lp, rp, s, w, comma = m.groups()
        if lp:
            toks.append(("(", lp))
        elif rp:
            toks.append((")", rp))
        elif s:
            toks.append(("str", s[1:-1].replace("''", "'")))
        elif w:
            toks.append(("word", w))
        elif comma:
            toks.append((",", comma))
    i = 0

    def peek() -> tuple[str, str] | None:
        return toks[i] if i < len(toks) else None

    def take() -> tuple[str, str]:
        nonlocal i
        if i >= len(toks):
            raise ValueError("unexpected end of $filter")
        i += 1
        return toks[i - 1]

    def value() -> Any:
        kind, v = take()
        if kind == "str":
            return v
        if kind == "word" and v in ("true", "false"):
            return v == "true"
        if kind == "word" and v == "null":
            return None
        raise ValueError(f"bad literal {v!r}")

    def term() -> Any:
        kind, v = take()
        if kind == "(":
            e = expr()
            if take()[0] != ")":
                raise ValueError("missing )")
            return e
        if kind == "word" and v.lower() == "startswith":
            if take()[0] != "(":
                raise ValueError("startswith needs (")
            prop = take()[1]
            if take()[0] != ",":
                raise ValueError("startswith needs ,")
            val = value()
            if take()[0] != ")":
                raise ValueError("missing )")
            return ("startswith", prop, val)
        if kind != "word":
            raise ValueError(f"unexpected {v!r}")
        op = take()[1].lower()
        if op not in ("eq", "ne"):
            raise ValueError(f"operator {op!r} not supported")
        return (op, v, value())

    def expr() -> Any:
        left = term()
        while (p := peek()) is not None and p[0] == "word" and p[1].lower() in ("and", "or"):
            take()
            left = (p[1].lower(), left, term())
        return left

    tree = expr()
    if i != len(toks):
        raise ValueError("trailing text in $filter")
    return tree


def matches(tree: Any, obj: Mapping[str, Any]) -> bool:
    """Whether an object satisfies a parsed filter (string comparison ignores case, as Graph's)."""
    op = tree[0]
    if op in ("and", "or"):
        a, b = matches(tree[1], obj), matches(tree[2], obj)
        return (a and b) if op == "and" else (a or b)
    have, want = obj.get(tree[1]), tree[2]
    if isinstance(have, str) and isinstance(want, str):
        have, want = have.lower(), want.lower()
    if op == "eq":
        return have == want
    if op == "ne":
        return have != want
    return isinstance(have, str) and have.startswith(want)


class Directory:
    """A tenant: users (active and soft-deleted), groups, SKUs, and a change feed for delta."""

    def __init__(
        self, skus: tuple[str, ...] = (), domain: str = "skole.eksempel.no", page_size: int = 100
    ) -> None:
        self.lock = threading.RLock()
        self.users: dict[str, dict[str, Any]] = {}
        self.deleted: dict[str, dict[str, Any]] = {}  # soft-deleted users by id
        # Active users' lower-cased UPN -> id: a scan per create made onboarding quadratic.
        # A test that removes a user by hand leaves a stale entry; lookups check each hit.
        self._by_upn: dict[str, str] = {}
        self.groups: dict[str, dict[str, Any]] = {}
        self.members: dict[str, set[str]] = {}
        self.owners: dict[str, set[str]] = {}
        self.skus = set(skus)
        self.domain = domain
        self.page_size = page_size
        self.passwords: dict[str, str] = {}  # user id -> password (for tests that check them)
        self.revoked: dict[str, int] = {}  # user id -> revokeSignInSessions calls
        self.seq = 0
        self.feed: list[tuple[int, str]] = []  # (sequence, user id) of every user change
        self.delta_floor = 0  # tokens older than this are expired (syncStateNotFound)

    # -- helpers for tests ---------------------------------------------------------------

    def add_user(self, **props: Any) -> str:
        """Put a user into the tenant directly (an account made by hand)."""
        with self.lock:
            uid = str(uuid.uuid4())
            self.users[uid] = {"id": uid, "accountEnabled": True, "assignedLicenses": [], **props}
            self._index(uid)
            self._touch(uid)
            return uid

    def add_synced_user(
        self, immutable_id: str | None, employee_id: str | None, upn: str, **props: Any
    ) -> str:
        """A user as Entra Connect syncs it from AD (onPremisesSyncEnabled, its immutable id)."""
        return self.add_user(
            userPrincipalName=upn,
            mailNickname=upn.split("@", 1)[0],
            displayName=props.pop("displayName", upn.split("@", 1)[0]),
            employeeId=employee_id,
            onPremisesImmutableId=immutable_id,
            onPremisesSyncEnabled=True,
            usageLocation=None,
            **props,
        )

    def user_by_upn(self, upn: str) -> dict[str, Any] | None:
        """An active user by UPN (case-insensitive)."""
        with self.lock:
            uid = self._by_upn.get(upn.lower())
            u = self.users.get(uid) if uid is not None else None
            if u is not None and str(u.get("userPrincipalName") or "").lower() == upn.lower():
                return u
            return None

    def _index(self, uid: str) -> None:
        upn = str(self.users[uid].get("userPrincipalName") or "").lower()
        if upn:
            self._by_upn[upn] = uid

    def _unindex(self, uid: str) -> None:
        upn = str(self.users[uid].get("userPrincipalName") or "").lower()
        if self._by_upn.get(upn) == uid:
            del self._by_upn[upn]

    def expire_delta_tokens(self) -> None:
        """Make every delta token issued so far expired."""
        with self.lock:
            self.delta_floor = self.seq + 1

    def _touch(self, uid: str) -> None:
        self.seq += 1
        self.feed.append((self.seq, uid))

    # -- dispatch ------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: Mapping[str, str], body: Any) -> Answer:
        """Answer one Graph request (path below /v1.0, no query string)."""
        parts = [unquote(p) for p in path.strip("/").split("/")]
        with self.lock:
            try:
                return self._route(method, parts, query, body if isinstance(body, dict) else {})
            except ValueError as exc:
                return bad(str(exc))

    def _route(self, m: str, p: list[str], q: Mapping[str, str], body: dict[str, Any]) -> Answer:
        n = len(p)
        if p[0] == "users":
            if n == 1:
                return (
                    self._list(self.users, USER_PROPS, q)
                    if m == "GET"
                    else self._create_user(body)
                    if m == "POST"
                    else self._no(m)
                )
            if n == 2 and p[1] in ("delta", "microsoft.graph.delta") and m == "GET":
                return self._delta(q)
            uid = self._user_id(p[1])
            if uid is None:
                return not_found(p[1])
            if n == 2:
                if m == "GET":
                    return 200, self._select(self.users[uid], USER_PROPS, q), {}
                if m == "PATCH":
                    return self._patch_user(uid, body)
                if m == "DELETE":
                    if self.users[uid].get("onPremisesSyncEnabled"):
                        return on_premises_mastered()
                    self._unindex(uid)
                    self.deleted[uid] = self.users.pop(uid)
                    self._touch(uid)
                    return 204, None, {}
            if n == 3 and m == "POST" and p[2] == "assignLicense":
                return self._assign(uid, body)
            if n == 3 and m == "POST" and p[2] == "revokeSignInSessions":
                self.revoked[uid] = self.revoked.get(uid, 0) + 1
                return 200, {"@odata.context": f"{GRAPH_ROOT}/$metadata#Edm.Boolean", "value": True}, {}
            return self._no(m)
        if p[0] == "groups":
            return self._groups(m, p, q, body)
        if p[:2] == ["directory", "deletedItems"] and n >= 3:
            if n == 3 and m == "GET" and p[2] == "microsoft.graph.user":
                return self._list(self.deleted, USER_PROPS, q)
            uid = p[2]
            if uid not in self.deleted:
                return not_found(uid)
            if n == 3 and m == "DELETE":  # purge
                del self.deleted[uid]
                self._touch(uid)
                return 204, None, {}
            if n == 3 and m == "GET":
                return 200, self._select(self.deleted[uid], USER_PROPS, q), {}
            if n == 4 and m == "POST" and p[3] == "restore":
                upn = self.deleted[uid].get("userPrincipalName", "")
                if self.user_by_upn(upn) is not None:
                    return conflict("userPrincipalName")
                self.users[uid] = self.deleted.pop(uid)
                self._index(uid)
                self._touch(uid)
                return 200, self._select(self.users[uid], USER_PROPS, {}), {}
            return self._no(m)
        return error(400, "BadRequest", f"Resource not found for the segment '{p[0]}'.")

    @staticmethod
    def _no(m: str) -> Answer:
        return error(
            405, "Request_BadRequest", f"Specified HTTP method {m} is not supported for the resource."
        )

    def _user_id(self, ident: str) -> str | None:
        if ident in self.users:
            return ident
        u = self.user_by_upn(ident) if "@" in ident else None
        return u["id"] if u else None

    # -- reads ---------------------------------------------------------------------------

    @staticmethod
    def _select(obj: Mapping[str, Any], default: tuple[str, ...], q: Mapping[str, str]) -> dict[str, Any]:
        fields = q["$select"].split(",") if q.get("$select") else default
        out = {k: obj.get(k) for k in fields if k in default}
        out["id"] = obj["id"]
        return out

    def _list(
        self, pool: Mapping[str, dict[str, Any]], props: tuple[str, ...], q: Mapping[str, str]
    ) -> Answer:
        items = list(pool.values())
        if q.get("$filter"):
            tree = parse_filter(q["$filter"])
            items = [o for o in items if matches(tree, o)]
        top = min(int(q.get("$top", self.page_size)), 999)
        skip = int(q.get("$skiptoken", 0))
        page = items[skip : skip + top]
        body: dict[str, Any] = {"value": [self._select(o, props, q) for o in page]}
        if skip + top < len(items):
            keep = "".join(f"{k}={quote(v, safe='$,')}&" for k, v in q.items() if k != "$skiptoken")
            body["@odata.nextLink"] = f"{{self}}?{keep}$skiptoken={skip + top}"
        return 200, body, {}

    def _delta(self, q: Mapping[str, str]) -> Answer:
        token = q.get("$deltatoken")
        if token is not None and int(token) < self.delta_floor:
            return error(
                400,
                "syncStateNotFound",
                "The sync state generation is not found. The delta token is expired and data must be"
                " synchronized again.",
            )
        select = q.get("$select", ",".join(USER_PROPS))
        if token is None:  # a full round: everything there now, deleted ones left out
            ids = list(self.users)
        else:
            seen: dict[str, None] = {}
            for seq, uid in self.feed:
                if seq > int(token):
                    seen[uid] = None
            ids = list(seen)
        skip = int(q.get("$skiptoken", 0))
        page = ids[skip : skip + self.page_size]
        value = []
        for uid in page:
            if uid in self.users:
                value.append(self._select(self.users[uid], USER_PROPS, {"$select": select}))
            else:
                value.append(
                    {"id": uid, "@removed": {"reason": "changed" if uid in self.deleted else "deleted"}}
                )
        body: dict[str, Any] = {"value": value}
        base = "{self}?"
        if skip + self.page_size < len(ids):
            anchor = token if token is not None else ""
            body["@odata.nextLink"] = f"{base}$select={select}&$skiptoken={skip + self.page_size}" + (
                f"&$deltatoken={anchor}" if anchor else ""
            )
        else:
            body["@odata.deltaLink"] = f"{base}$select={select}&$deltatoken={self.seq}"
        return 200, body, {}

    # -- users ---------------------------------------------------------------------------

    def _check_user_props(self, body: Mapping[str, Any]) -> None:
        unknown = [k for k in body if k not in USER_WRITABLE]
        if unknown:
            raise ValueError(f"Invalid property '{unknown[0]}'.")
        if "employeeId" in body and body["employeeId"] is not None and len(str(body["employeeId"])) > 16:
            raise ValueError("Invalid value specified for property 'employeeId' of resource 'User'.")
        upn = body.get("userPrincipalName")
        if upn is not None and ("@" not in upn or upn.split("@", 1)[1].lower() != self.domain):
            raise ValueError(f"The domain portion of the userPrincipalName property is invalid: {upn}")
        for k in ("displayName", "mailNickname"):
            if k in body and not body[k]:
                raise ValueError(f"Invalid value specified for property '{k}' of resource 'User'.")
        if "mailNickname" in body and re.search(r"[\s@()\\\[\]\";:<>,]", str(body["mailNickname"])):
            raise ValueError("Invalid value specified for property 'mailNickname' of resource 'User'.")

    def _create_user(self, body: dict[str, Any]) -> Answer:
        missing = [k for k in REQUIRED_USER if k not in body]
        if missing:
            return bad(f"Property '{missing[0]}' is required when creating the resource.")
        self._check_user_props(body)
        pw = (body.get("passwordProfile") or {}).get("password")
        if not pw or len(pw) < 8:
            return bad("The specified password does not comply with password complexity requirements.")
        if self.user_by_upn(body["userPrincipalName"]) is not None:
            return conflict("userPrincipalName")
        uid = str(uuid.uuid4())
        user = {k: v for k, v in body.items() if k != "passwordProfile"}
        user.update(id=uid, assignedLicenses=[])
        self.users[uid] = user
        self._index(uid)
        self.passwords[uid] = pw
        self._touch(uid)
        return (
            201,
            {"@odata.context": f"{GRAPH_ROOT}/$metadata#users/$entity", **self._select(user, USER_PROPS, {})},
            {},
        )

    def _patch_user(self, uid: str, body: dict[str, Any]) -> Answer:
        if self.users[uid].get("onPremisesSyncEnabled") and ON_PREMISES_MASTERED & set(body):
            return on_premises_mastered()
        self._check_user_props(body)
        upn = body.get("userPrincipalName")
        if upn:
            other = self.user_by_upn(upn)
            if other is not None and other["id"] != uid:
                return conflict("userPrincipalName")
        user = self.users[uid]
        if "passwordProfile" in body:
            self.passwords[uid] = body["passwordProfile"].get("password", "")
        self._unindex(uid)
        for k, v in body.items():
            if k != "passwordProfile":
                user[k] = v
        self._index(uid)
        self._touch(uid)
        return 204, None, {}

    def _assign(self, uid: str, body: dict[str, Any]) -> Answer:
        user = self.users[uid]
        adds = body.get("addLicenses")
        removes = body.get("removeLicenses")
        if adds is None or removes is None:
            return bad("Invalid value specified for property 'addLicenses' or 'removeLicenses'.")
        for lic in adds:
            if lic.get("skuId") not in self.skus:
                return bad(f"License {lic.get('skuId')} does not correspond to a valid company License.")
        if adds and not user.get("usageLocation"):
            return bad("License assignment cannot be done for user with invalid usage location.")
        have = {a["skuId"]: a for a in user["assignedLicenses"]}
        for sku in removes:
            if sku not in have:
                return bad(f"User does not have a corresponding license {sku}.")
            del have[sku]
        for lic in adds:
            have[lic["skuId"]] = {
                "skuId": lic["skuId"],
                "disabledPlans": list(lic.get("disabledPlans") or []),
            }
        user["assignedLicenses"] = list(have.values())
        self._touch(uid)
        return 200, self._select(user, USER_PROPS, {}), {}

    # -- groups --------------------------------------------------------------------------

    def _groups(self, m: str, p: list[str], q: Mapping[str, str], body: dict[str, Any]) -> Answer:
        n = len(p)
        if n == 1:
            if m == "GET":
                return self._list(self.groups, GROUP_PROPS, q)
            return self._create_group(body) if m == "POST" else self._no(m)
        gid = p[1]
        if gid not in self.groups:
            return not_found(gid)
        if n == 2:
            if m == "GET":
                return 200, self._select(self.groups[gid], GROUP_PROPS, q), {}
            if m == "DELETE":
                for d in (self.groups, self.members, self.owners):
                    del d[gid]
                return 204, None, {}
            if m == "PATCH":
                return self._patch_group(gid, body)
            return self._no(m)
        rel = {"members": self.members, "owners": self.owners}.get(p[2])
        if rel is None:
            return self._no(m)
        if n == 3 and m == "GET":
            ids = sorted(rel[gid])
            return self._list({i: {"id": i} for i in ids}, ("id",), q)
        if n == 4 and p[3] == "$ref" and m == "POST":
            ref = self._ref_id(str(body.get("@odata.id", "")))
            if ref is None:
                return not_found(str(body.get("@odata.id", "")))
            if ref in rel[gid]:
                return already(p[2])
            rel[gid].add(ref)
            return 204, None, {}
        if n == 5 and p[4] == "$ref" and m == "DELETE":
            if p[3] not in rel[gid]:
                return not_found(p[3])
            if p[2] == "owners" and len(rel[gid]) == 1 and "Unified" in self.groups[gid]["groupTypes"]:
                return bad("The group must have at least one owner, hence this owner cannot be removed.")
            rel[gid].discard(p[3])
            return 204, None, {}
        return self._no(m)

    def _ref_id(self, url: str) -> str | None:
        ident = url.rstrip("/").rsplit("/", 1)[-1]
        return ident if ident in self.users else None

    def _binds(self, body: dict[str, Any]) -> tuple[dict[str, list[str]], Answer | None]:
        out: dict[str, list[str]] = {}
        for rel in ("members", "owners"):
            urls = body.pop(f"{rel}@odata.bind", None)
            if urls is None:
                continue
            ids = []
            for u in urls:
                ident = self._ref_id(u)
                if ident is None:
                    return out, not_found(u.rsplit("/", 1)[-1])
                ids.append(ident)
            out[rel] = ids
        if sum(len(v) for v in out.values()) > BIND_LIMIT:
            return out, bad("The request exceeds the limit of 20 references in a single request.")
        return out, None

    def _create_group(self, body: dict[str, Any]) -> Answer:
        binds, err = self._binds(body)
        if err:
            return err
        for k in ("displayName", "mailNickname", "mailEnabled", "securityEnabled"):
            if k not in body:
                return bad(f"Property '{k}' is required when creating the resource.")
        unified = "Unified" in (body.get("groupTypes") or [])
        if body["mailEnabled"] and not unified:
            return bad("Creation of mail-enabled security groups is not supported through Graph.")
        if unified:
            for g in self.groups.values():
                if g["mailNickname"].lower() == str(body["mailNickname"]).lower():
                    return conflict("mailNickname")
        gid = str(uuid.uuid4())
        known = set(GROUP_PROPS)
        unknown = [k for k in body if k not in known]
        if unknown:
            return bad(f"Invalid property '{unknown[0]}'.")
        self.groups[gid] = {"groupTypes": [], "description": None, **body, "id": gid}
        self.members[gid] = set(binds.get("members", ()))
        self.owners[gid] = set(binds.get("owners", ()))
        return 201, self._select(self.groups[gid], GROUP_PROPS, {}), {}

    def _patch_group(self, gid: str, body: dict[str, Any]) -> Answer:
        binds, err = self._binds(body)
        if err:
            return err
        unknown = [k for k in body if k not in GROUP_WRITABLE]
        if unknown:
            return bad(f"Invalid property '{unknown[0]}'.")
        for rel, ids in binds.items():
            target = self.members[gid] if rel == "members" else self.owners[gid]
            if any(i in target for i in ids):
                return already(rel)
        for rel, ids in binds.items():
            (self.members[gid] if rel == "members" else self.owners[gid]).update(ids)
        self.groups[gid].update(body)
        return 204, None, {}
