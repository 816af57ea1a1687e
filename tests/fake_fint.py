"""A local FINT API for the FINT source's tests and benchmark.

An HTTPS server on 127.0.0.1 (a free port, a throw-away CA from tests/slapd_server.py, as
tests/fake_graph.py) serving a canonical ``SourceSnapshot`` as FINT information model 3.x
resources (tests/fake_fint_model.py builds them), with the published contract:

- the OAuth2 token endpoint ``/nidp/oauth/nam/token``: the password grant (client id and
  secret, username, password, scope ``fint-client``) and the refresh-token grant; a wrong
  client secret answers 401 ``invalid_client``, a wrong password 400 ``invalid_grant``;
  ``expire_tokens()`` makes every access token issued so far answer 401 on the API, and
  ``token_uses = N`` makes each token expire after N API requests (a long read outlives its
  token, across processes too); ``revoke_client()`` refuses every later grant (the client
  deactivated in FINT's customer portal: 401 ``invalid_client``);
- ``GET /<domain>/<package>/<resource>``: HAL+JSON ``{"_embedded": {"_entries": [...]},
  "_links": {"self", "next", "prev"}, "total_items", "offset", "size"}`` paged with
  ``size``/``offset`` (size 0: all) and filtered with ``sinceTimeStamp`` (entries changed
  strictly after that epoch-ms time); ``/last-updated`` ``{"lastUpdated": ms}`` and
  ``/cache/size`` ``{"size": n}`` per resource;
- each entry has an updated-at time: ``load`` (a new snapshot), ``update_person``,
  ``add_student``, ``remove_person``, ``remove`` and ``clear`` bump the entries they change
  (and the resource's last-updated time, deletions included);
- faults: ``fail_next(n, status=503)`` answers the next n API requests with that status;
- counters: ``requests`` (HTTP requests, token requests included), ``bytes_sent`` (bodies).

What it simplifies: one organisation and one client; no ``$filter``, no lookups by id, no
writes; the timestamps are a strictly increasing millisecond counter, not FINT's cache
times; a deleted entry simply disappears (FINT's cache would too, after its next full
sync); see tests/fake_fint_model.py for how the data is shaped.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import socket
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from provisioner.core.model import GroupMembership, Person, SourceSnapshot, StudentEnrollment
from sources.fint import mapping as fm
from tests.fake_fint_model import build
from tests.slapd_server import https_server

TOKEN_PATH = "/nidp/oauth/nam/token"
Answer = tuple[int, Any]


class FakeFint:
    """The server, its data, credentials, counters and fault switches."""

    def __init__(
        self, folder: Path, snap: SourceSnapshot | None = None, *, token_lifetime: int = 3600
    ) -> None:
        self.client_id = "bas-test-client"
        self.client_secret = secrets.token_urlsafe(24)
        self.username = "bas@fintlabs.no"
        self.password = secrets.token_urlsafe(16)
        self.token_lifetime = token_lifetime
        self.lock = threading.Lock()
        self.tokens: set[str] = set()
        self.refresh_tokens: set[str] = set()
        self.requests = 0
        self.bytes_sent = 0
        self.grants: list[str] = []  # grant types asked for, in order
        self._fail: list[int] = []
        self.token_uses: int | None = None  # API requests a token answers before it expires
        self._uses: dict[str, int] = {}
        self._revoked = False
        self._ms = 0
        self.entries: dict[str, dict[str, dict[str, Any]]] = {r: {} for r in fm.RESOURCES}
        self.updated: dict[str, dict[str, int]] = {r: {} for r in fm.RESOURCES}
        self.last_updated: dict[str, int] = {r: 0 for r in fm.RESOURCES}
        self.server, self.ca_file = https_server(folder, _handler(self))
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.token_url = self.url + TOKEN_PATH
        self.snap = SourceSnapshot((), (), (), (), (), (), ())
        if snap is not None:
            self.load(snap)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the server."""
        self.server.shutdown()
        self.server.server_close()

    # -- data ------------------------------------------------------------------------------

    def _tick(self) -> int:
        self._ms = max(int(time.time() * 1000), self._ms + 1)
        return self._ms

    def load(self, snap: SourceSnapshot) -> None:
        """Serve this snapshot; entries that differ from what was served get a new updated-at time."""
        new = build(self.url, snap)
        with self.lock:
            now = self._tick()
            for r in fm.RESOURCES:
                old, fresh = self.entries[r], new[r]
                changed = [k for k, e in fresh.items() if old.get(k) != e]
                gone = [k for k in old if k not in fresh]
                for k in gone:
                    self.updated[r].pop(k, None)
                for k in changed:
                    self.updated[r][k] = now
                self.entries[r] = fresh
                if changed or gone:
                    self.last_updated[r] = now
            self.snap = snap

    def update_person(self, person_id: str, **fields: Any) -> None:
        """Change fields of one person (``family_name="Nyberg"``)."""
        persons = tuple(p._replace(**fields) if p.person_id == person_id else p for p in self.snap.persons)
        self.load(dataclasses.replace(self.snap, persons=persons))

    def add_student(
        self, person: Person, enrollment: StudentEnrollment, memberships: Iterable[GroupMembership] = ()
    ) -> None:
        """A new student with one enrollment and group memberships."""
        s = self.snap
        self.load(
            dataclasses.replace(
                s,
                persons=(*s.persons, person),
                enrollments=(*s.enrollments, enrollment),
                memberships=(*s.memberships, *memberships),
            )
        )

    def remove_person(self, person_id: str) -> None:
        """A person and every row about them, gone."""
        s = self.snap
        self.load(
            dataclasses.replace(
                s,
                persons=tuple(p for p in s.persons if p.person_id != person_id),
                enrollments=tuple(e for e in s.enrollments if e.person_id != person_id),
                employments=tuple(e for e in s.employments if e.person_id != person_id),
                guardianships=tuple(
                    g for g in s.guardianships if person_id not in (g.guardian_id, g.student_id)
                ),
                memberships=tuple(m for m in s.memberships if m.person_id != person_id),
            )
        )

    def remove(self, resource: str, system_id: str) -> None:
        """Drop one entry of a resource by its systemId (links to it are left dangling)."""
        with self.lock:
            for k, e in list(self.entries[resource].items()):
                if (e.get("systemId") or {}).get("identifikatorverdi") == system_id:
                    del self.entries[resource][k]
                    self.updated[resource].pop(k, None)
                    self.last_updated[resource] = self._tick()

    def clear(self, resource: str) -> None:
        """Every entry of a resource gone (its adapter lost its data)."""
        with self.lock:
            self.entries[resource] = {}
            self.updated[resource] = {}
            self.last_updated[resource] = self._tick()

    def total_entries(self) -> dict[str, int]:
        """Entries per resource."""
        return {r: len(e) for r, e in self.entries.items()}

    # -- switches --------------------------------------------------------------------------

    def fail_next(self, n: int, status: int = 503) -> None:
        """The next ``n`` API requests answer ``status``."""
        with self.lock:
            self._fail = [status] * n

    def revoke_client(self) -> None:
        """Every later grant is refused (401 invalid_client); tokens issued so far still work."""
        with self.lock:
            self._revoked = True

    def use_token(self, token: str) -> bool:
        """Whether this token may answer one more API request (counting its uses)."""
        with self.lock:
            if token not in self.tokens:
                return False
            self._uses[token] = self._uses.get(token, 0) + 1
            if self.token_uses is not None and self._uses[token] > self.token_uses:
                self.tokens.discard(token)
                return False
            return True

    def expire_tokens(self) -> None:
        """Every access token issued so far answers 401 (refresh tokens still work)."""
        with self.lock:
            self.tokens.clear()

    def reset_counts(self) -> None:
        with self.lock:
            self.requests = 0
            self.bytes_sent = 0

    # -- answers ---------------------------------------------------------------------------

    def token(self, form: dict[str, str]) -> Answer:
        """The OAuth2 token endpoint."""
        grant = form.get("grant_type", "")
        with self.lock:
            self.grants.append(grant)
        if (
            self._revoked
            or form.get("client_id") != self.client_id
            or form.get("client_secret") != self.client_secret
        ):
            return 401, {"error": "invalid_client", "error_description": "Client authentication failed"}
        if grant == "password":
            if form.get("username") != self.username or form.get("password") != self.password:
                return 400, {"error": "invalid_grant", "error_description": "Invalid username or password"}
            if form.get("scope") != "fint-client":
                return 400, {"error": "invalid_scope", "error_description": "Unknown scope"}
        elif grant == "refresh_token":
            if form.get("refresh_token") not in self.refresh_tokens:
                return 400, {"error": "invalid_grant", "error_description": "Invalid refresh token"}
        else:
            return 400, {"error": "unsupported_grant_type"}
        access, refresh = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        with self.lock:
            self.tokens.add(access)
            self.refresh_tokens.add(refresh)
        body = {
            "access_token": access,
            "token_type": "bearer",
            "expires_in": self.token_lifetime,
            "refresh_token": refresh,
            "scope": "fint-client",
        }
        return 200, body

    def api(self, path: str, query: dict[str, str]) -> Answer:
        """A GET below the API root."""
        p = path.strip("/")
        for suffix, what in (("/last-updated", "last"), ("/cache/size", "size")):
            if p.endswith(suffix):
                r = p[: -len(suffix)]
                if r not in self.entries:
                    return 404, {"message": f"no such resource {r}"}
                with self.lock:
                    if what == "last":
                        return 200, {"lastUpdated": self.last_updated[r]}
                    return 200, {"size": len(self.entries[r])}
        if p not in self.entries:
            return 404, {"message": f"no such resource {p}"}
        try:
            size = int(query.get("size", "0"))
            offset = int(query.get("offset", "0"))
            since = int(query.get("sinceTimeStamp", "0"))
        except ValueError:
            return 400, {"message": "size, offset and sinceTimeStamp are whole numbers"}
        with self.lock:
            upd = self.updated[p]
            keys = [k for k in self.entries[p] if upd.get(k, 0) > since] if since else list(self.entries[p])
            page_keys = keys[offset : offset + size] if size > 0 else keys[offset:]
            page = [self.entries[p][k] for k in page_keys]
        return 200, _envelope(f"{self.url}/{p}", page, len(keys), offset, size, since)


def _envelope(
    self_url: str, page: list[dict[str, Any]], total: int, offset: int, size: int, since: int
) -> Any:
    def url(off: int) -> str:
        q = f"?offset={off}&size={size}" + (f"&sinceTimeStamp={since}" if since else "")
        return self_url + q

    links: dict[str, list[dict[str, str]]] = {"self": [{"href": url(offset) if size else self_url}]}
    if size > 0 and offset + size < total:
        links["next"] = [{"href": url(offset + size)}]
    if size > 0 and offset > 0:
        links["prev"] = [{"href": url(max(0, offset - size))}]
    return {"_embedded": {"_entries": page}, "_links": links, "total_items": total, "offset": offset,
            "size": len(page)}  # fmt: skip


def _handler(fake: FakeFint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
            return

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in two writes: without this, delayed ACKs add 40 ms a request.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def _send(self, answer: Answer) -> None:
            status, body = answer
            data = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
            self.send_response(status)
            ctype = "application/hal+json" if status == 200 and "_embedded" in body else "application/json"
            self.send_header("Content-Type", f"{ctype};charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            with fake.lock:
                fake.bytes_sent += len(data)

        def do_POST(self) -> None:  # noqa: N802 (http.server's names)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            with fake.lock:
                fake.requests += 1
            if urlsplit(self.path).path != TOKEN_PATH:
                return self._send((405, {"message": "the API is read-only here"}))
            self._send(fake.token(dict(parse_qsl(raw.decode()))))

        def do_GET(self) -> None:  # noqa: N802
            split = urlsplit(self.path)
            with fake.lock:
                fake.requests += 1
                fail = fake._fail.pop() if fake._fail else None
            if fail is not None:
                return self._send((fail, {"message": "Service Unavailable"}))
            auth = self.headers.get("Authorization", "")
            if not auth.startswith("Bearer ") or not fake.use_token(auth[7:]):
                return self._send(
                    (401, {"error": "invalid_token", "error_description": "Access token expired"})
                )
            self._send(fake.api(split.path, dict(parse_qsl(split.query))))

    return Handler
