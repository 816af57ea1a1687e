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
becomes the anchor from then on. Filter values are escaped with escape_filter_chars;
DNs come escaped from the mapping.

Errors are typed by ``feide_ldap_session``: an unreachable or busy server is transient,
bad credentials or a missing base are fatal, a schema or constraint violation rejects
that one entry and the run goes on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ldap3 import BASE, MODIFY_ADD, MODIFY_REPLACE, SUBTREE, Connection
from ldap3.protocol.rfc4527 import post_read_control
from ldap3.utils.conv import escape_filter_chars

from connectors.base import AnchorResolver, Applied, Connector, FatalError, RejectedError, StoredObject
from connectors.ldap.ldif import values_of
from connectors.ldap.session import (
    RESULT_ALREADY_EXISTS,
    RESULT_NO_SUCH_OBJECT,
    RESULT_NOT_ALLOWED_ON_NON_LEAF,
    RESULT_SUCCESS,
    LdapSession,
)
from mappings.feide import OPTIONAL_ATTRS, container_entries, escape_dn_value, unescape_rdn_value
from provisioner.config import FeideConfig, OwnerConfig
from provisioner.core.plan import Change, Op

KINDS = ("org", "orgunit", "person")
_OPS = (Op.CREATE, Op.UPDATE, Op.MOVE, Op.DELETE)
_POST_READ = "1.3.6.1.1.13.2"
# The post-read control asking for entryUUID, built (BER-encoded) once: it never changes.
_READ_UUID = post_read_control(["entryUUID"])
# Attributes with DN syntax: the server may store them in another (equivalent) spelling.
_DN_ATTRS = frozenset({"eduPersonOrgDN", "eduPersonOrgUnitDN", "eduPersonPrimaryOrgUnitDN"})


def parse_rdns(dn: str) -> list[list[tuple[str, str]]]:
    """A DN as RDNs of (attribute, raw value) pairs, leftmost first (RFC 4514).

    Our own small parser: ldap3's parse_dn refuses DNs that OpenLDAP returns (an
    unescaped ``#`` inside a value, valid in RFC 4514), and to_dn splits an escaped
    trailing space before a comma in the wrong place.
    """
    rdns: list[list[tuple[str, str]]] = []
    rdn: list[tuple[str, str]] = []
    buf: list[str] = []
    i = 0

    def end_pair() -> None:
        text = "".join(buf).lstrip(" ")
        attr, eq, value = text.partition("=")
        if not eq or not attr.strip():
            raise ValueError(f"not a DN: {dn!r}")
        value = value.lstrip(" ")
        while value.endswith(" ") and not value.endswith("\\ "):  # unescaped trailing spaces
            value = value[:-1]
        rdn.append((attr.strip(), value))
        buf.clear()

    while i < len(dn):
        c = dn[i]
        if c == "\\" and i + 1 < len(dn):
            buf.append(dn[i : i + 2])
            i += 2
            continue
        if c in ",;+":
            end_pair()
            if c != "+":
                rdns.append(rdn)
                rdn = []
        else:
            buf.append(c)
        i += 1
    if buf or rdn:
        end_pair()
        rdns.append(rdn)
    return rdns


def norm_dn(dn: str) -> tuple[tuple[tuple[str, str], ...], ...]:
    """A DN in a form for comparing: attribute names and values case-folded, escapes undone."""
    return tuple(
        tuple(sorted((a.lower(), unescape_rdn_value(v).casefold()) for a, v in rdn)) for rdn in parse_rdns(dn)
    )


def clean_dn(dn: str) -> str:
    """A DN (as a server returns it) re-escaped the way the mapping and ldap3 write DNs."""
    return ",".join(
        "+".join(f"{a}={escape_dn_value(unescape_rdn_value(v))}" for a, v in rdn) for rdn in parse_rdns(dn)
    )


def split_dn(dn: str) -> list[str]:
    """The RDNs of a DN as strings, leftmost first (a multi-valued RDN kept whole)."""
    return ["+".join(f"{a}={v}" for a, v in rdn) for rdn in parse_rdns(dn)]


def is_dn(anchor: str) -> bool:
    """True when an anchor is a DN (the LDIF target's anchors), not an entryUUID."""
    return "=" in anchor


class FeideLdapConnector(Connector):
    """Writes the Feide catalog to an LDAP server, one change at a time."""

    target = "feide"

    def __init__(self, config: FeideConfig, owner: OwnerConfig, session: LdapSession) -> None:
        self.config = config
        self.owner = owner
        self.session = session
        self._resolve: AnchorResolver | None = None
        self._containers_ok = False  # the OU containers are known to exist this run
        self.writes = 0  # write operations sent this run (for logs and tests)

    # -- the Connector protocol -------------------------------------------------------

    def begin(self, run_id: str, resolve: AnchorResolver) -> None:
        """Connect and bind; make sure the base DN (or at least its parent) exists."""
        self._resolve = resolve
        self._containers_ok = False
        self.writes = 0
        self.session.open()
        base = self.config.base_dn
        if self._exists(base):
            return
        parent = ",".join(split_dn(base)[1:])
        if parent and self._exists(parent):
            return
        if self._is_naming_context(base):
            return  # an empty database: the org entry will be its suffix entry
        raise FatalError(f"feide: no such base on {self.session.url}: neither {base} nor its parent exists")

    def apply(self, change: Change) -> Applied:
        """Apply one change to the server; raise a typed error on failure."""
        if change.kind not in KINDS:
            raise RejectedError(f"feide: unknown object kind {change.kind!r} ({change.kind}:{change.key})")
        if change.op not in _OPS:
            raise RejectedError(
                f"feide: operation {change.op.value!r} is not supported ({change.kind}:{change.key}); "
                "Feide entries are created, updated, moved and deleted"
            )
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
        self.session.close()
        self._resolve = None

    # -- operations -------------------------------------------------------------------

    def _create(self, change: Change) -> Applied:
        dn = change.place.get("dn")
        if not dn or not isinstance(dn, str):
            raise RejectedError(f"feide: create of {change.kind}:{change.key} has no dn")
        entry = self._entry(change)
        if not entry.get("objectClass"):
            raise RejectedError(f"feide: create of {change.kind}:{change.key} has no objectClass")
        what = f"add {dn}"
        res = self._add(dn, entry)
        if res.get("result") == RESULT_NO_SUCH_OBJECT and change.kind != "org":
            self._ensure_containers(force=True)  # the people / units container is missing
            res = self._add(dn, entry)
        if res.get("result") == RESULT_NO_SUCH_OBJECT and change.kind == "org":
            raise FatalError(f"feide: no such base: the parent of {dn} does not exist")
        if res.get("result") == RESULT_ALREADY_EXISTS:
            uuid, changed = self._bring_up_to_date(dn, entry, OPTIONAL_ATTRS.get(change.kind, frozenset()))
            if change.kind == "org":
                self._ensure_containers()
            note = f"already existed; {changed} attribute(s) updated" if changed else "already existed"
            return Applied(anchor=uuid, note=note)
        self.session.check(res, what)
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
        self.session.check(res, f"modify {dn} ({', '.join(sorted(mods))})")
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
        if norm_dn(cur) == norm_dn(new):
            return Applied(anchor=self._anchor_for(change, cur), note="already at its new DN")
        res = self._modify_dn(cur, new)
        if res.get("result") == RESULT_NO_SUCH_OBJECT:
            self._ensure_containers(force=True)  # a new people / units container
            res = self._modify_dn(cur, new)
        self.session.check(res, f"rename {cur} to {new}")
        return Applied(anchor=self._uuid_of(res, new))

    def _delete(self, change: Change) -> Applied:
        dn = self._locate(change)
        if dn is None:
            return Applied(anchor=change.anchor, note="not on the server: nothing to delete")
        if change.kind == "org":
            self._delete_containers()
        res = self.session.run(f"delete {dn}", lambda c: c.delete(dn))
        self.writes += 1
        code = res.get("result")
        if code == RESULT_NO_SUCH_OBJECT:
            return Applied(anchor=change.anchor, note="already gone")
        if code == RESULT_NOT_ALLOWED_ON_NON_LEAF:
            raise RejectedError(f"feide: delete {dn}: it has entries below it that BAS does not own")
        self.session.check(res, f"delete {dn}")
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

    def _add(self, dn: str, entry: Mapping[str, list[str]]) -> dict[str, Any]:
        self.writes += 1
        return self.session.run(
            f"add {dn}",
            lambda c: c.add(dn, attributes=dict(entry), controls=[_READ_UUID]),
        )

    def _modify(self, dn: str, mods: Mapping[str, Any]) -> dict[str, Any]:
        self.writes += 1
        return self.session.run(f"modify {dn}", lambda c: c.modify(dn, dict(mods), controls=[_READ_UUID]))

    def _modify_dn(self, cur: str, new: str) -> dict[str, Any]:
        cur_parts, new_parts = split_dn(cur), split_dn(new)
        new_parent = ",".join(new_parts[1:])
        superior = new_parent if norm_dn(new_parent) != norm_dn(",".join(cur_parts[1:])) else None
        self.writes += 1
        return self.session.run(
            f"rename {cur}",
            lambda c: c.modify_dn(
                cur,
                new_parts[0],
                delete_old_dn=True,
                new_superior=superior,
                controls=[_READ_UUID],
            ),
        )

    def _read(self, dn: str, attributes: list[str]) -> dict[str, list[str]] | None:
        """One entry's attributes (values decoded as UTF-8), or None when it does not exist."""
        box: list[Connection] = []

        def op(c: Connection) -> None:
            box.append(c)
            c.search(dn, "(objectClass=*)", BASE, attributes=attributes)

        res = self.session.run(f"read {dn}", op)
        if res.get("result") == RESULT_NO_SUCH_OBJECT:
            return None
        self.session.check(res, f"read {dn}")
        found = self.session.entries(box[0])
        if not found:
            return None
        return decode(found[0]["raw_attributes"])

    def _exists(self, dn: str) -> bool:
        return self._read(dn, ["1.1"]) is not None

    def _is_naming_context(self, dn: str) -> bool:
        root = self._read("", ["namingContexts"]) or {}
        return any(norm_dn(nc) == norm_dn(dn) for nc in root.get("namingContexts", []))

    def _find_by_uuid(self, uuid: str) -> str | None:
        box: list[Connection] = []
        flt = f"(entryUUID={escape_filter_chars(uuid)})"

        def op(c: Connection) -> None:
            box.append(c)
            c.search(self.config.base_dn, flt, SUBTREE, attributes=["1.1"])

        res = self.session.run(f"find entryUUID {uuid}", op)
        if res.get("result") == RESULT_NO_SUCH_OBJECT:
            return None
        self.session.check(res, f"find entryUUID {uuid}")
        found = self.session.entries(box[0])
        return clean_dn(found[0]["dn"]) if found else None

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
        return (got.get("entryUUID") or [change.anchor])[0]

    def _uuid_of(self, res: Mapping[str, Any], dn: str) -> str | None:
        """The entryUUID from a write's post-read control (read back when the server sent none)."""
        ctrl = (res.get("controls") or {}).get(_POST_READ)
        if ctrl:
            vals = (ctrl.get("value") or {}).get("result", {}).get("entryUUID") or []
            if vals:
                v = vals[0]
                return v.decode("utf-8") if isinstance(v, bytes) else str(v)
        got = self._read(dn, ["entryUUID"]) or {}
        return (got.get("entryUUID") or [None])[0]

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
        uuid = (lower.get("entryuuid") or [None])[0]
        if mods:
            res = self._modify(dn, mods)
            self.session.check(res, f"modify {dn} ({', '.join(sorted(mods))})")
            uuid = self._uuid_of(res, dn)
        return uuid, len(mods)

    def _ensure_containers(self, force: bool = False) -> None:
        """Add the people / units containers that are missing (once per run unless forced)."""
        if self._containers_ok and not force:
            return
        for dn, attrs in container_entries(self.config):
            entry = {k: values_of(v) for k, v in attrs.items()}
            res = self.session.run(f"add {dn}", lambda c, dn=dn, entry=entry: c.add(dn, attributes=entry))
            if res.get("result") != RESULT_ALREADY_EXISTS:
                self.writes += 1
                self.session.check(res, f"add container {dn}")
        self._containers_ok = True

    def _delete_containers(self) -> None:
        """Remove the (empty) containers under the org before the org itself, children first."""
        for dn, _ in reversed(container_entries(self.config)):
            res = self.session.run(f"delete {dn}", lambda c, dn=dn: c.delete(dn))
            if res.get("result") not in (RESULT_SUCCESS, RESULT_NO_SUCH_OBJECT):
                self.session.check(res, f"delete container {dn}")
            self.writes += 1


def decode(raw: Mapping[str, list[bytes]]) -> dict[str, list[str]]:
    """Raw attribute values as text (UTF-8; anything else is kept as escaped text)."""
    return {name: [v.decode("utf-8", "backslashreplace") for v in vals] for name, vals in raw.items()}


def _same_values(name: str, got: list[str], want: list[str]) -> bool:
    if name in _DN_ATTRS:
        try:
            return sorted(norm_dn(v) for v in got) == sorted(norm_dn(v) for v in want)
        except Exception:  # an unparsable stored value: not the same
            return False
    return sorted(got) == sorted(want)
