"""Drop two indexes that no read uses and every write paid for: the changelog's on
``username`` and the historic base's on ``usernames.nin``.

The changelog is read by person through their ids (``person_id`` and ``changelog_members``,
a username resolved through the historic base first), by run, target, operation and time;
a username fragment is matched with LIKE '%...%', which no index serves. A NIN is looked
up in ``person_nins`` (its primary key), never in ``usernames``. Rows come in the order of
the plan, not of the usernames or NINs, so each row changed a page somewhere in each
index. A first run at Oslo size, inserted as the writer inserts it: the changelog's
647,598 rows took 20.3-21.0 s of CPU with the index and 14.1-14.7 s without; the 251,040
usernames 3.7-4.0 s with and 1.6 s without.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Drop ix_changelog_username and ix_usernames_nin."""
    op.drop_index("ix_changelog_username", table_name="changelog")
    op.drop_index("ix_usernames_nin", table_name="usernames")
    op.execute("UPDATE meta SET value = '10' WHERE key = 'schema_version'")


def downgrade() -> None:
    """Build both again."""
    op.create_index("ix_usernames_nin", "usernames", ["nin"])
    op.create_index("ix_changelog_username", "changelog", ["username"])
    op.execute("UPDATE meta SET value = '9' WHERE key = 'schema_version'")
