"""What source reads found out about their rows, kept between runs (the store's meta).

A patch asks the SQL source for a few rows by key column, and the source first checks,
once per read, that the column's values need no conversion (text ids as text): a pass
over every row, a million of them for the memberships at Oslo size. That holds for any
read of the same rows, and a table's digest says whether the rows are the same, so the
finding is kept here with the digest it holds for (provisioner.core.fetched,
``checked``), and a daemon's next patch passes over only the tables that changed.
Losing it costs the check again, nothing else: it is a cache, not state.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from provisioner.core.fetched import Fetched
from provisioner.state.store import StateStore

KEY = "source_checked"


def assumed(store: StateStore, read: Fetched) -> dict[str, Any]:
    """What earlier reads found, given to ``read`` (it takes the tables whose digest is its own)."""
    try:
        known = json.loads(store.meta.get(KEY) or "{}")
    except ValueError:
        known = {}
    if not isinstance(known, dict):
        known = {}
    read.assume_checked(known)
    return known


def keep(store: StateStore, read: Fetched, known: Mapping[str, Any]) -> None:
    """Keep what ``read`` found, with what earlier reads found of its tables as they are now."""
    now: dict[str, Any] = {}
    for name, entry in known.items():  # still true of this read's rows: kept
        if isinstance(entry, list) and len(entry) == 2 and entry[0] == read.digests.get(name):
            now[name] = entry
    for name, (digest, columns) in read.checked().items():
        was = now.get(name, [digest, {}])[1]
        now[name] = [digest, {**was, **columns}]
    if now != known:
        store.meta.set(KEY, json.dumps(now, sort_keys=True))
