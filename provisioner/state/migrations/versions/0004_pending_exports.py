"""Pending exports: changes a file target recorded as applied before its files were written.

Revision ID: 0004
Revises: 0003
Create Date: 2025-10-20
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add pending_exports."""
    op.create_table(
        "pending_exports",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("changes", sa.Text, nullable=False),
    )
    op.create_index("ix_pending_exports_target", "pending_exports", ["target"])
    op.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")


def downgrade() -> None:
    """Drop pending_exports."""
    op.drop_index("ix_pending_exports_target", table_name="pending_exports")
    op.drop_table("pending_exports")
    op.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
