"""The Microsoft 365 connector: planned changes as Microsoft Graph requests, batched.

Owns what BAS does to the tenant, change by change and idempotently (HTTP, tokens,
$batch and retries are ``connectors.m365.graph``'s):

- Users (mapping ``mappings.m365``): created disabled with usageLocation and an initial
  password; the password is then written to the school office's 0600 file and fsynced
  (``connectors.passwords``, never logged); only then is the user enabled and licensed
  per role (``licenses``: the SKUs of the user's jobTitle; only SKUs BAS manages are
  ever removed). A run killed in between leaves a disabled user, never an enabled one
  whose password nobody has. Updates write only the changed attributes.
- A create first looks for the account: by employeeId (the SIS person_id), then by
  userPrincipalName. Its own account (same employeeId) is brought in line; an account
  with that UPN and no employeeId is adopted; a UPN held by someone with another
  employeeId is a conflict: RejectedError naming the UPN, never a guess; so is a user
  Entra Connect syncs from AD (Graph refuses its AD attributes: hybrid mode is for
  those). A user found disabled (left by a run killed before its password was on file,
  or blocked by hand) or made by a create whose answer was lost (a dropped connection) gets a new password,
  written to this run's file before the user is enabled, and the change's note says so.
- Lifecycle (SPEC): DISABLE blocks sign-in and revokes sessions; DELETE soft-deletes;
  RESTORE brings the user back from deleted items with its old id, licences and data
  (a UPN taken meanwhile is a RejectedError saying so). A restore that finds nothing
  (purged from deleted items by hand or by Microsoft) creates the user again from the
  change's attributes, as a create does, and returns the new id; the enable and update
  planned after it then have nothing to write. A disable or delete that finds nothing
  is success. SET_PASSWORD (a delegated reset) PATCHes the user's passwordProfile (a
  change at next sign-in per ``force_change_password``); a synced user's password comes
  from AD by password hash sync, so none is ever sent for one. (Graph lets an app set a
  password with User-PasswordProfile.ReadWrite.All or User.ReadWrite.All and a directory
  role allowed to reset that user's password, e.g. Helpdesk Administrator for pupils.)
- Groups: security or Microsoft 365 groups, created with their teachers as owners (the
  configured fallback owner when there are none, so no group is ownerless); a create
  finds an existing group with the same mailNickname and displayName and adopts it.
  Membership changes are incremental: adds as ``members@odata.bind`` (20 per PATCH,
  one by one when a batch fails on a value), removals as ``$ref`` deletes.

Hybrid (``users = "synced"``): users come from AD through Entra Connect; their steps are
``connectors.m365.synced``'s (claimed, never created; licences, usageLocation, sessions
revoked on a stop; nothing Graph refuses on a synced user is ever sent). Groups are the
same in both.

Throughput: the executor hands over windows of changes (``apply_many``). Each change is
a small generator that yields the requests of its next step and gets their answers;
the engine runs the steps of every change of a window in lockstep, so one round of all
of them goes out as full $batch requests. Changes to the same object run in order
(a lane); a group change waits until the persons created before it in the window exist.
"""

from __future__ import annotations

from collections.abc import Generator, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import structlog

from connectors import passwords as pw
from connectors.base import AnchorResolver, Applied, Connector, StoredObject, person_phases
from connectors.errors import ConnectorError, FatalError, RejectedError, TransientError
from connectors.m365.graph import (
    GraphClient,
    GraphError,
    Req,
    Resp,
    TokenSource,
    make_session,
    odata_filter,
    odata_quote,
)
from connectors.m365.groups import GroupSteps
from connectors.m365.pacing import Clock, SystemClock
from connectors.m365.steps import GROUP_SELECT, USER_ATTRS, Steps, graph_error, refuse, same, value
from connectors.m365.synced import SYNC_PROPS, SyncedSteps
from provisioner.config import Config, ConfigError, M365Config, read_secret
from provisioner.core.plan import Change, Op

log = structlog.get_logger("bas.m365")

USER_SELECT = f"id,accountEnabled,assignedLicenses,{SYNC_PROPS}," + ",".join(USER_ATTRS)
BULK_LOOKUP = 50  # creates in one window from which the whole directory is read once instead


class M365Connector(SyncedSteps, GroupSteps, Connector):
    """Applies Microsoft 365 changes through one GraphClient (see the module docstring)."""

    window = 2000  # changes per apply_many call: large enough to fill batches

    def __init__(
        self,
        config: M365Config,
        client: GraphClient,
        *,
        password_dir: Path | None,
        name: str = "m365",
        ad_target: str | None = None,
    ) -> None:
        self.target = name
        self.config = config
        self.synced = config.users == "synced"  # hybrid: users come from AD (connectors.m365.synced)
        self.ad_target = ad_target  # whose objectGUIDs are the synced users' immutable ids
        self.peers = (ad_target,) if self.synced and ad_target else ()
        self._ad_resolve: AnchorResolver | None = None
        self.client = client
        self.password_dir = password_dir
        self.graph_root = client.base_url
        self.managed_skus = {lic.sku_id.lower() for lics in config.licenses.values() for lic in lics}
        self._resolve: AnchorResolver | None = None
        self._files: pw.PasswordFiles | None = None
        self._anchors: dict[tuple[str, str], str] = {}  # (kind, key) -> id, made or found this run
        self._recreated: dict[tuple[str, str], str] = {}  # (kind, key) -> id of a purged user made again
        self._users: dict[str, dict[str, dict[str, Any]]] | None = None  # bulk lookup index
        self._groups: dict[str, list[dict[str, Any]]] | None = None
        self._fallback: str | None = None

    # -- the Connector protocol -------------------------------------------------------

    def use_peers(self, resolvers: Mapping[str, AnchorResolver]) -> None:
        """The AD target's stored anchors (objectGUIDs): synced users are found by them."""
        self._ad_resolve = resolvers.get(self.ad_target or "")

    def begin(self, run_id: str, resolve: AnchorResolver) -> None:
        """Remember the resolver and open this run's password files (no request yet)."""
        self._resolve = resolve
        self._files = pw.PasswordFiles.for_run(self.password_dir, run_id, self.config.initial_passwords)
        self._anchors, self._recreated, self._users, self._groups = {}, {}, None, None

    def apply(self, change: Change) -> Applied:
        """Apply one change; typed errors on failure."""
        result = self.apply_many([change])[0]
        if isinstance(result, ConnectorError):
            raise result
        return result

    def apply_many(self, changes: Sequence[Change]) -> list[Applied | ConnectorError]:
        """Apply a window of changes in order of dependency; one result (or error) per change."""
        if self._resolve is None:
            raise FatalError("M365: apply before begin()")
        results: list[Applied | ConnectorError | None] = [None] * len(changes)
        for segment in person_phases(changes):
            self._prepare([changes[i] for i in segment])
            lanes: dict[tuple[str, str], list[int]] = {}
            for i in segment:
                lanes.setdefault((changes[i].kind, changes[i].key), []).append(i)
            self._run(list(lanes.values()), changes, results)
        return [r if r is not None else TransientError("M365: not applied") for r in results]

    def finish(self, current: Iterable[StoredObject]) -> None:
        """Nothing is buffered between windows; report the password files."""
        if self._files is not None:
            self._files.report(self.target)

    def close(self) -> None:
        """Release the HTTP session and sender threads."""
        self.client.close()
        self._resolve = None

    # -- the engine -------------------------------------------------------------------

    def _steps(self, c: Change) -> Steps:
        kind, op = c.kind, c.op
        if kind == "person" and self.synced:
            return self._synced_steps(c)
        if kind == "person":
            if op is Op.CREATE:
                return self._create_user(c)
            if op is Op.UPDATE:
                return self._update_user(c)
            if op is Op.DISABLE:
                return self._disable(c)
            if op is Op.ENABLE:
                return self._enable(c)
            if op is Op.DELETE:
                return self._delete(c, "users")
            if op is Op.RESTORE:
                return self._restore(c)
            if op is Op.SET_PASSWORD:
                return self._set_password(c)
        if kind == "group":
            if op is Op.CREATE:
                return self._create_group(c)
            if op is Op.UPDATE:
                return self._update_group(c)
            if op is Op.DELETE:
                return self._delete(c, "groups")
            if op in (Op.ADD_MEMBERS, Op.REMOVE_MEMBERS):
                return self._members(c, add=op is Op.ADD_MEMBERS)
        return refuse(f"M365: operation {op.value!r} does not apply to {kind} {c.key}")

    def _run(self, lanes: list[list[int]], changes: Sequence[Change], results: list[Any]) -> None:
        """Run every lane's changes, one step of each lane per round of $batch requests."""

        def start(lane: list[int], pos: int) -> list[Any] | None:
            while pos < len(lane):
                gen = self._steps(changes[lane[pos]])
                state = [lane, pos, gen, []]
                if self._advance(state, None, results):
                    return state
                pos += 1
            return None

        active = [s for s in (start(lane, 0) for lane in lanes) if s is not None]
        while active:
            flat = [r for s in active for r in s[3]]
            answers = self.client.send_all(flat)
            nxt, k = [], 0
            for s in active:
                mine, k = answers[k : k + len(s[3])], k + len(s[3])
                if self._advance(s, mine, results):
                    nxt.append(s)
                else:
                    following = start(s[0], s[1] + 1)
                    if following is not None:
                        nxt.append(following)
            active = nxt

    @staticmethod
    def _advance(state: list[Any], answers: list[Resp] | None, results: list[Any]) -> bool:
        """Feed a change its answers; True while it has requests to send, else its result is stored."""
        lane, pos, gen, _ = state
        try:
            reqs = gen.send(answers)
            while not reqs:
                reqs = gen.send([])
        except StopIteration as stop:
            results[lane[pos]] = stop.value
            return False
        except ConnectorError as exc:
            results[lane[pos]] = exc
            return False
        state[3] = reqs
        return True

    # -- lookups ----------------------------------------------------------------------

    def _prepare(self, changes: list[Change]) -> None:
        """Read the whole directory once when a window creates many objects (cheaper than filters)."""
        users = sum(1 for c in changes if c.op is Op.CREATE and c.kind == "person")
        groups = sum(1 for c in changes if c.op is Op.CREATE and c.kind == "group")
        try:
            if users >= BULK_LOOKUP and self._users is None:
                self._users = {"eid": {}, "upn": {}, "iid": {}}
                for page in self.client.pages(f"/users?$select={USER_SELECT}&$top=999"):
                    for u in page.get("value", ()):
                        self._index_user(u)
            if groups >= BULK_LOOKUP and self._groups is None:
                self._groups = {}
                for page in self.client.pages(f"/groups?$select={GROUP_SELECT}&$top=999"):
                    for g in page.get("value", ()):
                        self._groups.setdefault(str(g.get("mailNickname") or "").lower(), []).append(g)
        except GraphError as exc:
            raise FatalError(f"M365: cannot read the directory: {exc}") from exc

    def _index_user(self, u: Mapping[str, Any]) -> None:
        if self._users is None:
            return
        if u.get("employeeId"):
            self._users["eid"][str(u["employeeId"]).lower()] = dict(u)
        if u.get("userPrincipalName"):
            self._users["upn"][str(u["userPrincipalName"]).lower()] = dict(u)
        if u.get("onPremisesImmutableId"):  # base64: case matters
            self._users["iid"][str(u["onPremisesImmutableId"])] = dict(u)

    def _find_users(self, pid: str, upn: str, fresh: bool = False) -> Generator[list[Req], list[Resp], list]:
        """Users with this employeeId or UPN (from the bulk index, else one $filter request)."""
        if self._users is not None and not fresh:
            found = [self._users["eid"].get(pid.lower()), self._users["upn"].get(upn.lower())]
            return [u for i, u in enumerate(found) if u is not None and u not in found[:i]]
        expr = f"employeeId eq {odata_quote(pid)} or userPrincipalName eq {odata_quote(upn)}"
        (r,) = yield [Req("GET", f"/users?{odata_filter(expr)}&$select={USER_SELECT}")]
        if not r.ok:
            raise graph_error(r, f"look up {upn}")
        return list(r.body.get("value", ()))

    # -- users ------------------------------------------------------------------------

    def _password_body(self, c: Change) -> tuple[dict[str, Any], str]:
        username = str(c.attrs.get("mailNickname") or c.username or "")
        secret = pw.generate(self.config.password_length, [username, str(c.attrs.get("displayName") or "")])
        profile = {"password": secret, "forceChangePasswordNextSignIn": self.config.force_change_password}
        return profile, secret

    def _keep_password(self, c: Change, secret: str) -> None:
        if self._files is None:
            return
        try:
            self._files.add(
                str(c.attrs.get("department") or "school"),
                str(c.attrs.get("mailNickname") or c.username or ""),
                str(c.attrs.get("displayName") or ""),
                secret,
            )
        except OSError as exc:
            raise FatalError(f"M365: cannot write the new accounts' password file: {exc}") from exc

    def _create_user(self, c: Change) -> Steps:
        pid = str(c.attrs.get("employeeId") or c.key)
        upn = str(c.attrs["userPrincipalName"])
        found = yield from self._find_users(pid, upn)
        if found:
            return (yield from self._adopt(c, pid, upn, found, lost_create=False))
        body = {k: v for k, v in c.attrs.items() if k in USER_ATTRS and value(v) is not None}
        # Created disabled: it is enabled only once its password is in the school's file, so a
        # run killed in between leaves a disabled user, never one nobody can sign in to.
        body["accountEnabled"] = False
        profile, secret = self._password_body(c)
        body["passwordProfile"] = profile
        (r,) = yield [Req("POST", "/users", body)]
        del body, profile
        if r.status == 400 and "ObjectConflict" in r.detail_codes:
            # Taken: by someone else, or by this very create whose answer was lost on the way.
            found = yield from self._find_users(pid, upn, fresh=True)
            return (yield from self._adopt(c, pid, upn, found, lost_create=True))
        if not r.ok:
            raise graph_error(r, f"create user {upn}")
        uid = str(r.body["id"])
        self._anchors[("person", c.key)] = uid
        self._index_user({**body_of(c), "id": uid, "accountEnabled": False})
        self._keep_password(c, secret)
        del secret
        return (yield from self._enable_new(c, uid, [], "created"))

    def _enable_new(self, c: Change, uid: str, assigned: list[Mapping[str, Any]], state: str) -> Steps:
        """Enable a user whose password is now in the school's file; license it in the same round."""
        reqs = [Req("PATCH", f"/users/{uid}", {"accountEnabled": True})]
        lic = self._license_req(c, uid, assigned)
        if lic is not None:
            reqs.append(lic)
        answers = yield reqs
        if not answers[0].ok:
            upn = c.attrs.get("userPrincipalName") or c.key
            raise graph_error(answers[0], f"user {upn} {state} ({uid}, disabled), but enabling it")
        self._index_user({**body_of(c), "id": uid, "accountEnabled": True})
        if lic is not None:
            self._check_licenses(c, uid, answers[1], state)
        return Applied(anchor=uid)

    def _adopt(self, c: Change, pid: str, upn: str, found: list[dict[str, Any]], lost_create: bool) -> Steps:
        """Bring an existing user in line and take it over, or refuse (a conflict)."""
        who = f"person {c.key} ({upn})"
        own = [u for u in found if str(u.get("employeeId") or "").lower() == pid.lower()]
        by_upn = [u for u in found if str(u.get("userPrincipalName") or "").lower() == upn.lower()]
        if len(own) > 1:
            raise RejectedError(f"M365: {who}: several users have employeeId {pid}")
        if own:
            user = own[0]
            if by_upn and by_upn[0]["id"] != user["id"]:
                raise RejectedError(
                    f"M365: {who}: userPrincipalName {upn} is taken by another user ({by_upn[0]['id']});"
                    f" this person's account is {user.get('userPrincipalName')}"
                )
            matched = "employeeId"
        elif by_upn:
            user = by_upn[0]
            other = user.get("employeeId")
            if other:
                raise RejectedError(
                    f"M365: {who}: userPrincipalName {upn} is taken by a user with employeeId {other};"
                    " not adopting an account that belongs to someone else"
                )
            matched = "userPrincipalName"
        else:
            raise RejectedError(f"M365: {who}: userPrincipalName {upn} is taken (conflict) but not found")
        if user.get("onPremisesSyncEnabled"):
            # Graph refuses writes to its AD-mastered attributes: hybrid mode is for such users.
            raise RejectedError(
                f"M365: {who}: {user.get('userPrincipalName')} is synced from AD by Entra Connect; a cloud"
                f' target cannot take it over (set mode = "hybrid" for targets.{self.target})'
            )
        uid = str(user["id"])
        patch = {
            k: value(c.attrs.get(k)) for k in USER_ATTRS if k in c.attrs and not same(c.attrs[k], user.get(k))
        }
        # Disabled: made by a run killed before its password reached the school's file (or
        # blocked by hand; either way nobody knows a valid password). Made by a create whose
        # answer was lost: its password never reached the file. Such a user gets a new
        # password, kept disabled until that is in the file, then enabled.
        reset = not user.get("accountEnabled", True) or lost_create
        secret = None
        if reset:
            patch["passwordProfile"], secret = self._password_body(c)
            if user.get("accountEnabled", True):
                patch["accountEnabled"] = False
        if patch:
            (r,) = yield [Req("PATCH", f"/users/{uid}", patch)]
            if not r.ok:
                raise graph_error(r, f"update adopted user {upn}")
        del patch
        self._anchors[("person", c.key)] = uid
        self._index_user({**user, **body_of(c)})
        assigned = user.get("assignedLicenses") or []
        note = "already existed (same employeeId)" if own else f"adopted existing user (matched by {matched})"
        extra: dict[str, Any] = {"adopted": not own, "matched_by": matched}
        if not reset:
            yield from self._licenses(c, uid, assigned)
            return Applied(anchor=uid, note=note, extra=extra)
        assert secret is not None
        self._keep_password(c, secret)
        del secret
        yield from self._enable_new(c, uid, assigned, "adopted")
        kept = "in the school's password file" if self._files is not None else "initial_passwords is off"
        extra["password_reset"] = True
        return Applied(anchor=uid, note=f"{note}; was disabled: new password ({kept}), enabled", extra=extra)

    def _update_user(self, c: Change) -> Steps:
        uid = self._need_anchor(c)
        if self._remade(c):
            # Created again this run from the same desired attributes (and licensed for them).
            return Applied(anchor=uid, note="created again this run with these values: nothing to write")
        patch = {k: value(v) for k, v in c.attrs.items() if k in USER_ATTRS}
        if patch:
            (r,) = yield [Req("PATCH", f"/users/{uid}", patch)]
            if r.status == 404:
                raise RejectedError(f"M365: person {c.key} ({uid}) is not in the tenant (deleted by hand?)")
            if not r.ok:
                raise graph_error(r, f"update person {c.key}")
        if "jobTitle" in c.attrs and self.config.licenses:  # the role: licences may change
            (r,) = yield [Req("GET", f"/users/{uid}?$select=id,assignedLicenses")]
            if not r.ok:
                raise graph_error(r, f"read licences of person {c.key}")
            yield from self._licenses(c, uid, r.body.get("assignedLicenses") or [])
        return Applied(anchor=uid, note=None if patch else "nothing to write")

    def _disable(self, c: Change) -> Steps:
        uid = self._need_anchor(c)
        block, revoke = yield [
            Req("PATCH", f"/users/{uid}", {"accountEnabled": False}),
            Req("POST", f"/users/{uid}/revokeSignInSessions", {}),
        ]
        if block.status == 404:
            return Applied(anchor=uid, note="not in the tenant: nothing to disable")
        if not block.ok:
            raise graph_error(block, f"block sign-in of person {c.key}")
        if not revoke.ok:
            raise graph_error(revoke, f"revoke sessions of person {c.key} (sign-in is blocked)")
        return Applied(anchor=uid)

    def _enable(self, c: Change) -> Steps:
        uid = self._need_anchor(c)
        if self._remade(c):
            return Applied(anchor=uid, note="created again this run, enabled")
        (r,) = yield [Req("PATCH", f"/users/{uid}", {"accountEnabled": True})]
        if r.status == 404:
            raise RejectedError(f"M365: person {c.key} ({uid}) is not in the tenant; cannot enable it")
        if not r.ok:
            raise graph_error(r, f"enable person {c.key}")
        return Applied(anchor=uid)

    def _set_password(self, c: Change) -> Steps:
        """A delegated reset: PATCH passwordProfile (change at next sign-in per ``force_change_password``)."""
        uid = self._need_anchor(c)
        if not c.secret:
            raise RejectedError(
                f"M365: person {c.key}: the change carries no password (a saved plan never does)"
            )
        profile = {"password": c.secret, "forceChangePasswordNextSignIn": self.config.force_change_password}
        (r,) = yield [Req("PATCH", f"/users/{uid}", {"passwordProfile": profile})]
        del profile
        if r.status == 404:
            raise RejectedError(f"M365: person {c.key} ({uid}) is not in the tenant; no password set")
        if r.status == 400:
            raise RejectedError(
                f"M365 refused the new password of person {c.key} ({c.username}): the tenant's"
                f" password policy does not allow it: {r.describe()}"
            )
        if not r.ok:
            raise graph_error(r, f"set the password of person {c.key}")
        return Applied(
            anchor=uid, note="must change it at next sign-in" if self.config.force_change_password else None
        )

    def _delete(self, c: Change, collection: str) -> Steps:
        anchor = self._anchor(c.kind, c.key, c.anchor)
        if not anchor:
            return Applied(note="never created: nothing to delete")
        (r,) = yield [Req("DELETE", f"/{collection}/{anchor}")]
        if r.status == 404:
            return Applied(anchor=anchor, note="already gone")
        if not r.ok:
            raise graph_error(r, f"delete {c.kind} {c.key}")
        return Applied(anchor=anchor)

    def _restore(self, c: Change) -> Steps:
        uid = self._need_anchor(c)
        (r,) = yield [Req("POST", f"/directory/deletedItems/{uid}/restore", {})]
        if r.ok:
            return Applied(anchor=uid, note="restored from deleted items")
        if r.status == 400 and ("ObjectConflict" in r.detail_codes or "userPrincipalName" in r.message):
            raise RejectedError(
                f"M365: cannot restore person {c.key} ({c.username}): its userPrincipalName is taken by"
                f" another user meanwhile ({r.describe()}); it stays in deleted items"
            )
        if r.status == 404:
            (live,) = yield [Req("GET", f"/users/{uid}?$select=id")]
            if live.ok:
                return Applied(anchor=uid, note="was not deleted")
            if live.status != 404:
                raise graph_error(live, f"look up person {c.key} ({uid}) after a restore found nothing")
            if "userPrincipalName" not in c.attrs:
                # A plan saved before restores carried the attributes: nothing to create from.
                raise RejectedError(
                    f"M365: cannot restore person {c.key} ({uid}): not in deleted items (purged?) and"
                    " the change carries no attributes to create it from; plan again"
                )
            # Purged from deleted items (by an admin, or by Microsoft): created again exactly
            # like a create, adoption rules, password file and licences included.
            try:
                made = yield from self._create_user(c)
            except RejectedError as exc:
                raise RejectedError(
                    f"M365: person {c.key} ({uid}) is not in deleted items (purged); creating it again"
                    f" failed: {exc}"
                ) from exc
            self._recreated[("person", c.key)] = str(made.anchor)
            # Unusual enough to show in the log: the old id, its data and licences are gone.
            log.info(
                "deleted user was purged; created again",
                target=self.target,
                key=c.key,
                purged_id=uid,
                new_id=made.anchor,
            )
            note = f"deleted object {uid} was purged; created again"
            return Applied(
                anchor=made.anchor,
                note=f"{note}: {made.note}" if made.note else note,
                extra={**made.extra, "recreated": True, "purged_id": uid},
            )
        raise graph_error(r, f"restore person {c.key}")


def body_of(c: Change) -> dict[str, Any]:
    """The Graph user properties a change carries."""
    return {k: v for k, v in c.attrs.items() if k in USER_ATTRS}


def client_from_config(cfg: Config, tcfg: M365Config, clock: Clock | None = None) -> GraphClient:
    """The Graph client of a Microsoft 365 target (reads the secret file; does not connect)."""
    clock = clock or SystemClock()
    key = f"targets.{cfg.target_key(tcfg)}"
    if not (tcfg.tenant_id and tcfg.client_id):
        raise ConfigError(f"{key}: tenant_id and client_id are needed to reach Graph")
    ca = str(cfg.path(tcfg.ca_file)) if tcfg.ca_file else None
    if ca and not Path(ca).is_file():
        raise ConfigError(f"{key}.ca_file: {ca} not found")
    session = make_session(ca, pool=tcfg.concurrency + 4)
    secret, cert = None, None
    if tcfg.client_secret_file:
        secret = read_secret(tcfg.client_secret_file, cfg.base_dir, f"{key}.client_secret_file")
    if tcfg.client_certificate_file:
        cert = read_secret(tcfg.client_certificate_file, cfg.base_dir, f"{key}.client_certificate_file")
    try:
        tokens = TokenSource(
            tcfg.tenant_id,
            tcfg.client_id,
            secret=secret,
            certificate_pem=cert,
            authority_host=tcfg.authority_host,
            session=session,
        )
    except ValueError as exc:
        raise ConfigError(f"{key}.client_certificate_file: {exc}") from exc
    return GraphClient(
        tcfg.graph_url,
        tokens,
        session=session,
        attempts=tcfg.max_attempts,
        concurrency=tcfg.concurrency,
        timeout=tcfg.timeout,
        sleep=clock.sleep,
        clock=clock.now,
    )
