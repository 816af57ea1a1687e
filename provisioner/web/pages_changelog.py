"""The console's changelog: `bas changelog` in the browser, and its CSV export.

- ``/changelog``: the CLI's filters (person by username, SIS id or, for owner admins only,
  NIN; target; run; operation; result; since and until days), newest first, 50 a page.
  Paging is by keyset (``before``/``after`` an id, provisioner/state/history.py ``page``):
  a deep page over a year of Oslo-size history costs what the first one does.
- ``/changelog.csv``: the same filters, the same CSV as ``bas changelog --format csv``
  (provisioner.service.changelog.render: NINs masked, formula cells neutralised), streamed
  in chunks, at most ``EXPORT_CAP`` rows (the newest, oldest first as the CLI writes them).

Owner admins see every row; a school admin only rows about persons of their schools
(``Reach.person_filter()``, applied in SQL whatever the URL asks); teachers get 403.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
import structlog
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from provisioner.core.nin import mask_text
from provisioner.core.plan import Op
from provisioner.core.states import ChangeResult
from provisioner.service import changelog as render_mod
from provisioner.state.history import Filter, History
from provisioner.web.access import OWNER_ADMIN, SCHOOL_ADMIN, access
from provisioner.web.common import page, reach_of, session_of, web_of, when
from provisioner.web.pages_runs import PER_PAGE, target_names

EXPORT_CAP = 100_000
_NIN_LIKE = re.compile(r"\d{11}")
log = structlog.get_logger("bas.web")


@dataclass(frozen=True)
class Query:
    """The page's filters as the user gave them, checked; ``refused``: why nothing is shown."""

    person: str = ""
    target: str = ""
    run: str = ""
    op: str = ""
    result: str = ""
    since: str = ""
    until: str = ""
    refused: str = ""

    def filter(self, before: int | None = None, after: int | None = None, limit: int = PER_PAGE) -> Filter:
        """The store's filter (the same fields `bas changelog` fills)."""
        return Filter(
            person=self.person or None,
            target=self.target or None,
            run=self.run or None,
            op=self.op or None,
            result=self.result or None,
            since=self.since or None,
            until=self.until or None,
            before=before,
            after=after,
            limit=limit,
        )

    def params(self) -> dict[str, str]:
        """The filters as query parameters (for paging and export links).

        A value holding something NIN-like is left out: links are part of the page, and
        no username, SIS id or run id holds an 11-digit number.
        """
        keys = ("person", "target", "run", "op", "result", "since", "until")
        values = {k: getattr(self, k) for k in keys}
        return {k: v for k, v in values.items() if v and mask_text(v) == v}


def _day(value: str) -> str:
    try:
        return dt.date.fromisoformat(value).isoformat() if value else ""
    except ValueError:
        return ""


def read_query(request: Request) -> Query:
    """The filters of a request; a NIN from anyone but an owner admin is refused, not searched."""
    q = request.query_params
    op, result = q.get("op", ""), q.get("result", "")
    person = q.get("person", "").strip()
    refused = ""
    if person and _NIN_LIKE.fullmatch(person) and not reach_of(request).may_search_nin:
        refused = "Only the owner's admins may look a person up by national identity number."
    return Query(
        person=person,
        target=q.get("target", "").strip(),
        run=q.get("run", "").strip(),
        op=op if op in {o.value for o in Op} else "",
        result=result if result in {r.value for r in ChangeResult} else "",
        since=_day(q.get("since", "")),
        until=_day(q.get("until", "")),
        refused=refused,
    )


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _view(r: dict[str, Any]) -> dict[str, Any]:
    """A changelog row as the table shows it (the CLI's table columns), NINs masked."""
    result = r["result"] + (f" ({r['error']})" if r["error"] and r["result"] != ChangeResult.OK else "")
    return {
        "at": when(r["at"]),
        "run_id": r["run_id"],
        "target": r["target"],
        "op": r["op"],
        "object": mask_text(f"{r['kind']}:{r['key']}"),
        "username": r["username"] or "",
        "result": mask_text(result),
        "reason": mask_text(r["reason"]),
        "after": mask_text(r["after"] or ""),
    }


def _scope(request: Request) -> sa.Select[Any] | None:
    return reach_of(request).person_filter()


@access(OWNER_ADMIN, SCHOOL_ADMIN)
async def changelog_page(request: Request) -> Response:
    """The filtered changelog, newest first, 50 a page (``before``/``after``: keyset paging)."""
    web = web_of(request)
    query = read_query(request)
    if not query.refused and _NIN_LIKE.fullmatch(query.person):
        # An owner admin's NIN search: the address bar (and history) get the person id instead.
        ids = await run_in_threadpool(web.store.identities.resolve, query.person)
        if ids:
            to = urlencode({**query.params(), "person": sorted(ids)[0]})
            return RedirectResponse(f"/changelog?{to}", status_code=303)
        query = replace(query, refused="Nobody is known by that national identity number.")
    rows: list[dict[str, Any]] = []
    older = newer = None
    if not query.refused:
        qp = request.query_params
        f = query.filter(before=_int(qp.get("before")), after=_int(qp.get("after")))
        got = await run_in_threadpool(web.store.history.page, f, _scope(request))
        rows, older, newer = got.rows, got.older, got.newer
    params = query.params()
    if query.refused:
        params.pop("person", None)  # a refused NIN is not written back into the page's links
    return page(
        request,
        "changelog.html",
        title="Changelog",
        q=query,
        person_shown=mask_text(query.person),
        run_shown=mask_text(query.run),
        rows=[_view(r) for r in rows],
        older=f"/changelog?{urlencode({**params, 'before': older})}" if older else None,
        newer=f"/changelog?{urlencode({**params, 'after': newer})}" if newer else None,
        csv_href="/changelog.csv" + (f"?{urlencode(params)}" if params else ""),
        targets=target_names(web.cfg),
        ops=[o.value for o in Op],
        results=[r.value for r in ChangeResult],
        may_search_nin=reach_of(request).may_search_nin,
        cap=EXPORT_CAP,
    )


def csv_chunks(
    history: History, f: Filter, scope: sa.Select[Any] | None, cap: int = EXPORT_CAP
) -> Iterator[str]:
    """The CSV of `bas changelog --format csv` for these rows, one piece a chunk of rows."""
    first = True
    for rows in history.export(f, scope, cap):
        text = render_mod.render(rows, "csv", show_nin=False)
        # render writes the header every time: only the first piece keeps it.
        yield text if first else text.partition("\r\n")[2]
        first = False
    if first:
        yield render_mod.render([], "csv", show_nin=False)


@access(OWNER_ADMIN, SCHOOL_ADMIN)
async def changelog_csv(request: Request) -> Response:
    """The filtered changelog as CSV (an attachment; at most EXPORT_CAP rows)."""
    web = web_of(request)
    query = read_query(request)
    if query.refused:
        return web.message(request, 403, "Not for your role", query.refused, session=session_of(request))
    user = session_of(request).user
    log.info("web.changelog.export", user=user.user_id, filters=mask_text(str(query.params())))
    chunks = csv_chunks(web.store.history, query.filter(), _scope(request))
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        iterate_in_threadpool(chunks),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="bas-changelog-{stamp}.csv"'},
    )


def routes() -> list[Route]:
    """The changelog pages."""
    return [
        Route("/changelog", changelog_page, name="changelog"),
        Route("/changelog.csv", changelog_csv, name="changelog_csv"),
    ]
