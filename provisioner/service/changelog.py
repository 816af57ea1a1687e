"""Rendering changelog rows (``store.history.query``) as a table, JSON or CSV.

A person can be named by username, NIN or SIS id (provisioner/state/history.py);
membership changes that list the person are found too. NINs are masked in every output
unless the caller asks for them explicitly; passwords are never stored, so none can be shown.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from typing import Any

from provisioner.core.csv_cells import neutralise
from provisioner.core.nin import mask_text
from provisioner.core.states import ChangeResult
from provisioner.state.history import COLUMNS


def _present(row: dict[str, Any], show_nin: bool) -> dict[str, Any]:
    out = dict(row)
    for k in ("before", "after"):
        if out.get(k):
            out[k] = json.loads(out[k])
    if not show_nin:
        out = json.loads(mask_text(json.dumps(out, ensure_ascii=False)))
    return out


def render(rows: Sequence[dict[str, Any]], fmt: str = "table", show_nin: bool = False) -> str:
    """Rows as 'table', 'json' or 'csv' text."""
    shown = [_present(r, show_nin) for r in rows]
    if fmt == "json":
        return json.dumps(shown, ensure_ascii=False, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        for r in shown:
            w.writerow(
                {
                    k: neutralise(json.dumps(v, ensure_ascii=False) if isinstance(v, dict | list) else v)
                    for k, v in r.items()
                }
            )
        return buf.getvalue()
    return table(
        ["at", "run", "target", "op", "object", "username", "result", "reason"],
        [
            [
                r["at"][:19],
                r["run_id"],
                r["target"],
                r["op"],
                f"{r['kind']}:{r['key']}",
                r["username"] or "",
                r["result"] + (f" ({r['error']})" if r["error"] and r["result"] != ChangeResult.OK else ""),
                r["reason"],
            ]
            for r in shown
        ],
    )


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], max_width: int = 70) -> str:
    """A plain aligned text table; long cells are cut with an ellipsis."""

    def cell(v: Any) -> str:
        s = "" if v is None else str(v)
        return s if len(s) <= max_width else s[: max_width - 1] + "…"

    body = [[cell(v) for v in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in body]) for i, h in enumerate(headers)]
    lines = [
        "  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip(),
        "  ".join("-" * w for w in widths),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in body]
    return "\n".join(lines)
