"""The People pages: search, the person page (`bas person show`), lock and unlock.

- ``/people``: search by name, username or SIS id (owner admins also by national identity
  number), within the user's reach (provisioner/web/reach.py): school admins their
  schools' persons, teachers their pupils (listed by group before any search). The form
  posts (with its CSRF token) so that a NIN typed by an owner admin never lands in a URL,
  a proxy's log or the browser's history; ``/people?q=`` answers links too, and htmx
  refreshes ``/people/part`` as the user types.
- ``/people/{person_id}``: what `bas person show` prints (provisioner/service/explain.py),
  NINs masked, for a person the user reaches; anyone else gets the same 404 whether the
  person exists at another school or not at all.
- ``POST /people/{person_id}/lock`` and ``/unlock``: provisioner/run/local_edit.py, as `bas
  lock` and `bas unlock` do, by ``<user id> (web)``; reach checked again on the post. Nothing
  touches a target here: the next run disables or enables the accounts.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from provisioner.config import Config, ConfigError
from provisioner.core.nin import mask_text
from provisioner.core.validate import is_iso_date
from provisioner.run import local_edit
from provisioner.service.explain import explain, source_facts
from provisioner.state.store import StateStore
from provisioner.web.access import OWNER_ADMIN, ROLES, SCHOOL_ADMIN, TEACHER, access
from provisioner.web.common import page, reach_of, session_of, web_of
from provisioner.web.reach import Reach, nin_shaped
from sources.base import FACT_TABLES

log = structlog.get_logger("bas.web")

NIN_REFUSED = "Search by national identity number is for the owner's admins."
NOT_FOUND = "No such person in your schools"
MAX_QUERY = 100
DONE = {
    "locked": "Locked. The next run disables their accounts (they are never deleted by a lock).",
    "unlocked": "Unlocked. The next run enables the accounts the lock kept disabled.",
    "not_locked": "Not locked: there was nothing to unlock.",
}


@dataclass
class Found:
    """One search's answer: rows to list, a teacher's pupils by group, or why nothing was looked up."""

    query: str = ""  # as echoed in the form ("" for a NIN: never echoed)
    asked: str = ""  # as named in the result's caption (masked)
    rows: list[dict[str, Any]] = field(default_factory=list)
    groups: list[tuple[dict[str, Any], list[dict[str, Any]]]] = field(default_factory=list)
    refused: str | None = None


def _shown(rows: list[dict[str, Any]], names: dict[str, str]) -> list[dict[str, Any]]:
    """Directory rows as the results table shows them (school ids named)."""
    out = []
    for r in rows:
        ids = [s for s in (r.get("schools") or "").split(",") if s]
        out.append(
            {
                "person_id": r["person_id"],
                "display_name": r["display_name"],
                "username": r["username"],
                "roles": (r.get("roles") or "").replace(",", ", "),
                "schools": ", ".join(names.get(s, s) for s in ids),
                "active": bool(r["active"]),
            }
        )
    return out


def find(reach: Reach, q: str, limit: int = 50) -> Found:
    """What a user's search finds within their reach (see the module docstring)."""
    store = reach.store
    q = " ".join(q.split())[:MAX_QUERY]
    names = store.directory.school_names()
    if not q:
        if reach.user.role != TEACHER:
            return Found()
        groups = store.directory.pupils_by_group(reach.teacher_ids())
        return Found(groups=[(g, _shown(rows, names)) for g, rows in groups])
    nin = nin_shaped(q)
    shown_q = mask_text(q)
    if nin and not reach.may_search_nin:
        return Found(asked=shown_q, refused=NIN_REFUSED)
    # Exact matches first (username, SIS id; NIN for owner admins), then names and usernames.
    exact = [r for r in store.directory.persons(store.identities.resolve(q)) if reach.can_see(r["person_id"])]
    unique: dict[str, dict[str, Any]] = {}
    for r in exact + store.directory.search(q, limit=limit, within=reach.person_filter()):
        unique.setdefault(r["person_id"], r)
    return Found(query="" if nin else q, asked=shown_q, rows=_shown(list(unique.values())[:limit], names))


async def _query(request: Request) -> str:
    if request.method == "POST":
        form = await request.form()
        value = form.get("q")
        return value if isinstance(value, str) else ""
    return request.query_params.get("q", "")


def _label(reach: Reach) -> str:
    base = "Name, username or SIS id"
    return base + ", or national identity number" if reach.may_search_nin else base


@access(*ROLES)
async def people(request: Request) -> Response:
    """The search page (GET with ``q`` for links, POST from its own form)."""
    reach = reach_of(request)
    found = await run_in_threadpool(find, reach, await _query(request))
    status = 403 if found.refused else 200
    return page(request, "people.html", status, found=found, label=_label(reach), reach=reach)


@access(*ROLES)
async def people_part(request: Request) -> Response:
    """The results alone, for htmx as the user types."""
    found = await run_in_threadpool(find, reach_of(request), await _query(request))
    return page(request, "people_results.html", found=found)


# -- the person page ------------------------------------------------------------------------


def _guarded_facts(notices: list[str]) -> Any:
    """source_facts that answers empty, with a notice, when the SIS cannot be read."""

    def facts(cfg: Config, ids: set[str]) -> dict[str, list[dict[str, Any]]]:
        try:
            return source_facts(cfg, ids)
        except Exception as exc:  # noqa: BLE001 (any source failure: the page still shows the rest)
            log.warning("web.person.source_unreachable", error=mask_text(str(exc))[:300])
            notices.append("The SIS cannot be read just now: its facts about this person are not shown.")
            return {label: [] for label in FACT_TABLES}

    return facts


def _next_run(store: StateStore) -> str | None:
    """When the daemon runs next, if a daemon has said so."""
    times = sorted(str(d["next_run_at"]) for d in store.daemons.all() if d.get("next_run_at"))
    return f"The next run is at {times[0][:16].replace('T', ' ')}." if times else None


def _person_context(web: Any, reach: Reach, person_id: str) -> dict[str, Any] | None:
    """Everything the person page shows, or None when the user does not reach the person."""
    if not reach.can_see(person_id):
        return None
    notices: list[str] = []
    info = explain(web.cfg, web.store, person_id, show_nin=False, facts=_guarded_facts(notices))
    if info is None:
        return None
    # Belt and braces: any stand-alone 11 digits anywhere in what the page shows are masked.
    info = json.loads(mask_text(json.dumps(info, ensure_ascii=False, default=str)))
    pid = (info["identity"] or {}).get("person_id") or person_id
    can_lock = reach.can_lock(person_id)
    return {
        "info": info,
        "pid": pid,
        "url": "/people/" + quote(pid, safe=""),
        "dir_groups": web.store.directory.groups_of(info["person_ids"]),
        "school_names": web.store.directory.school_names(),
        "history": list(reversed(info["history"]))[:100],
        "notices": notices,
        "can_lock": can_lock,
        "locked": any(x["in_force"] for x in info["locks"]),
        "targets": local_edit.disabling_targets(web.cfg)[0] if can_lock else [],
        "can_reset": reach.can_reset_password(person_id),
        "next_run": _next_run(web.store),
    }


def _not_found(request: Request) -> Response:
    return web_of(request).message(
        request,
        404,
        NOT_FOUND,
        "Nobody by that id is at your schools. Search on the People page.",
        session=session_of(request),
    )


@access(*ROLES)
async def person(request: Request) -> Response:
    """`bas person show` for one person the user reaches."""
    ctx = await run_in_threadpool(
        _person_context, web_of(request), reach_of(request), request.path_params["person_id"]
    )
    if ctx is None:
        return _not_found(request)
    done = DONE.get(request.query_params.get("done", ""))
    return page(request, "person.html", done=done, error=None, **ctx)


# -- lock and unlock ------------------------------------------------------------------------


def _by(request: Request) -> str:
    return session_of(request).user.user_id + " (web)"


def _form_text(form: Any, name: str) -> str:
    value = form.get(name)
    return value.strip() if isinstance(value, str) else ""


async def _checked(request: Request) -> Response | tuple[Any, Any, str]:
    """(web, form, canonical person id), or 403 unless this user may lock this person.

    Asked again on every post: the form may be forged, or the person may have moved school.
    """
    web, wanted = web_of(request), request.path_params["person_id"]
    if not await run_in_threadpool(reach_of(request).can_lock, wanted):
        return web.message(
            request,
            403,
            "Not for your role",
            "You may not lock or unlock this person.",
            session=session_of(request),
        )
    pid = await run_in_threadpool(local_edit.resolve_person, web.store, wanted)
    if pid is None:
        return _not_found(request)
    return web, await request.form(), pid


async def _again(request: Request, error: str) -> Response:
    """The person page again, with why the form was refused."""
    ctx = await run_in_threadpool(
        _person_context, web_of(request), reach_of(request), request.path_params["person_id"]
    )
    if ctx is None:
        return _not_found(request)
    return page(request, "person.html", 400, done=None, error=error, **ctx)


def _back(pid: str, done: str) -> Response:
    return RedirectResponse(f"/people/{quote(pid, safe='')}?done={done}", status_code=303)


@access(OWNER_ADMIN, SCHOOL_ADMIN)
async def lock(request: Request) -> Response:
    """Lock a person: reason required, optional last day, one target or every one that can disable."""
    checked = await _checked(request)
    if isinstance(checked, Response):
        return checked
    web, form, pid = checked
    reason, until, target = (_form_text(form, k) for k in ("reason", "until", "target"))
    if not reason:
        return await _again(request, "A lock needs a reason.")
    if until and not is_iso_date(until):
        return await _again(request, "The last day must be a date (YYYY-MM-DD).")
    today = dt.date.today().isoformat()
    try:
        await run_in_threadpool(
            local_edit.lock,
            web.cfg,
            web.store,
            pid,
            reason,
            until or None,
            (target,) if target else (),
            today,
            _by(request),
        )
    except local_edit.EditError as exc:
        return await _again(request, mask_text(str(exc)).replace("--until", "the last day"))
    log.info("web.lock", user=session_of(request).user.user_id, person=pid, target=target or "all")
    return _back(pid, "locked")


@access(OWNER_ADMIN, SCHOOL_ADMIN)
async def unlock(request: Request) -> Response:
    """Release a person's locks (every target's, or one target's)."""
    checked = await _checked(request)
    if isinstance(checked, Response):
        return checked
    web, form, pid = checked
    target = _form_text(form, "target") or None
    try:
        released = await run_in_threadpool(local_edit.unlock, web.cfg, web.store, pid, target, _by(request))
    except ConfigError as exc:
        return await _again(request, str(exc))
    log.info("web.unlock", user=session_of(request).user.user_id, person=pid, released=len(released))
    return _back(pid, "unlocked" if released else "not_locked")


def routes() -> list[Route]:
    """The People part's routes."""
    return [
        Route("/people", people, methods=["GET", "POST"], name="people"),
        Route("/people/part", people_part, methods=["GET", "POST"], name="people_part"),
        Route("/people/{person_id}", person, name="person"),
        Route("/people/{person_id}/lock", lock, methods=["POST"], name="person_lock"),
        Route("/people/{person_id}/unlock", unlock, methods=["POST"], name="person_unlock"),
    ]
