"""Helpers for the AD tests: an OU of its own per test in the session's Samba DC, configs, reads.

Every test gets ``OU=t<random>,DC=bas,DC=test`` as its base_dn, removed (tree delete)
afterwards, so tests do not see each other's accounts; sAMAccountName and employeeID
are unique domain-wide, which is why each test must clean up.
"""

from __future__ import annotations

import csv
import secrets
from pathlib import Path
from typing import Any

import ldap3

from connectors.ldap.codes import Dialect
from connectors.ldap.link import Entry, LdapLink, escape_filter, guid_dn, text
from provisioner.run import runner
from provisioner.run.runner import RunOutcome
from provisioner.state.store import StateStore
from tests.samba_dc import SambaDC
from tests.sisbuilder import Sis, make_config


def admin_link(dc: SambaDC, url: str | None = None, **kw: Any) -> LdapLink:
    """A link bound as the domain Administrator over LDAPS, validating the DC's certificate."""
    opts: dict[str, Any] = {
        "bind_dn": dc.admin_dn,
        "password": dc.admin_password,
        "ca_file": str(dc.ca_file),
        "tls_server_name": dc.tls_name,
        "timeout": 10,
        "dialect": Dialect.AD,
        "label": "AD",
        **kw,
    }
    return LdapLink(url or dc.url, **opts)


class ADEnv:
    """A tiny SIS, a state store, a config with the AD target applying into its own base OU."""

    def __init__(self, tmp: Path, dc: SambaDC, sis: Sis, **ad: Any) -> None:
        self.tmp, self.dc, self.sis = tmp, dc, sis
        self.base = f"OU=t{secrets.token_hex(4)},{dc.domain_dn}"
        self.admin = admin_link(dc)
        self.admin.add(self.base, ("top", "organizationalUnit"), {})
        self.src = f"sqlite:///{tmp / 'sis.db'}"
        self.store = StateStore(f"sqlite:///{tmp / 'state.db'}")
        (tmp / "ad.pw").write_text(dc.admin_password + "\n", encoding="utf-8")
        self.password_dir = tmp / "pw"
        self.configure(**ad)

    def settings(self, **ad: Any) -> dict[str, Any]:
        """The [targets.ad] settings for this DC (overridable)."""
        return {
            "mode": "apply",
            "base_dn": self.base,
            "url": self.dc.url,
            "ca_file": str(self.dc.ca_file),
            "tls_server_name": self.dc.tls_name,
            "bind_dn": self.dc.admin_dn,
            "password_file": str(self.tmp / "ad.pw"),
            "password_dir": str(self.password_dir),
            "timeout": 10.0,
            **ad,
        }

    def configure(self, **ad: Any) -> None:
        """(Re)write the config."""
        self.cfg = make_config(
            self.tmp, self.src, self.store.url, targets=("ad",), target_settings={"ad": self.settings(**ad)}
        )

    def sync(self, as_of: str, **kw: Any) -> RunOutcome:
        """Write the SIS and run one sync."""
        self.sis.write(self.src)
        return runner.sync(self.cfg, self.store, as_of=as_of, **kw)

    def objects(self) -> dict[str, dict[str, Any]]:
        """The AD target's stored objects by key."""
        return {o["key"]: o for o in self.store.objects.iterate("ad")}

    def user(self, pid: str, attrs: tuple[str, ...] = ("*",)) -> Entry | None:
        """The AD entry of a person, found by the anchor the store holds."""
        anchor = self.objects()[pid]["anchor"]
        return self.admin.read(guid_dn(anchor), list(attrs))

    def by_employee_id(self, pid: str) -> list[Entry]:
        """Users under the base with this employeeID."""
        return self.admin.search(self.base, f"(employeeID={escape_filter(pid)})", ["*", "objectGUID"])

    def ous(self) -> set[str]:
        """Lowercased DNs of the OUs under the base."""
        return {
            dn.lower() for dn, _ in self.admin.search(self.base, "(objectClass=organizationalUnit)", ["ou"])
        }

    def members(self, key: str) -> set[str]:
        """Lowercased member DNs of a stored group."""
        anchor = self.objects()[key]["anchor"]
        g = self.admin.read(guid_dn(anchor), ["member"])
        assert g is not None
        return {v.decode().lower() for v in g[1].get("member") or ()}

    def close(self) -> None:
        """Remove the test's OU tree and release connections."""
        try:
            self.admin.delete(self.base, "cleanup", tree=True, ok=(32,))
        finally:
            self.admin.close()
            self.store.close()


def uac(entry: Entry) -> int:
    """userAccountControl of an entry."""
    return int(text(entry, "userAccountControl") or 0)


def can_bind(dc: SambaDC, dn: str, password: str) -> bool:
    """True when a simple bind over LDAPS with these credentials succeeds."""
    import ssl

    tls = ldap3.Tls(ca_certs_file=str(dc.ca_file), validate=ssl.CERT_REQUIRED, valid_names=[dc.tls_name])
    server = ldap3.Server(dc.url, use_ssl=True, tls=tls, get_info=ldap3.NONE, connect_timeout=10)
    conn = ldap3.Connection(server, dn, password, raise_exceptions=False)
    try:
        return bool(conn.bind())
    finally:
        conn.unbind()


def initial_password(env: ADEnv, username: str) -> str:
    """The initial password BAS wrote for the school office (0600 CSV files per school)."""
    for f in env.password_dir.glob("*.csv"):
        for row in csv.reader(f.read_text(encoding="utf-8-sig").splitlines()[1:], delimiter=";"):
            if row[0] == username:
                return row[2]
    raise AssertionError(f"no initial password for {username}")
