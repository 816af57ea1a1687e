"""provisioner.core.dn: escaping, parsing, comparing and cutting DNs, table-driven with hostile values.

ldap3's own DN parser (written independently of ours) checks that what we escape reads
back as the value we meant.
"""

from __future__ import annotations

import pytest
from ldap3.utils.dn import parse_dn

from provisioner.core import dn

HOSTILE = [
    ("plain", "plain"),
    ("Ola, Jr", r"Ola\, Jr"),
    ("a+b", r"a\+b"),
    ('say "hi"', r"say \"hi\""),
    ("back\\slash", r"back\\slash"),
    ("<tag>", r"\<tag\>"),
    ("semi;colon", r"semi\;colon"),
    ("x=y", r"x\=y"),
    ("#lead", r"\#lead"),
    ("mid#dle", r"mid\#dle"),
    (" lead", r"\ lead"),
    ("trail ", "trail\\ "),
    ("  both  ", "\\  both \\ "),
    (" ", "\\ "),
    ("in side", "in side"),
    ("*(x)", "*(x)"),  # filter specials mean nothing in a DN
    ("nul\x00in", r"nul\00in"),
    ("Ærlig 🙂 Ølen", "Ærlig 🙂 Ølen"),
    ('#Ola, + " \\ < > ; = * ( )', r"\#Ola\, \+ \" \\ \< \> \; \= * ( )"),
]


@pytest.mark.parametrize(("value", "escaped"), HOSTILE)
def test_escape_is_exact_and_round_trips(value: str, escaped: str) -> None:
    assert dn.escape(value) == escaped
    full = f"cn={dn.escape(value)},ou=people,dc=x"
    assert dn.parse(full) == ((("cn", value),), (("ou", "people"),), (("dc", "x"),))
    assert dn.unescape(dn.rdn(full)[3:]) == value
    assert dn.parent(full) == "ou=people,dc=x"
    # An independent parser reads the same RDNs and the same value.
    theirs = parse_dn(full)
    assert [a for a, _, _ in theirs] == ["cn", "ou", "dc"]
    assert dn.unescape(theirs[0][1]) == value
    assert dn.clean(full) == full


def test_escape_refuses_the_empty_value() -> None:
    with pytest.raises(ValueError, match="empty"):
        dn.escape("")


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        (r"Nordmann\2C Ola", "Nordmann, Ola"),  # AD's hex pairs
        (r"\C3\98len", "Ølen"),  # a character in several hex pairs (UTF-8)
        (r"\F0\9F\99\82", "🙂"),
        (r"a\,b", "a,b"),
        (r"\#x", "#x"),
        ("#x", "#x"),  # OpenLDAP leaves '#' inside a value unescaped: text, not BER
        (r"end\\", "end\\"),
        ("no escapes", "no escapes"),
    ],
)
def test_unescape(raw: str, value: str) -> None:
    assert dn.unescape(raw) == value


@pytest.mark.parametrize(
    ("text", "rdns"),
    [
        ("", []),
        ("dc=x", ["dc=x"]),
        (
            r"CN=Nordmann\, Ola (olanor),OU=NORD\,BY,OU=Skoler,DC=x",
            [r"CN=Nordmann\, Ola (olanor)", r"OU=NORD\,BY", "OU=Skoler", "DC=x"],
        ),
        ("ou=A, dc=x", ["ou=A", "dc=x"]),  # a space after the comma is not part of the RDN
        ("ou=A;dc=x", ["ou=A", "dc=x"]),  # RFC 2253's other separator
        ("cn=trail\\ ,dc=x", ["cn=trail\\ ", "dc=x"]),  # an escaped trailing space stays
        ("cn=slash\\\\ ,dc=x", ["cn=slash\\\\", "dc=x"]),  # an escaped backslash, then a space
        ("cn=a+uid=b,dc=x", ["cn=a+uid=b", "dc=x"]),  # a multi-valued RDN kept whole
        ("o=a=b,dc=x", ["o=a=b", "dc=x"]),  # '=' inside a value, as servers may return it
    ],
)
def test_rdns_as_written(text: str, rdns: list[str]) -> None:
    assert dn.rdns(text) == rdns
    assert dn.rdn(text) == (rdns[0] if rdns else "")
    assert dn.parent(text) == ",".join(rdns[1:])


def test_parse_multi_valued_and_odd_values() -> None:
    assert dn.parse("cn=a+uid=b,dc=x") == ((("cn", "a"), ("uid", "b")), (("dc", "x"),))
    assert dn.parse("o=a=b , dc=x") == ((("o", "a=b"),), (("dc", "x"),))
    assert dn.parse(r"cn=\ x\ ,dc=x")[0] == (("cn", " x "),)


@pytest.mark.parametrize("text", ["no equals sign", "cn=a,,dc=x", "cn=a,", "=value,dc=x", "cn=a+,dc=x"])
def test_not_a_dn(text: str) -> None:
    with pytest.raises(dn.DNError):
        dn.parse(text)
    with pytest.raises(ValueError):  # DNError is a ValueError
        dn.normalize(text)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("OU=A, DC=x", "ou=a,dc=X", True),  # types and values case-insensitively, spaces after commas
        (r"CN=Nordmann\, Ola,DC=x", r"cn=nordmann\2c ola,dc=x", True),  # escape forms
        ("cn=Ola  Nordmann,dc=x", "cn=ola nordmann,dc=x", True),  # insignificant spaces (RFC 4518)
        ("cn=STRASSE,dc=x", "cn=straße,dc=x", True),  # case folding, not just lowercasing
        ("cn=a+uid=b,dc=x", "uid=B+cn=A,dc=x", True),  # the order inside a multi-valued RDN
        ("cn=a,dc=x", "cn=b,dc=x", False),
        ("cn=a,dc=x", "uid=a,dc=x", False),
        ("cn=a,dc=x", "cn=a,dc=x,dc=y", False),
        (r"cn=a\,b,dc=x", "cn=a,cn=b,dc=x", False),  # an escaped comma is not a separator
        ("cn=🙂,dc=x", r"cn=\F0\9F\99\82,dc=x", True),
    ],
)
def test_same(a: str, b: str, same: bool) -> None:
    assert dn.same(a, b) is same
    assert (dn.normalize(a) == dn.normalize(b)) is same


@pytest.mark.parametrize(
    ("child", "base", "under"),
    [
        ("CN=u,OU=A,DC=x", "OU=A,DC=x", True),
        ("OU=A,DC=x", "ou=a, dc=X", True),  # the base itself
        ("CN=u,OU=AB,DC=x", "OU=B,DC=x", False),  # a suffix of the text is not a parent
        ("CN=u,OU=A\\,B,DC=x", "OU=B,DC=x", False),
        ("DC=x", "OU=A,DC=x", False),
        ("cn=anything,dc=x", "", True),  # everything is under the root
    ],
)
def test_is_under(child: str, base: str, under: bool) -> None:
    assert dn.is_under(child, base) is under


def test_within_and_join() -> None:
    base = "OU=t1,DC=bas,DC=test"
    assert dn.within("OU=Grupper", base) == "OU=Grupper,OU=t1,DC=bas,DC=test"
    assert dn.within("ou=grupper,ou=T1,dc=bas,dc=test", base) == "ou=grupper,ou=T1,dc=bas,dc=test"
    assert dn.join("cn=a", "", "dc=x") == "cn=a,dc=x"


def test_clean_rewrites_server_spellings_the_way_bas_writes_them() -> None:
    assert dn.clean(r"cn=Nordmann\2C Ola,ou=p#1, dc=x") == r"cn=Nordmann\, Ola,ou=p\#1,dc=x"
    assert dn.clean("uid=a+cn=b,dc=x") == "uid=a+cn=b,dc=x"
