"""Reading the live Feide catalog back for a reconcile, as the differ sees the state store.

Owns the read of every entry under the Feide target's ``base_dn`` (paged, with
``entryUUID``) and its description as a ``provisioner.core.drift.LiveView``: each
recorded object found by its anchor (the entryUUID; a DN anchor from the LDIF days is
matched by DN), with the values the server holds in the vocabulary BAS recorded.
Values are compared as the server's matching rules compare them (as sets; case-folded
except for the case-exact ``eduPersonEntitlement``; DN-valued attributes as DNs), and
a value that matches is reported as recorded, so a case-only change of a
case-insensitive attribute is no drift. ``dn`` is the entry's DN (a rename by hand is
a move back). ``userPassword`` is write-only for BAS and never compared. A person
entry directly under the people OU that BAS does not know is a note, never touched.
A base that does not exist is a FatalError, not "everything deleted".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from connectors.base import Reader
from connectors.errors import FatalError
from connectors.feide.entries import KINDS
from connectors.feide.ldap import _DN_ATTRS, is_dn
from connectors.ldap.ldif import values_of
from connectors.ldap.link import LdapLink, decode
from mappings.feide import NIN_ATTRS, OPTIONAL_ATTRS
from provisioner.config import FeideConfig
from provisioner.core import dn as dns
from provisioner.core.drift import DriftKind, LiveView, Note, Recorded, live_value
from provisioner.core.nin_seal import sealed_attrs

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
        out: set[Any] = set()
        for v in values:
            try:
                out.add(dns.normalize(v))
            except ValueError:  # an unparsable value: compared as it is
                out.add(v)
        return frozenset(out)
    if name in _CASE_EXACT:
        return frozenset(values)
    return frozenset(" ".join(v.split()).casefold() for v in values)


def live_attrs(rec: Recorded, dn: str, have: Mapping[str, list[str]]) -> dict[str, Any]:
    """An entry's values in the recorded vocabulary (recorded where the server holds the same)."""
    lower = {k.lower(): v for k, v in have.items()}
    attrs = rec.attrs
    out: dict[str, Any] = {}
    for name in [*attrs, *sorted(OPTIONAL_ATTRS.get(rec.kind, frozenset()) - set(attrs))]:
        if name.lower() in _SKIP:
            out[name] = attrs.get(name)
            continue
        got = lower.get(name.lower(), [])
        same = norm_values(name, values_of(attrs.get(name))) == norm_values(name, got)
        out[name] = live_value(attrs.get(name), got, same)
    want_dn = attrs.get("dn")
    if isinstance(want_dn, str) and not dns.same(want_dn, dn):
        out["dn"] = dn
    return out


def read_catalog_view(
    link: LdapLink,
    cfg: FeideConfig,
    recorded: Sequence[Recorded],
    seal: Callable[[str], str] | None = None,
) -> LiveView:
    """The catalog under ``cfg.base_dn`` matched with the recorded objects.

    ``seal``: the store's NIN seal; a NIN read is sealed as the store records it, so that a
    reconcile compares seals (None: read as it is, for a store that holds none).
    """
    found = read_catalog(link, cfg.base_dn, cfg.page_size)
    by_dn = {dns.normalize(dn): uuid for uuid, (dn, _) in found.items()}
    view = LiveView()
    seen: set[str] = set()
    for rec in recorded:
        if rec.status == "deleted" or rec.kind not in KINDS:
            continue
        anchor = rec.anchor or ""
        uuid = by_dn.get(dns.normalize(anchor)) if is_dn(anchor) else anchor.lower()
        if not uuid or uuid not in found:
            view.gone.add(rec.key)
            continue
        seen.add(uuid)
        dn, have = found[uuid]
        view.found(rec, "active", live_attrs(rec, dn, _sealed(have, seal)))
    people = dns.normalize(f"{cfg.people_ou},{cfg.base_dn}")
    for uuid, (dn, attrs) in sorted(found.items(), key=lambda kv: kv[1][0].lower()):
        if uuid not in seen and _is_person(attrs) and dns.normalize(dn)[1:] == people:
            detail = f"person {dn} is under the people OU but not managed by BAS"
            view.notes.append(Note(DriftKind.UNMANAGED, "person", None, dn, detail))
    return view


_NIN_NAMES = frozenset(n.lower() for n in NIN_ATTRS)


def _sealed(have: Mapping[str, list[str]], seal: Callable[[str], str] | None) -> Mapping[str, list[str]]:
    """An entry's values with its NINs sealed (a server may spell an attribute in any case)."""
    if seal is None:
        return have
    return sealed_attrs(have, [k for k in have if k.lower() in _NIN_NAMES], seal)


def _is_person(attrs: Mapping[str, list[str]]) -> bool:
    classes = {c.lower() for k, v in attrs.items() if k.lower() == "objectclass" for c in v}
    return bool(classes & {"person", "inetorgperson", "eduperson"})


class FeideReader(Reader):
    """The live Feide target's reader: ``read_catalog_view`` over its own link."""

    nin_attrs = NIN_ATTRS

    def __init__(self, link: LdapLink, tcfg: FeideConfig) -> None:
        self.link = link
        self.tcfg = tcfg

    def read(self, recorded: Sequence[Recorded], cursor: str | None) -> LiveView:
        """The catalog under base_dn, read whole."""
        return read_catalog_view(self.link, self.tcfg, recorded, self._nin_seal)

    def close(self) -> None:
        """Unbind the link."""
        self.link.close()
