"""The Data quality page: each school's SIS data errors and what the school office fixes in the SIS.

The newest derivation's errors (``store.directory.errors``, placed at schools by
provisioner/core/directory.py) for the schools the user administers; owner admins see
every school, and last the errors no school is known for. Each error carries a plain
hint per kind (``FIXES``; every DataError kind of provisioner/core/validate.py,
derive.py and local.py) and, for a broken person record whose person BAS knows, that
their accounts are kept as they are until the record is fixed (the person is frozen).
NINs in messages are masked; ``/quality.csv`` gives the same rows for a spreadsheet,
formula-neutralised. Teachers have no data-quality page.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from provisioner.core.csv_cells import neutralise
from provisioner.core.nin import mask_text
from provisioner.web.access import OWNER_ADMIN, SCHOOL_ADMIN, access
from provisioner.web.common import page, reach_of, session_of, web_of
from provisioner.web.reach import Reach

NO_SCHOOL = "_none"  # the filter's value for errors with no school known ("" in the store)
KEPT = "Accounts kept as they are until fixed."

_NAME = "Fill in the given name and family name on the person's card in the SIS (or the group's name)."
_VALUE = "Correct the field the message names on this record in the SIS: it is empty or not a valid value."
_ROLE = (
    "Correct the role on this record in the SIS: an employment is teacher, staff or leader;"
    " a group membership is student or teacher."
)
FIXES: dict[str, str] = {
    "invalid_nin": "The national identity number is wrong (a typo or a missing digit)."
    " Correct it on the person's card in the SIS.",
    "duplicate_nin": "Two persons in the SIS have the same national identity number."
    " Find the other card, and correct the number on the wrong one or merge the two.",
    "duplicate_person": "This person has more than one card in the SIS."
    " Merge the cards so that one remains, or remove the extra record.",
    "missing_name": _NAME,
    "unknown_person": "The record points to a person who is not in the SIS."
    " Remove the row, or register the person first.",
    "unknown_school": "The record points to a school that is not in the SIS."
    " Correct the school on the record.",
    "unknown_group": "The membership points to a group that is not in the SIS."
    " Remove the membership, or create the group.",
    "missing_subject_code": "The teaching group has no subject code. Add the subject code to the group.",
    "duplicate_school": "Two schools in the SIS have the same id. Correct or remove one of them.",
    "duplicate_group": "Two groups in the SIS have the same id. Correct or remove one of them.",
    "bad_period": "The record's dates are wrong (no start date, or an end before the start)."
    " Correct the dates.",
    "bad_date": "A date on this record is not a real date. Correct it in the SIS.",
    "bad_role": _ROLE,
    "bad_kind": "The group's kind must be basis group, teaching group or contact group. Correct it.",
    "missing_value": _VALUE,
    "bad_value": _VALUE,
    "bad_text": "A field has characters the SIS should not store (a broken import?). Retype it in the SIS.",
    "local_person": "A person registered locally in BAS clashes with the SIS (see the message)."
    " Ask the owner's IT to end or correct the local record.",
}
GENERIC = "Check the record the message names in the SIS and correct it; ask the owner's IT if unsure."


def fix_for(kind: str) -> str:
    """What the school office does about an error of this kind."""
    return FIXES.get(kind, GENERIC)


@dataclass
class SchoolErrors:
    """One school's errors as the page lists them."""

    school_id: str  # "" for no school known
    name: str
    rows: list[dict[str, Any]] = field(default_factory=list)


def _schools(reach: Reach, names: dict[str, str]) -> list[str]:
    """The schools this user may pick ("" last for owner admins: no school known)."""
    if reach.schools is None:
        return [*sorted(names), ""]
    return list(reach.schools)


def collect(reach: Reach, school: str | None) -> tuple[list[SchoolErrors], list[tuple[str, str]]]:
    """Errors grouped by school (the one chosen, or all the user's), and the filter's choices."""
    d = reach.store.directory
    names = d.school_names()
    mine = _schools(reach, names)
    chosen = mine if school is None else [school]
    rows = d.errors(None if reach.everything and school is None else chosen)
    known = {p["person_id"] for p in d.persons({r["person_id"] for r in rows if r["person_id"]})}
    by_school: dict[str, SchoolErrors] = {}
    for r in rows:
        sid = r["school_id"] or ""
        name = names.get(sid, sid) if sid else "No school known"
        group = by_school.setdefault(sid, SchoolErrors(sid, name))
        frozen = r["record"].startswith("person:") and r["person_id"] in known
        group.rows.append(
            {
                "kind": r["kind"],
                "record": mask_text(r["record"]),
                "message": mask_text(r["message"]),
                "fix": fix_for(r["kind"]),
                "kept": KEPT if frozen else "",
            }
        )
    order = {s: i for i, s in enumerate([*sorted(x for x in by_school if x), ""])}
    groups = sorted(by_school.values(), key=lambda g: order[g.school_id])
    choices = [(s or NO_SCHOOL, names.get(s, s) if s else "No school known") for s in mine]
    return groups, choices


def _chosen(request: Request, reach: Reach) -> tuple[str | None, bool]:
    """The school filter (None: all of the user's), and whether the user may see it."""
    raw = request.query_params.get("school", "").strip()
    if not raw:
        return None, True
    school = "" if raw == NO_SCHOOL else raw
    return school, reach.can_see_school(school)


async def _collect(
    request: Request,
) -> Response | tuple[list[SchoolErrors], list[tuple[str, str]], str | None]:
    """The request's errors, choices and school; a 403 for a school that is not the user's."""
    reach = reach_of(request)
    school, allowed = _chosen(request, reach)
    if not allowed:
        return web_of(request).message(
            request, 403, "Not for your role", "That school is not one of yours.", session=session_of(request)
        )
    groups, choices = await run_in_threadpool(collect, reach, school)
    return groups, choices, school


@access(OWNER_ADMIN, SCHOOL_ADMIN)
async def quality(request: Request) -> Response:
    """Data errors by school, with what to fix in the SIS."""
    found = await _collect(request)
    if isinstance(found, Response):
        return found
    groups, choices, school = found
    chosen = NO_SCHOOL if school == "" else (school or "")
    return page(request, "quality.html", groups=groups, choices=choices, chosen=chosen, fixes=FIXES)


CSV_COLUMNS = ("school_id", "school", "kind", "record", "message", "what_to_fix", "accounts")


@access(OWNER_ADMIN, SCHOOL_ADMIN)
async def quality_csv(request: Request) -> Response:
    """The same rows as CSV for the school office's spreadsheet (masked, formula-neutralised)."""
    found = await _collect(request)
    if isinstance(found, Response):
        return found
    groups = found[0]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for g in groups:
        for r in g.rows:
            cells = (g.school_id, g.name, r["kind"], r["record"], r["message"], r["fix"], r["kept"])
            w.writerow([neutralise(c) for c in cells])
    return Response(
        buf.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="bas-data-quality.csv"'},
    )


def routes() -> list[Route]:
    """The Data quality part's routes."""
    return [
        Route("/quality", quality, name="quality"),
        Route("/quality.csv", quality_csv, name="quality_csv"),
    ]
