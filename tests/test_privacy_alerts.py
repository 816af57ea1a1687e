"""Alert webhooks: https only (http to this host only), and the URL's path never logged."""

from __future__ import annotations

import io
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import ValidationError

from provisioner import logs
from provisioner.config import AlertsConfig
from provisioner.service.alerts import Alert, Alerter, webhook_origin


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://chat.example.no/hooks/T0/B0/secret", True),
        ("http://127.0.0.1:8080/hook", True),
        ("http://localhost/hook", True),
        ("http://[::1]:9000/hook", True),
        ("http://chat.example.no/hooks/secret", False),
        ("http://127.0.0.1.evil.example/hook", False),
        ("ftp://chat.example.no/x", False),
        ("https:///nohost", False),
    ],
)
def test_webhook_must_be_https(url: str, ok: bool) -> None:
    if ok:
        AlertsConfig(webhook_url=url)
    else:
        with pytest.raises(ValidationError, match="webhook_url must be"):
            AlertsConfig(webhook_url=url)


class _Refuse(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(500)
        self.end_headers()


def test_failed_webhook_logs_only_scheme_and_host() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/hooks/T0123/B0456/xoxb-very-secret?token=abc"
    out = io.StringIO()
    logs.configure("info", "json", stream=out)
    try:
        alerter = Alerter(AlertsConfig(webhook_url=url, timeout_seconds=5), ".", "K")
        assert not alerter.send(Alert("held", "held", "run r1 is held", "r1"))
    finally:
        logs.configure()
        server.shutdown()
        server.server_close()
    text = out.getvalue()
    assert "alert webhook failed" in text and f"http://127.0.0.1:{server.server_port}" in text
    assert "500" in text  # what went wrong is still said
    assert "hooks" not in text and "very-secret" not in text and "token=abc" not in text


def test_webhook_origin() -> None:
    assert webhook_origin("https://h.example:8443/a/b?c=d") == "https://h.example:8443"
    assert webhook_origin("https://h.example/a") == "https://h.example"
