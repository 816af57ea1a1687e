"""Tables of the state store (SQLAlchemy Core).

- ``usernames`` is the historic base: every username ever issued or reserved, with the
  person and NIN it was issued to. Rows are never deleted or reassigned.
- ``person_nins`` keeps every NIN ever seen for a person (a D-number replaced by a
  fødselsnummer is the same person), also forever.
- ``identities`` holds the personal data BAS keeps per person while needed; purged
  after retention (usernames and NINs stay in the two tables above).
- ``objects`` links our key to each target's immutable anchor and the attributes and
  members last applied (with a digest so a no-op run compares hashes, not documents).
- ``versions`` is the state cookie: one counter per target, bumped by every apply.
- ``pending_exports`` journals changes a file target accepted until they are recorded.
- ``runs``, ``changelog`` (append-only) and ``locks`` are the audit and run control;
  ``daemon_status`` is what the daemon says about itself (next run, heartbeat).
- ``local_persons``, ``person_locks`` and ``local_audit``: the admin's local persons and
  locks, and the audit of every change to them.
- ``dir_*``: the web console's directory (persons' schools, SIS groups, data errors).
- ``changelog_members``: who each membership change lists, kept by a trigger on the changelog.

Changes go through Alembic revisions in ``migrations/versions`` (``bas db upgrade``).
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

meta = sa.Table(
    "meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

usernames = sa.Table(
    "usernames",
    metadata,
    sa.Column("username", sa.String(64), primary_key=True),
    sa.Column("person_id", sa.String(64), nullable=True, index=True),  # NULL: reserved (in use elsewhere)
    # Not indexed: a NIN is looked up in person_nins (migration 0010).
    sa.Column("nin", sa.String(11), nullable=True),
    sa.Column("origin", sa.String(16), nullable=False),  # issued | reserved | adopted
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("note", sa.Text, nullable=True),
)

person_nins = sa.Table(
    "person_nins",
    metadata,
    sa.Column("nin", sa.String(11), primary_key=True),
    sa.Column("person_id", sa.String(64), nullable=False, index=True),
    sa.Column("first_seen", sa.String(32), nullable=False),
)

aliases = sa.Table(
    "aliases",
    metadata,
    sa.Column("sis_id", sa.String(64), primary_key=True),
    sa.Column("person_id", sa.String(64), nullable=False, index=True),
    sa.Column("created_at", sa.String(32), nullable=False),
)

identities = sa.Table(
    "identities",
    metadata,
    sa.Column("person_id", sa.String(64), primary_key=True),
    sa.Column("username", sa.String(64), nullable=False, index=True),
    sa.Column("nin", sa.String(11), nullable=True),
    sa.Column("display_name", sa.Text, nullable=True),
    sa.Column("roles", sa.Text, nullable=True),  # comma-separated, for `person show`
    sa.Column("status", sa.String(16), nullable=False),  # active | inactive | purged
    sa.Column("inactive_since", sa.String(10), nullable=True),
    sa.Column("created_at", sa.String(32), nullable=False),
    sa.Column("updated_at", sa.String(32), nullable=False),
    # Summer bridge: ended in the SIS, starting again on this day; accounts kept as they are.
    sa.Column("bridged_until", sa.String(10), nullable=True),
)

objects = sa.Table(
    "objects",
    metadata,
    sa.Column("target", sa.String(64), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("anchor", sa.String(512), nullable=True),
    sa.Column("status", sa.String(16), nullable=False),  # active | disabled | deleted
    sa.Column("status_since", sa.String(10), nullable=True),
    sa.Column("person_id", sa.String(64), nullable=True),
    sa.Column("username", sa.String(64), nullable=True),
    sa.Column("digest", sa.String(32), nullable=False),
    sa.Column("attrs", sa.Text, nullable=False),  # JSON
    sa.Column("members", sa.Text, nullable=True),  # JSON list of [person_id, role]
    sa.Column("updated_at", sa.String(32), nullable=False),
    sa.Index("ix_objects_person", "person_id"),
)

versions = sa.Table(
    "versions",
    metadata,
    sa.Column("target", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),  # sync | plan | apply | approve
    sa.Column("status", sa.String(24), nullable=False),
    sa.Column("started_at", sa.String(32), nullable=False),
    sa.Column("finished_at", sa.String(32), nullable=True),
    sa.Column("as_of", sa.String(10), nullable=True),
    sa.Column("active_persons", sa.Integer, nullable=True),
    sa.Column("summary", sa.Text, nullable=True),  # JSON
    sa.Column("plan", sa.Text, nullable=True),  # JSON of the held part of the plan, while held
    sa.Column("approved_at", sa.String(32), nullable=True),
    sa.Column("approved_by", sa.String(128), nullable=True),
    sa.Column("error", sa.Text, nullable=True),
)

changelog = sa.Table(
    "changelog",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(64), nullable=False, index=True),
    sa.Column("at", sa.String(32), nullable=False, index=True),
    sa.Column("target", sa.String(64), nullable=False),
    sa.Column("op", sa.String(24), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("key", sa.String(200), nullable=False),
    sa.Column("person_id", sa.String(64), nullable=True, index=True),
    # Not indexed: the changelog is read by person through their ids (a username is
    # resolved through the historic base), and a fragment is matched with LIKE '%...%'
    # (migration 0010).
    sa.Column("username", sa.String(64), nullable=True),
    sa.Column("before", sa.Text, nullable=True),  # JSON
    sa.Column("after", sa.Text, nullable=True),  # JSON
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("result", sa.String(16), nullable=False),  # ok | rejected | failed
    sa.Column("error", sa.Text, nullable=True),
)

# The export journal: changes a file target accepted, kept from before its files are
# written until they are recorded as applied; a run killed in between leaves them for the
# next run to record or drop (provisioner/state/exports.py).
pending_exports = sa.Table(
    "pending_exports",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("target", sa.String(64), nullable=False, index=True),
    sa.Column("run_id", sa.String(64), nullable=False),  # the run that accepted them
    # JSON list of up to 1,000 {change, anchor, note}: one row a chunk, not a change, as a
    # first run accepts ~400,000 changes for the file targets.
    sa.Column("changes", sa.Text, nullable=False),
)

locks = sa.Table(
    "locks",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("holder", sa.String(64), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("acquired_at", sa.String(32), nullable=False),
)

# The daemon writes its next scheduled run and a heartbeat here (`bas status` reads it);
# one row per host running `bas daemon`. Added by migration 0002.
daemon_status = sa.Table(
    "daemon_status",
    metadata,
    sa.Column("host", sa.String(255), primary_key=True),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("started_at", sa.String(32), nullable=False),
    sa.Column("heartbeat_at", sa.String(32), nullable=False),
    sa.Column("next_run_at", sa.String(32), nullable=True),
    sa.Column("next_run_kind", sa.String(16), nullable=True),  # incremental | full
    sa.Column("next_full_at", sa.String(32), nullable=True),
    sa.Column("state", sa.String(16), nullable=False),  # idle | running | stopped
)

# Local persons (provisioner/core/local.py): kept by the admin with `bas local`, never
# deleted (``local:<n>`` is never given to anyone else). Added by migration 0006.
local_persons = sa.Table(
    "local_persons",
    metadata,
    sa.Column("local_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ref", sa.String(64), nullable=True, unique=True),  # the admin's own key (CSV)
    sa.Column("given_name", sa.Text, nullable=False),
    sa.Column("middle_name", sa.Text, nullable=True),
    sa.Column("family_name", sa.Text, nullable=False),
    sa.Column("nin", sa.String(11), nullable=True),
    sa.Column("protected", sa.Boolean, nullable=False),  # skjermet identitet: NIN never sent
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
    sqlite_autoincrement=True,
)

# Locks (provisioner/core/locks.py): `bas lock`/`bas unlock`; a released lock stays as record.
person_locks = sa.Table(
    "person_locks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("person_id", sa.String(64), nullable=False, index=True),
    sa.Column("target", sa.String(64), nullable=False),  # a target name, or "*": every one
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("until", sa.String(10), nullable=True),  # last day in force
    sa.Column("locked_at", sa.String(32), nullable=False),
    sa.Column("locked_by", sa.String(128), nullable=False),
    sa.Column("released_at", sa.String(32), nullable=True),
    sa.Column("released_by", sa.String(128), nullable=True),
)

# Every change to a local person or a lock: who (OS user or --by), when, before/after
# (JSON, NINs masked). Append-only.
local_audit = sa.Table(
    "local_audit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("at", sa.String(32), nullable=False),
    sa.Column("by", sa.String(128), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),  # add | set | end | lock | unlock
    sa.Column("subject", sa.String(64), nullable=False, index=True),  # local:<n> or a person id
    sa.Column("before", sa.Text, nullable=True),
    sa.Column("after", sa.Text, nullable=True),
    sa.Column("note", sa.Text, nullable=True),  # e.g. "import people.csv"
)

# The web console's directory (provisioner/core/directory.py, provisioner/state/directory.py):
# who is at which school and in which SIS group, rewritten per row when its digest changes.
# Persons who left stay (``active`` false) with their last schools, so the school that had
# them can still look them up. Added by migration 0007.
dir_persons = sa.Table(
    "dir_persons",
    metadata,
    sa.Column("person_id", sa.String(64), primary_key=True),
    sa.Column("username", sa.String(64), nullable=False, index=True),
    sa.Column("display_name", sa.Text, nullable=False),
    sa.Column("search", sa.Text, nullable=False),  # case-folded "display name username"
    sa.Column("roles", sa.String(128), nullable=False),
    sa.Column("schools", sa.Text, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("digest", sa.String(24), nullable=False),
)

dir_affiliations = sa.Table(
    "dir_affiliations",
    metadata,
    sa.Column("person_id", sa.String(64), primary_key=True),
    sa.Column("school_id", sa.String(64), primary_key=True),
    sa.Column("role", sa.String(16), primary_key=True),
    sa.Index("ix_dir_affiliations_school", "school_id", "person_id"),
)

dir_groups = sa.Table(
    "dir_groups",
    metadata,
    sa.Column("group_key", sa.String(200), primary_key=True),
    sa.Column("school_id", sa.String(64), nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("digest", sa.String(24), nullable=False),
)

dir_members = sa.Table(
    "dir_members",
    metadata,
    sa.Column("group_key", sa.String(200), primary_key=True),
    sa.Column("person_id", sa.String(64), primary_key=True),
    sa.Column("role", sa.String(16), primary_key=True),
    sa.Index("ix_dir_members_person", "person_id", "role"),
)

dir_schools = sa.Table(
    "dir_schools",
    metadata,
    sa.Column("school_id", sa.String(64), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
)

# The data errors of the newest derivation, each at a school ("" when none is known).
dir_errors = sa.Table(
    "dir_errors",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("school_id", sa.String(64), nullable=False, index=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("record", sa.Text, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("person_id", sa.String(64), nullable=True),
)

# The changelog read newest first by target or by operation (the console's filters over a
# year of history): these keep such a page an index walk, not a scan. Migration 0007.
sa.Index("ix_changelog_target_id", changelog.c.target, changelog.c.id)
sa.Index("ix_changelog_op_id", changelog.c.op, changelog.c.id)

# Who each membership change (add_members, remove_members) lists, one row per person: the
# changelog by person (`bas changelog --person`, the console) finds those changes by index,
# not by reading every membership row of a year. Filled by the database itself (a trigger
# on changelog inserts, below), so every writer keeps it whole. Migration 0007.
changelog_members = sa.Table(
    "changelog_members",
    metadata,
    sa.Column("person_id", sa.String(64), primary_key=True),
    sa.Column("changelog_id", sa.Integer, primary_key=True),
)

MEMBER_OPS_SQL = "('add_members', 'remove_members')"
CHANGELOG_MEMBERS_DDL = {
    "sqlite": [
        "CREATE TRIGGER changelog_members_fill AFTER INSERT ON changelog"
        f" WHEN NEW.op IN {MEMBER_OPS_SQL} AND json_valid(NEW.after)"
        " BEGIN INSERT OR IGNORE INTO changelog_members (person_id, changelog_id)"
        " SELECT json_extract(m.value, '$[0]'), NEW.id FROM json_each(NEW.after, '$.members') AS m"
        " WHERE json_extract(m.value, '$[0]') IS NOT NULL; END"
    ],
    "postgresql": [
        "CREATE FUNCTION changelog_members_fill() RETURNS trigger LANGUAGE plpgsql AS $fn$"
        f" BEGIN IF NEW.op IN {MEMBER_OPS_SQL} AND jsonb_typeof(NEW.after::jsonb -> 'members') = 'array' THEN"
        " INSERT INTO changelog_members (person_id, changelog_id)"
        " SELECT DISTINCT m ->> 0, NEW.id FROM jsonb_array_elements(NEW.after::jsonb -> 'members') AS m"
        " WHERE m ->> 0 IS NOT NULL ON CONFLICT DO NOTHING; END IF; RETURN NULL; END $fn$",
        "CREATE TRIGGER changelog_members_fill AFTER INSERT ON changelog"
        " FOR EACH ROW EXECUTE FUNCTION changelog_members_fill()",
    ],
}
# The same for rows already in the changelog (migration 0007; a bulk load without the trigger).
CHANGELOG_MEMBERS_BACKFILL = {
    "sqlite": "INSERT OR IGNORE INTO changelog_members (person_id, changelog_id)"
    " SELECT json_extract(m.value, '$[0]'), c.id FROM changelog AS c, json_each(c.after, '$.members') AS m"
    f" WHERE c.op IN {MEMBER_OPS_SQL} AND json_valid(c.after) AND json_extract(m.value, '$[0]') IS NOT NULL",
    # The CASE keeps other rows' ``after`` from reaching jsonb_array_elements (it fails on a non-array).
    "postgresql": "INSERT INTO changelog_members (person_id, changelog_id)"
    " SELECT DISTINCT m ->> 0, c.id FROM changelog AS c, jsonb_array_elements("
    f"CASE WHEN c.op IN {MEMBER_OPS_SQL} AND jsonb_typeof(c.after::jsonb -> 'members') = 'array'"
    " THEN c.after::jsonb -> 'members' END) AS m"
    " WHERE m ->> 0 IS NOT NULL ON CONFLICT DO NOTHING",
}
CHANGELOG_MEMBERS_DROP = {
    "sqlite": ["DROP TRIGGER IF EXISTS changelog_members_fill"],
    "postgresql": [
        "DROP TRIGGER IF EXISTS changelog_members_fill ON changelog",
        "DROP FUNCTION IF EXISTS changelog_members_fill()",
    ],
}
for _dialect, _statements in CHANGELOG_MEMBERS_DDL.items():
    for _sql in _statements:
        sa.event.listen(changelog_members, "after_create", sa.DDL(_sql).execute_if(dialect=_dialect))

# The certified plan's changes, per target, as compressed JSON chunks (provisioner.core.stored):
# the certificate in ``meta`` names them by ``part``; a quiet run reads them as bytes and
# decodes none. Migration 0008.
plan_parts = sa.Table(
    "plan_parts",
    metadata,
    sa.Column("part", sa.String(32), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("body", sa.LargeBinary, nullable=False),
)

SCHEMA_VERSION = "10"  # meta.schema_version; the Alembic revision (alembic_version) is the authority
