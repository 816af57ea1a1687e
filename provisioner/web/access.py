"""Who may reach what: roles from config, the ``access`` declaration every route must make, CSRF.

``access(PUBLIC)`` marks the login flow's own routes; ``access(OWNER_ADMIN, SCHOOL_ADMIN)``
lets those roles in after the session cookie is checked. A form POST must carry the
session's CSRF token (form field ``csrf_token`` or header ``X-CSRF-Token``). A test walks
the app's routes and fails on any that declares nothing.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from provisioner.web.sessions import Session, User
from provisioner.web_config import RolesConfig

PUBLIC = "public"
OWNER_ADMIN = "owner_admin"
SCHOOL_ADMIN = "school_admin"
TEACHER = "teacher"
ROLES = (OWNER_ADMIN, SCHOOL_ADMIN, TEACHER)
SESSION_COOKIE = "__Host-bas_session"
LOGIN_COOKIE = "__Host-bas_login"

Endpoint = Callable[[Request], Awaitable[Response]]


def user_for(claims: dict[str, Any], user_claim: str, roles: RolesConfig) -> User | None:
    """The user and role the ID token's claims give, or None when config gives them no role."""
    uid = claims.get(user_claim)
    if not isinstance(uid, str) or not uid:
        return None
    name = str(claims.get("name") or uid)
    if uid in roles.owner_admins:
        return User(uid, name, OWNER_ADMIN)
    if uid in roles.school_admins:
        return User(uid, name, SCHOOL_ADMIN, tuple(roles.school_admins[uid]))
    rule = roles.teachers
    if rule is not None:
        have = claims.get(rule.claim)
        values = have if isinstance(have, list) else [have]
        if any(isinstance(v, str) and v in rule.values for v in values):
            return User(uid, name, TEACHER)
    return None


def access(*roles: str) -> Callable[[Endpoint], Endpoint]:
    """Declare who may reach a route; checks the session, the role and (POST) the CSRF token."""
    for r in roles:
        if r not in (PUBLIC, *ROLES):
            raise ValueError(f"unknown role {r!r}")

    def wrap(fn: Endpoint) -> Endpoint:
        if PUBLIC in roles:
            fn.__bas_access__ = roles  # type: ignore[attr-defined]
            return fn

        @functools.wraps(fn)
        async def guarded(request: Request) -> Response:
            web = request.app.state.web
            session = web.session_of(request)
            if session is None:
                if request.method == "GET":
                    return RedirectResponse("/login", status_code=303)
                return web.message(request, 401, "Not logged in", "Your session has ended: log in again.")
            if session.user.role not in roles:
                return web.message(
                    request, 403, "Not for your role", "This page is not for your role.", session=session
                )
            if request.method == "POST" and not await _csrf_ok(request, session):
                return web.message(
                    request,
                    403,
                    "Refused",
                    "The form's security token is missing or wrong: reload the page and try again.",
                    session=session,
                )
            request.state.session = session
            return await fn(request)

        guarded.__bas_access__ = roles  # type: ignore[attr-defined]
        return guarded

    return wrap


async def _csrf_ok(request: Request, session: Session) -> bool:
    sent = request.headers.get("x-csrf-token")
    if sent is None:
        form = await request.form()
        value = form.get("csrf_token")
        sent = value if isinstance(value, str) else None
    return sent is not None and secrets.compare_digest(sent, session.csrf)
