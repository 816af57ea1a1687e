"""Graph: the bearer token goes only to the configured Graph host (nextLink, deltaLink, $batch)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from connectors.errors import FatalError
from connectors.m365.graph import GraphClient, TokenSource, make_session
from tests.fake_graph import FakeGraph


class Catcher:
    """A plain HTTP server on another port: records the Authorization headers it is sent."""

    def __init__(self) -> None:
        seen = self.seen = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

            def do_GET(self) -> None:  # noqa: N802
                seen.append(self.headers.get("Authorization"))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"value": []}')

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_foreign_next_link_is_refused_and_gets_no_token(tmp_path: Path, monkeypatch, scheme: str) -> None:  # noqa: ANN001
    fake = FakeGraph(tmp_path / "g", page_size=2)
    catcher = Catcher()
    for i in range(5):
        fake.directory.add_user(displayName=f"Elev {i}", userPrincipalName=f"e{i}@skole.eksempel.no")
    foreign = f"{scheme}://localhost:{catcher.port}/v1.0/users?$skiptoken=2"
    real = fake.graph

    def graph(method: str, target: str, body: Any, inner: bool = False):  # noqa: ANN202
        status, out, headers = real(method, target, body, inner)
        if isinstance(out, dict) and "@odata.nextLink" in out:
            out["@odata.nextLink"] = foreign  # a page pointing somewhere else
        return status, out, headers

    monkeypatch.setattr(fake, "graph", graph)
    session = make_session(str(fake.ca_file))
    tokens = TokenSource(
        fake.tenant, fake.client_id, secret=fake.client_secret, authority_host=fake.url, session=session
    )
    client = GraphClient(fake.graph_url, tokens, session=session, attempts=1)
    try:
        pages = client.pages("/users?$top=2")
        assert len(next(pages)["value"]) == 2  # the first page, from the Graph host
        with pytest.raises(FatalError, match="refusing to send the token to .*localhost"):
            next(pages)
        # A link back to the Graph host itself is followed as before.
        monkeypatch.setattr(fake, "graph", real)
        assert sum(len(p["value"]) for p in client.pages("/users?$top=2")) == 5
        # A stored absolute URL of another host (a deltaLink, say) is refused the same way.
        with pytest.raises(FatalError, match="not the configured Graph host"):
            client.call("GET", foreign)
        with pytest.raises(FatalError, match="not the configured Graph host"):
            client.call("GET", fake.graph_url.replace("https://", "http://") + "/users")
    finally:
        client.close()
        catcher.close()
        fake.close()
    assert catcher.seen == []
