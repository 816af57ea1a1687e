"""Server-side sessions: the cookie carries only a random id, signed; everything else stays here.

Kept in memory with an absolute and an idle expiry (a restart of `bas web` logs everyone
out, which is the safe direction). Logins in progress (state, nonce, PKCE verifier) are
kept the same way for a few minutes.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from itsdangerous import BadSignature, URLSafeSerializer

T = TypeVar("T")


@dataclass
class User:
    """Who is logged in and what they may see."""

    user_id: str
    name: str
    role: str  # "owner_admin", "school_admin" or "teacher"
    schools: tuple[str, ...] = ()


@dataclass
class Session:
    """One login."""

    user: User
    id_token: str  # for the provider's logout (id_token_hint)
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    created: float = field(default_factory=time.time)
    used: float = field(default_factory=time.time)
    # What a form post did, shown once by the page it redirects to (post-redirect-get: a
    # reload never posts again): key (e.g. a run id) -> the notice's fields.
    notices: dict[str, dict[str, str]] = field(default_factory=dict)


class Expiring(Generic[T]):
    """Values under random ids that expire ``lifetime`` seconds after creation or ``idle`` after use."""

    def __init__(self, lifetime: float, idle: float | None = None) -> None:
        self.lifetime, self.idle = lifetime, idle
        self._items: dict[str, tuple[T, float, float]] = {}
        self._lock = threading.Lock()

    def add(self, value: T) -> str:
        key = secrets.token_urlsafe(32)
        now = time.time()
        with self._lock:
            self._purge(now)
            self._items[key] = (value, now, now)
        return key

    def get(self, key: str) -> T | None:
        now = time.time()
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            value, created, used = item
            if now - created > self.lifetime or (self.idle is not None and now - used > self.idle):
                del self._items[key]
                return None
            self._items[key] = (value, created, now)
            return value

    def pop(self, key: str) -> T | None:
        value = self.get(key)
        with self._lock:
            self._items.pop(key, None)
        return value

    def _purge(self, now: float) -> None:
        for k in [
            k
            for k, (_, c, u) in self._items.items()
            if now - c > self.lifetime or (self.idle is not None and now - u > self.idle)
        ]:
            del self._items[k]


class CookieSigner:
    """Signs the random ids the cookies carry (a per-process key: sessions die with the process)."""

    def __init__(self) -> None:
        self._s = URLSafeSerializer(secrets.token_bytes(32), salt="bas-web")

    def dumps(self, key: str) -> str:
        return str(self._s.dumps(key))

    def loads(self, value: str | None) -> str | None:
        if not value:
            return None
        try:
            key = self._s.loads(value)
        except BadSignature:
            return None
        return key if isinstance(key, str) else None
