"""The console's password reset: a school admin or a teacher sets a new password for a pupil.

``GET /people/{person_id}/password`` shows who the pupil is and a confirm button;
``POST`` the same path resets through provisioner/run/password.py (plan → executor →
changelog, under the run lock; the changelog reason names the user and "web console")
and shows the new password once, with a printable letter for the pupil. The password is
in that one response only: never in a URL, a log line or the state store.

Both routes ask ``Reach.can_reset_password`` and answer the same 403 whether the person
exists or not. Resets are rate-limited in memory per user and per pupil (``Limits``): a
mistaken script or a curious pupil at a teacher's desk cannot churn passwords.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from provisioner.core.states import RunStatus
from provisioner.run.password import PasswordOutcome, reset_password, via_reason
from provisioner.web.access import OWNER_ADMIN, SCHOOL_ADMIN, TEACHER, access
from provisioner.web.common import page, reach_of, session_of, web_of

log = structlog.get_logger("bas.web")

WINDOW = 600.0  # seconds: the rate limits count resets in the last ten minutes
PER_USER = 10
PER_PUPIL = 3


@dataclass
class Limits:
    """Recent resets per user and per pupil (in this process's memory; a restart forgets them)."""

    clock: Callable[[], float] = time.monotonic
    users: dict[str, deque[float]] = field(default_factory=dict)
    pupils: dict[str, deque[float]] = field(default_factory=dict)

    @staticmethod
    def _recent(seen: dict[str, deque[float]], key: str, now: float) -> deque[float]:
        q = seen.setdefault(key, deque())
        while q and q[0] <= now - WINDOW:
            q.popleft()
        return q

    def refuse(self, user: str, pupil: str) -> str | None:
        """Why this reset is one too many (None: allowed, and counted)."""
        now = self.clock()
        mine, theirs = self._recent(self.users, user, now), self._recent(self.pupils, pupil, now)
        if len(mine) >= PER_USER:
            return f"You have reset {PER_USER} passwords in the last ten minutes: wait a few minutes."
        if len(theirs) >= PER_PUPIL:
            return f"This pupil's password was reset {PER_PUPIL} times in the last ten minutes: wait a while."
        mine.append(now)
        theirs.append(now)
        return None


def _limits(request: Request) -> Limits:
    state = request.app.state
    if not hasattr(state, "password_limits"):
        state.password_limits = Limits()
    limits: Limits = state.password_limits
    return limits


def _refused(request: Request) -> Response:
    """The one answer for a person out of reach, whether they exist or not."""
    return web_of(request).message(
        request,
        403,
        "Not for your role",
        "You cannot reset this person's password.",
        session=session_of(request),
    )


def _pupil(request: Request, person_id: str) -> dict[str, Any] | None:
    """Who the pupil is (canonical id, name, username, schools), or None when not in the directory."""
    store = web_of(request).store
    ident = store.identities.record(store.identities.resolve(person_id) | {person_id})
    pid = str(ident["person_id"]) if ident else person_id
    rows = store.directory.persons([pid])
    if not rows:
        return None
    mine = reach_of(request).schools  # a school admin sees their schools; others every one
    names = store.directory.school_names()
    schools = sorted(s for s in store.directory.schools_of({pid}) if not mine or s in mine)
    return {
        "person_id": pid,
        "name": rows[0]["display_name"],
        "username": rows[0]["username"],
        "schools": [names.get(s, s) for s in schools],
    }


def _allowed(request: Request) -> tuple[str, dict[str, Any]] | None:
    """(the path's person id, the pupil) when this user may reset their password."""
    person_id = request.path_params["person_id"]
    if not reach_of(request).can_reset_password(person_id):
        return None
    pupil = _pupil(request, person_id)
    return (person_id, pupil) if pupil is not None else None


@access(OWNER_ADMIN, SCHOOL_ADMIN, TEACHER)
async def password_form(request: Request) -> Response:
    """Who the pupil is, and a button to confirm the reset."""
    found = await run_in_threadpool(_allowed, request)
    if found is None:
        return _refused(request)
    return page(request, "password_form.html", title="Reset password", pupil=found[1])


@access(OWNER_ADMIN, SCHOOL_ADMIN, TEACHER)
async def password_reset(request: Request) -> Response:
    """Reset (reach checked again, rate-limited) and show the new password once."""
    found = await run_in_threadpool(_allowed, request)
    if found is None:
        return _refused(request)
    person_id, pupil = found
    user = session_of(request).user
    web = web_of(request)
    too_many = _limits(request).refuse(user.user_id, pupil["person_id"])
    if too_many:
        log.warning("web.password_reset.limited", user=user.user_id, person=pupil["person_id"])
        return page(request, "password_form.html", 429, title="Too many resets", pupil=pupil, error=too_many)
    out: PasswordOutcome = await run_in_threadpool(
        reset_password,
        web.cfg,
        web.store,
        pupil["person_id"],
        user.user_id,
        reason=via_reason(user.user_id, "web console"),
    )
    log.info(
        "web.password_reset",
        user=user.user_id,
        person=pupil["person_id"],
        run_id=out.run_id,
        status=out.status,
        set=out.ok,
    )
    if out.password is None:
        status = 503 if out.status == RunStatus.LOCKED else 409
        return page(request, "password_form.html", status, title="Password not reset", pupil=pupil, out=out)
    return page(request, "password_done.html", title="New password", pupil=pupil, out=out)


def routes() -> list[Route]:
    """The password reset's routes."""
    return [
        Route("/people/{person_id}/password", password_form, methods=["GET"], name="password_form"),
        Route("/people/{person_id}/password", password_reset, methods=["POST"], name="password_reset"),
    ]
