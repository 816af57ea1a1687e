"""The web console's directory (``dir_*``), two changelog indexes and the membership index.

``changelog_members`` lists the persons each membership change names, filled by a trigger
on changelog inserts and here, once, for the rows already written.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from provisioner.state.schema import CHANGELOG_MEMBERS_BACKFILL, CHANGELOG_MEMBERS_DDL, CHANGELOG_MEMBERS_DROP

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Add dir_persons, dir_affiliations, dir_groups, dir_members, dir_schools, dir_errors."""
    op.create_table(
        "dir_persons",
        sa.Column("person_id", sa.String(64), primary_key=True),
        sa.Column("username", sa.String(64), nullable=False),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("search", sa.Text, nullable=False),
        sa.Column("roles", sa.String(128), nullable=False),
        sa.Column("schools", sa.Text, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("digest", sa.String(24), nullable=False),
    )
    op.create_index("ix_dir_persons_username", "dir_persons", ["username"])
    op.create_table(
        "dir_affiliations",
        sa.Column("person_id", sa.String(64), primary_key=True),
        sa.Column("school_id", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(16), primary_key=True),
    )
    op.create_index("ix_dir_affiliations_school", "dir_affiliations", ["school_id", "person_id"])
    op.create_table(
        "dir_groups",
        sa.Column("group_key", sa.String(200), primary_key=True),
        sa.Column("school_id", sa.String(64), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("digest", sa.String(24), nullable=False),
    )
    op.create_table(
        "dir_members",
        sa.Column("group_key", sa.String(200), primary_key=True),
        sa.Column("person_id", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(16), primary_key=True),
    )
    op.create_index("ix_dir_members_person", "dir_members", ["person_id", "role"])
    op.create_table(
        "dir_schools",
        sa.Column("school_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
    )
    op.create_table(
        "dir_errors",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("school_id", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("record", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("person_id", sa.String(64), nullable=True),
    )
    op.create_index("ix_dir_errors_school_id", "dir_errors", ["school_id"])
    op.create_index("ix_changelog_target_id", "changelog", ["target", "id"])
    op.create_index("ix_changelog_op_id", "changelog", ["op", "id"])
    op.create_table(
        "changelog_members",
        sa.Column("person_id", sa.String(64), primary_key=True),
        sa.Column("changelog_id", sa.Integer, primary_key=True),
    )
    dialect = op.get_bind().dialect.name
    for sql in CHANGELOG_MEMBERS_DDL[dialect]:
        op.execute(sql)
    op.execute(CHANGELOG_MEMBERS_BACKFILL[dialect])
    op.execute("UPDATE meta SET value = '7' WHERE key = 'schema_version'")


def downgrade() -> None:
    """Drop the directory, the two changelog indexes and the membership index."""
    for sql in CHANGELOG_MEMBERS_DROP[op.get_bind().dialect.name]:
        op.execute(sql)
    op.drop_table("changelog_members")
    op.drop_index("ix_changelog_op_id", table_name="changelog")
    op.drop_index("ix_changelog_target_id", table_name="changelog")
    op.drop_index("ix_dir_errors_school_id", table_name="dir_errors")
    op.drop_table("dir_errors")
    op.drop_table("dir_schools")
    op.drop_index("ix_dir_members_person", table_name="dir_members")
    op.drop_table("dir_members")
    op.drop_table("dir_groups")
    op.drop_index("ix_dir_affiliations_school", table_name="dir_affiliations")
    op.drop_table("dir_affiliations")
    op.drop_index("ix_dir_persons_username", table_name="dir_persons")
    op.drop_table("dir_persons")
    op.execute("UPDATE meta SET value = '6' WHERE key = 'schema_version'")
