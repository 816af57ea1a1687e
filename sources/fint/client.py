"""The FINT HTTP client: OAuth2 tokens, retries with backoff, HAL collection paging.

FINT's consumer API (``https://api.felleskomponent.no/<domain>/<package>/<resource>``)
takes a bearer token from the FINT identity provider, got with the OAuth2 password grant
(client id and secret of the FINT "adapter/client" plus its username and password, scope
``fint-client``). A token is renewed shortly before it expires (with the refresh token
when one was given, else a new password grant) and once when the API answers 401; a
second 401 in a row is an error, never a loop.

Collections are HAL+JSON: ``{"_embedded": {"_entries": [...]}, "_links": {"self": ...},
"total_items", "offset", "size"}``, paged with ``size`` and ``offset`` and filtered with
``sinceTimeStamp`` (epoch milliseconds: entries changed after it). ``/last-updated``
(``{"lastUpdated": ms}``) and ``/cache/size`` (``{"size": n}``) answer per resource.

Errors are ``SourceError`` and never carry a secret or a token: refused credentials name
the token endpoint; a 5xx or a timeout is retried ``max_attempts`` times with exponential
backoff and jitter (the sleep is injectable), then names the resource.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import requests

from sources.base import SourceError

_TOKEN_MARGIN = 60.0  # renew a token this many seconds before it expires
_MAX_BACKOFF = 30.0


@dataclass(frozen=True)
class Credentials:
    """What the password grant sends (secrets: never logged or put in a message)."""

    token_url: str
    client_id: str
    client_secret: str
    username: str
    password: str
    scope: str = "fint-client"


class FintClient:
    """One FINT consumer API over one HTTPS session; counts requests and bytes received."""

    def __init__(
        self,
        base_url: str,
        creds: Credentials,
        *,
        ca_file: str | None = None,
        timeout: float = 60.0,
        max_attempts: int = 6,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.creds = creds
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.sleep = sleep
        self.clock = clock
        self.session = requests.Session()
        # Given per request: a session's verify loses to REQUESTS_CA_BUNDLE in the environment.
        self.verify: str | bool = ca_file if ca_file else True
        self.requests = 0  # HTTP requests sent, token requests included
        self.bytes = 0  # response bytes received
        self._token: str | None = None
        self._refresh: str | None = None
        self._expires = 0.0

    def close(self) -> None:
        """Close the HTTP session."""
        self.session.close()

    # -- tokens ----------------------------------------------------------------------

    def _grant(self, form: dict[str, str]) -> None:
        resp = self._send("POST", self.creds.token_url, "the FINT token endpoint", data=form, auth=False)
        if resp.status_code != 200:
            code = _oauth_error(resp)
            raise SourceError(
                f"the FINT token endpoint refused the credentials (HTTP {resp.status_code}{code});"
                " check source.client_id, client_secret_file, username and password_file"
            )
        try:
            body = resp.json()
            token = str(body["access_token"])
        except (ValueError, KeyError, TypeError):
            raise SourceError("the FINT token endpoint answered without an access token") from None
        self._token = token
        self._refresh = body.get("refresh_token") or None
        self._expires = self.clock() + float(body.get("expires_in") or 3600)

    def _password_grant(self) -> None:
        c = self.creds
        self._grant(
            {
                "grant_type": "password",
                "client_id": c.client_id,
                "client_secret": c.client_secret,
                "username": c.username,
                "password": c.password,
                "scope": c.scope,
            }
        )

    def _ensure_token(self) -> str:
        if self._token is not None and self.clock() < self._expires - _TOKEN_MARGIN:
            return self._token
        if self._token is not None and self._refresh:
            c = self.creds
            try:
                self._grant(
                    {
                        "grant_type": "refresh_token",
                        "refresh_token": self._refresh,
                        "client_id": c.client_id,
                        "client_secret": c.client_secret,
                    }
                )
                assert self._token is not None
                return self._token
            except SourceError:
                pass  # an expired refresh token: the password grant below
        self._password_grant()
        assert self._token is not None
        return self._token

    # -- requests --------------------------------------------------------------------

    def _send(self, method: str, url: str, what: str, *, auth: bool = True, **kw: Any) -> requests.Response:
        """One request with retries on 5xx, timeouts and connection errors."""
        last = ""
        for attempt in range(self.max_attempts):
            if attempt:
                base = min(_MAX_BACKOFF, 0.5 * 2 ** (attempt - 1))
                self.sleep(base + random.uniform(0, base))
            headers = {"Accept": "application/hal+json, application/json"}
            if auth:
                headers["Authorization"] = f"Bearer {self._ensure_token()}"
            self.requests += 1
            try:
                resp = self.session.request(
                    method, url, headers=headers, timeout=self.timeout, verify=self.verify, **kw
                )
            except requests.exceptions.SSLError as exc:
                raise SourceError(f"TLS to {_host(url)} failed for {what}: {_reason(exc)}") from None
            except (requests.Timeout, requests.ConnectionError) as exc:
                last = type(exc).__name__
                continue
            self.bytes += len(resp.content)
            if resp.status_code >= 500:
                last = f"HTTP {resp.status_code}"
                continue
            return resp
        raise SourceError(f"FINT did not answer for {what} after {self.max_attempts} attempts ({last})")

    def get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        """GET ``path`` (below base_url) as JSON; one token renewal on 401."""
        url = f"{self.base_url}/{path.lstrip('/')}"
        what = f"resource {path!r}"
        resp = self._send("GET", url, what, params=params)
        if resp.status_code == 401:
            self._token = None  # expired or revoked early: one new password grant, then give up
            self._password_grant()
            resp = self._send("GET", url, what, params=params)
            if resp.status_code == 401:
                raise SourceError(f"FINT refused the token for {what} (HTTP 401) right after it was issued")
        if resp.status_code != 200:
            raise SourceError(f"FINT answered HTTP {resp.status_code} for {what}")
        try:
            return resp.json()
        except ValueError:
            raise SourceError(f"FINT answered {what} with something that is not JSON") from None

    def last_updated(self, path: str) -> int:
        """The resource's last-updated time (epoch ms) as FINT's cache reports it."""
        body = self.get(f"{path}/last-updated")
        return _int_field(body, "lastUpdated", path)

    def cache_size(self, path: str) -> int:
        """How many entries FINT's cache holds for the resource."""
        return _int_field(self.get(f"{path}/cache/size"), "size", path)

    def entries(self, path: str, page_size: int, since: int | None = None) -> Iterator[dict[str, Any]]:
        """Every entry of a resource (changed after ``since`` when given), page by page.

        Nothing of a page is held longer than needed: the body is let go once its entries are
        taken out, and each entry once it was handed on (a caller that keeps only part of each
        entry holds one page's raw entries at most, never two).
        """
        offset = 0
        while True:
            params: dict[str, Any] = {"size": page_size, "offset": offset}
            if since is not None:
                params["sinceTimeStamp"] = since
            body = self.get(path, params)
            page = _page_entries(body, path)
            total = body.get("total_items")
            del body
            n = len(page)
            page.reverse()
            while page:
                yield page.pop()
            offset += n
            if not n or (offset >= total if isinstance(total, int) else n < page_size):
                return  # without total_items: until a page comes back short


def _page_entries(body: Any, path: str) -> list[dict[str, Any]]:
    try:
        entries = body["_embedded"]["_entries"]
    except (KeyError, TypeError):
        raise SourceError(f"FINT resource {path!r} answered without _embedded._entries") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise SourceError(f"FINT resource {path!r}: _embedded._entries is not a list of objects")
    return entries


def _int_field(body: Any, key: str, path: str) -> int:
    value = body.get(key) if isinstance(body, dict) else None
    if isinstance(value, bool) or not isinstance(value, int):
        raise SourceError(f"FINT resource {path!r}: the answer has no whole number {key!r}")
    return value


def _oauth_error(resp: requests.Response) -> str:
    try:
        code = resp.json().get("error")
    except (ValueError, AttributeError):
        return ""
    return f", {code}" if isinstance(code, str) and code.isascii() and len(code) < 64 else ""


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).netloc


def _reason(exc: Exception) -> str:
    text = str(exc)
    return "certificate verify failed" if "CERTIFICATE_VERIFY_FAILED" in text else type(exc).__name__
