"""``plan_parts``: the certified plan's changes per target, compressed (provisioner.core.stored).

The certificate (meta ``plan_certificate``) changes form with it: one written by an
earlier version no longer loads, so it is dropped and the next run plans in full.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add plan_parts; drop the old certificate."""
    op.create_table(
        "plan_parts",
        sa.Column("part", sa.String(32), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
    )
    op.execute("DELETE FROM meta WHERE key = 'plan_certificate'")
    op.execute("UPDATE meta SET value = '8' WHERE key = 'schema_version'")


def downgrade() -> None:
    """Drop plan_parts and the certificate that names them."""
    op.execute("DELETE FROM meta WHERE key = 'plan_certificate'")
    op.drop_table("plan_parts")
    op.execute("UPDATE meta SET value = '7' WHERE key = 'schema_version'")
