"""Baseline: the state store as BAS created it before migrations (schema_version 1).

Revision ID: 0001
Revises:
Create Date: 2025-10-01

Frozen copy of the tables: later changes to schema.py go into later revisions, never here.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_S = sa.String


def upgrade() -> None:
    """Create every table of schema version 1."""
    op.create_table(
        "meta", sa.Column("key", _S(64), primary_key=True), sa.Column("value", sa.Text, nullable=False)
    )
    op.create_table(
        "usernames",
        sa.Column("username", _S(64), primary_key=True),
        sa.Column("person_id", _S(64), nullable=True),
        sa.Column("nin", _S(11), nullable=True),
        sa.Column("origin", _S(16), nullable=False),
        sa.Column("created_at", _S(32), nullable=False),
        sa.Column("note", sa.Text, nullable=True),
    )
    op.create_index("ix_usernames_person_id", "usernames", ["person_id"])
    op.create_index("ix_usernames_nin", "usernames", ["nin"])
    op.create_table(
        "person_nins",
        sa.Column("nin", _S(11), primary_key=True),
        sa.Column("person_id", _S(64), nullable=False),
        sa.Column("first_seen", _S(32), nullable=False),
    )
    op.create_index("ix_person_nins_person_id", "person_nins", ["person_id"])
    op.create_table(
        "aliases",
        sa.Column("sis_id", _S(64), primary_key=True),
        sa.Column("person_id", _S(64), nullable=False),
        sa.Column("created_at", _S(32), nullable=False),
    )
    op.create_index("ix_aliases_person_id", "aliases", ["person_id"])
    op.create_table(
        "identities",
        sa.Column("person_id", _S(64), primary_key=True),
        sa.Column("username", _S(64), nullable=False),
        sa.Column("nin", _S(11), nullable=True),
        sa.Column("display_name", sa.Text, nullable=True),
        sa.Column("roles", sa.Text, nullable=True),
        sa.Column("status", _S(16), nullable=False),
        sa.Column("inactive_since", _S(10), nullable=True),
        sa.Column("created_at", _S(32), nullable=False),
        sa.Column("updated_at", _S(32), nullable=False),
    )
    op.create_index("ix_identities_username", "identities", ["username"])
    op.create_table(
        "objects",
        sa.Column("target", _S(64), primary_key=True),
        sa.Column("key", _S(200), primary_key=True),
        sa.Column("kind", _S(16), nullable=False),
        sa.Column("anchor", _S(512), nullable=True),
        sa.Column("status", _S(16), nullable=False),
        sa.Column("status_since", _S(10), nullable=True),
        sa.Column("person_id", _S(64), nullable=True),
        sa.Column("username", _S(64), nullable=True),
        sa.Column("digest", _S(32), nullable=False),
        sa.Column("attrs", sa.Text, nullable=False),
        sa.Column("members", sa.Text, nullable=True),
        sa.Column("updated_at", _S(32), nullable=False),
    )
    op.create_index("ix_objects_person", "objects", ["person_id"])
    op.create_table(
        "versions",
        sa.Column("target", _S(64), primary_key=True),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_table(
        "runs",
        sa.Column("run_id", _S(64), primary_key=True),
        sa.Column("kind", _S(16), nullable=False),
        sa.Column("status", _S(24), nullable=False),
        sa.Column("started_at", _S(32), nullable=False),
        sa.Column("finished_at", _S(32), nullable=True),
        sa.Column("as_of", _S(10), nullable=True),
        sa.Column("active_persons", sa.Integer, nullable=True),
        sa.Column("summary", sa.Text, nullable=True),
        sa.Column("plan", sa.Text, nullable=True),
        sa.Column("approved_at", _S(32), nullable=True),
        sa.Column("approved_by", _S(128), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
    )
    op.create_table(
        "changelog",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", _S(64), nullable=False),
        sa.Column("at", _S(32), nullable=False),
        sa.Column("target", _S(64), nullable=False),
        sa.Column("op", _S(24), nullable=False),
        sa.Column("kind", _S(16), nullable=False),
        sa.Column("key", _S(200), nullable=False),
        sa.Column("person_id", _S(64), nullable=True),
        sa.Column("username", _S(64), nullable=True),
        sa.Column("before", sa.Text, nullable=True),
        sa.Column("after", sa.Text, nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("result", _S(16), nullable=False),
        sa.Column("error", sa.Text, nullable=True),
    )
    for col in ("run_id", "at", "person_id", "username"):
        op.create_index(f"ix_changelog_{col}", "changelog", [col])
    op.create_table(
        "locks",
        sa.Column("name", _S(64), primary_key=True),
        sa.Column("holder", _S(64), nullable=False),
        sa.Column("host", _S(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("acquired_at", _S(32), nullable=False),
    )
    op.execute("INSERT INTO meta (key, value) VALUES ('schema_version', '1')")


def downgrade() -> None:
    """Drop everything (an empty database)."""
    for name in (
        "locks",
        "changelog",
        "runs",
        "versions",
        "objects",
        "identities",
        "aliases",
        "person_nins",
        "usernames",
        "meta",
    ):
        op.drop_table(name)
