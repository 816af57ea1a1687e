"""Feide live LDAP refuses ldap:// without StartTLS, as AD does: in the config and when connecting."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.errors import FatalError
from connectors.ldap.link import LdapLink
from provisioner.config import ConfigError
from tests.sisbuilder import make_config
from tests.slapd_server import ADMIN_DN, ADMIN_PASSWORD, SUFFIX

LIVE = {"mode": "apply", "base_dn": "dc=eksempel,dc=no", "bind_dn": "cn=bas", "password_file": "x"}


@pytest.mark.parametrize(
    ("settings", "error"),
    [
        ({"url": "ldap://feide.example"}, "start_tls: a plain ldap:// URL needs start_tls = true"),
        ({"url": "LDAP://feide.example", "start_tls": False}, "needs start_tls = true"),
        ({"url": "ldap://feide.example", "start_tls": True}, None),
        ({"url": "ldaps://feide.example"}, None),
        ({"url": "ldaps://feide.example", "start_tls": True}, "only for ldap://"),
    ],
)
def test_config_refuses_plain_ldap(tmp_path: Path, settings: dict, error: str | None) -> None:
    def load() -> object:
        return make_config(
            tmp_path,
            "sqlite:///s",
            "sqlite:///t",
            targets=("feide",),
            target_settings={"feide": {**LIVE, **settings}},
        )

    if error is None:
        load()
    else:
        with pytest.raises(ConfigError, match=r"targets\.feide.*" + error.replace(".", r"\.")):
            load()


def test_session_refuses_to_bind_in_clear(slapd) -> None:  # noqa: ANN001
    plain = LdapLink(slapd.url, bind_dn=ADMIN_DN, password=ADMIN_PASSWORD)
    with pytest.raises(FatalError, match="neither ldaps:// nor StartTLS"):
        plain.open()
    secured = LdapLink(
        slapd.url, bind_dn=ADMIN_DN, password=ADMIN_PASSWORD, start_tls=True, ca_file=str(slapd.ca_file)
    )
    try:
        secured.open()
        conn = secured._conn
        assert conn is not None and conn.tls_started and conn.bound and secured.encrypted
        assert secured.read(SUFFIX, ["1.1"]) is not None
    finally:
        secured.close()
