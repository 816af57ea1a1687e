"""Reconciling AD with the state store: what changed in the directory behind BAS's back.

Owns the read-back of the managed OUs (everything under ``base_dn``, read with paged
searches; group members with range retrieval) and its comparison with what the state
store recorded for the target (``StateStore.iter_objects``). Kinds of drift:

- ``changed``: a managed attribute differs (edited by hand);
- ``state``: enabled where BAS disabled it, or the other way round;
- ``moved``: not where BAS put it (renamed or moved by hand);
- ``members``: a group lacks members BAS added, or has members BAS did not add;
- ``missing``: the object BAS created is gone (deleted by hand);
- ``unmanaged``: a user or group under base_dn that BAS does not manage.

``repair`` writes the recorded values back for ``changed``, ``state``, ``moved`` and
``members``. It never deletes an unmanaged object (it may be someone's real account).
A missing object is repaired by the core (provisioner.run.reconcile): it is forgotten in
the state store, and the next sync creates it again.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import ldap3

from connectors.ad.connector import GROUP_ATTRS, UAC_DISABLED, USER_ATTRS, ldap_values
from connectors.ldap.link import Entry, LdapLink, guid_dn, guid_text, text
from mappings.ad import PLACEMENT_ATTRS
from provisioner.config import ADConfig
from provisioner.core import dn as dns

USER_FILTER = "(&(objectCategory=person)(objectClass=user))"
GROUP_FILTER = "(objectClass=group)"


@dataclass
class Drift:
    """One difference between AD and the state store."""

    kind: str  # changed | state | moved | members | missing | unmanaged
    object_kind: str  # person | group
    key: str | None  # our key (None for unmanaged objects)
    dn: str
    detail: str
    attrs: dict[str, dict[str, Any]] = field(default_factory=dict)  # attr -> {expected, actual}
    repaired: bool = False

    def to_json(self) -> dict[str, Any]:
        """Plain dict for JSON output."""
        return asdict(self)


@dataclass
class Directory:
    """The managed part of AD as read: users and groups by objectGUID."""

    users: dict[str, Entry]
    groups: dict[str, Entry]

    def guid_by_dn(self) -> dict[str, str]:
        """Lowercased DN -> objectGUID of every user read."""
        return {dn.lower(): g for g, (dn, _) in self.users.items()}


def read_directory(link: LdapLink, base_dn: str) -> Directory:
    """Every user and group under ``base_dn`` (paged)."""
    users = {
        guid_text(raw["objectGUID"][0]): (dn, raw) for dn, raw in link.paged(base_dn, USER_FILTER, USER_ATTRS)
    }
    groups = {
        guid_text(raw["objectGUID"][0]): (dn, raw)
        for dn, raw in link.paged(base_dn, GROUP_FILTER, GROUP_ATTRS)
    }
    return Directory(users, groups)


def reconcile(
    link: LdapLink, cfg: ADConfig, stored: Iterable[Mapping[str, Any]], *, repair: bool = False
) -> list[Drift]:
    """Compare AD under ``cfg.base_dn`` with the stored objects; optionally write the recorded values back."""
    found = read_directory(link, cfg.base_dn)
    disabled_ou = dns.within(cfg.disabled_ou, cfg.base_dn)
    objs = [o for o in stored if o["status"] != "deleted"]
    person_anchor = {o["key"]: o["anchor"] for o in objs if o["kind"] == "person" and o["anchor"]}
    by_dn = found.guid_by_dn()
    out: list[Drift] = []
    seen: set[str] = set()
    for o in objs:
        anchor = (o["anchor"] or "").lower()
        kind = o["kind"]
        entry = (found.users if kind == "person" else found.groups).get(anchor)
        if entry is None:
            entry = link.read(guid_dn(anchor), ["objectClass"]) if anchor else None
            where = f"now at {entry[0]}, outside base_dn" if entry else "deleted by hand"
            out.append(
                Drift("missing", kind, o["key"], entry[0] if entry else "", f"{kind} {o['key']}: {where}")
            )
            continue
        seen.add(anchor)
        out.extend(_compare(link, o, entry, disabled_ou, repair))
        if kind == "group" and o["members"] is not None:
            d = _members(link, cfg, o, entry, person_anchor, by_dn, found.users, repair)
            if d:
                out.append(d)
    for kind, pool in (("person", found.users), ("group", found.groups)):
        for g, (dn, _raw) in sorted(pool.items(), key=lambda kv: kv[1][0].lower()):
            if g not in seen:
                out.append(
                    Drift("unmanaged", kind, None, dn, f"{kind} {dn} is under base_dn but not managed by BAS")
                )
    return out


def _compare(
    link: LdapLink, o: Mapping[str, Any], entry: Entry, disabled_ou: str, repair: bool
) -> list[Drift]:
    """Attribute, placement and enabled-state drift of one object."""
    dn, raw = entry
    key, kind, attrs = o["key"], o["kind"], o["attrs"]
    out: list[Drift] = []
    diff: dict[str, dict[str, Any]] = {}
    for k, v in attrs.items():
        if k in PLACEMENT_ATTRS:
            continue
        want = [str(x) for x in ldap_values(v)]
        have = [x.decode("utf-8") for x in raw.get(k) or ()]
        if want != have:
            diff[k] = {
                "expected": want[0] if len(want) == 1 else want,
                "actual": have[0] if len(have) == 1 else have,
            }
    if diff:
        d = Drift("changed", kind, key, dn, f"{kind} {key}: {', '.join(sorted(diff))} changed in AD", diff)
        if repair:
            mods = {k: [(ldap3.MODIFY_REPLACE, [str(x) for x in ldap_values(attrs[k])])] for k in diff}
            link.modify(dn, mods, f"repair {kind} {key}")
            d.repaired = True
        out.append(d)
    disabled = kind == "person" and o["status"] == "disabled"
    rdn = f"CN={dns.escape(str(attrs['cn']))}"
    parent = disabled_ou if disabled else str(attrs.get("ou") or dns.parent(dn))
    if not dns.same(dn, f"{rdn},{parent}"):
        d = Drift("moved", kind, key, dn, f"{kind} {key}: expected at {rdn},{parent}")
        if repair:
            link.move(dn, rdn, parent, f"repair placement of {kind} {key}")
            d.repaired = True
        out.append(d)
    if kind == "person":
        uac = int(text(entry, "userAccountControl") or 0)
        if bool(uac & UAC_DISABLED) != disabled:
            state = "disabled" if uac & UAC_DISABLED else "enabled"
            d = Drift("state", kind, key, dn, f"person {key} is {state} in AD but {o['status']} in BAS")
            if repair:
                new = uac | UAC_DISABLED if disabled else uac & ~UAC_DISABLED
                link.modify(
                    dn, {"userAccountControl": [(ldap3.MODIFY_REPLACE, [new])]}, f"repair state of {key}"
                )
                d.repaired = True
            out.append(d)
    return out


def _members(
    link: LdapLink,
    cfg: ADConfig,
    o: Mapping[str, Any],
    entry: Entry,
    person_anchor: Mapping[str, str],
    by_dn: Mapping[str, str],
    present: Mapping[str, Any],
    repair: bool,
) -> Drift | None:
    """Membership drift of one group (members read with range retrieval)."""
    dn = entry[0]
    # A member whose account is gone is reported once, as missing, not again in every group.
    want = {
        person_anchor[pid].lower(): pid
        for pid, _ in o["members"]
        if pid in person_anchor and person_anchor[pid].lower() in present
    }
    have: dict[str, str] = {}  # guid (or DN for a member outside the managed OUs) -> DN
    for value in link.read_values(dn, "member", cfg.range_size):
        mdn = value.decode("utf-8")
        have[by_dn.get(mdn.lower(), mdn)] = mdn
    lacking = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    if not lacking and not extra:
        return None
    detail = {"expected_missing": [want[g] for g in lacking], "unexpected": [have[g] for g in extra]}
    d = Drift("members", "group", o["key"], dn, f"group {o['key']}: members differ", {"member": detail})
    if repair:
        if lacking:
            link.modify(
                dn, {"member": [(ldap3.MODIFY_ADD, [guid_dn(g) for g in lacking])]}, f"repair {dn}", ok=(68,)
            )
        if extra:
            link.modify(
                dn, {"member": [(ldap3.MODIFY_DELETE, [have[g] for g in extra])]}, f"repair {dn}", ok=(53,)
            )
        d.repaired = True
    return d
