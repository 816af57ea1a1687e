"""The admin's CSV of local persons: read (`bas local import`) and written (`bas local list --csv`).

The same conventions as the project's other CSV files: UTF-8/UTF-16/Windows-1252,
``;`` or ``,`` sniffed, PowerShell's "#TYPE" line skipped (provisioner.core.usernames
``export_rows``); headers case-insensitive. Written cells that a spreadsheet would run
as a formula get a leading apostrophe (provisioner.core.csv_cells), and one read back
from such a file loses it again.

Columns: ``ref`` (the admin's own key: a row whose ref is known changes that person,
a new ref adds one), ``given_name``, ``middle_name``, ``family_name``, ``nin``,
``protected`` (yes/no, ja/nei, true/false, 1/0), ``school``, ``role``, ``start``,
``end``, ``email``, ``mobile``, ``note``. ``ref``, ``given_name``, ``family_name``,
``school``, ``role`` and ``end`` are required; a column left out changes nothing.
``local_id`` (written by `bas local list --csv`) is ignored: that file imports as it is.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from provisioner.core.csv_cells import FORMULA_STARTS, neutralise
from provisioner.core.local import LocalPerson
from provisioner.core.nin import mask
from provisioner.core.usernames import export_rows

# CSV header -> LocalPerson field
COLUMNS = {
    "ref": "ref",
    "given_name": "given_name",
    "middle_name": "middle_name",
    "family_name": "family_name",
    "nin": "nin",
    "protected": "protected",
    "school": "school_id",
    "role": "role",
    "start": "start_date",
    "end": "end_date",
    "email": "email",
    "mobile": "mobile",
    "note": "note",
}
LISTED_ID = "local_id"  # written by `bas local list --csv`, ignored on import
REQUIRED = ("ref", "given_name", "family_name", "school", "role", "end")
_YES = {"yes", "ja", "true", "1", "y", "j"}
_NO = {"no", "nei", "false", "0", "n", ""}


def _cell(value: str) -> str:
    """A cell as the admin meant it: the apostrophe a neutralised cell got is dropped."""
    if value.startswith("'") and value[1:2] and value[1:].startswith(FORMULA_STARTS):
        return value[1:]
    return value


def read_local_csv(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """(line, values by LocalPerson field) per data row; ValueError naming the file and line."""
    p = Path(path)
    header: list[str] | None = None
    out: list[tuple[int, dict[str, Any]]] = []
    for line, cells in export_rows(p, "local persons"):
        if header is None:
            header = [c.strip().lower() for c in cells]
            unknown = [h for h in header if h not in COLUMNS and h != LISTED_ID]
            missing = [h for h in REQUIRED if h not in header]
            if unknown or missing:
                raise ValueError(
                    f"{p}:{line}: "
                    + "; ".join(
                        ([f"unknown column(s) {', '.join(unknown)}"] if unknown else [])
                        + ([f"missing column(s) {', '.join(missing)}"] if missing else [])
                    )
                    + f" (columns: {', '.join(COLUMNS)})"
                )
            continue
        values: dict[str, Any] = {}
        for name, raw in zip(header, cells):
            if name == LISTED_ID:
                continue  # `bas local list --csv` writes it; the ref is the key
            value = _cell(raw.strip())
            field = COLUMNS[name]
            if field == "nin" and "*" in value:
                continue  # masked (a `bas local list --csv` file): the NIN stays as it is
            if field == "protected":
                if value.lower() not in _YES | _NO:
                    raise ValueError(f"{p}:{line}: protected {value!r} is not yes or no")
                values[field] = value.lower() in _YES
            elif field == "role":
                values[field] = value.lower() or None  # "Teacher" is the role teacher
            else:
                values[field] = value or None
        if not values.get("ref"):
            raise ValueError(f"{p}:{line}: ref is empty (every row needs the admin's own key)")
        out.append((line, values))
    if header is None:
        raise ValueError(f"{p}: no header row")
    return out


def write_local_csv(persons: Iterable[LocalPerson], masked: bool = True) -> str:
    """The local persons as CSV text in the import's columns (NINs masked unless ``masked`` is False)."""
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=";", lineterminator="\n")
    w.writerow([LISTED_ID, *COLUMNS])
    for lp in persons:
        v = lp.values()
        if masked:
            v["nin"] = mask(v["nin"])
        v["protected"] = "yes" if v["protected"] else "no"
        w.writerow([lp.person_id, *(neutralise(v[f] if v[f] is not None else "") for f in COLUMNS.values())])
    return buf.getvalue()
