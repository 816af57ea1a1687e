"""connectors.ldap.link against a real OpenLDAP server (tests/slapd_server.py).

TLS is required (a password never goes out in clear), server messages are NIN-masked,
a dropped connection is reopened, and the circuit breaker stops retrying a server that
stays down. The AD side of the same link runs in tests/test_ad_connector.py (Samba).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import ldap3
import pytest

from connectors.errors import FatalError, RejectedError, TransientError
from connectors.ldap.codes import ENTRY_ALREADY_EXISTS, NO_SUCH_OBJECT, NOT_ALLOWED_ON_NON_LEAF, Dialect
from connectors.ldap.link import LdapLink, escape_filter, text
from provisioner.core import dn
from tests.slapd_server import ADMIN_DN, ADMIN_PASSWORD, SUFFIX, SlapdServer

NIN = "01010012356"  # a valid (synthetic-looking) national identity number
OU = ("top", "organizationalUnit")


def link_to(server: SlapdServer, url: str | None = None, **kw: object) -> LdapLink:
    """A link bound as the admin with StartTLS (or to ``url``), checking the server's CA."""
    opts: dict = {
        "bind_dn": ADMIN_DN,
        "password": ADMIN_PASSWORD,
        "start_tls": url is None,
        "ca_file": str(server.ca_file),
        "label": "feide",
        **kw,
    }
    return LdapLink(url or server.url, **opts)


@pytest.fixture()
def base(slapd: SlapdServer) -> Iterator[str]:
    """An OU of its own under the session server's suffix."""
    b = f"ou=l{uuid.uuid4().hex[:10]},{SUFFIX}"
    link = link_to(slapd)
    link.add(b, OU, {"ou": dn.parse(b)[0][0][1]})
    try:
        yield b
    finally:
        link.close()


def test_a_password_never_goes_out_in_clear(slapd: SlapdServer) -> None:
    binds = slapd.write_ops(("Bind",))
    for kw in ({"start_tls": False}, {"start_tls": False, "bind_dn": None, "password": None}):
        plain = link_to(slapd, **kw)
        with pytest.raises(FatalError, match="neither ldaps:// nor StartTLS; refusing to bind in clear"):
            plain.open()
        assert plain._conn is None
    assert slapd.write_ops(("Bind",)) == binds + 1  # write_ops' own bind: none of ours reached slapd
    with pytest.raises(FatalError, match="refusing to bind in clear"):  # before any password is sent
        link_to(slapd, start_tls=False).set_password("cn=x", "Secret-123456789", "t")
    for secured in (link_to(slapd), link_to(slapd, url=slapd.ldaps_url)):
        secured.open()
        assert secured.encrypted and secured.read(SUFFIX, ["1.1"]) is not None
        assert ADMIN_PASSWORD not in repr(secured)
        secured.close()


def test_a_certificate_the_ca_file_does_not_vouch_for_is_fatal(slapd: SlapdServer) -> None:
    for url in (None, slapd.ldaps_url):
        link = link_to(slapd, url=url, ca_file="/etc/ssl/certs/ca-certificates.crt")
        with pytest.raises(FatalError, match="TLS"):
            link.open()


def test_a_server_message_with_a_nin_is_masked(slapd: SlapdServer, base: str) -> None:
    link = link_to(slapd)
    # slapd quotes the attribute type it does not know: "x01010012356: attribute type undefined".
    with pytest.raises(RejectedError) as err:
        link.add(f"cn={NIN},{base}", ("top", "person"), {"cn": NIN, "sn": "s", f"x{NIN}": "v"})
    message = str(err.value)
    assert "attribute type undefined" in message and message.startswith("feide: add ")
    assert NIN not in message and NIN[:6] + "*****" in message
    # The operation's own text (the DN here) is masked too.
    with pytest.raises(RejectedError) as err:
        link.modify(f"cn={NIN},{base}", {"sn": [(ldap3.MODIFY_REPLACE, ["x"])]}, f"modify cn={NIN},{base}")
    assert "noSuchObject" in str(err.value) and NIN not in str(err.value)
    link.close()


def test_result_codes_through_the_table(slapd: SlapdServer, base: str) -> None:
    link = link_to(slapd, page_size=2)
    person = {"cn": "a", "sn": "s"}
    assert link.add(f"cn=a,{base}", ("top", "person"), person).code == 0
    assert link.add(f"cn=a,{base}", ("top", "person"), person, ok=(ENTRY_ALREADY_EXISTS,)).code == 68
    with pytest.raises(RejectedError, match=r"entryAlreadyExists \(68\)"):
        link.add(f"cn=a,{base}", ("top", "person"), person)
    with pytest.raises(RejectedError, match="objectClassViolation"):
        link.add(f"cn=b,{base}", ("top", "person"), {"cn": "b"})
    with pytest.raises(RejectedError, match="notAllowedOnNonLeaf"):
        link.delete(base, f"delete {base}")
    assert link.delete(base, f"delete {base}", ok=(NOT_ALLOWED_ON_NON_LEAF,)).code == 66
    assert link.read(f"cn=nobody,{base}", ["cn"]) is None
    with pytest.raises(RejectedError, match="noSuchObject"):
        link.search(f"ou=missing,{base}", "(objectClass=*)", ["1.1"])
    assert link.search(f"ou=missing,{base}", "(objectClass=*)", ["1.1"], missing_ok=True) == []
    # Paged: pages of two, every entry once; a filter value with specials is escaped.
    for i in range(5):
        link.add(dn.join("cn=" + dn.escape(f"p{i}*(x)\\"), base), ("top", "person"), {"sn": "s"})
    found = list(link.paged(base, "(objectClass=person)", ["cn"]))
    assert len(found) == 6 and len({d for d, _ in found}) == 6
    hits = link.search(base, f"(cn={escape_filter('p3*(x)' + chr(92))})", ["cn"])
    assert [text(e, "cn") for e in hits] == ["p3*(x)\\"]
    moved = link.move(f"cn=a,{base}", "cn=a2", None, "rename a")
    assert moved.code == 0 and link.read(f"cn=a2,{base}", ["1.1"]) is not None
    assert link.delete(f"cn=a,{base}", "delete a again", ok=(NO_SUCH_OBJECT,)).code == 32
    link.close()


def test_invalid_credentials_are_fatal_and_do_not_count_as_unreachable(slapd: SlapdServer) -> None:
    link = link_to(slapd, password="not-the-password", max_reconnects=1)
    for _ in range(2):
        with pytest.raises(FatalError, match=r"invalidCredentials \(49\)"):
            link.open()


def test_reconnects_after_the_server_restarts(slapd_factory) -> None:  # noqa: ANN001
    server = slapd_factory()
    link = link_to(server)
    assert link.read(SUFFIX, ["1.1"]) is not None
    server.stop()
    server.start()
    with pytest.raises(TransientError, match="connection to .* lost"):
        link.read(SUFFIX, ["1.1"])  # the old socket is gone: dropped, not retried in place
    assert link._conn is None
    assert link.read(SUFFIX, ["1.1"]) is not None  # the next call opens a new connection
    link.close()


def test_the_circuit_breaker_opens_after_failed_reconnects(slapd_factory) -> None:  # noqa: ANN001
    server = slapd_factory()
    link = link_to(server, max_reconnects=3, timeout=2)
    assert link.read(SUFFIX, ["1.1"]) is not None
    server.stop()
    with pytest.raises(TransientError, match="lost"):
        link.read(SUFFIX, ["1.1"])
    for _ in range(3):
        with pytest.raises(TransientError, match="cannot reach"):
            link.read(SUFFIX, ["1.1"])
    with pytest.raises(FatalError, match="unreachable: 3 connection attempts failed in a row"):
        link.read(SUFFIX, ["1.1"])
    server.start()
    with pytest.raises(FatalError, match="unreachable"):  # open for the rest of this link's life (one run)
        link.read(SUFFIX, ["1.1"])
    # A success in between resets the count: two failures, a success, two more are still transient.
    fresh = link_to(server, max_reconnects=3, timeout=2)
    for _ in range(2):
        server.stop()
        fresh.close()
        for _ in range(2):
            with pytest.raises(TransientError, match="cannot reach"):
                fresh.open()
        server.start()
        fresh.open()
    fresh.close()


def test_ad_dialect_maps_the_same_code_differently() -> None:
    link = LdapLink("ldaps://dc.example", bind_dn="x", password="y", dialect=Dialect.AD, label="AD")
    with pytest.raises(RejectedError, match=r"^AD: move x: operationsError \(1\)"):
        link.check({"result": 1, "description": "operationsError"}, "move x")
    feide = LdapLink("ldaps://ldap.example", bind_dn="x", password="y", label="feide")
    with pytest.raises(TransientError, match=r"^feide: move x: operationsError \(1\)"):
        feide.check({"result": 1, "description": "operationsError"}, "move x")
    with pytest.raises(FatalError, match=f"^feide: write: other \\(80\\): {NIN[:6]}\\*{{5}}"):
        feide.check({"result": 80, "description": "other", "message": NIN}, "write")
