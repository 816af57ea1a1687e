"""Talking to Microsoft Graph: the app-only token, HTTP, JSON $batch, throttling and retries.

Owns everything between the Microsoft 365 connector and the wire, and nothing about
what the requests mean:

- ``TokenSource``: one long-lived msal ``ConfidentialClientApplication`` (client
  credentials, tenant-specific authority, a client secret or a certificate), so msal's
  token cache is used and a token is fetched only when the cached one runs out.
- ``GraphClient.call``: one request, retried on 429 (after ``Retry-After``, or with
  exponential backoff when the header is missing), on 5xx and on connection errors.
- ``GraphClient.send_all``: many independent requests packed into ``$batch`` requests of
  at most 20, sent by at most ``concurrency`` threads; inner requests that are throttled
  or fail with 5xx are re-sent in later batches after their ``Retry-After``; every
  other inner answer goes back to the caller, one ``Resp`` per request, in order.
- A throttled answer pauses every sender until its ``Retry-After`` has passed, so the
  client does not keep hammering a tenant that is already over its limit.
- Writes are paced (``connectors.m365.pacing``): once the client has met throttling it
  knows the tenant's write budget and holds writes back until Graph's window has room,
  instead of bursting into 429s; with no throttling nothing is held back.

Errors: a token that cannot be had because of the app's credentials, or a 401/403 on
the client's own requests, is a ``FatalError``; retries used up is a ``TransientError``
(``call``) or the last throttled/5xx ``Resp`` (``send_all``, for the caller to judge).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

import requests
import structlog

from connectors.errors import FatalError, TransientError
from connectors.m365.pacing import Budget, WritePacer

log = structlog.get_logger("bas.graph")

BATCH_LIMIT = 20  # requests per $batch (Graph's documented maximum)
RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})
# Token errors that retrying cannot fix: the app registration or its secret is wrong.
_FATAL_TOKEN_ERRORS = frozenset(
    {"invalid_client", "unauthorized_client", "invalid_request", "invalid_scope", "invalid_grant"}
)


class _Session(requests.Session):
    """A session whose own CA bundle wins over ``REQUESTS_CA_BUNDLE`` (requests lets the env win)."""

    def merge_environment_settings(self, url, proxies, stream, verify, cert):
        out = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if isinstance(self.verify, str) and verify in (True, None):
            out["verify"] = self.verify
        return out


def make_session(ca_file: str | None = None, pool: int = 16) -> requests.Session:
    """The HTTP session for msal and Graph: ``ca_file`` to trust a private CA (a proxy, tests)."""
    s = _Session()
    if ca_file:
        s.verify = ca_file
    adapter = requests.adapters.HTTPAdapter(pool_connections=pool, pool_maxsize=pool)
    s.mount("https://", adapter)
    return s


def odata_quote(value: str) -> str:
    """An OData string literal: single-quoted, quotes doubled (O'Brien -> 'O''Brien')."""
    return "'" + str(value).replace("'", "''") + "'"


def odata_filter(expression: str) -> str:
    """A ``$filter`` query parameter with the expression URL-encoded."""
    return "$filter=" + quote(expression, safe="")


@dataclass(frozen=True, slots=True)
class Req:
    """One Graph request; ``url`` is relative to the version root (``/users/{id}``)."""

    method: str
    url: str
    body: Mapping[str, Any] | None = None
    headers: Mapping[str, str] | None = None

    @property
    def is_write(self) -> bool:
        """True for requests that change something."""
        return self.method in WRITE_METHODS


@dataclass(frozen=True, slots=True)
class Resp:
    """One Graph answer: status, parsed JSON body (or None) and headers."""

    status: int
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True for 2xx."""
        return 200 <= self.status < 300

    @property
    def code(self) -> str:
        """The Graph error code (``Request_ResourceNotFound``...), or ''."""
        err = self.body.get("error") if isinstance(self.body, dict) else None
        return str(err.get("code", "")) if isinstance(err, dict) else ""

    @property
    def message(self) -> str:
        """The Graph error message, or the status."""
        err = self.body.get("error") if isinstance(self.body, dict) else None
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        return f"HTTP {self.status}"

    @property
    def detail_codes(self) -> list[str]:
        """The codes in ``error.details`` (e.g. ``ObjectConflict``)."""
        err = self.body.get("error") if isinstance(self.body, dict) else None
        details = err.get("details") if isinstance(err, dict) else None
        return [str(d.get("code", "")) for d in details or () if isinstance(d, dict)]

    def retry_after(self) -> float | None:
        """Seconds from the ``Retry-After`` header (None when absent or not a number)."""
        for k, v in self.headers.items():
            if k.lower() == "retry-after":
                try:
                    return max(0.0, float(v))
                except (TypeError, ValueError):
                    return None
        return None

    def describe(self) -> str:
        """``code: message`` for error reports."""
        return f"{self.code or self.status}: {self.message}"


class TokenSource:
    """App-only tokens from one long-lived msal ConfidentialClientApplication."""

    def __init__(
        self,
        tenant_id: str,
        client_id: str,
        *,
        secret: str | None = None,
        certificate_pem: str | None = None,
        authority_host: str = "https://login.microsoftonline.com",
        scope: str = "https://graph.microsoft.com/.default",
        session: requests.Session | None = None,
    ) -> None:
        if (secret is None) == (certificate_pem is None):
            raise ValueError("give exactly one of a client secret or a client certificate")
        self.authority = f"{authority_host.rstrip('/')}/{tenant_id}"
        self.client_id = client_id
        self.scope = scope
        self._credential: Any = (
            secret if secret is not None else _certificate_credential(certificate_pem or "")
        )
        self._session = session
        self._app: Any = None
        self._lock = threading.Lock()

    def _application(self) -> Any:
        import msal

        if self._app is None:
            # instance_discovery=False: the authority is tenant-specific and configured; msal
            # would otherwise ask login.microsoftonline.com about a host it does not know.
            self._app = msal.ConfidentialClientApplication(
                self.client_id,
                client_credential=self._credential,
                authority=self.authority,
                instance_discovery=False,
                http_client=self._session,
            )
        return self._app

    def token(self) -> str:
        """An access token for Graph (msal's cache first); FatalError for bad credentials."""
        with self._lock:
            try:
                result = self._application().acquire_token_for_client(scopes=[self.scope])
            except requests.RequestException as exc:
                raise TransientError(f"Graph: token endpoint unreachable: {exc}") from exc
            except ValueError as exc:  # msal: authority discovery failed (wrong tenant or host)
                raise FatalError(f"Graph: authority {self.authority}: {exc}") from exc
        if "access_token" in result:
            return str(result["access_token"])
        error = str(result.get("error", "unknown_error"))
        desc = str(result.get("error_description", "")).splitlines()[0:1]
        message = f"Graph: no token for app {self.client_id}: {error} {' '.join(desc)}".strip()
        if error in _FATAL_TOKEN_ERRORS:
            raise FatalError(message)
        raise TransientError(message)


def _certificate_credential(pem: str) -> dict[str, str]:
    """msal's credential for a PEM holding the private key and the certificate."""
    key_start = pem.find("-----BEGIN")
    certs = [part for part in pem.split("-----END CERTIFICATE-----") if "-----BEGIN CERTIFICATE-----" in part]
    if key_start < 0 or "PRIVATE KEY-----" not in pem or not certs:
        raise ValueError("the client certificate file needs a PEM private key and certificate")
    cert = certs[0][certs[0].index("-----BEGIN CERTIFICATE-----") :] + "-----END CERTIFICATE-----\n"
    # msal >= 1.35 derives the SHA-256 thumbprint from the public certificate.
    return {"private_key": pem, "public_certificate": cert}


@dataclass
class Stats:
    """What the client sent: HTTP requests, inner batch requests, retries, throttling."""

    http: int = 0  # HTTP requests (a $batch counts once)
    batches: int = 0
    inner: int = 0  # requests sent inside batches (re-sends included)
    writes: int = 0  # write requests sent (re-sends included)
    throttled: int = 0  # 429 answers
    retried: int = 0  # requests re-sent after 429/5xx/connection errors
    waited: float = 0.0  # seconds spent waiting for Retry-After or backoff
    paced: float = 0.0  # seconds writes were held back by the write budget (summed over senders)


class GraphClient:
    """Requests to Graph with retries; ``send_all`` packs them into $batch requests."""

    def __init__(
        self,
        base_url: str,
        tokens: TokenSource | Callable[[], str],
        *,
        session: requests.Session | None = None,
        attempts: int = 6,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        concurrency: int = 4,
        timeout: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        write_budget: Budget | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = tokens.token if isinstance(tokens, TokenSource) else tokens
        self.session = session or make_session()
        self.attempts = max(1, attempts)
        self.base_delay, self.max_delay = base_delay, max_delay
        self.concurrency = max(1, concurrency)
        self.timeout = timeout
        self._sleep, self._clock = sleep, clock
        self._pause_until = 0.0
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self.pacer = WritePacer(write_budget, floor=BATCH_LIMIT)
        self.stats = Stats()

    def close(self) -> None:
        """Stop the sender threads and close connections."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        self.session.close()

    # -- pacing -------------------------------------------------------------------------

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(retry_after, self.max_delay)
        return min(self.base_delay * 2**attempt, self.max_delay)

    def _pause(self, seconds: float) -> None:
        """Hold every sender for ``seconds`` from now (a throttled tenant)."""
        with self._lock:
            self._pause_until = max(self._pause_until, self._clock() + seconds)

    def _reserve_writes(self, n: int) -> float:
        """Wait until ``n`` writes fit the write budget and reserve them; the send time."""
        while True:
            now = self._clock()
            wait = self.pacer.reserve(n, now)
            if wait <= 0:
                return now
            self._sleep(wait)
            with self._lock:
                self.stats.paced += wait

    def _learn(self, sent: float, retry_after: float | None) -> None:
        """Tell the pacer about a 429 for a request sent at ``sent``."""
        budget = self.pacer.throttled(sent, self._clock(), retry_after)
        if budget is not None:
            log.info("Graph write budget", writes=budget.limit, window_s=round(budget.window, 1))

    def _wait_turn(self) -> None:
        while True:
            with self._lock:
                left = self._pause_until - self._clock()
            if left <= 0:
                return
            self._sleep(left)
            with self._lock:
                self.stats.waited += left

    # -- one HTTP request ---------------------------------------------------------------

    def _http(
        self, method: str, url: str, body: Any = None, headers: Mapping[str, str] | None = None
    ) -> Resp:
        """One HTTP exchange; connection errors raise requests exceptions."""
        self._wait_turn()
        hdrs = {"Authorization": f"Bearer {self._token()}", "Accept": "application/json"}
        if headers:
            hdrs.update(headers)
        with self._lock:
            self.stats.http += 1
            if method in WRITE_METHODS and not url.endswith("/$batch"):
                self.stats.writes += 1
        r = self.session.request(method, url, json=body, headers=hdrs, timeout=self.timeout)
        try:
            data = r.json() if r.content else None
        except ValueError:
            data = None
        return Resp(r.status_code, data, dict(r.headers))

    def _url(self, path: str) -> str:
        """The URL to send to: a path below the Graph URL, or a link Graph gave us to that host.

        The bearer token goes with every request, so an absolute URL (an ``@odata.nextLink``,
        a stored deltaLink) to any other scheme or host is refused before anything is sent.
        """
        if "://" not in path:
            return self.base_url + path
        link, home = urlsplit(path), urlsplit(self.base_url)
        if link.scheme.lower() != "https" or (link.scheme.lower(), link.netloc.lower()) != (
            home.scheme.lower(),
            home.netloc.lower(),
        ):
            raise FatalError(
                f"Graph: refusing to send the token to {link.scheme}://{link.netloc}:"
                f" not the configured Graph host {home.netloc}"
            )
        return path

    def call(
        self, method: str, path: str, body: Any = None, headers: Mapping[str, str] | None = None
    ) -> Resp:
        """One request with retries; returns the final answer (2xx or a client error)."""
        url = self._url(path)
        paced = method in WRITE_METHODS and not path.endswith("/$batch")  # a $batch paces its own
        # The pacer learns the write budget from throttled writes only (a $batch with writes in it).
        has_writes = paced or (path.endswith("/$batch") and _has_writes(body))
        refreshed = False
        last = ""
        for attempt in range(self.attempts):
            sent = self._reserve_writes(1) if paced else self._clock()
            try:
                resp = self._http(method, url, body, headers)
            except requests.RequestException as exc:
                if paced:  # it may have taken effect: count it
                    self.pacer.settle(1, sent, self._clock(), 1)
                last = f"connection error: {exc.__class__.__name__}"
                wait = self._backoff(attempt, None)
            else:
                if paced:
                    self.pacer.settle(1, sent, self._clock(), 0 if resp.status == 429 else 1)
                if resp.status == 401 and not refreshed:
                    refreshed = True  # a token revoked or expired early: one fresh try
                    continue
                if resp.status in (401, 403) and path.endswith("/$batch"):
                    raise FatalError(f"Graph: {method} {path}: {resp.describe()} (app permissions?)")
                if resp.status not in RETRY_STATUS:
                    return resp
                last = resp.describe()
                ra = resp.retry_after()
                wait = self._backoff(attempt, ra)
                if resp.status == 429:
                    with self._lock:
                        self.stats.throttled += 1
                    if has_writes:
                        self._learn(sent, ra)
                    self._pause(wait)
                    wait = 0.0  # _wait_turn does the waiting, for every sender
            if attempt + 1 < self.attempts:
                with self._lock:
                    self.stats.retried += 1
                    self.stats.waited += wait
                if wait:
                    self._sleep(wait)
        raise TransientError(f"Graph: {method} {path}: gave up after {self.attempts} attempts: {last}")

    def pages(self, path: str, headers: Mapping[str, str] | None = None) -> Iterator[dict[str, Any]]:
        """Every page of a collection, following ``@odata.nextLink``; errors raise TransientError."""
        url: str | None = path
        while url:
            resp = self.call("GET", url, headers=headers)
            if not resp.ok:
                raise GraphError(resp, f"GET {url}")
            yield resp.body
            url = resp.body.get("@odata.nextLink")

    # -- $batch ---------------------------------------------------------------------------

    def send_all(self, reqs: Sequence[Req]) -> list[Resp]:
        """Answers to independent requests, sent in $batch requests of at most 20, in order."""
        out: list[Resp | None] = [None] * len(reqs)
        todo = list(range(len(reqs)))
        for attempt in range(self.attempts):
            if not todo:
                break
            chunks = [todo[i : i + BATCH_LIMIT] for i in range(0, len(todo), BATCH_LIMIT)]
            if len(chunks) == 1 or self.concurrency == 1:
                answers = [self._send_batch([reqs[i] for i in ch]) for ch in chunks]
            else:
                if self._pool is None:
                    self._pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="graph")
                answers = list(self._pool.map(lambda ch: self._send_batch([reqs[i] for i in ch]), chunks))
            retry: list[int] = []
            waits: list[float] = []
            for ch, resps in zip(chunks, answers):
                for i, r in zip(ch, resps):
                    out[i] = r
                    if r.status in RETRY_STATUS:
                        retry.append(i)
                        if r.status != 429:  # a 429 paused every sender when it came (_send_batch)
                            waits.append(self._backoff(attempt, r.retry_after()))
            todo = sorted(retry)
            if todo and attempt + 1 < self.attempts:
                with self._lock:
                    self.stats.retried += len(todo)
                if waits:
                    self._pause(max(waits))
        return [r if r is not None else Resp(503) for r in out]

    def _send_batch(self, reqs: list[Req]) -> list[Resp]:
        """One $batch request (retried as a whole on 429/5xx/connection errors); answers in order."""
        body = {"requests": [_batch_entry(str(i), r) for i, r in enumerate(reqs)]}
        writes = sum(1 for r in reqs if r.is_write)
        with self._lock:
            self.stats.batches += 1
            self.stats.inner += len(reqs)
            self.stats.writes += writes
        sent = self._reserve_writes(writes)
        try:
            resp = self.call("POST", "/$batch", body, {"Content-Type": "application/json"})
        except TransientError as exc:
            self.pacer.settle(writes, sent, self._clock(), writes)  # some may have taken effect
            return [Resp(503, {"error": {"code": "serviceUnavailable", "message": str(exc)}})] * len(reqs)
        if not resp.ok or not isinstance(resp.body, dict):
            # The whole batch was refused (malformed): every request gets that answer.
            self.pacer.settle(writes, sent, self._clock(), 0)
            return [resp] * len(reqs)
        by_id: dict[str, Resp] = {}
        for item in resp.body.get("responses", ()):
            by_id[str(item.get("id"))] = Resp(
                int(item.get("status", 500)), item.get("body"), dict(item.get("headers") or {})
            )
        answers = [by_id.get(str(i), Resp(502)) for i in range(len(reqs))]
        # Graph counts every write it looked at; refused (429) and never-run (424) ones it did not.
        accepted = sum(1 for r, a in zip(reqs, answers) if r.is_write and a.status not in (424, 429))
        self.pacer.settle(writes, sent, self._clock(), accepted)
        throttled = [(r.is_write, a.retry_after()) for r, a in zip(reqs, answers) if a.status == 429]
        if throttled:
            with self._lock:
                self.stats.throttled += len(throttled)
            if any(w for w, _ in throttled):
                self._learn(sent, max((t for w, t in throttled if w and t is not None), default=None))
            self._pause(max((t for _, t in throttled if t is not None), default=0.0))
        return answers


def _has_writes(body: Any) -> bool:
    """True when a $batch body holds a write request."""
    reqs = body.get("requests") if isinstance(body, dict) else None
    return any(isinstance(r, dict) and r.get("method") in WRITE_METHODS for r in reqs or ())


def _batch_entry(rid: str, r: Req) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": rid, "method": r.method, "url": r.url}
    headers = dict(r.headers or {})
    if r.body is not None:
        entry["body"] = r.body
        headers.setdefault("Content-Type", "application/json")
    if headers:
        entry["headers"] = headers
    return entry


class GraphError(Exception):
    """A Graph answer the caller cannot go on with (raised by helpers such as ``pages``)."""

    def __init__(self, resp: Resp, what: str) -> None:
        super().__init__(f"Graph: {what}: {resp.describe()}")
        self.resp = resp
