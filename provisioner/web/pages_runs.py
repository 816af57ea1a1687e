"""The console's runs, for the owner's admins: the run list, one run, approving a held run.

- ``/runs``: recent runs newest first (what `bas runs` lists), paged by keyset on the
  run's start.
- ``/runs/{run_id}``: the run's summary (plan counts per target and operation, results,
  the source gate, errors) and its changes with their reasons, filterable by target,
  operation and a text in key, username or reason, 50 a page. A held run's changes come
  from its held plan (nothing is applied yet); any other run's from the changelog.
- ``POST /runs/{run_id}/approve``: `bas approve` (provisioner.run.runner.approve, the same
  rules: a stale plan is refused with the runner's reason; the run lock is taken).

Runs cover every school, so school admins and teachers get 403 on all of it. Every text
shown passes ``mask_text``: a held plan carries Feide's norEduPersonNIN sealed
(provisioner.core.nin_seal), but an itslearning sourcedid may be a whole NIN.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import structlog
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from provisioner.config import Config
from provisioner.core.nin import mask_text
from provisioner.core.plan import CORE, Change, Op, Plan
from provisioner.core.states import RunStatus
from provisioner.run import runner
from provisioner.run.records import quiet_note
from provisioner.state.history import Filter
from provisioner.web.access import OWNER_ADMIN, access
from provisioner.web.common import page, session_of, web_of, when

PER_PAGE = 50
log = structlog.get_logger("bas.web")


def _json(text: str | None) -> Any:
    return json.loads(text) if text else None


def _shown(value: Any) -> str:
    """A value as the page shows it: JSON for structures, NINs masked."""
    if value is None or value == {}:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)
    return mask_text(text)


def _line(r: dict[str, Any]) -> dict[str, Any]:
    """One row of the run list: the columns of `bas runs`."""
    summary = _json(r["summary"]) or {}
    note = (r["error"] or "")[:120] or (f"approved by {r['approved_by']}" if r["approved_by"] else "")
    note = note or quiet_note(summary)
    return {
        "run_id": r["run_id"],
        "kind": r["kind"],
        "status": r["status"],
        "started": when(r["started_at"]),
        "as_of": r["as_of"] or "",
        "active": "" if r["active_persons"] is None else r["active_persons"],
        "changes": sum(sum(v.values()) for v in summary.get("plan", {}).values()),
        "data_errors": summary.get("data_errors", ""),
        "note": mask_text(note),
    }


@access(OWNER_ADMIN)
async def runs_list(request: Request) -> Response:
    """Recent runs, newest first, 50 a page (``before``: the last run of the previous page)."""
    store = web_of(request).store
    before = request.query_params.get("before") or None
    rows = await run_in_threadpool(store.runs.older_than, before, PER_PAGE)
    older = rows[PER_PAGE - 1]["run_id"] if len(rows) > PER_PAGE else None
    return page(
        request,
        "runs.html",
        title="Runs",
        runs=[_line(r) for r in rows[:PER_PAGE]],
        older=older,
        paged=bool(before),
    )


@dataclass(frozen=True)
class ChangeQuery:
    """The run page's filters of its changes."""

    target: str = ""
    op: str = ""
    text: str = ""

    @classmethod
    def of(cls, request: Request) -> ChangeQuery:
        q = request.query_params
        op = q.get("op", "")
        return cls(
            q.get("target", "").strip(), op if op in {o.value for o in Op} else "", q.get("q", "").strip()
        )

    def matches(self, c: Change) -> bool:
        if (self.target and c.target != self.target) or (self.op and c.op != self.op):
            return False
        needle = self.text.casefold()
        return not needle or any(needle in (v or "").casefold() for v in (c.key, c.username, c.reason))


def _change_view(c: Change) -> dict[str, Any]:
    """A held change as the page shows it (update: before and after of what changes)."""
    after: Any = dict(c.record()) if c.op in (Op.UPDATE, Op.MOVE) else None
    if c.members:
        after = {"members": [list(m) for m in c.members]}
    return {
        "target": c.target,
        "op": c.op.value,
        "object": mask_text(f"{c.kind}:{c.key}"),
        "username": c.username or "",
        "reason": mask_text(c.reason),
        "before": _shown(dict(c.before)) if c.op in (Op.UPDATE, Op.MOVE) else "",
        "after": _shown(after),
        "result": "held",
    }


def _row_view(r: dict[str, Any]) -> dict[str, Any]:
    """A changelog row as the page shows it."""
    result = r["result"] + (f" ({r['error']})" if r["error"] and r["result"] != "ok" else "")
    return {
        "target": r["target"],
        "op": r["op"],
        "object": mask_text(f"{r['kind']}:{r['key']}"),
        "username": r["username"] or "",
        "reason": mask_text(r["reason"]),
        "before": _shown(r["before"]),
        "after": _shown(r["after"]),
        "result": mask_text(result),
    }


def _held_changes(plan_text: str, cq: ChangeQuery, start: int) -> dict[str, Any]:
    """One page of a held plan's changes (in memory: the plan is one JSON document)."""
    plan = Plan.loads(plan_text)
    hits = [c for c in plan.changes() if cq.matches(c)]
    part = hits[start : start + PER_PAGE]
    return {
        "changes": [_change_view(c) for c in part],
        "total": len(hits),
        "holds": [(tp.target, mask_text(tp.hold.message)) for tp in plan.targets if tp.hold],
        "next": {"start": start + PER_PAGE} if start + PER_PAGE < len(hits) else None,
        "prev": {"start": max(0, start - PER_PAGE)} if start > 0 else None,
    }


def _int(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _logged_changes(request: Request, run_id: str, cq: ChangeQuery) -> dict[str, Any]:
    q = request.query_params
    f = Filter(
        run=run_id,
        target=cq.target or None,
        op=cq.op or None,
        text=cq.text or None,
        before=_int(q.get("before")),
        after=_int(q.get("after")),
        limit=PER_PAGE,
    )
    got = web_of(request).store.history.page(f)
    return {
        "changes": [_row_view(r) for r in got.rows],
        "total": None,
        "holds": [],
        "next": {"before": got.older} if got.older else None,
        "prev": {"after": got.newer} if got.newer else None,
    }


def target_names(cfg: Config) -> list[str]:
    """The targets a filter offers: core (identities) and every configured target."""
    return [CORE, *sorted(cfg.targets)]


def approvable(run: dict[str, Any]) -> bool:
    """Whether the page offers Approve: a held run with its plan, or a refusal not of an empty table."""
    if run["approved_at"]:
        return False
    if run["status"] == RunStatus.HELD:
        return bool(run["plan"])
    if run["status"] == RunStatus.REFUSED:
        return not ((_json(run["summary"]) or {}).get("gate", {}).get("empty"))
    return False


def _summary_view(run: dict[str, Any]) -> dict[str, Any]:
    summary = _json(run["summary"]) or {}
    plan = summary.get("plan", {})
    ops = [o.value for o in Op if any(o.value in v for v in plan.values())]
    results = {
        name: {**r, "errors": [mask_text(e) for e in r.get("errors", [])]}
        for name, r in summary.get("results", {}).items()
    }
    return {
        "plan": plan,
        "ops": ops,
        "results": results,
        "source": summary.get("source", {}),
        "gate": summary.get("gate", {}),
        "data_errors": summary.get("data_errors", 0),
        "error": mask_text(run["error"] or ""),
    }


async def _run_page(request: Request, run_id: str) -> Response:
    web = web_of(request)
    run = await run_in_threadpool(web.store.runs.get, run_id)
    if run is None:
        return web.message(
            request, 404, "No such run", f"There is no run {mask_text(run_id)}.", session=session_of(request)
        )
    outcome = session_of(request).notices.pop(run_id, None)  # what an approve just did, shown once
    cq = ChangeQuery.of(request)
    if run["status"] == RunStatus.HELD and run["plan"]:
        start = _int(request.query_params.get("start")) or 0
        changes = await run_in_threadpool(_held_changes, run["plan"], cq, start)
    else:
        changes = await run_in_threadpool(_logged_changes, request, run_id, cq)
    keep = {k: v for k, v in (("target", cq.target), ("op", cq.op), ("q", cq.text)) if v}
    for k in ("next", "prev"):
        if changes[k]:
            changes[k] = f"/runs/{quote(run_id)}?" + urlencode({**keep, **changes[k]})
    return page(
        request,
        "run.html",
        200,
        title=f"Run {run_id}",
        run=_line(run),
        finished=when(run["finished_at"], ""),
        approved=when(run["approved_at"], ""),
        approved_by=run["approved_by"] or "",
        held=run["status"] == RunStatus.HELD and bool(run["plan"]),
        summary=_summary_view(run),
        approvable=approvable(run),
        cq=cq,
        targets=target_names(web.cfg),
        ops=[o.value for o in Op],
        outcome=outcome,
        **changes,
    )


@access(OWNER_ADMIN)
async def run_detail(request: Request) -> Response:
    """One run: summary and changes (filters: target, op, q; paging: before/after or start)."""
    return await _run_page(request, request.path_params["run_id"])


@access(OWNER_ADMIN)
async def approve(request: Request) -> Response:
    """`bas approve` from the console: apply a held plan still current, or accept a source refusal."""
    web = web_of(request)
    run_id = request.path_params["run_id"]
    user = session_of(request).user
    out = await run_in_threadpool(runner.approve, web.cfg, web.store, run_id, f"{user.user_id} (web)")
    log.info("web.approve", user=user.user_id, run_id=run_id, status=str(out.status), exit_code=out.exit_code)
    if out.exit_code == runner.EXIT_LOCKED:
        title = "Not approved: a run is in progress"
        text = f"{out.message}. Try again when it has finished."
    elif out.exit_code in (runner.EXIT_OK, runner.EXIT_ERRORS):
        title = "Approved"
        text = out.message or f"run {run_id} applied: {out.status}"
    else:
        title = "Not approved"
        text = out.message
    bad = out.exit_code not in (runner.EXIT_OK, runner.EXIT_ERRORS)
    notice = {"title": title, "text": mask_text(text), "bad": "1" if bad else ""}
    session_of(request).notices[run_id] = notice
    # Post-redirect-get: the run page shows the outcome once; a reload does not approve again.
    return RedirectResponse(f"/runs/{quote(run_id)}", status_code=303)


def routes() -> list[Route]:
    """The runs pages."""
    return [
        Route("/runs", runs_list, name="runs"),
        Route("/runs/{run_id}", run_detail, name="run"),
        Route("/runs/{run_id}/approve", approve, methods=["POST"], name="approve"),
    ]
