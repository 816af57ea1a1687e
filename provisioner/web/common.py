"""What every page module of the console shares: the ``Web`` state and request helpers.

Page modules (provisioner/web/pages_*.py) each own one part of the console and export
``routes()``; provisioner/web/app.py mounts them. They reach the console's state through
``web_of(request)`` and the user's reach through ``reach_of(request)`` (after ``access``
has checked the session), never through module globals.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Literal
from zoneinfo import ZoneInfo

from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates

from provisioner.config import Config
from provisioner.state.store import StateStore
from provisioner.web.access import SESSION_COOKIE
from provisioner.web.oidc import Pending, Provider
from provisioner.web.reach import Reach
from provisioner.web.sessions import CookieSigner, Expiring, Session

HERE = Path(__file__).parent
LOGIN_SECONDS = 600
_OSLO = ZoneInfo("Europe/Oslo")  # Norwegian school owners read local time


class Web:
    """The console's state: config, state store, provider, sessions."""

    def __init__(self, cfg: Config, store: StateStore, provider: Provider) -> None:
        self.cfg, self.store, self.provider = cfg, store, provider
        w = cfg.web
        self.sessions: Expiring[Session] = Expiring(w.session_minutes * 60, w.idle_minutes * 60)
        self.logins: Expiring[Pending] = Expiring(LOGIN_SECONDS)
        self.signer = CookieSigner()
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        self.templates.env.filters["when"] = when

    def session_of(self, request: Request) -> Session | None:
        key = self.signer.loads(request.cookies.get(SESSION_COOKIE))
        return self.sessions.get(key) if key else None

    def render(self, request: Request, name: str, status: int = 200, **ctx: Any) -> Response:
        return self.templates.TemplateResponse(request, name, ctx, status_code=status)

    def message(
        self, request: Request, status: int, title: str, text: str, session: Session | None = None
    ) -> Response:
        return self.render(request, "message.html", status, title=title, text=text, session=session)

    def set_cookie(
        self, resp: Response, name: str, key: str, samesite: Literal["lax", "strict"], max_age: int
    ) -> None:
        resp.set_cookie(
            name,
            self.signer.dumps(key),
            max_age=max_age,
            path="/",
            secure=True,
            httponly=True,
            samesite=samesite,
        )


def _web(request: Request) -> Web:
    web: Web = request.app.state.web
    return web


def when(value: str | None, default: str = "-") -> str:
    """A stored UTC timestamp as the school owner's wall-clock time, to the minute (Europe/Oslo)."""
    if not value:
        return default
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        return value
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return t.astimezone(_OSLO).strftime("%Y-%m-%d %H:%M")


def web_of(request: Request) -> Web:
    """The console's state."""
    web: Web = request.app.state.web
    return web


def session_of(request: Request) -> Session:
    """The checked session of this request (set by ``access``)."""
    session: Session = request.state.session
    return session


def reach_of(request: Request) -> Reach:
    """What this request's user may see and do."""
    return Reach(session_of(request).user, web_of(request).store)


def page(request: Request, name: str, status: int = 200, **ctx: Any) -> Response:
    """Render a template with the session and its CSRF token in the context."""
    session = session_of(request)
    return web_of(request).render(request, name, status, session=session, csrf=session.csrf, **ctx)
