"""The summer bridge: identities.bridged_until (the day a bridged person's next affiliation starts).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add identities.bridged_until and mark schema version 3."""
    with op.batch_alter_table("identities") as batch:
        batch.add_column(sa.Column("bridged_until", sa.String(10), nullable=True))
    op.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")


def downgrade() -> None:
    """Drop identities.bridged_until."""
    with op.batch_alter_table("identities") as batch:
        batch.drop_column("bridged_until")
    op.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
