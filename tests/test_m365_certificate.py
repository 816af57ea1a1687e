"""Signing in to the local Graph with a client certificate (msal's signed client assertion)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from connectors.errors import FatalError
from connectors.m365.connector import client_from_config
from connectors.m365.graph import TokenSource, make_session
from provisioner.config import ConfigError
from provisioner.kinds import m365_connector
from tests.m365test import M365Env
from tests.sisbuilder import small_sis


def key_and_certificate(name: str) -> tuple[str, str]:
    """A new RSA key and a self-signed certificate for it, both PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode()


def test_sync_signs_in_with_a_client_certificate(tmp_path: Path) -> None:
    e = M365Env(tmp_path, small_sis())
    try:
        key_pem, cert_pem = key_and_certificate("BAS Graph app")
        e.graph.certificate_pem = cert_pem  # registered for the app in the tenant
        pem = tmp_path / "graph-app.pem"
        pem.write_text(key_pem + cert_pem, encoding="utf-8")
        e.configure(client_secret_file=None, client_certificate_file=str(pem))
        out = e.sync("2025-10-01")
        assert out.exit_code == 0, out.results["m365"].errors
        assert e.graph.counts["token"] == 1  # one token, from msal's cache after that
        assert len([u for u in e.graph.directory.users.values() if u.get("employeeId")]) == 9
        # The certificate alone, no secret: the token endpoint checked the signed assertion.
        tokens = TokenSource(
            e.graph.tenant,
            e.graph.client_id,
            certificate_pem=key_pem + cert_pem,
            authority_host=e.graph.url,
            session=make_session(str(e.graph.ca_file)),
        )
        assert tokens.token() in e.graph.tokens
    finally:
        e.close()


def test_a_certificate_the_app_does_not_have_is_refused(tmp_path: Path) -> None:
    e = M365Env(tmp_path, small_sis())
    try:
        e.graph.certificate_pem = key_and_certificate("registered")[1]
        key_pem, cert_pem = key_and_certificate("someone else's")
        pem = tmp_path / "other.pem"
        pem.write_text(cert_pem + key_pem, encoding="utf-8")  # either order is a valid PEM file
        e.configure(client_secret_file=None, client_certificate_file=str(pem))
        conn = m365_connector(e.cfg, "m365")
        with pytest.raises(FatalError, match="invalid_client"):
            conn.client.call("GET", "/users?$top=1")
        conn.close()
        assert e.graph.counts["token"] == 0
        # A file without the private key is a config error, before any request.
        pem.write_text(cert_pem, encoding="utf-8")
        with pytest.raises(ConfigError, match="private key"):
            client_from_config(e.cfg, e.cfg.targets["m365"])  # type: ignore[arg-type]
    finally:
        e.close()
