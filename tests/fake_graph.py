"""A local Microsoft Graph for the Microsoft 365 connector's tests and benchmark.

An HTTPS server on 127.0.0.1 (a free port, a throw-away CA from tests/slapd_server.py)
that follows Graph v1.0's documented contract closely enough that the connector's real
code paths run against it, msal included:

- ``/{tenant}/v2.0/.well-known/openid-configuration`` and ``/{tenant}/oauth2/v2.0/token``
  (client credentials with a client secret, or a certificate-signed client assertion
  checked against the registered certificate); every Graph request must carry a bearer
  token it issued (401 ``InvalidAuthenticationToken`` otherwise).
- ``/v1.0/...``: users (create, read by id or UPN, update, delete = soft delete, list
  with ``$filter``/``$select``/``$top`` and ``@odata.nextLink`` paging), assignLicense,
  revokeSignInSessions (``200 {"value": true}``), deletedItems (list, restore, purge),
  ``/users/delta`` (deltaLink, ``@removed``, expired tokens), groups with owners and
  members (``$ref`` add/remove, ``members@odata.bind``/``owners@odata.bind``, at most 20
  per request), and ``$batch`` (at most 20 requests, ``dependsOn`` with 424, answers in
  an order other than the request's, a status per request). Error bodies are
  ``{"error": {"code", "message"}}`` with Graph's codes (tests/fake_graph_directory.py).
- Throttling: ``throttle(limit, window)`` answers 429 with ``Retry-After`` once more
  than ``limit`` writes fell in the last ``window`` seconds, also per request inside a
  ``$batch``. Its time is a ``VirtualClock`` shared with the client under test when one
  is given (tests: time passes only when the client waits, so what is throttled does not
  depend on the machine's speed); otherwise the wall clock, which ``time_scale`` runs
  faster (a window of 150 simulated seconds lasts 150/scale real seconds; ``Retry-After``
  is given in real seconds, with decimals), so the benchmark against the
  3,000-per-150-s limit ends in reasonable time.
- Faults: the next N requests answer 503 (``fail_next``), inner requests of batches
  answer 503 (``fail_inner_next``), or connections are dropped before or after the
  request took effect (``drop_next``).

- Synced users (hybrid): ``directory.add_synced_user`` seeds a user as Entra Connect
  makes it (``onPremisesSyncEnabled`` true, ``onPremisesImmutableId``, employeeId);
  ``$filter`` finds it by either; a PATCH of a property AD masters on it (names, UPN,
  mailNickname, employeeId, department, jobTitle, accountEnabled, password) or its
  DELETE is answered 400 ``Request_BadRequest`` "Unable to update the specified
  properties for on-premises mastered Directory Sync objects or objects currently
  undergoing migration." (as Graph words it); usageLocation and licences stay writable.
- ``record()``: from then on every Graph request (inside batches too) is kept in
  ``requests`` as (method, path with query, body), so a test can check what was sent.

What it simplifies: one tenant, one verified domain, no replication delay (Graph's
eventual consistency), throttling counts writes only and with one sliding window (real
Graph has several limits and also counts reads), ``$filter`` knows ``eq``/``ne``/
``startswith`` with ``and``/``or`` only, ``$select`` and ``$top`` but no ``$expand``,
``$count`` or ``$search``; delta covers users only and returns every selected property
of a changed user; groups are hard-deleted; no password policy beyond a minimum length;
tokens do not expire during a test; the user and group objects hold only the properties
BAS uses; which synced properties are AD's is a fixed list (real Entra Connect's sync
rules decide it, and a synced user's mail and proxy addresses are not modelled); a synced
user appears only when a test seeds it (no sync cycle). Counters (``writes``,
``http_requests``, ``batches``) let tests assert what the connector sent.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from tests.fake_graph_directory import Answer, Directory, error
from tests.slapd_server import https_server

WRITES = frozenset({"POST", "PATCH", "PUT", "DELETE"})


class VirtualClock:
    """Time that passes only when someone waits: ``sleep(s)`` moves it ``s`` on, at once.

    The client under test (``GraphClient(sleep=..., clock=...)``, ``provisioner.kinds.m365_connector(
    ..., clock=...)``) and the FakeGraph share one, so a throttling window opens when the
    client has waited for it, however fast or slow the machine is. Sleeps from several
    sender threads add up: time runs long, never short, which a window only makes safer.
    Each reading moves it on by a microsecond, as a real clock does between two events, so
    "sent before the budget changed" still means before.
    """

    TICK = 1e-6

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._lock = threading.Lock()

    def now(self) -> float:
        """The virtual time in seconds (a microsecond later at each reading)."""
        with self._lock:
            self._now += self.TICK
            return self._now

    def sleep(self, seconds: float) -> None:
        """Advance the time by ``seconds`` without blocking."""
        with self._lock:
            self._now += max(0.0, seconds)


class FakeGraph:
    """The server, its tenant (``directory``), credentials, counters and fault switches."""

    def __init__(
        self,
        folder: Path,
        *,
        skus: tuple[str, ...] = (),
        domain: str = "skole.eksempel.no",
        certificate_pem: str | None = None,
        page_size: int = 100,
        clock: VirtualClock | None = None,
    ) -> None:
        self.tenant = "b0b0b0b0-0000-4000-8000-000000000001"
        self.client_id = "c1c1c1c1-0000-4000-8000-000000000002"
        self.client_secret = secrets.token_urlsafe(24)
        self.certificate_pem = certificate_pem  # PEM certificate registered for the app
        self.directory = Directory(skus, domain, page_size)
        self.lock = threading.Lock()
        self.tokens: set[str] = set()
        self.counts: Counter[str] = Counter()  # http, batch, token, discovery, inner, write, throttled
        self.writes = 0  # write requests received (outer and inside batches), throttled ones too
        self.time_scale = 1.0
        self.clock = clock  # None: the wall clock (times time_scale)
        self._limit: int | None = None
        self._window = 150.0
        self._recent: deque[float] = deque()
        self._fail_next = 0
        self._fail_retry_after: str | None = None
        self._fail_inner = 0
        self._drop_next = 0
        self._drop_after = False
        # Called with each $batch's requests after they took effect, before the answer goes
        # out: a test can kill its client there (a crash with the writes made, the answers lost).
        self.on_batch: Callable[[list[dict[str, Any]]], None] | None = None
        self.requests: list[tuple[str, str, Any]] | None = None  # see record()
        self._t0 = self._now()
        self.server, self.ca_file = https_server(folder, _handler(self))
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.graph_url = self.url + "/v1.0"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the server."""
        self.server.shutdown()
        self.server.server_close()

    # -- switches ------------------------------------------------------------------------

    def throttle(self, limit: int | None, window: float = 150.0, time_scale: float = 1.0) -> None:
        """At most ``limit`` writes per ``window`` simulated seconds (None: no limit)."""
        with self.lock:
            self._limit, self._window, self.time_scale = limit, window, time_scale
            self._recent.clear()
            self.requests: list[tuple[str, str, Any]] | None = None  # see record()
        self._t0 = self._now()

    def fail_next(self, n: int, retry_after: str | None = None) -> None:
        """The next ``n`` HTTP requests answer 503 (with this Retry-After, if given)."""
        with self.lock:
            self._fail_next, self._fail_retry_after = n, retry_after

    def fail_inner_next(self, n: int) -> None:
        """The next ``n`` requests inside batches answer 503."""
        with self.lock:
            self._fail_inner = n

    def drop_next(self, n: int, after: bool = False) -> None:
        """Drop the connection of the next ``n`` Graph requests, before or after they take effect."""
        with self.lock:
            self._drop_next, self._drop_after = n, after

    def record(self) -> None:
        """Keep every Graph request in ``requests`` (method, path below /v1.0 and query, body)."""
        self.requests = []

    def reset_counts(self) -> None:
        """Zero the counters."""
        with self.lock:
            self.counts.clear()
            self.writes = 0

    def _now(self) -> float:
        return self.clock.now() if self.clock is not None else time.monotonic() * self.time_scale

    def sim_time(self) -> float:
        """Simulated seconds since the throttle was set."""
        return self._now() - self._t0

    # -- throttling ----------------------------------------------------------------------

    def _admit_write(self) -> Answer | None:
        """None when a write may go ahead; a 429 answer when over the limit."""
        with self.lock:
            self.writes += 1
            self.counts["write"] += 1
            if self._limit is None:
                return None
            now = self.sim_time()
            while self._recent and self._recent[0] <= now - self._window:
                self._recent.popleft()
            if len(self._recent) < self._limit:
                self._recent.append(now)
                return None
            self.counts["throttled"] += 1
            wait = (self._recent[0] + self._window - now) / self.time_scale
        ra = f"{wait:.3f}" if self.time_scale != 1.0 else str(max(1, int(wait + 0.999)))
        status, body, _ = error(
            429, "TooManyRequests", "Too many requests. Please retry after the time in Retry-After."
        )
        return status, body, {"Retry-After": ra}

    # -- Graph requests ----------------------------------------------------------------------

    def graph(self, method: str, target: str, body: Any, inner: bool = False) -> Answer:
        """One Graph request (``target`` below /v1.0, with its query string)."""
        split = urlsplit(target)
        path = "/" + split.path.lstrip("/")
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        if path == "/$batch" and method == "POST" and not inner:
            return self._batch(body)
        if self.requests is not None:
            with self.lock:
                self.requests.append(
                    (method, unquote(path + (f"?{split.query}" if split.query else "")), body)
                )
        if inner:
            with self.lock:
                self.counts["inner"] += 1
                if self._fail_inner > 0:
                    self._fail_inner -= 1
                    return (
                        *error(503, "serviceUnavailable", "Service unavailable")[:2],
                        {"Retry-After": "0"},
                    )
        if method in WRITES:
            refused = self._admit_write()
            if refused is not None:
                return refused
        status, out, headers = self.directory.handle(method, path, query, body)
        if isinstance(out, dict):
            link = next((k for k in ("@odata.nextLink", "@odata.deltaLink") if k in out), None)
            if link:
                out[link] = out[link].replace("{self}", self.graph_url + path)
        return status, out, headers

    def _batch(self, body: Any) -> Answer:
        with self.lock:
            self.counts["batch"] += 1
        reqs = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(reqs, list) or not reqs:
            return error(400, "BadRequest", "Invalid batch payload format.")
        if len(reqs) > 20:
            return error(400, "BadRequest", "The number of batch requests exceeds the limit of 20.")
        ids = [str(r.get("id")) for r in reqs]
        if len(set(ids)) != len(ids):
            return error(400, "BadRequest", "Batch request contains duplicate ids.")
        done: dict[str, int] = {}
        responses = []
        for r in reqs:
            rid = str(r["id"])
            deps = r.get("dependsOn") or []
            if any(d not in done for d in deps):
                return error(400, "BadRequest", f"Request {rid} depends on a request that comes after it.")
            if any(done[d] >= 400 for d in deps):
                status, out, hdrs = error(424, "FailedDependency", "Failed dependency")
            elif "body" in r and not any(k.lower() == "content-type" for k in (r.get("headers") or {})):
                status, out, hdrs = error(
                    400,
                    "BadRequest",
                    f"Write request id : {rid} does not contain Content-Type header or body.",
                )
            else:
                url = str(r.get("url", ""))
                status, out, hdrs = self.graph(
                    str(r.get("method", "GET")).upper(), url, r.get("body"), inner=True
                )
            done[rid] = status
            item: dict[str, Any] = {"id": rid, "status": status, "headers": dict(hdrs)}
            if out is not None:
                item["body"] = out
                item["headers"].setdefault("Content-Type", "application/json")
            responses.append(item)
        responses.reverse()  # Graph does not keep the order: clients must match by id
        if self.on_batch is not None:
            self.on_batch(reqs)
        return 200, {"responses": responses}, {}

    # -- tokens --------------------------------------------------------------------------

    def discovery(self, tenant: str) -> Answer:
        """The OpenID configuration msal reads."""
        if tenant != self.tenant:
            return error(400, "invalid_tenant", f"Tenant '{tenant}' not found.")
        base = f"{self.url}/{tenant}"
        return (
            200,
            {
                "issuer": f"{base}/v2.0",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "response_types_supported": ["code", "id_token", "token"],
            },
            {},
        )

    def issue_token(self, tenant: str, form: dict[str, str]) -> Answer:
        """Client credentials: a client secret or a client assertion signed with the certificate."""

        def refuse(code: str, desc: str) -> Answer:
            return 401 if code == "invalid_client" else 400, {"error": code, "error_description": desc}, {}

        if tenant != self.tenant:
            return refuse("invalid_request", f"AADSTS90002: Tenant '{tenant}' not found.")
        if form.get("grant_type") != "client_credentials":
            return refuse("unsupported_grant_type", "only client_credentials")
        if form.get("client_id") != self.client_id:
            return refuse(
                "unauthorized_client", f"AADSTS700016: Application '{form.get('client_id')}' not found."
            )
        if form.get("scope") != "https://graph.microsoft.com/.default":
            return refuse("invalid_scope", f"AADSTS70011: scope {form.get('scope')!r} is not valid.")
        if "client_secret" in form:
            if form["client_secret"] != self.client_secret:
                return refuse("invalid_client", "AADSTS7000215: Invalid client secret provided.")
        elif "client_assertion" in form:
            if not self._assertion_ok(form["client_assertion"], f"{self.url}/{tenant}/oauth2/v2.0/token"):
                return refuse("invalid_client", "AADSTS700027: Client assertion failed signature validation.")
        else:
            return refuse("invalid_client", "AADSTS7000218: client_assertion or client_secret required.")
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.tokens.add(token)
            self.counts["token"] += 1
        return (
            200,
            {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token},
            {},
        )

    def _assertion_ok(self, assertion: str, audience: str) -> bool:
        import jwt
        from cryptography import x509

        if not self.certificate_pem:
            return False
        key = x509.load_pem_x509_certificate(self.certificate_pem.encode()).public_key()
        try:
            claims = jwt.decode(assertion, key, algorithms=["RS256", "PS256"], audience=audience)
        except jwt.PyJWTError:
            return False
        return claims.get("iss") == self.client_id and claims.get("sub") == self.client_id

    def revoke_tokens(self) -> None:
        """Forget every issued token (the next Graph request gets 401)."""
        with self.lock:
            self.tokens.clear()


def _handler(fake: FakeGraph) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
            return

        def _send(self, answer: Answer) -> None:
            status, body, headers = answer
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            if body is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _drop(self) -> None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.close()

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            path = urlsplit(self.path).path
            with fake.lock:
                fake.counts["http"] += 1
                drop = fake._drop_next > 0 and path.startswith("/v1.0")
                if drop:
                    fake._drop_next -= 1
                fail = fake._fail_next > 0 and path.startswith("/v1.0")
                if fail and not drop:
                    fake._fail_next -= 1
                retry_after = fake._fail_retry_after
            if drop and not fake._drop_after:
                return self._drop()
            if fail:
                status, body, _ = error(503, "serviceUnavailable", "The service is temporarily unavailable.")
                return self._send((status, body, {"Retry-After": retry_after} if retry_after else {}))
            parts = [unquote(p) for p in path.strip("/").split("/")]
            if len(parts) == 4 and parts[1:] == ["v2.0", ".well-known", "openid-configuration"]:
                with fake.lock:
                    fake.counts["discovery"] += 1
                return self._send(fake.discovery(parts[0]))
            if len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"] and method == "POST":
                form = dict(parse_qsl(raw.decode()))
                return self._send(fake.issue_token(parts[0], form))
            if not path.startswith("/v1.0/"):
                return self._send(error(404, "NotFound", f"no such endpoint {path}"))
            auth = self.headers.get("Authorization", "")
            if not auth.startswith("Bearer ") or auth[7:] not in fake.tokens:
                return self._send(
                    error(401, "InvalidAuthenticationToken", "Access token validation failure.")
                )
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                return self._send(error(400, "BadRequest", "Unable to read JSON request payload."))
            target = self.path[len("/v1.0") :]
            answer = fake.graph(method, target, body)
            if drop:  # the request took effect, but the client never hears of it
                return self._drop()
            self._send(answer)

        def do_GET(self) -> None:  # noqa: N802 (http.server's names)
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST")

        def do_PATCH(self) -> None:  # noqa: N802
            self._serve("PATCH")

        def do_DELETE(self) -> None:  # noqa: N802
            self._serve("DELETE")

    return Handler
