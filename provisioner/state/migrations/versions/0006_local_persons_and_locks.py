"""Local persons, locks and their audit (`bas local`, `bas lock`, `bas unlock`).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add local_persons, person_locks and local_audit."""
    op.create_table(
        "local_persons",
        sa.Column("local_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("ref", sa.String(64), nullable=True, unique=True),
        sa.Column("given_name", sa.Text, nullable=False),
        sa.Column("middle_name", sa.Text, nullable=True),
        sa.Column("family_name", sa.Text, nullable=False),
        sa.Column("nin", sa.String(11), nullable=True),
        sa.Column("protected", sa.Boolean, nullable=False),
        sa.Column("school_id", sa.String(64), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("start_date", sa.String(10), nullable=False),
        sa.Column("end_date", sa.String(10), nullable=False),
        sa.Column("email", sa.Text, nullable=True),
        sa.Column("mobile", sa.String(32), nullable=True),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("created_at", sa.String(32), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
        sa.Column("updated_by", sa.String(128), nullable=False),
        sqlite_autoincrement=True,  # a local id is never given again
    )
    op.create_table(
        "person_locks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("person_id", sa.String(64), nullable=False),
        sa.Column("target", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("until", sa.String(10), nullable=True),
        sa.Column("locked_at", sa.String(32), nullable=False),
        sa.Column("locked_by", sa.String(128), nullable=False),
        sa.Column("released_at", sa.String(32), nullable=True),
        sa.Column("released_by", sa.String(128), nullable=True),
    )
    op.create_index("ix_person_locks_person_id", "person_locks", ["person_id"])
    op.create_table(
        "local_audit",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.String(32), nullable=False),
        sa.Column("by", sa.String(128), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("subject", sa.String(64), nullable=False),
        sa.Column("before", sa.Text, nullable=True),
        sa.Column("after", sa.Text, nullable=True),
        sa.Column("note", sa.Text, nullable=True),
    )
    op.create_index("ix_local_audit_subject", "local_audit", ["subject"])
    op.execute("UPDATE meta SET value = '6' WHERE key = 'schema_version'")


def downgrade() -> None:
    """Drop the three tables."""
    op.drop_index("ix_local_audit_subject", table_name="local_audit")
    op.drop_table("local_audit")
    op.drop_index("ix_person_locks_person_id", table_name="person_locks")
    op.drop_table("person_locks")
    op.drop_table("local_persons")
    op.execute("UPDATE meta SET value = '5' WHERE key = 'schema_version'")
