"""The Active Directory connector: applies planned changes to AD over LDAP (ldap3, TLS only).

Owns what BAS does to the directory, change by change, idempotently:

- Containers: ``base_dn`` must exist (a missing base is a FatalError: the config points
  at the wrong domain). Under it the groups OU and the disabled OU are created at
  ``begin``; a school's OU is created the first time a user is placed in it.
- Users (mapping ``mappings.ad``): created disabled, the initial password set
  (unicodePwd, only over TLS) and written to the school office's file
  (``connectors.passwords``), then enabled. The objectGUID is the anchor (its dashed
  string form); objects are found by ``<GUID=...>`` DN, so a move by hand does not lose
  them. A changed ``cn`` or ``ou`` is a modify_dn (rename within the OU, or a move to
  another school's OU).
- A create first looks for the account: by employeeID (the SIS person_id), then by the
  configured fallback attribute (sAMAccountName by default). Finding its own account
  (same employeeID: an earlier run created it but did not record it) is success;
  finding an account without employeeID adopts it (attributes and placement brought in
  line, employeeID set). An account whose employeeID belongs to someone else, or whose
  login name differs from the one BAS issued, is a conflict: RejectedError, never a
  guess. Privileged accounts (adminCount or isCriticalSystemObject) are never adopted.
- Lifecycle: a stop disables (userAccountControl bit 0x2) and moves the user to the
  disabled OU; a return (ENABLE, which carries the desired OU and CN) moves it to where
  it belongs now and enables it; DELETE removes it,
  and only ever an object under ``base_dn``. A delete or disable that finds nothing is
  success. SET_PASSWORD (a delegated reset) sets the change's password on the account
  and, per ``force_change_password_on_reset``, requires a new one at the next logon; a
  password the domain's policy refuses is a RejectedError saying so.
- Groups: global security groups in the groups OU; membership changes are incremental
  MODIFY_ADD / MODIFY_DELETE of ``member`` values written as ``<GUID=...>``, never a
  rewrite of the list. Adding a member that is there already (entryAlreadyExists) or
  removing one that is not (unwillingToPerform) is success: a batch that fails on such a
  value is retried one value at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import ldap3
import structlog

from connectors import passwords as pw
from connectors.base import AnchorResolver, Applied, Connector, StoredObject
from connectors.errors import FatalError, RejectedError
from connectors.ldap.codes import (
    ATTRIBUTE_OR_VALUE_EXISTS,
    ENTRY_ALREADY_EXISTS,
    NO_SUCH_ATTRIBUTE,
    NO_SUCH_OBJECT,
    NOT_ALLOWED_ON_NON_LEAF,
    SUCCESS,
    UNWILLING_TO_PERFORM,
    Dialect,
)
from connectors.ldap.link import Entry, LdapLink, escape_filter, guid_dn, guid_text, text
from provisioner.config import ADConfig, Config, ConfigError, read_secret
from provisioner.core import dn as dns
from provisioner.core.plan import Change, Op

log = structlog.get_logger("bas.ad")

USER_CLASSES = ("top", "person", "organizationalPerson", "user")
GROUP_CLASSES = ("top", "group")
GLOBAL_SECURITY_GROUP = -2147483646  # ADS_GROUP_TYPE_GLOBAL_GROUP | ADS_GROUP_TYPE_SECURITY_ENABLED
UAC_DISABLED = 0x2
UAC_NORMAL = 0x200
MEMBER_BATCH = 500  # member values per modify (AD accepts a few thousand; keep requests small)
USER_ATTRS = (
    "objectGUID",
    "employeeID",
    "sAMAccountName",
    "userPrincipalName",
    "givenName",
    "sn",
    "displayName",
    "mail",
    "department",
    "company",
    "title",
    "userAccountControl",
    "adminCount",
    "isCriticalSystemObject",
)
GROUP_ATTRS = ("objectGUID", "sAMAccountName", "description", "cn")


def ldap_values(value: Any) -> list[Any]:
    """A mapped attribute value as LDAP values: empty strings and None mean no value."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [v for v in value if v not in (None, "")]
    return [] if value == "" else [value]


def entry_attrs(mapped: Mapping[str, Any]) -> dict[str, Any]:
    """A new entry's attributes: the mapped ones as LDAP values, empty ones left out."""
    values = ((k, ldap_values(v)) for k, v in mapped.items())
    return {k: v for k, v in values if v}


class ADConnector(Connector):
    """Applies AD changes over one LDAP link (see the module docstring for the rules)."""

    def __init__(
        self,
        config: ADConfig,
        link: LdapLink,
        *,
        password_dir: Path | None,
        name: str = "ad",
    ) -> None:
        self.target = name
        self.config = config
        self.link = link
        self.base_dn = config.base_dn
        self.groups_ou = dns.within(config.groups_ou, config.base_dn)
        self.disabled_ou = dns.within(config.disabled_ou, config.base_dn)
        self.password_dir = password_dir
        self._resolve: AnchorResolver | None = None
        self._files: pw.PasswordFiles | None = None
        self._known_ous: set[dns.Key] = set()
        self._domain: str | None = None

    # -- the Connector protocol -------------------------------------------------------

    def begin(self, run_id: str, resolve: AnchorResolver) -> None:
        """Connect, check the base exists, and make sure the groups and disabled OUs exist."""
        self._resolve = resolve
        self._files = pw.PasswordFiles.for_run(self.password_dir, run_id, self.config.initial_passwords)
        self.link.open()
        root = self.link.read("", ["defaultNamingContext"], what="read rootDSE")
        self._domain = (root and text(root, "defaultNamingContext")) or self.base_dn
        if self.link.read(self.base_dn, ["objectClass"], what=f"read base {self.base_dn}") is None:
            raise FatalError(f"AD: base_dn {self.base_dn} does not exist; create it or fix the config")
        self._known_ous = {dns.normalize(self.base_dn)}
        self.ensure_ou(self.groups_ou)
        self.ensure_ou(self.disabled_ou)

    def apply(self, change: Change) -> Applied:
        """Apply one change; typed errors on failure."""
        if self._resolve is None:
            raise FatalError("AD: apply() before begin()")
        kind, op = change.kind, change.op
        if kind not in ("person", "group"):
            raise RejectedError(f"AD: unknown object kind {kind!r} ({kind}:{change.key})")
        if op is Op.CREATE:
            return self._create_person(change) if kind == "person" else self._create_group(change)
        if op is Op.UPDATE:
            return self._update(change)
        if op is Op.MOVE:
            return self._move(change)
        if op is Op.DELETE:
            return self._delete(change)
        if op in (Op.ADD_MEMBERS, Op.REMOVE_MEMBERS) and kind == "group":
            return self._members(change, add=op is Op.ADD_MEMBERS)
        if op is Op.DISABLE and kind == "person":
            return self._disable(change)
        if op is Op.ENABLE and kind == "person":
            return self._enable(change)
        if op is Op.SET_PASSWORD and kind == "person":
            return self._set_password(change)
        raise RejectedError(f"AD: operation {op.value!r} does not apply to {kind} {change.key}")

    def finish(self, current: Iterable[StoredObject]) -> None:
        """Nothing is buffered (each change was written as it came); report the password files."""
        if self._files is not None:
            self._files.report(self.target)

    def close(self) -> None:
        """Unbind; safe to call twice."""
        self.link.close()
        self._resolve = None

    # -- containers -------------------------------------------------------------------

    def ensure_ou(self, dn: str) -> None:
        """Create an OU (and missing OUs above it) under the base; the base itself is never created."""
        if dns.normalize(dn) in self._known_ous:
            return
        if not dns.is_under(dn, self.base_dn) or dns.same(dn, self.base_dn):
            raise FatalError(f"AD: {dn} is outside base_dn {self.base_dn}; BAS creates OUs only below it")
        name = dns.rdn(dn)
        if not name.upper().startswith("OU="):
            raise RejectedError(f"AD: {dn} is not an OU")
        code = self.link.add(
            dn, ("top", "organizationalUnit"), {}, ok=(NO_SUCH_OBJECT, ENTRY_ALREADY_EXISTS)
        ).code
        if code == NO_SUCH_OBJECT:
            parent = dns.parent(dn)
            if dns.same(parent, self.base_dn):
                raise FatalError(f"AD: base_dn {self.base_dn} does not exist")
            self.ensure_ou(parent)
            self.link.add(dn, ("top", "organizationalUnit"), {}, ok=(ENTRY_ALREADY_EXISTS,))
        self._known_ous.add(dns.normalize(dn))

    def _add_placed(self, dn: str, classes: Iterable[str], attrs: Mapping[str, Any]) -> None:
        """Add an entry, creating its OU first when the OU is missing."""
        code = self.link.add(dn, tuple(classes), attrs, ok=(NO_SUCH_OBJECT,)).code
        if code == NO_SUCH_OBJECT:
            self.ensure_ou(dns.parent(dn))
            self.link.add(dn, tuple(classes), attrs)

    def _move_to(self, dn: str, rdn: str, parent: str, what: str) -> str:
        """modify_dn to ``rdn,parent`` (creating the OU when missing); returns the new DN."""
        if dns.same(dns.rdn(dn), rdn) and dns.same(dns.parent(dn), parent):
            return dn
        self.ensure_ou(parent)
        self.link.move(dn, rdn, parent, what)
        return dns.join(rdn, parent)

    # -- lookups ----------------------------------------------------------------------

    def _anchor(self, change: Change) -> str:
        anchor = change.anchor or (self._resolve(change.kind, change.key) if self._resolve else None)
        if not anchor:
            raise RejectedError(f"AD: {change.kind} {change.key} has no objectGUID recorded (never created?)")
        return anchor

    def _read(self, anchor: str, attrs: Iterable[str]) -> Entry | None:
        return self.link.read(guid_dn(anchor), list(attrs), what=f"read {anchor}")

    def _find_user(self, filt: str) -> list[Entry]:
        base = self._domain or self.base_dn
        return self.link.search(base, f"(&(objectCategory=person)(objectClass=user){filt})", USER_ATTRS)

    def _find_existing(self, c: Change) -> tuple[Entry, str] | None:
        """The account a create should use instead of adding one, or None; RejectedError on conflict."""
        pid = str(c.attrs.get("employeeID") or c.key)
        who = f"person {c.key} ({c.username})"
        found = self._find_user(f"(employeeID={escape_filter(pid)})")
        if len(found) > 1:
            dns = "; ".join(e[0] for e in found)
            raise RejectedError(f"AD: {who}: several accounts have employeeID {pid}: {dns}")
        matched_by = "employeeID"
        attr = self.config.adopt_fallback
        value = c.attrs.get(attr) if attr else None
        if not found and attr and value:
            found = self._find_user(f"({attr}={escape_filter(str(value))})")
            matched_by = attr
            other = text(found[0], "employeeID") if found else None
            if len(found) > 1 or (other and other != pid):
                raise RejectedError(
                    f"AD: {who}: {attr} {value!r} is taken by {found[0][0]} with employeeID"
                    f" {other or '(none)'}; not adopting an account that may belong to someone else"
                )
        if not found:
            return None
        entry = found[0]
        have = text(entry, "sAMAccountName") or ""
        want = str(c.attrs.get("sAMAccountName") or "")
        if want and have.lower() != want.lower():
            raise RejectedError(
                f"AD: {who}: the account {entry[0]} (matched by {matched_by}) has sAMAccountName {have!r},"
                f" not {want!r}; BAS will not rename an existing login (record the existing username"
                " for this person first)"
            )
        return entry, matched_by

    # -- users ------------------------------------------------------------------------

    def _user_dn(self, place: Mapping[str, Any]) -> str:
        return f"CN={dns.escape(str(place['cn']))},{place['ou']}"

    def _create_person(self, c: Change) -> Applied:
        existing = self._find_existing(c)
        if existing is not None:
            return self._adopt(c, *existing)
        dn = self._user_dn(c.place)
        attrs = entry_attrs(c.attrs)
        attrs["userAccountControl"] = UAC_NORMAL | UAC_DISABLED  # disabled until it has a password
        self._add_placed(dn, USER_CLASSES, attrs)
        entry = self.link.read(dn, ["objectGUID"], what=f"read {dn}")
        if entry is None:
            raise RejectedError(f"AD: {dn} vanished right after it was added")
        anchor = guid_text(entry[1]["objectGUID"][0])
        self._activate(c, guid_dn(anchor), UAC_NORMAL | UAC_DISABLED)
        return Applied(anchor=anchor)

    def _activate(self, c: Change, dn: str, uac: int) -> None:
        """Set a fresh password (kept for the school office when configured), then enable."""
        username = str(c.attrs.get("sAMAccountName") or c.username or "")
        display = str(c.attrs.get("displayName") or "")
        avoid = [username, display]
        for attempt in range(3):
            secret = pw.generate(self.config.password_length, avoid)
            try:
                self.link.set_password(dn, secret, f"set password of {c.kind} {c.key} ({username})")
                break
            except RejectedError:
                # A domain policy stricter than ours (history, a banned word): try another one.
                if attempt == 2:
                    raise
        if self._files is not None:
            try:
                self._files.add(str(c.attrs.get("department") or "school"), username, display, secret)
            except OSError as exc:
                # The account stays disabled: the next run's create finds it and tries again.
                raise FatalError(f"AD: cannot write the new accounts' password file: {exc}") from exc
        del secret
        self.link.modify(
            dn,
            {"userAccountControl": [(ldap3.MODIFY_REPLACE, [uac & ~UAC_DISABLED])]},
            f"enable {c.kind} {c.key} ({username})",
        )

    def _adopt(self, c: Change, entry: Entry, matched_by: str) -> Applied:
        """Bring an existing account in line with the desired one and take it over."""
        dn, raw = entry
        anchor = guid_text(raw["objectGUID"][0])
        own = matched_by == "employeeID"
        if not own and (text(entry, "adminCount") == "1" or text(entry, "isCriticalSystemObject") == "TRUE"):
            raise RejectedError(
                f"AD: person {c.key}: {dn} is a privileged or system account; not adopting it"
            )
        rdn = f"CN={dns.escape(str(c.place['cn']))}"
        dn = self._move_to(dn, rdn, str(c.place["ou"]), f"move {dn} into place")
        mods: dict[str, Any] = {}
        for k, v in c.attrs.items():
            want = [str(x) for x in ldap_values(v)]
            have = [x.decode("utf-8") for x in raw.get(k) or ()]
            if want != have:
                mods[k] = [(ldap3.MODIFY_REPLACE, want)]
        if mods:
            self.link.modify(guid_dn(anchor), mods, f"update adopted account {dn}")
        uac = int(text(entry, "userAccountControl") or UAC_NORMAL)
        if uac & UAC_DISABLED:
            # Ours but never finished (no password known), or a disabled account now active:
            # either way nobody knows a valid password, so it gets a new one.
            self._activate(c, guid_dn(anchor), uac)
        note = (
            "already existed (same employeeID)"
            if own
            else f"adopted existing account (matched by {matched_by})"
        )
        return Applied(
            anchor=anchor,
            note=note,
            extra={
                "adopted": not own,
                "matched_by": matched_by,
                "sAMAccountName": text(entry, "sAMAccountName"),
            },
        )

    def _update(self, c: Change) -> Applied:
        anchor = self._anchor(c)
        mods = {k: [(ldap3.MODIFY_REPLACE, [str(x) for x in ldap_values(v)])] for k, v in c.attrs.items()}
        if not mods:
            return Applied(anchor=anchor, note="nothing to write")
        code = self.link.modify(guid_dn(anchor), mods, f"update {c.kind} {c.key}", ok=(NO_SUCH_OBJECT,)).code
        if code == NO_SUCH_OBJECT:
            raise RejectedError(f"AD: {c.kind} {c.key} ({anchor}) is not in AD (deleted by hand?)")
        return Applied(anchor=anchor)

    def _move(self, c: Change) -> Applied:
        anchor = self._anchor(c)
        entry = self._read(anchor, ["userAccountControl"])
        if entry is None:
            raise RejectedError(f"AD: {c.kind} {c.key} ({anchor}) is not in AD (deleted by hand?)")
        dn = entry[0]
        rdn = f"CN={dns.escape(str(c.place['cn']))}" if c.place.get("cn") else dns.rdn(dn)
        parent = str(c.place.get("ou") or dns.parent(dn))
        uac = int(text(entry, "userAccountControl") or 0)
        if c.kind == "person" and uac & UAC_DISABLED and dns.same(dns.parent(dn), self.disabled_ou):
            # Disabled and parked: rename in place; the enable on return puts it in place.
            self._move_to(dn, rdn, self.disabled_ou, f"rename {c.kind} {c.key}")
            return Applied(anchor=anchor, note="disabled: stays in the disabled OU")
        new = self._move_to(dn, rdn, parent, f"move {c.kind} {c.key}")
        return Applied(anchor=anchor, note=None if new != dn else "already in place")

    def _disable(self, c: Change) -> Applied:
        anchor = self._anchor(c)
        entry = self._read(anchor, ["userAccountControl"])
        if entry is None:
            return Applied(anchor=anchor, note="not in AD: nothing to disable")
        dn = entry[0]
        uac = int(text(entry, "userAccountControl") or UAC_NORMAL)
        parked = dns.same(dns.parent(dn), self.disabled_ou)
        mods: dict[str, Any] = {}
        if not uac & UAC_DISABLED:
            mods["userAccountControl"] = [(ldap3.MODIFY_REPLACE, [uac | UAC_DISABLED])]
        if mods:  # disabled first: that is what matters the same day
            self.link.modify(guid_dn(anchor), mods, f"disable person {c.key} ({c.username})")
        if not parked:
            self._move_to(dn, dns.rdn(dn), self.disabled_ou, f"move person {c.key} to the disabled OU")
        return Applied(anchor=anchor, note=None if mods else "already disabled")

    def _enable(self, c: Change) -> Applied:
        anchor = self._anchor(c)
        entry = self._read(anchor, ["userAccountControl"])
        if entry is None:
            raise RejectedError(
                f"AD: person {c.key} ({anchor}) is not in AD (deleted by hand?); cannot enable it"
            )
        dn = entry[0]
        note = None
        if dns.same(dns.parent(dn), self.disabled_ou):
            if c.place.get("ou"):  # the enable carries where the person belongs now
                rdn = f"CN={dns.escape(str(c.place['cn']))}" if c.place.get("cn") else dns.rdn(dn)
                self._move_to(dn, rdn, str(c.place["ou"]), f"move person {c.key} home")
            else:
                note = "no placement in the change: left in the disabled OU"
        uac = int(text(entry, "userAccountControl") or UAC_NORMAL)
        mods: dict[str, Any] = {"userAccountControl": [(ldap3.MODIFY_REPLACE, [uac & ~UAC_DISABLED])]}
        self.link.modify(guid_dn(anchor), mods, f"enable person {c.key} ({c.username})")
        return Applied(anchor=anchor, note=note)

    def _set_password(self, c: Change) -> Applied:
        """A delegated reset: the change's password on the account (found by its objectGUID).

        ``force_change_password_on_reset``: pwdLastSet 0 makes the pupil choose their own at
        the next sign-in; otherwise -1 (now) clears a must-change left by an earlier reset.
        """
        anchor = self._anchor(c)
        if not c.secret:
            raise RejectedError(
                f"AD: person {c.key}: the change carries no password (a saved plan never does)"
            )
        who = f"person {c.key} ({c.username})"
        if self._read(anchor, ["objectClass"]) is None:
            raise RejectedError(f"AD: {who} ({anchor}) is not in AD (deleted by hand?); no password set")
        try:
            self.link.set_password(guid_dn(anchor), c.secret, f"set password of {who}")
        except RejectedError as exc:
            raise RejectedError(
                f"AD refused the new password of {who}: the domain's password policy (length,"
                f" complexity, history) or the account does not allow it: {exc}"
            ) from exc
        must_change = self.config.force_change_password_on_reset
        self.link.modify(
            guid_dn(anchor),
            {"pwdLastSet": [(ldap3.MODIFY_REPLACE, ["0" if must_change else "-1"])]},
            f"{'require' if must_change else 'clear'} a password change at next logon of {who}",
        )
        return Applied(anchor=anchor, note="must change it at next sign-in" if must_change else None)

    def _delete(self, c: Change) -> Applied:
        anchor = c.anchor or (self._resolve(c.kind, c.key) if self._resolve else None)
        if not anchor:
            return Applied(note="never created: nothing to delete")
        entry = self._read(anchor, ["objectClass"])
        if entry is None:
            return Applied(anchor=anchor, note="already gone")
        dn = entry[0]
        if not dns.is_under(dn, self.base_dn):
            raise RejectedError(
                f"AD: {c.kind} {c.key} is at {dn}, outside base_dn; BAS deletes only below it"
            )
        what = f"delete {c.kind} {c.key} ({dn})"
        code = self.link.delete(dn, what, ok=(NO_SUCH_OBJECT, NOT_ALLOWED_ON_NON_LEAF)).code
        if code == NOT_ALLOWED_ON_NON_LEAF:  # e.g. a device or mailbox object below the user
            code = self.link.delete(dn, what, tree=True, ok=(NO_SUCH_OBJECT,)).code
        return Applied(anchor=anchor, note="already gone" if code == NO_SUCH_OBJECT else None)

    # -- groups -----------------------------------------------------------------------

    def _create_group(self, c: Change) -> Applied:
        name = str(c.attrs.get("sAMAccountName") or c.place["cn"])
        dn = f"CN={dns.escape(str(c.place['cn']))},{c.place['ou']}"
        base = self._domain or self.base_dn
        found = self.link.search(
            base, f"(&(objectClass=group)(sAMAccountName={escape_filter(name)}))", GROUP_ATTRS
        )
        if found:
            gdn, raw = found[0]
            if not dns.is_under(gdn, self.base_dn):
                raise RejectedError(
                    f"AD: group {c.key}: a group named {name!r} exists outside base_dn at {gdn};"
                    " not taking it over"
                )
            anchor = guid_text(raw["objectGUID"][0])
            self._move_to(gdn, dns.rdn(dn), dns.parent(dn), f"move group {c.key} into place")
            if text(found[0], "description") != c.attrs.get("description"):
                desc = [str(x) for x in ldap_values(c.attrs.get("description"))]
                self.link.modify(
                    guid_dn(anchor), {"description": [(ldap3.MODIFY_REPLACE, desc)]}, f"update group {c.key}"
                )
            return Applied(anchor=anchor, note="already existed")
        attrs = entry_attrs(c.attrs)
        attrs["groupType"] = GLOBAL_SECURITY_GROUP
        self._add_placed(dn, GROUP_CLASSES, attrs)
        entry = self.link.read(dn, ["objectGUID"], what=f"read {dn}")
        if entry is None:
            raise RejectedError(f"AD: {dn} vanished right after it was added")
        return Applied(anchor=guid_text(entry[1]["objectGUID"][0]))

    def _members(self, c: Change, *, add: bool) -> Applied:
        anchor = self._anchor(c)
        group = self._read(anchor, ["objectClass"])
        if group is None:
            raise RejectedError(f"AD: group {c.key} ({anchor}) is not in AD (deleted by hand?)")
        gdn = group[0]
        pid_of: dict[str, str] = {}  # member value -> person_id
        unknown: list[str] = []
        for pid, _role in c.members:
            a = self._resolve("person", pid) if self._resolve else None
            if a:
                pid_of[guid_dn(a)] = pid
            else:
                unknown.append(pid)
        values = list(pid_of)
        op = ldap3.MODIFY_ADD if add else ldap3.MODIFY_DELETE
        # Already there (add) / already gone (remove): the end state is what we want.
        benign = (
            (ENTRY_ALREADY_EXISTS, ATTRIBUTE_OR_VALUE_EXISTS)
            if add
            else (UNWILLING_TO_PERFORM, NO_SUCH_ATTRIBUTE)
        )
        what = f"{'add' if add else 'remove'} members of group {c.key}"
        missing: list[str] = []
        for i in range(0, len(values), MEMBER_BATCH):
            batch = values[i : i + MEMBER_BATCH]
            code = self.link.modify(gdn, {"member": [(op, batch)]}, what, ok=(*benign, NO_SUCH_OBJECT)).code
            if code == SUCCESS:
                continue
            for v in batch:  # the batch stopped at one value: do them one by one
                one = self.link.modify(gdn, {"member": [(op, [v])]}, what, ok=(*benign, NO_SUCH_OBJECT)).code
                if one == NO_SUCH_OBJECT and add:
                    missing.append(pid_of[v])
        if not add:
            # A member never created, or deleted from AD, is not in the group: done.
            return Applied(anchor=anchor)
        if unknown or missing:
            # Not recorded as done, so the next run plans these members again (adds are idempotent).
            raise RejectedError(
                f"AD: {what}: {len(values) - len(missing)} added; not in AD yet: "
                + ", ".join(unknown + missing)
            )
        return Applied(anchor=anchor)


def link_from_config(cfg: Config, tcfg: ADConfig) -> LdapLink:
    """The LDAP link of an AD target (reads the bind password file; does not connect)."""
    key = f"targets.{cfg.target_key(tcfg)}"
    if not (tcfg.url and tcfg.ca_file and tcfg.bind_dn and tcfg.password_file):
        raise ConfigError(f"{key}: url, ca_file, bind_dn and password_file are needed to reach AD")
    ca = cfg.path(tcfg.ca_file)
    if not ca.is_file():
        raise ConfigError(f"{key}.ca_file: {ca} not found")
    return LdapLink(
        tcfg.url,
        bind_dn=tcfg.bind_dn,
        password=read_secret(tcfg.password_file, cfg.base_dir, f"{key}.password_file"),
        ca_file=str(ca),
        start_tls=tcfg.start_tls,
        tls_server_name=tcfg.tls_server_name,
        timeout=tcfg.timeout,
        page_size=tcfg.page_size,
        dialect=Dialect.AD,
        label="AD",
    )
