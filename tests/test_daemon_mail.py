"""E-mail alerts through a real SMTP conversation with a minimal local SMTP server on 127.0.0.1."""

from __future__ import annotations

import base64
import socketserver
import ssl
import threading
from collections.abc import Iterator
from email import message_from_bytes
from pathlib import Path

import pytest
from pydantic import ValidationError

from provisioner.config import AlertsConfig
from provisioner.service.alerts import Alert, Alerter
from tests.slapd_server import _make_certs


class _SMTPHandler(socketserver.StreamRequestHandler):
    """Just enough of RFC 5321 (+ AUTH PLAIN) for smtplib: records each message and login."""

    def handle(self) -> None:
        srv = self.server
        self._say("220 test ESMTP")
        mail: dict = {"rcpt": []}
        while line := self.rfile.readline():
            cmd = line.decode().rstrip("\r\n")
            verb = cmd.split(" ", 1)[0].upper()
            if verb in ("EHLO", "HELO"):
                self._say("250-test\r\n250-STARTTLS\r\n250-AUTH PLAIN\r\n250 8BITMIME")
            elif verb == "STARTTLS":
                self._say("220 go ahead")
                tls = srv.tls.wrap_socket(self.connection, server_side=True)  # type: ignore[attr-defined]
                self.connection, self.rfile, self.wfile = tls, tls.makefile("rb"), tls.makefile("wb", 0)
                srv.secured = True  # type: ignore[attr-defined]
            elif verb == "AUTH":
                _, user, password = base64.b64decode(cmd.split()[2]).split(b"\0")
                ok = (user.decode(), password.decode()) == srv.account  # type: ignore[attr-defined]
                srv.logins.append(user.decode())  # type: ignore[attr-defined]
                srv.clear_logins += not srv.secured  # type: ignore[attr-defined]
                self._say("235 ok" if ok else "535 bad credentials")
            elif verb == "MAIL":
                mail = {"from": cmd[10:].strip("<>"), "rcpt": []}
                self._say("250 ok")
            elif verb == "RCPT":
                mail["rcpt"].append(cmd[8:].strip("<>"))
                self._say("250 ok")
            elif verb == "DATA":
                self._say("354 go on")
                body = b""
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    body += chunk
                mail["msg"] = message_from_bytes(body)
                srv.messages.append(mail)  # type: ignore[attr-defined]
                self._say("250 queued")
            elif verb == "QUIT":
                self._say("221 bye")
                return
            else:
                self._say("250 ok")

    def _say(self, text: str) -> None:
        self.wfile.write(text.encode() + b"\r\n")


@pytest.fixture()
def smtp(tmp_path: Path) -> Iterator[socketserver.ThreadingTCPServer]:
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SMTPHandler)
    srv.messages, srv.logins, srv.account = [], [], ("bas-alerts", "s3cret")  # type: ignore[attr-defined]
    srv.ca_file, cert, key = _make_certs(tmp_path / "tls")  # type: ignore[attr-defined]
    srv.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)  # type: ignore[attr-defined]
    srv.tls.load_cert_chain(cert, key)  # type: ignore[attr-defined]
    srv.secured, srv.clear_logins = False, 0  # type: ignore[attr-defined]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


ALERT = Alert("held", "held", "itslearning held: 600 deletes; person 01010112345 among them", run_id="R1")


def test_alert_mail_is_sent_with_login_and_masked(smtp, tmp_path: Path) -> None:  # noqa: ANN001
    (tmp_path / "smtp.pw").write_text("s3cret\n", encoding="utf-8")
    cfg = AlertsConfig(
        smtp_host="127.0.0.1",
        smtp_port=smtp.server_address[1],
        smtp_ca_file=str(smtp.ca_file),
        smtp_user="bas-alerts",
        smtp_password_file="smtp.pw",
        mail_from="bas@kommune.no",
        mail_to=("it@kommune.no", "drift@kommune.no"),
    )
    assert Alerter(cfg, str(tmp_path), "Eksempel kommune").send(ALERT)
    assert smtp.logins == ["bas-alerts"] and smtp.secured and smtp.clear_logins == 0
    [mail] = smtp.messages
    assert mail["from"] == "bas@kommune.no" and mail["rcpt"] == ["it@kommune.no", "drift@kommune.no"]
    msg = mail["msg"]
    assert msg["Subject"] == "BAS Eksempel kommune: held"
    text = msg.get_payload(decode=True).decode()
    assert "run_id: R1" in text and "01010112345" not in text and "s3cret" not in text


def test_a_refused_login_or_a_dead_server_is_a_failed_send(smtp, tmp_path: Path) -> None:  # noqa: ANN001
    (tmp_path / "smtp.pw").write_text("wrong\n", encoding="utf-8")
    base = {
        "smtp_host": "127.0.0.1",
        "smtp_ca_file": str(smtp.ca_file),
        "mail_from": "a@b.no",
        "mail_to": ("c@d.no",),
    }
    bad_login = AlertsConfig(
        **base, smtp_port=smtp.server_address[1], smtp_user="bas-alerts", smtp_password_file="smtp.pw"
    )
    assert not Alerter(bad_login, str(tmp_path), "K").send(ALERT)
    assert smtp.messages == []
    with socketserver.TCPServer(("127.0.0.1", 0), socketserver.BaseRequestHandler) as probe:
        free = probe.server_address[1]  # closed again below: nothing listens there
    dead = AlertsConfig(**base, smtp_port=free, timeout_seconds=2)
    assert not Alerter(dead, str(tmp_path), "K").send(ALERT)


def test_a_login_is_never_sent_in_clear(smtp, tmp_path: Path) -> None:  # noqa: ANN001
    (tmp_path / "smtp.pw").write_text("s3cret\n", encoding="utf-8")
    login = {"smtp_user": "bas-alerts", "smtp_password_file": "smtp.pw"}
    base = {"smtp_host": "127.0.0.1", "mail_from": "a@b.no", "mail_to": ("c@d.no",)}
    with pytest.raises(ValidationError, match="smtp_starttls: a login"):
        AlertsConfig.model_validate({**base, **login, "smtp_starttls": False})
    with pytest.raises(ValidationError, match="smtp_ssl and smtp_starttls"):
        AlertsConfig.model_validate({**base, "smtp_ssl": True})
    # Without a login, plain SMTP to a relay is allowed; a server without STARTTLS fails the send.
    AlertsConfig.model_validate({**base, "smtp_starttls": False})
    built = AlertsConfig.model_construct(
        **base, **login, smtp_port=smtp.server_address[1], smtp_starttls=False, smtp_ssl=False,
        smtp_ca_file=None, timeout_seconds=5.0,
    )  # fmt: skip
    assert not Alerter(built, str(tmp_path), "K").send(ALERT)  # refused before the login
    assert smtp.logins == [] and smtp.messages == []


def test_smtps(tmp_path: Path) -> None:
    ca, cert, key = _make_certs(tmp_path / "tls")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SMTPHandler)
    srv.messages, srv.logins, srv.account = [], [], ("bas-alerts", "s3cret")  # type: ignore[attr-defined]
    srv.secured, srv.clear_logins = True, 0  # type: ignore[attr-defined]
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    (tmp_path / "smtp.pw").write_text("s3cret\n", encoding="utf-8")
    try:
        cfg = AlertsConfig(
            smtp_host="127.0.0.1", smtp_port=srv.server_address[1], smtp_ssl=True, smtp_starttls=False,
            smtp_ca_file=str(ca), smtp_user="bas-alerts", smtp_password_file="smtp.pw",
            mail_from="a@b.no", mail_to=("c@d.no",),
        )  # fmt: skip
        assert Alerter(cfg, str(tmp_path), "K").send(ALERT)
        assert srv.logins == ["bas-alerts"] and len(srv.messages) == 1  # type: ignore[attr-defined]
    finally:
        srv.shutdown()
        srv.server_close()
