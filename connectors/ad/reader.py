"""Reading AD back for a reconcile: the managed OUs as the differ sees the state store.

Owns the read of everything under ``base_dn`` (users and groups, paged; group members
with range retrieval) and its description as a ``provisioner.core.drift.LiveView``:
each recorded object found by its objectGUID, with the values AD holds in the
vocabulary BAS recorded (an equal value is reported as recorded; ``ou`` is the parent
DN, ``cn`` the RDN's value), members as the person keys BAS recorded. Nothing outside
``base_dn`` is read as part of the target: a recorded object found only by its GUID
elsewhere is a note ("outside base_dn", never moved back), and an account under the base
that BAS does not manage is a note too, never touched (it may be someone's real
account; privileged ones are never adopted, which the connector's create enforces).

Parking: BAS disables a person by setting the disabled bit and moving it to the
disabled OU. For a person BAS disabled, the live status is "disabled" only when both
hold (a DISABLE repair puts either right), and its ``ou`` is reported as recorded (its
place is the disabled OU; the recorded OU is where an enable puts it back). For an
active one, a disabled bit is "disabled" wherever it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from connectors.ad.connector import (
    GROUP_ATTRS,
    UAC_DISABLED,
    USER_ATTRS,
    ldap_values,
)
from connectors.base import Reader
from connectors.errors import FatalError
from connectors.ldap.link import Entry, LdapLink, guid_dn, guid_text, text
from mappings.ad import PLACEMENT_ATTRS
from provisioner.config import ADConfig
from provisioner.core import dn as dns
from provisioner.core.drift import DriftKind, LiveView, Note, Recorded, live_value

USER_FILTER = "(&(objectCategory=person)(objectClass=user))"
GROUP_FILTER = "(objectClass=group)"


def read_directory(link: LdapLink, tcfg: ADConfig, recorded: Sequence[Recorded]) -> LiveView:
    """Every user and group under ``base_dn``, matched with the recorded objects."""
    base = tcfg.base_dn
    if link.read(base, ["objectClass"], what=f"read base {base}") is None:
        # Not "everything deleted": a wrong base must not make a repair forget it all.
        raise FatalError(f"AD: base_dn {base} does not exist")
    users = {
        guid_text(r["objectGUID"][0]): (dn, r) for dn, r in link.paged(base, USER_FILTER, (*USER_ATTRS, "cn"))
    }
    groups = {guid_text(r["objectGUID"][0]): (dn, r) for dn, r in link.paged(base, GROUP_FILTER, GROUP_ATTRS)}
    disabled_ou = dns.within(tcfg.disabled_ou, base)
    anchors = {(r.anchor or "").lower(): r for r in recorded if r.kind == "person" and r.status != "deleted"}
    person_at = {
        dn.lower(): anchors[g].person_id or anchors[g].key for g, (dn, _) in users.items() if g in anchors
    }
    view = LiveView()
    seen: set[str] = set()
    for rec in recorded:
        if rec.status == "deleted":
            continue
        anchor = (rec.anchor or "").lower()
        entry = (users if rec.kind == "person" else groups).get(anchor)
        if entry is None:
            elsewhere = link.read(guid_dn(anchor), ["objectClass"]) if anchor else None
            if elsewhere is None:
                view.gone.add(rec.key)
            else:
                where = f"{rec.kind} {rec.key}: now at {elsewhere[0]}, outside base_dn"
                view.notes.append(Note(DriftKind.MISSING, rec.kind, rec.key, elsewhere[0], where))
            continue
        seen.add(anchor)
        status = _status(rec, entry, disabled_ou)
        members = None
        if rec.kind == "group" and rec.members is not None:
            members = _members(link, tcfg, rec, entry[0], person_at, view)
        view.found(rec, status, _attrs(rec, entry, disabled_ou), members)
    for kind, pool in (("person", users), ("group", groups)):
        for g, (dn, _raw) in sorted(pool.items(), key=lambda kv: kv[1][0].lower()):
            if g not in seen:
                detail = f"{kind} {dn} is under base_dn but not managed by BAS"
                view.notes.append(Note(DriftKind.UNMANAGED, kind, None, dn, detail))
    return view


def _parked(dn: str, disabled_ou: str) -> bool:
    return dns.same(dns.parent(dn), disabled_ou)


def _status(rec: Recorded, entry: Entry, disabled_ou: str) -> str:
    if rec.kind != "person":
        return "active"
    off = bool(int(text(entry, "userAccountControl") or 0) & UAC_DISABLED)
    if rec.status == "disabled":
        return "disabled" if off and _parked(entry[0], disabled_ou) else "active"
    return "disabled" if off else "active"


def _attrs(rec: Recorded, entry: Entry, disabled_ou: str) -> dict:
    """The entry's values in the recorded vocabulary (recorded where AD holds the same)."""
    dn, raw = entry
    out = {}
    for k, v in rec.attrs.items():
        if k in PLACEMENT_ATTRS:
            continue
        have = [x.decode("utf-8") for x in raw.get(k) or ()]
        out[k] = live_value(v, have, [str(x) for x in ldap_values(v)] == have)
    if "cn" in rec.attrs:
        same = dns.same(dns.rdn(dn), f"CN={dns.escape(str(rec.attrs['cn']))}")
        out["cn"] = rec.attrs["cn"] if same else text(entry, "cn")
    if "ou" in rec.attrs:
        parent = dns.parent(dn)
        kept = rec.status == "disabled" and _parked(dn, disabled_ou)
        out["ou"] = rec.attrs["ou"] if kept or dns.same(parent, str(rec.attrs["ou"])) else parent
    return out


def _members(
    link: LdapLink, tcfg: ADConfig, rec: Recorded, dn: str, person_at: Mapping[str, str], view: LiveView
) -> list[tuple[str, str]]:
    """The group's members as recorded keys; a member BAS does not manage is a note."""
    role = {pid: r for pid, r in rec.members or ()}
    out: list[tuple[str, str]] = []
    for value in link.read_values(dn, "member", tcfg.range_size):
        mdn = value.decode("utf-8")
        pid = person_at.get(mdn.lower())
        if pid is None:
            detail = f"group {rec.key}: member {mdn} is not an account BAS manages; left as it is"
            view.notes.append(Note(DriftKind.MEMBERS, "group", rec.key, dn, detail))
        else:
            out.append((pid, role.get(pid, "")))
    return out


class ADReader(Reader):
    """The AD target's reader: ``read_directory`` over its own link."""

    def __init__(self, link: LdapLink, tcfg: ADConfig) -> None:
        self.link = link
        self.tcfg = tcfg

    def read(self, recorded: Sequence[Recorded], cursor: str | None) -> LiveView:
        """Everything under base_dn, read whole (AD has no cursor BAS uses)."""
        return read_directory(self.link, self.tcfg, recorded)

    def close(self) -> None:
        """Unbind the link."""
        self.link.close()
