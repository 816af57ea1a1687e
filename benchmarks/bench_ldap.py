"""Benchmark: the live LDAP connectors against a bare ldap3 add loop, on real servers (run by hand).

In one run, on the same servers:

1. Feide: 10,000 person entries (plus the org, its containers and the school units)
   created by ``FeideLdapConnector`` (driven directly: ``begin``, ``apply`` per CREATE
   change, ``finish``; no state store, so only the LDAP work is timed), then the same
   entries added by a bare ldap3 loop (``conn.add`` one by one on one connection) under a
   second base DN. The changes come from ``mappings.feide.map_state`` of the synthetic
   state of ``bench_feide_ldif.build`` (scale 0.1: 10,500 persons, the first 10,000
   taken).
2. AD: 300 users with passwords through ``ADConnector`` (its real create: look for an
   existing account, add disabled, read the objectGUID, set unicodePwd, enable) and a
   bare loop doing add disabled, set unicodePwd, enable on one LDAPS connection. The
   connector's OU is deleted before the bare run (sAMAccountName is unique domain-wide)
   and the bare loop adds the same users under its own OU.
3. Feide: a no-op reconcile of the 10,000 persons: the reader
   (``connectors.feide.reader.read_catalog_view``) and the drift diff
   (``provisioner.core.drift.diff_drift``).

Needs slapd (a private one on a free port, tests/slapd_server.py) and root for the Samba
DC (tests/samba_dc.py; ports 389/636 must be free). Usage::

    sudo .venv/bin/python benchmarks/bench_ldap.py [--persons 10000] [--ad-users 300] [--no-ad]
"""

from __future__ import annotations

import argparse
import json
import secrets
import ssl
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import ldap3  # noqa: E402
from bench_feide_ldif import OWNER, build  # noqa: E402

from connectors import passwords as pw  # noqa: E402
from connectors.ad.connector import UAC_DISABLED, UAC_NORMAL, USER_CLASSES, ADConnector, entry_attrs  # noqa: E402
from connectors.feide.ldap import FeideLdapConnector  # noqa: E402
from connectors.feide.reader import read_catalog_view  # noqa: E402
from connectors.ldap.codes import Dialect  # noqa: E402
from connectors.ldap.ldif import values_of  # noqa: E402
from connectors.ldap.link import LdapLink  # noqa: E402
from mappings import ad, feide  # noqa: E402
from mappings.base import MappingContext  # noqa: E402
from mappings.feide import container_entries  # noqa: E402
from provisioner.config import ADConfig, FeideConfig  # noqa: E402
from provisioner.core import dn as dns  # noqa: E402
from provisioner.core.drift import Recorded, diff_drift  # noqa: E402
from provisioner.core.lifecycle import Policy  # noqa: E402
from provisioner.core.model import DesiredState  # noqa: E402
from provisioner.core.plan import Change, Op  # noqa: E402
from tests.slapd_server import ADMIN_DN, ADMIN_PASSWORD, SUFFIX, SlapdServer  # noqa: E402

PASSWORD_TEMPLATE = "{SASL}{username}@AD.EKSEMPEL.NO"


def clock(fn: Callable[[], Any]) -> tuple[float, Any]:
    """Run fn once; (seconds, result)."""
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def line(label: str, n: int, secs: float) -> None:
    """Print one timing with its rate."""
    print(f"  {label:<40} {n:>6} entries {secs:8.2f} s {n / secs:9.1f} entries/s", flush=True)


def feide_changes(state: DesiredState, fcfg: FeideConfig, persons: int) -> list[Change]:
    """CREATE changes for the org, the units and the first ``persons`` persons (the pipeline's order)."""
    objs = list(feide.map_state(state, MappingContext(OWNER, fcfg, state.as_of)))
    order = {"org": 0, "orgunit": 1, "person": 2}
    objs.sort(key=lambda o: order[o.kind])
    people = [o for o in objs if o.kind == "person"][:persons]
    chosen = [o for o in objs if o.kind != "person"] + people
    return [
        Change("feide", Op.CREATE, o.kind, o.key, "bench", attrs=o.attrs, place=o.place, username=o.username)
        for o in chosen
    ]


def feide_config(base: str, url: str) -> FeideConfig:
    """A live Feide target under ``base`` on the benchmark's slapd."""
    return FeideConfig(
        mode="apply",
        base_dn=base,
        url=url,
        start_tls=True,  # as BAS must; the link itself is built by feide_link
        bind_dn=ADMIN_DN,
        password_file="unused",  # the link is built here with the password, not from a file
        user_password_template=PASSWORD_TEMPLATE,
        page_size=1000,
    )


def feide_link(server: SlapdServer) -> LdapLink:
    """The link the live Feide connector uses: StartTLS against the server's CA."""
    return LdapLink(
        server.url, bind_dn=ADMIN_DN, password=ADMIN_PASSWORD, start_tls=True, ca_file=str(server.ca_file)
    )


def bench_feide(server: SlapdServer, state: DesiredState, persons: int) -> None:
    """Connector vs bare ldap3 adds of the same entries; then a no-op reconcile."""
    tag = secrets.token_hex(3)
    fcfg = feide_config(f"dc=conn{tag},{SUFFIX}", server.url)
    changes = feide_changes(state, fcfg, persons)
    n = len(changes)
    connector = FeideLdapConnector(fcfg, OWNER, feide_link(server))
    anchors: dict[str, str | None] = {}

    def run_connector() -> None:
        connector.begin("bench", lambda kind, key: None)
        for c in changes:
            anchors[f"{c.kind}:{c.key}"] = connector.apply(c).anchor
        connector.finish([])

    secs_conn, _ = clock(run_connector)
    writes = connector.writes
    connector.close()

    # The same entries (as the connector writes them, userPassword included) under another base.
    bcfg = feide_config(f"dc=bare{tag},{SUFFIX}", server.url)
    bare_changes = feide_changes(state, bcfg, persons)
    shaper = FeideLdapConnector(bcfg, OWNER, feide_link(server))
    entries = [(str(c.place["dn"]), shaper._entry(c)) for c in bare_changes]
    containers = [(dn, {k: values_of(v) for k, v in a.items()}) for dn, a in container_entries(bcfg)]
    entries = entries[:1] + containers + entries[1:]  # org, containers, units, persons
    # Connected as the connector's link connects (StartTLS, no schema read, so no client-side checks).
    tls = ldap3.Tls(ca_certs_file=str(server.ca_file), validate=ssl.CERT_REQUIRED)
    conn = ldap3.Connection(ldap3.Server(server.url, get_info=ldap3.NONE, tls=tls), ADMIN_DN, ADMIN_PASSWORD)
    conn.open()
    conn.start_tls()
    conn.bind()

    def run_bare() -> int:
        failed = 0
        for dn, attrs in entries:
            if not conn.add(dn, attributes=attrs):
                failed += 1
        return failed

    secs_bare, failed = clock(run_bare)
    conn.unbind()
    print(f"Feide (slapd {server.url}): {persons} persons; {n} changes, {len(entries)} bare adds")
    line(f"connector ({writes} writes)", n, secs_conn)
    line(f"bare ldap3 add loop ({failed} failed)", len(entries), secs_bare)
    ratio = (n / secs_conn) / (len(entries) / secs_bare)
    print(f"  ratio connector/bare: {ratio:.2f} (target >= 0.8)", flush=True)

    stored = [
        Recorded(
            c.kind,
            c.key,
            anchors[f"{c.kind}:{c.key}"],
            "active",
            json.loads(json.dumps(c.record())),
            None,
            c.person_id,
            c.username,
        )
        for c in changes
    ]
    link = feide_link(server)

    def reconcile() -> list[Change]:
        view = read_catalog_view(link, fcfg, stored)
        policy = Policy(disable_first=False, delete_after_days=0)
        return diff_drift(
            "feide", stored, view, policy=policy, placement=feide.PLACEMENT_ATTRS, as_of="2025-10-01"
        )

    secs_rec, drift = clock(reconcile)
    link.close()
    print(f"Feide no-op reconcile: {len(stored)} stored objects, {len(drift)} drift")
    line("reconcile (read back + compare)", len(stored), secs_rec)


def ad_changes(state: DesiredState, acfg: ADConfig, users: int) -> list[Change]:
    """CREATE changes for the first ``users`` AD persons."""
    objs = list(ad.map_state(state, MappingContext(OWNER, acfg, state.as_of)))
    people = [o for o in objs if o.kind == "person"][:users]
    return [
        Change("ad", Op.CREATE, o.kind, o.key, "bench", attrs=o.attrs, place=o.place, username=o.username)
        for o in people
    ]


def bench_ad(workdir: Path, state: DesiredState, users: int) -> None:
    """ADConnector creates vs a bare add / unicodePwd / enable loop on one LDAPS connection."""
    from tests.samba_dc import start_dc

    dc = start_dc(workdir)
    try:
        print(f"AD (Samba DC {dc.url}, started in {dc.started_in:.1f} s): {users} users with passwords")
        admin = LdapLink(
            dc.url,
            bind_dn=dc.admin_dn,
            password=dc.admin_password,
            ca_file=str(dc.ca_file),
            tls_server_name=dc.tls_name,
            timeout=60,
            dialect=Dialect.AD,
            label="AD",
        )
        tag = secrets.token_hex(3)
        base_c, base_b = f"OU=bconn{tag},{dc.domain_dn}", f"OU=bbare{tag},{dc.domain_dn}"
        for base in (base_c, base_b):
            admin.add(base, ("top", "organizationalUnit"), {})
        try:
            acfg = ADConfig(base_dn=base_c, initial_passwords=False, password_length=16)
            changes = ad_changes(state, acfg, users)
            link = LdapLink(
                dc.url,
                bind_dn=dc.admin_dn,
                password=dc.admin_password,
                ca_file=str(dc.ca_file),
                tls_server_name=dc.tls_name,
                timeout=60,
                dialect=Dialect.AD,
                label="AD",
            )
            connector = ADConnector(acfg, link, password_dir=None, name="ad")

            def run_connector() -> None:
                connector.begin("bench", lambda kind, key: None)
                for c in changes:
                    connector.apply(c)
                connector.finish([])

            secs_conn, _ = clock(run_connector)
            connector.close()
            admin.delete(base_c, "cleanup", tree=True, ok=(32,))

            bcfg = ADConfig(base_dn=base_b)
            bare = ad_changes(state, bcfg, users)
            ous = sorted({str(c.place["ou"]) for c in bare}, key=len)
            tls = ldap3.Tls(
                ca_certs_file=str(dc.ca_file), validate=ssl.CERT_REQUIRED, valid_names=[dc.tls_name]
            )
            server = ldap3.Server(dc.url, use_ssl=True, tls=tls, get_info=ldap3.NONE, connect_timeout=10)
            conn = ldap3.Connection(server, dc.admin_dn, dc.admin_password, raise_exceptions=False)
            conn.bind()

            def run_bare() -> int:
                failed = 0
                for ou in ous + [f"OU=Grupper,{base_b}", f"OU=Deaktiverte,{base_b}"]:
                    conn.add(ou, ["top", "organizationalUnit"])
                for c in bare:
                    dn = f"CN={dns.escape(str(c.place['cn']))},{c.place['ou']}"
                    attrs = entry_attrs(c.attrs)
                    attrs["userAccountControl"] = UAC_NORMAL | UAC_DISABLED
                    ok = conn.add(dn, USER_CLASSES, attrs)
                    secret = pw.generate(16, [c.username or "", str(c.attrs.get("displayName") or "")])
                    value = f'"{secret}"'.encode("utf-16-le")
                    ok = ok and conn.modify(dn, {"unicodePwd": [(ldap3.MODIFY_REPLACE, [value])]})
                    ok = ok and conn.modify(
                        dn, {"userAccountControl": [(ldap3.MODIFY_REPLACE, [UAC_NORMAL])]}
                    )
                    failed += not ok
                return failed

            secs_bare, failed = clock(run_bare)
            conn.unbind()
            line("connector", len(changes), secs_conn)
            line(f"bare ldap3 add/unicodePwd/enable ({failed} failed)", len(bare), secs_bare)
            ratio = (len(changes) / secs_conn) / (len(bare) / secs_bare)
            print(f"  ratio connector/bare: {ratio:.2f} (target >= 0.8)", flush=True)
        finally:
            for base in (base_c, base_b):
                admin.delete(base, "cleanup", tree=True, ok=(32,))
            admin.close()
    finally:
        dc.stop()


def main() -> None:
    """Start the servers, run the benchmarks, print the figures, stop the servers."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, default=10_000)
    ap.add_argument("--ad-users", type=int, default=300)
    ap.add_argument("--no-ad", action="store_true", help="skip the AD part (no Samba DC)")
    args = ap.parse_args()
    state = build(max(0.1, args.persons / 100_000))
    with tempfile.TemporaryDirectory(prefix="bas-bench-ldap-") as tmp:
        server = SlapdServer(Path(tmp) / "slapd", tls=True)  # BAS talks LDAP only over TLS
        server.start()
        try:
            bench_feide(server, state, args.persons)
        finally:
            server.stop()
        if not args.no_ad:
            bench_ad(Path(tmp), state, args.ad_users)


if __name__ == "__main__":
    main()
