"""Reconciling the live Feide catalog with the state store: what changed behind BAS's back.

Reads every entry under the Feide target's ``base_dn`` (paged, with ``entryUUID``),
matches the stored objects (``StateStore.iter_objects``) by their anchor (the entryUUID;
a DN anchor from the LDIF days is matched by DN) and reports drift:

- ``changed``: a managed attribute differs (values compared as sets; case-folded except
  for the case-exact ``eduPersonEntitlement``; DN-valued attributes compared as DNs);
- ``moved``: the entry is not at the DN BAS gave it (renamed by hand; not repaired);
- ``missing``: the object BAS created is gone from the catalog;
- ``unmanaged``: a person entry under the people OU that BAS does not know.

``userPassword`` is write-only for BAS and never compared. ``repair`` writes the
recorded values back for ``changed`` (one MODIFY_REPLACE per attribute). A missing
object is repaired by the core (provisioner.run.reconcile): it is forgotten in the state
store and the next sync creates it again. Unmanaged entries are never touched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ldap3 import MODIFY_REPLACE

from connectors.ad.reconcile import Drift
from connectors.base import FatalError
from connectors.feide.ldap import _DN_ATTRS, KINDS, is_dn
from connectors.ldap.ldif import values_of
from connectors.ldap.link import LdapLink, decode
from mappings.feide import OPTIONAL_ATTRS
from provisioner.config import FeideConfig
from provisioner.core import dn as dns

# Attributes whose equality matching rule is case-sensitive (everything else BAS writes
# is caseIgnore / numericString / objectIdentifier matching).
_CASE_EXACT = frozenset({"eduPersonEntitlement"})
# Never compared: write-only secrets and what is not an attribute.
_SKIP = frozenset({"dn", "userpassword"})

Catalog = dict[str, tuple[str, dict[str, list[str]]]]  # entryUUID -> (DN, attributes)


def read_catalog(link: LdapLink, base_dn: str, page_size: int = 500) -> Catalog:
    """Every entry under ``base_dn`` (paged): entryUUID -> (DN, attributes as text)."""
    if link.read(base_dn, ["1.1"]) is None:
        # Not "everything missing": a wrong server or base must not make a repair forget it all.
        raise FatalError(f"feide: base {base_dn} does not exist on {link.url}")
    out: Catalog = {}
    for found_dn, raw in link.paged(base_dn, "(objectClass=*)", ["*", "entryUUID"], page_size=page_size):
        attrs = decode(raw)
        uuid = next((v[0] for k, v in attrs.items() if k.lower() == "entryuuid" and v), None)
        if uuid:
            out[uuid.lower()] = (dns.clean(found_dn), attrs)
    return out


def norm_values(name: str, values: Iterable[str]) -> frozenset[Any]:
    """Values of one attribute in the form the server's matching rule compares them."""
    if name in _DN_ATTRS:
        out = set()
        for v in values:
            try:
                out.add(dns.normalize(v))
            except ValueError:  # an unparsable value: compared as it is
                out.add(v)
        return frozenset(out)
    if name in _CASE_EXACT:
        return frozenset(values)
    return frozenset(" ".join(v.split()).casefold() for v in values)


def _shown(values: list[str]) -> Any:
    return values[0] if len(values) == 1 else values


def compare(kind: str, attrs: Mapping[str, Any], have: Mapping[str, list[str]]) -> dict[str, dict[str, Any]]:
    """Attribute drift of one entry: attr -> {expected, actual} for each that differs."""
    lower = {k.lower(): v for k, v in have.items()}
    diff: dict[str, dict[str, Any]] = {}
    names = [*attrs, *sorted(OPTIONAL_ATTRS.get(kind, frozenset()) - set(attrs))]
    for name in names:
        if name.lower() in _SKIP:
            continue
        want = values_of(attrs.get(name))
        got = lower.get(name.lower(), [])
        if norm_values(name, want) != norm_values(name, got):
            diff[name] = {"expected": _shown(want), "actual": _shown(got)}
    return diff


def _people_base(cfg: FeideConfig) -> tuple:
    return dns.normalize(f"{cfg.people_ou},{cfg.base_dn}")


def _is_person(attrs: Mapping[str, list[str]]) -> bool:
    classes = {c.lower() for k, v in attrs.items() if k.lower() == "objectclass" for c in v}
    return bool(classes & {"person", "inetorgperson", "eduperson"})


def reconcile(
    session: LdapLink, cfg: FeideConfig, stored: Iterable[Mapping[str, Any]], *, repair: bool = False
) -> list[Drift]:
    """Compare the catalog under ``cfg.base_dn`` with the stored objects; optionally write values back."""
    found = read_catalog(session, cfg.base_dn, cfg.page_size)
    by_dn = {dns.normalize(dn): uuid for uuid, (dn, _) in found.items()}
    objs = [o for o in stored if o["status"] != "deleted" and o["kind"] in KINDS]
    out: list[Drift] = []
    seen: set[str] = set()
    for o in objs:
        anchor = o["anchor"] or ""
        uuid = by_dn.get(dns.normalize(anchor)) if is_dn(anchor) else anchor.lower()
        if not uuid or uuid not in found:
            out.append(Drift("missing", o["kind"], o["key"], "", f"{o['kind']} {o['key']}: deleted by hand"))
            continue
        seen.add(uuid)
        out.extend(_check(session, o, found[uuid], repair))
    people = _people_base(cfg)
    for uuid, (dn, attrs) in sorted(found.items(), key=lambda kv: kv[1][0].lower()):
        if uuid in seen or not _is_person(attrs):
            continue
        if dns.normalize(dn)[1:] == people:
            out.append(
                Drift(
                    "unmanaged",
                    "person",
                    None,
                    dn,
                    f"person {dn} is under the people OU but not managed by BAS",
                )
            )
    return out


def _check(
    session: LdapLink, o: Mapping[str, Any], entry: tuple[str, dict[str, list[str]]], repair: bool
) -> list[Drift]:
    """Attribute and placement drift of one stored object."""
    dn, have = entry
    kind, key, attrs = o["kind"], o["key"], o["attrs"]
    out: list[Drift] = []
    want_dn = attrs.get("dn")
    if isinstance(want_dn, str) and dns.normalize(want_dn) != dns.normalize(dn):
        out.append(Drift("moved", kind, key, dn, f"{kind} {key}: expected at {want_dn}"))
    diff = compare(kind, attrs, have)
    if diff:
        d = Drift(
            "changed", kind, key, dn, f"{kind} {key}: {', '.join(sorted(diff))} changed in the catalog", diff
        )
        if repair:
            mods = {name: [(MODIFY_REPLACE, values_of(attrs.get(name)))] for name in diff}
            session.modify(dn, mods, f"repair {kind} {key} ({', '.join(sorted(diff))})")
            d.repaired = True
        out.append(d)
    return out
