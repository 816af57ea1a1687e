"""Mask the NINs that older BAS versions stored whole in the changelog and run records.

The changelog outlives the retention purge, so since this revision a NIN is stored
there masked (first six digits); the historic base (usernames, person_nins) is the only
place a whole NIN stays. This revision masks what was written before, in the same way
the writer masks now. Data only: no table changes, and no way back (a masked NIN
cannot be unmasked, so the downgrade leaves the rows as they are).

Revision ID: 0005
Revises: 0004
Create Date: 2025-10-20
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

from provisioner.core.nin import mask_error, mask_nins

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_BATCH = 5000
_CHANGELOG: dict[str, Callable[[str], str]] = {
    "key": mask_nins,
    "username": mask_nins,
    "before": mask_nins,
    "after": mask_nins,
    "reason": mask_nins,
    "error": mask_error,
}
_RUNS: dict[str, Callable[[str], str]] = {"summary": mask_error, "error": mask_error}


def _mask_table(name: str, pk: str, columns: dict[str, Callable[[str], str]]) -> None:
    """Rewrite the rows of one table whose masked values differ, one batch of keys at a time."""
    conn = op.get_bind()
    table = sa.table(name, sa.column(pk), *(sa.column(c) for c in columns))
    last = None
    while True:
        q = sa.select(table.c[pk], *(table.c[c] for c in columns)).order_by(table.c[pk]).limit(_BATCH)
        if last is not None:
            q = q.where(table.c[pk] > last)
        rows = conn.execute(q).all()
        if not rows:
            return
        for row in rows:
            changed = {
                col: fn(value)
                for col, fn, value in zip(columns, columns.values(), row[1:])
                if value and fn(value) != value
            }
            if changed:
                conn.execute(table.update().where(table.c[pk] == row[0]).values(**changed))
        last = rows[-1][0]


def upgrade() -> None:
    """Mask NINs in changelog rows and run records written before."""
    _mask_table("changelog", "id", _CHANGELOG)
    _mask_table("runs", "run_id", _RUNS)
    op.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")


def downgrade() -> None:
    """Nothing to undo: masked numbers stay masked."""
    op.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
