"""The live Feide connector: writes the catalog to an LDAP server (OpenLDAP) as it changes.

Writes the same entries the LDIF export holds (the attributes come from
``mappings.feide`` through each Change; the containers between the base DN and the
people / units OUs from ``mappings.feide.container_entries``):

- CREATE: an add with every attribute (``userPassword`` from the configured template
  added for persons). An entry already at that DN is ours (usernames and school org
  numbers are never reused): it is compared and only the attributes that differ are
  replaced, so a create that is repeated (a lost reply, a run that died before the
  state store was written) is success. A missing parent container is created first.
- UPDATE: one modify with a REPLACE per changed attribute in ``Change.attrs`` (a value
  that became None or empty is a REPLACE with no values, which removes the attribute
  and is no error when it is already gone); nothing else on the entry is touched.
- MOVE: the new DN in ``place["dn"]``: a modify_dn (new RDN, and new superior when the
  parent changed); an entry already at its new DN is success.
- DELETE: a delete; an entry that is already gone is success.

The anchor is the entry's ``entryUUID`` (read with the RFC 4527 post-read control on
every write). Update, move and delete find the entry by ``(entryUUID=...)`` under the
base DN, so a renamed entry is still found; an anchor that is a DN (written by the LDIF
target before the switch to live writes) is used as the DN, and the reply's entryUUID
becomes the anchor from then on. Filter values are escaped with the link's escape_filter;
DNs come escaped from the mapping and are compared with ``provisioner.core.dn``.

Errors are typed by the LDAP link (``connectors.ldap.link``, OpenLDAP dialect): an
unreachable or busy server is transient, bad credentials or a missing base are fatal,
a schema or constraint violation rejects that one entry and the run goes on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from ldap3 import MODIFY_ADD, MODIFY_REPLACE
from ldap3.protocol.rfc4527 import post_read_control

from connectors.base import AnchorResolver, Applied, Connector, StoredObject
from connectors.errors import FatalError, RejectedError
from connectors.feide.entries import refuse_unsupported
from connectors.ldap.codes import ENTRY_ALREADY_EXISTS, NO_SUCH_OBJECT, NOT_ALLOWED_ON_NON_LEAF, Dialect
from connectors.ldap.ldif import values_of
from connectors.ldap.link import LdapLink, Reply, decode, escape_filter
from mappings.feide import NIN_ATTRS, OPTIONAL_ATTRS, container_entries
from provisioner.config import Config, ConfigError, FeideConfig, OwnerConfig, read_secret
from provisioner.core import dn as dns
from provisioner.core.plan import Change, Op

_POST_READ = "1.3.6.1.1.13.2"
# The post-read control asking for entryUUID, built (BER-encoded) once: it never changes.
_READ_UUID = post_read_control(["entryUUID"])
# Attributes with DN syntax: the server may store them in another (equivalent) spelling.
_DN_ATTRS = frozenset({"eduPersonOrgDN", "eduPersonOrgUnitDN", "eduPersonPrimaryOrgUnitDN"})


def is_dn(anchor: str) -> bool:
    """True when an anchor is a DN (the LDIF target's anchors), not an entryUUID."""
    return "=" in anchor


class FeideLdapConnector(Connector):
    """Writes the Feide catalog to an LDAP server, one change at a time."""

    target = "feide"
    nin_attrs = NIN_ATTRS

    def __init__(self, config: FeideConfig, owner: OwnerConfig, link: LdapLink) -> None:
        self.config = config
        self.owner = owner
        self.link = link
        self._resolve: AnchorResolver | None = None
        self._containers_ok = False  # the OU containers are known to exist this run
        self.writes = 0  # write operations sent this run (for logs and tests)

    # -- the Connector protocol -------------------------------------------------------

    def begin(self, run_id: str, resolve: AnchorResolver) -> None:
        """Connect and bind; make sure the base DN (or at least its parent) exists."""
        self._resolve = resolve
        self._containers_ok = False
        self.writes = 0
        self.link.open()
        base = self.config.base_dn
        if self._exists(base):
            return
        parent = dns.parent(base)
        if parent and self._exists(parent):
            return
        if self._is_naming_context(base):
            return  # an empty database: the org entry will be its suffix entry
        raise FatalError(f"feide: no such base on {self.link.url}: neither {base} nor its parent exists")

    def apply(self, change: Change) -> Applied:
        """Apply one change to the server; raise a typed error on failure."""
        refuse_unsupported(change, "Feide entries are created, updated, moved and deleted")
        if not self.nin_attrs.isdisjoint(change.attrs):  # the NIN the plan holds sealed, for the server
            change = replace(change, attrs=self.whole_attrs(change.attrs))
        if change.op is Op.CREATE:
            return self._create(change)
        if change.op is Op.DELETE:
            return self._delete(change)
        if change.op is Op.MOVE:
            return self._move(change)
        return self._update(change)

    def finish(self, current: Iterable[StoredObject]) -> None:
        """Nothing to flush: every change was written as it was applied."""

    def close(self) -> None:
        """Unbind; safe to call twice."""
        self.link.close()
        self._resolve = None

    # -- operations -------------------------------------------------------------------

    def _create(self, change: Change) -> Applied:
        dn = change.place.get("dn")
        if not dn or not isinstance(dn, str):
            raise RejectedError(f"feide: create of {change.kind}:{change.key} has no dn")
        entry = self._entry(change)
        if not entry.get("objectClass"):
            raise RejectedError(f"feide: create of {change.kind}:{change.key} has no objectClass")
        res = self._add(dn, entry)
        if res.code == NO_SUCH_OBJECT and change.kind != "org":
            self._ensure_containers(force=True)  # the people / units container is missing
            res = self._add(dn, entry)
        if res.code == NO_SUCH_OBJECT and change.kind == "org":
            raise FatalError(f"feide: no such base: the parent of {dn} does not exist")
        if res.code == NO_SUCH_OBJECT:
            raise RejectedError(f"feide: add {dn}: the container above it is missing")
        if res.code == ENTRY_ALREADY_EXISTS:
            uuid, changed = self._bring_up_to_date(dn, entry, OPTIONAL_ATTRS.get(change.kind, frozenset()))
            if change.kind == "org":
                self._ensure_containers()
            note = f"already existed; {changed} attribute(s) updated" if changed else "already existed"
            return Applied(anchor=uuid, note=note)
        if change.kind == "org":
            self._ensure_containers()
        return Applied(anchor=self._uuid_of(res, dn))

    def _update(self, change: Change) -> Applied:
        dn = self._locate(change)
        if dn is None:
            raise RejectedError(
                f"feide: update of {change.kind}:{change.key}: entry not found on the server "
                f"(anchor {change.anchor}); it is re-created once the state store forgets it"
            )
        mods: dict[str, list[tuple[str, list[str]]]] = {}
        for name, value in change.attrs.items():
            mods[name] = [(MODIFY_REPLACE, self._values(change, name, value))]
        if not mods:
            return Applied(anchor=self._anchor_for(change, dn), note="nothing to change")
        res = self._modify(dn, mods)
        return Applied(anchor=self._uuid_of(res, dn))

    def _move(self, change: Change) -> Applied:
        new = change.place.get("dn")
        if not new or not isinstance(new, str):
            raise RejectedError(f"feide: move of {change.kind}:{change.key} has no new dn")
        cur = self._locate(change)
        if cur is None:
            raise RejectedError(
                f"feide: move of {change.kind}:{change.key} to {new}: entry not found on the server "
                f"(anchor {change.anchor})"
            )
        if dns.same(cur, new):
            return Applied(anchor=self._anchor_for(change, cur), note="already at its new DN")
        res = self._modify_dn(cur, new, ok=(NO_SUCH_OBJECT,))
        if res.code == NO_SUCH_OBJECT:
            self._ensure_containers(force=True)  # a new people / units container
            res = self._modify_dn(cur, new)
        return Applied(anchor=self._uuid_of(res, new))

    def _delete(self, change: Change) -> Applied:
        dn = self._locate(change)
        if dn is None:
            return Applied(anchor=change.anchor, note="not on the server: nothing to delete")
        if change.kind == "org":
            self._delete_containers()
        self.writes += 1
        code = self.link.delete(dn, f"delete {dn}", ok=(NO_SUCH_OBJECT, NOT_ALLOWED_ON_NON_LEAF)).code
        if code == NO_SUCH_OBJECT:
            return Applied(anchor=change.anchor, note="already gone")
        if code == NOT_ALLOWED_ON_NON_LEAF:
            raise RejectedError(f"feide: delete {dn}: it has entries below it that BAS does not own")
        return Applied(anchor=change.anchor, note="deleted")

    # -- helpers ----------------------------------------------------------------------

    def _values(self, change: Change, name: str, value: Any) -> list[str]:
        try:
            return values_of(value)
        except TypeError as exc:
            raise RejectedError(f"feide: {name} of {change.kind}:{change.key}: {exc}") from exc

    def _entry(self, change: Change) -> dict[str, list[str]]:
        """The entry's LDAP attributes (no empty ones), userPassword added for persons."""
        entry: dict[str, list[str]] = {}
        for name, value in change.attrs.items():
            vals = self._values(change, name, value)
            if vals:
                entry[name] = vals
        template = self.config.user_password_template
        if template and change.kind == "person":
            uid = entry.get("uid", [change.username or ""])[0]
            if uid:
                entry["userPassword"] = [template.replace("{username}", uid)]
        return entry

    def _add(self, dn: str, entry: Mapping[str, list[str]]) -> Reply:
        self.writes += 1
        ok = (NO_SUCH_OBJECT, ENTRY_ALREADY_EXISTS)
        return self.link.add(dn, (), entry, ok=ok, controls=[_READ_UUID])

    def _modify(self, dn: str, mods: Mapping[str, Any]) -> Reply:
        self.writes += 1
        what = f"modify {dn} ({', '.join(sorted(mods))})"
        return self.link.modify(dn, mods, what, controls=[_READ_UUID])

    def _modify_dn(self, cur: str, new: str, ok: tuple[int, ...] = ()) -> Reply:
        new_parent = dns.parent(new)
        superior = None if dns.same(new_parent, dns.parent(cur)) else new_parent
        self.writes += 1
        return self.link.move(
            cur, dns.rdn(new), superior, f"rename {cur} to {new}", ok, controls=[_READ_UUID]
        )

    def _read(self, dn: str, attributes: list[str]) -> dict[str, list[str]] | None:
        """One entry's attributes (values decoded as UTF-8), or None when it does not exist."""
        found = self.link.read(dn, attributes)
        return None if found is None else decode(found[1])

    def _exists(self, dn: str) -> bool:
        return self._read(dn, ["1.1"]) is not None

    def _is_naming_context(self, dn: str) -> bool:
        root = self._read("", ["namingContexts"]) or {}
        return any(dns.same(nc, dn) for nc in root.get("namingContexts", []))

    def _find_by_uuid(self, uuid: str) -> str | None:
        flt = f"(entryUUID={escape_filter(uuid)})"
        found = self.link.search(
            self.config.base_dn, flt, ["1.1"], what=f"find entryUUID {uuid}", missing_ok=True
        )
        return dns.clean(found[0][0]) if found else None

    def _locate(self, change: Change) -> str | None:
        """The entry's DN on the server now, or None when it is not there."""
        anchor = change.anchor or (self._resolve(change.kind, change.key) if self._resolve else None)
        if not anchor:
            return None
        if is_dn(anchor):
            return anchor if self._exists(anchor) else None
        return self._find_by_uuid(anchor)

    def _anchor_for(self, change: Change, dn: str) -> str | None:
        """The entryUUID of an entry found without a write (keeps a UUID anchor as it is)."""
        if change.anchor and not is_dn(change.anchor):
            return change.anchor
        got = self._read(dn, ["entryUUID"]) or {}
        return next(iter(got.get("entryUUID") or ()), change.anchor)

    def _uuid_of(self, res: Reply, dn: str) -> str | None:
        """The entryUUID from a write's post-read control (read back when the server sent none)."""
        ctrl = res.controls.get(_POST_READ)
        if ctrl:
            vals = (ctrl.get("value") or {}).get("result", {}).get("entryUUID") or []
            if vals:
                v = vals[0]
                return v.decode("utf-8") if isinstance(v, bytes) else str(v)
        got = self._read(dn, ["entryUUID"]) or {}
        return next(iter(got.get("entryUUID") or ()), None)

    def _bring_up_to_date(
        self, dn: str, entry: Mapping[str, list[str]], optional: frozenset[str]
    ) -> tuple[str | None, int]:
        """Compare an existing entry with ``entry``; replace what differs. (entryUUID, attributes changed)."""
        have = self._read(dn, [*entry, *optional, "entryUUID"])
        if have is None:  # deleted between our add and our read
            raise RejectedError(
                f"feide: add {dn}: the entry was in the way and then vanished; retried next run"
            )
        lower = {k.lower(): v for k, v in have.items()}
        mods: dict[str, list[tuple[str, list[str]]]] = {}
        for name, want in entry.items():
            got = lower.get(name.lower(), [])
            if name == "objectClass":
                missing = [c for c in want if c.lower() not in {g.lower() for g in got}]
                if missing:
                    mods[name] = [(MODIFY_ADD, missing)]
            elif not _same_values(name, got, want):
                mods[name] = [(MODIFY_REPLACE, want)]
        for name in optional:
            if name not in entry and lower.get(name.lower()):
                mods[name] = [(MODIFY_REPLACE, [])]
        uuid = next(iter(lower.get("entryuuid") or ()), None)
        if mods:
            uuid = self._uuid_of(self._modify(dn, mods), dn)
        return uuid, len(mods)

    def _ensure_containers(self, force: bool = False) -> None:
        """Add the people / units containers that are missing (once per run unless forced)."""
        if self._containers_ok and not force:
            return
        for dn, attrs in container_entries(self.config):
            entry = {k: values_of(v) for k, v in attrs.items()}
            code = self.link.add(dn, (), entry, what=f"add container {dn}", ok=(ENTRY_ALREADY_EXISTS,)).code
            if code != ENTRY_ALREADY_EXISTS:
                self.writes += 1
        self._containers_ok = True

    def _delete_containers(self) -> None:
        """Remove the (empty) containers under the org before the org itself, children first."""
        for dn, _ in reversed(container_entries(self.config)):
            self.link.delete(dn, f"delete container {dn}", ok=(NO_SUCH_OBJECT,))
            self.writes += 1


def _same_values(name: str, got: list[str], want: list[str]) -> bool:
    if name in _DN_ATTRS:
        try:
            return sorted(dns.normalize(v) for v in got) == sorted(dns.normalize(v) for v in want)
        except ValueError:  # an unparsable stored value (DNError): not the same
            return False
    return sorted(got) == sorted(want)


def link_from_config(cfg: Config, tcfg: FeideConfig) -> LdapLink:
    """The LDAP link of a live Feide target (reads the bind password file now; does not connect)."""
    key = f"targets.{cfg.target_key(tcfg)}"
    if not tcfg.url:
        raise ConfigError(f"{key}.url: not set (the target writes LDIF files)")
    password = None
    if tcfg.password_file:
        password = read_secret(tcfg.password_file, cfg.base_dir, f"{key}.password_file")
    return LdapLink(
        tcfg.url,
        bind_dn=tcfg.bind_dn,
        password=password,
        ca_file=str(cfg.path(tcfg.ca_file)) if tcfg.ca_file else None,
        start_tls=tcfg.start_tls,
        timeout=tcfg.timeout,
        page_size=tcfg.page_size,
        dialect=Dialect.OPENLDAP,
        label="feide",
    )
