"""The Starlette application of `bas web`: login, logout, the Overview page, and the page modules.

Every response carries a strict Content-Security-Policy (scripts only from 'self': the
vendored htmx), ``Cache-Control: no-store`` (pages hold personal data) and the usual
hardening headers. Cookies are Secure, HttpOnly and ``__Host-`` prefixed; the session
cookie is SameSite=Strict, the short-lived login cookie Lax (the provider's redirect back
is a cross-site navigation).
"""

from __future__ import annotations

import secrets
import time
from typing import Any
from urllib.parse import urlsplit

import structlog
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from provisioner.config import Config
from provisioner.service import status as status_mod
from provisioner.state.store import StateStore
from provisioner.web import pages_changelog, pages_password, pages_people, pages_quality, pages_runs
from provisioner.web.access import LOGIN_COOKIE, OWNER_ADMIN, PUBLIC, ROLES, SESSION_COOKIE, access, user_for
from provisioner.web.common import HERE, LOGIN_SECONDS, Web, page, web_of
from provisioner.web.oidc import LoginError, Provider
from provisioner.web.sessions import Session

# The console's parts, each a module with ``routes()`` (mounted in this order).
PAGES: tuple[Any, ...] = (pages_password, pages_people, pages_quality, pages_runs, pages_changelog)
log = structlog.get_logger("bas.web")


@access(PUBLIC)
async def login(request: Request) -> Response:
    """Start the code flow: state, nonce and PKCE verifier kept here, the browser sent on."""
    web = web_of(request)
    try:
        pending, url = await run_in_threadpool(web.provider.start, time.time())
    except (LoginError, OSError) as exc:
        log.warning("web.login.provider_unreachable", error=str(exc))
        return web.message(request, 502, "Login unavailable", "The login provider cannot be reached.")
    resp = RedirectResponse(url, status_code=303)
    web.set_cookie(resp, LOGIN_COOKIE, web.logins.add(pending), "lax", LOGIN_SECONDS)
    return resp


@access(PUBLIC)
async def callback(request: Request) -> Response:
    """The provider's answer: state checked, code exchanged with the verifier, ID token verified."""
    web = web_of(request)
    key = web.signer.loads(request.cookies.get(LOGIN_COOKIE))
    pending = web.logins.pop(key) if key else None
    q = request.query_params
    refused = None
    if pending is None:
        refused = "This login was not started here or has expired."
    elif q.get("error"):
        refused = f"The login provider refused: {q.get('error')}."
    elif not q.get("state") or not _same(q["state"], pending.state):
        refused = "The login answer does not belong to this login (state mismatch)."
    elif not q.get("code"):
        refused = "The login provider sent no code."
    if refused or pending is None:
        log.warning("web.login.refused", reason=refused)
        return _clear_login(web.message(request, 400, "Login refused", refused or ""))
    try:
        claims, id_token = await run_in_threadpool(web.provider.finish, pending, q["code"])
    except LoginError as exc:
        log.warning("web.login.refused", reason=str(exc))
        return _clear_login(web.message(request, 400, "Login refused", str(exc)))
    user = user_for(claims, web.cfg.web.oidc.user_claim, web.cfg.web.roles)
    if user is None:
        log.warning("web.login.no_role", user=str(claims.get(web.cfg.web.oidc.user_claim)))
        return _clear_login(
            web.message(
                request,
                403,
                "No access",
                "Your account has no role in BAS. Ask the school owner's IT to give you one.",
            )
        )
    log.info("web.login", user=user.user_id, role=user.role)
    resp = _clear_login(web.render(request, "continue.html"))
    web.set_cookie(
        resp,
        SESSION_COOKIE,
        web.sessions.add(Session(user, id_token)),
        "strict",
        web.cfg.web.session_minutes * 60,
    )
    return resp


def _same(a: str, b: str) -> bool:
    return secrets.compare_digest(a.encode(), b.encode())


def _clear_login(resp: Response) -> Response:
    resp.delete_cookie(LOGIN_COOKIE, path="/", secure=True, httponly=True, samesite="lax")
    return resp


@access(*ROLES)
async def logout(request: Request) -> Response:
    """End the session here and at the provider (RP-initiated logout)."""
    web = web_of(request)
    key = web.signer.loads(request.cookies.get(SESSION_COOKIE))
    session = web.sessions.pop(key) if key else None
    back = web.cfg.web.public_url + "/logged-out"
    url = None
    if session is not None:
        log.info("web.logout", user=session.user.user_id)
        url = await run_in_threadpool(web.provider.logout_url, session.id_token, back)
    resp = RedirectResponse(url or back, status_code=303)
    resp.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True, samesite="strict")
    return resp


@access(PUBLIC)
async def logged_out(request: Request) -> Response:
    """Where the provider sends the browser after logout."""
    return web_of(request).message(request, 200, "Logged out", "You are logged out of BAS.")


async def _health(request: Request) -> dict[str, Any]:
    web = web_of(request)
    health = await run_in_threadpool(status_mod.collect, web.store, web.cfg.enabled_targets())
    return {"h": health.to_json()}


@access(*ROLES)
async def overview(request: Request) -> Response:
    """What `bas status` shows, for the owner's admins (it covers every school); others go to People."""
    session: Session = request.state.session
    if session.user.role != OWNER_ADMIN:
        return RedirectResponse("/people", status_code=303)
    return page(request, "overview.html", **await _health(request))


@access(OWNER_ADMIN)
async def overview_part(request: Request) -> Response:
    """The overview's body alone, for htmx's refresh."""
    return page(request, "overview_body.html", **await _health(request))


def _csp(issuer_origin: str) -> str:
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        f"form-action 'self' {issuer_origin}; frame-ancestors 'none'; base-uri 'none'"
    )


def _headers_middleware(csp: str, https: bool) -> Middleware:
    async def dispatch(request: Request, call_next: RequestResponseEndpoint) -> Response:
        resp = await call_next(request)
        h = resp.headers
        h["Content-Security-Policy"] = csp
        h["X-Content-Type-Options"] = "nosniff"
        h["Referrer-Policy"] = "no-referrer"
        h["X-Frame-Options"] = "DENY"
        h["Cross-Origin-Opener-Policy"] = "same-origin"
        if not request.url.path.startswith("/static/"):
            h["Cache-Control"] = "no-store"
        if https:
            h["Strict-Transport-Security"] = "max-age=31536000"
        return resp

    return Middleware(BaseHTTPMiddleware, dispatch=dispatch)


def create_app(cfg: Config, store: StateStore, provider: Provider) -> Starlette:
    """The application (the provider is asked nothing until the first login)."""
    routes = [
        Route("/", overview, name="overview"),
        Route("/overview/part", overview_part, name="overview_part"),
        Route("/login", login, name="login"),
        Route("/auth/callback", callback, name="callback"),
        Route("/logout", logout, methods=["POST"], name="logout"),
        Route("/logged-out", logged_out, name="logged_out"),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    for module in PAGES:
        routes[-1:-1] = module.routes()
    issuer = urlsplit(cfg.web.oidc.issuer)
    csp = _csp(f"{issuer.scheme}://{issuer.netloc}" if issuer.netloc else "")
    https = cfg.web.public_url.startswith("https://")
    app = Starlette(routes=routes, middleware=[_headers_middleware(csp, https)])
    app.state.web = Web(cfg, store, provider)
    return app
