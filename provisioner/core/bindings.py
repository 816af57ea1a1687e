"""Usernames already bound to persons elsewhere: the CSV an owner exports from AD or the old BAS.

When BAS takes over from an old system, people already have logins. A binding file
pairs each SIS person id (AD's employeeID) with the login they have (sAMAccountName),
so the historic base gives every such person their existing username instead of a new
one, and the AD and Microsoft 365 connectors adopt the existing accounts. Reading the
file is pure; ``StateStore.bind_usernames`` records it and reports conflicts rather
than guessing (a username issued to someone else, a person who already has another).
"""

from __future__ import annotations

from pathlib import Path

from provisioner.core.usernames import _RESERVED_HEADERS, export_rows, valid_username

PERSON_HEADERS = ("person_id", "employeeid", "employee_id", "sis_id")


def read_binding_csv(path: str | Path) -> list[tuple[str, str]]:
    """(person_id, username) pairs from a CSV with a person column and a username column."""
    p = Path(path)
    cols: tuple[int, int] | None = None
    out: dict[str, str] = {}
    owner: dict[str, str] = {}
    for line, cells in export_rows(p, "username bindings"):
        if cols is None:
            lowered = [c.lower() for c in cells]
            pcol = next((lowered.index(h) for h in PERSON_HEADERS if h in lowered), None)
            ucol = next((lowered.index(h) for h in _RESERVED_HEADERS if h in lowered), None)
            if pcol is None or ucol is None:
                raise ValueError(
                    f"{p}:{line}: the header needs a person column ({', '.join(PERSON_HEADERS)})"
                    f" and a username column ({', '.join(_RESERVED_HEADERS)})"
                )
            cols = (pcol, ucol)
            continue
        pid = cells[cols[0]] if cols[0] < len(cells) else ""
        user = (cells[cols[1]] if cols[1] < len(cells) else "").lower()
        if not pid and not user:
            continue
        if not pid or not user:
            raise ValueError(f"{p}:{line}: a binding needs both a person id and a username")
        if not valid_username(user):
            raise ValueError(f"{p}:{line}: invalid username {user!r}")
        if out.get(pid, user) != user:
            raise ValueError(f"{p}:{line}: person {pid!r} is bound to both {out[pid]!r} and {user!r}")
        if owner.get(user, pid) != pid:
            raise ValueError(f"{p}:{line}: username {user!r} is bound to both {owner[user]!r} and {pid!r}")
        out[pid], owner[user] = user, pid
    return list(out.items())
