"""CSV cells that a spreadsheet cannot run as a formula (CSV / formula injection).

The password files and `bas changelog --format csv` are opened in Excel or LibreOffice
by school offices. A cell from the SIS that starts with ``=``, ``+``, ``-``, ``@``, a
tab or a carriage return would be read as a formula (``=HYPERLINK(...)`` sends data
away), so such a cell gets a leading apostrophe, which spreadsheets show as text.
"""

from __future__ import annotations

from typing import Any

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise(value: Any) -> Any:
    """The value, with an apostrophe in front when it is text a spreadsheet would evaluate."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value
