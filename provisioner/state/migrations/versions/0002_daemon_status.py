"""The daemon's status: one row per host running `bas daemon` (next run, heartbeat).

Revision ID: 0002
Revises: 0001
Create Date: 2025-10-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add daemon_status and mark schema version 2."""
    op.create_table(
        "daemon_status",
        sa.Column("host", sa.String(255), primary_key=True),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", sa.String(32), nullable=False),
        sa.Column("heartbeat_at", sa.String(32), nullable=False),
        sa.Column("next_run_at", sa.String(32), nullable=True),
        sa.Column("next_run_kind", sa.String(16), nullable=True),
        sa.Column("next_full_at", sa.String(32), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
    )
    op.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")


def downgrade() -> None:
    """Drop daemon_status."""
    op.drop_table("daemon_status")
    op.execute("UPDATE meta SET value = '1' WHERE key = 'schema_version'")
