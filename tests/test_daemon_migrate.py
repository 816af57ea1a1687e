"""Alembic migrations of the state store, on SQLite and PostgreSQL.

From an empty database and from the previous revision the migrated schema must equal
``schema.metadata`` (Alembic's autogenerate comparison finds no difference), data
survives, and a StateStore refuses a database that is behind with "run bas db upgrade".
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from provisioner.state import migrate
from provisioner.state import schema as t
from provisioner.state.store import StateStore


def _diff(engine: sa.Engine) -> list:
    with engine.connect() as conn:
        return compare_metadata(MigrationContext.configure(conn), t.metadata)


def _tables(engine: sa.Engine) -> set[str]:
    return set(sa.inspect(engine).get_table_names())


def test_upgrade_from_empty_matches_schema(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    try:
        assert migrate.upgrade(engine) == (None, migrate.head())
        assert _diff(engine) == []
        assert "daemon_status" in _tables(engine)
        store = StateStore(db_url)  # at head: accepted as it is
        store.close()
    finally:
        engine.dispose()


def test_create_all_and_stamp_equals_the_migrations(db_url: str) -> None:
    store = StateStore(db_url)  # a brand-new database: create_all + stamp head
    try:
        with store.engine.connect() as conn:
            assert MigrationContext.configure(conn).get_current_revision() == migrate.head()
            version = conn.execute(sa.select(t.meta.c.value).where(t.meta.c.key == "schema_version"))
            assert version.scalar() == t.SCHEMA_VERSION
        assert _diff(store.engine) == []
    finally:
        store.close()


def test_upgrade_from_previous_revision_keeps_data(db_url: str) -> None:
    engine = sa.create_engine(db_url)
    try:
        migrate.upgrade(engine, "0001")
        assert "daemon_status" not in _tables(engine)
        with engine.begin() as conn:
            conn.execute(
                t.usernames.insert().values(
                    username="olanor", person_id="p1", nin=None, origin="issued", created_at="2025-01-01"
                )
            )
        with pytest.raises(migrate.SchemaError, match="run `bas db upgrade`"):
            StateStore(db_url)
        assert migrate.upgrade(engine) == ("0001", migrate.head())
        assert _diff(engine) == []
        store = StateStore(db_url)
        try:
            assert store.identities.username_record("olanor")["person_id"] == "p1"
            with store.engine.connect() as conn:
                version = conn.execute(sa.select(t.meta.c.value).where(t.meta.c.key == "schema_version"))
                assert version.scalar() == t.SCHEMA_VERSION
        finally:
            store.close()
        # Downgrade and upgrade again: the second revision is reversible.
        migrate.upgrade(engine, "head")
        from alembic import command

        with engine.begin() as conn:
            command.downgrade(migrate.alembic_config(conn), "0001")
        assert "daemon_status" not in _tables(engine)
    finally:
        engine.dispose()


def test_pre_migration_database_is_taken_as_baseline(db_url: str) -> None:
    """A database made by BAS before migrations (no alembic_version) upgrades from 0001."""
    engine = sa.create_engine(db_url)
    try:
        migrate.upgrade(engine, "0001")
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE alembic_version"))
        with engine.connect() as conn:
            assert migrate.current(conn) == migrate.BASELINE
        with pytest.raises(migrate.SchemaError, match="0001"):
            StateStore(db_url)
        assert migrate.upgrade(engine) == ("0001", migrate.head())
        assert _diff(engine) == []
    finally:
        engine.dispose()


def test_newer_revision_is_refused(db_url: str) -> None:
    store = StateStore(db_url)
    with store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    store.close()
    with pytest.raises(migrate.SchemaError, match="newer BAS"):
        StateStore(db_url)


def test_cli_db_upgrade_and_current(tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite"
    engine = sa.create_engine(f"sqlite:///{state}")
    migrate.upgrade(engine, "0001")
    engine.dispose()
    conf = tmp_path / "bas.toml"
    conf.write_text(
        '[owner]\nname = "X"\norg_number = "999888777"\nrealm = "x.no"\nmail_domain = "x.no"\n'
        f'[source]\nurl = "sqlite:///{tmp_path / "sis.sqlite"}"\n[state]\nurl = "sqlite:///state.sqlite"\n',
        encoding="utf-8",
    )
    bas = [sys.executable, "-m", "provisioner.cli", "--config", str(conf)]
    p = subprocess.run([*bas, "runs"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 2 and "run `bas db upgrade`" in p.stderr, p.stderr
    p = subprocess.run([*bas, "db", "current"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1 and "revision 0001" in p.stdout
    p = subprocess.run([*bas, "db", "upgrade"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and f"from revision 0001 to {migrate.head()}" in p.stdout, p.stderr
    p = subprocess.run([*bas, "db", "current"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0
    p = subprocess.run([*bas, "runs"], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr


def _indexes(engine: sa.Engine) -> set[str]:
    inspect = sa.inspect(engine)
    return {ix["name"] for table in ("changelog", "usernames") for ix in inspect.get_indexes(table)}


def test_0010_drops_the_unread_indexes_and_keeps_the_rows(db_url: str) -> None:
    """No read uses an index on the changelog's ``username`` (a person is found by id, a
    fragment by LIKE '%...%') or on ``usernames.nin`` (a NIN is found in person_nins), and
    every write paid for them: 0010 drops them, 0009 has them back."""
    unread = {"ix_changelog_username", "ix_usernames_nin"}
    engine = sa.create_engine(db_url)
    try:
        migrate.upgrade(engine, "0009")
        assert unread <= _indexes(engine)
        row = {
            "run_id": "r1",
            "at": "2026-12-05T00:00:00.000000+00:00",
            "target": "core",
            "op": "create",
            "kind": "person",
            "key": "p1",
            "person_id": "p1",
            "username": "olanor",
            "reason": "active in SIS: student at X",
            "result": "ok",
        }
        with engine.begin() as conn:
            conn.execute(t.changelog.insert().values(**row))
            conn.execute(
                t.usernames.insert().values(
                    username="olanor",
                    person_id="p1",
                    nin="01017012345",  # NIN-shaped, no one's
                    origin="issued",
                    created_at="2025-01-01",
                )
            )
        assert migrate.upgrade(engine) == ("0009", migrate.head())
        assert not unread & _indexes(engine)
        kept = {"ix_changelog_person_id", "ix_changelog_run_id", "ix_changelog_at", "ix_usernames_person_id"}
        assert kept <= _indexes(engine)
        assert _diff(engine) == []
        store = StateStore(db_url)
        try:
            from provisioner.state.history import Filter

            got = store.history.query(Filter(person="olanor", limit=10))
            assert [(r["key"], r["username"]) for r in got] == [("p1", "olanor")]
            got = store.history.query(Filter(text="lano", limit=10))  # a fragment of the username
            assert [r["key"] for r in got] == ["p1"]
            assert store.identities.username_record("olanor")["nin"] == "01017012345"
        finally:
            store.close()
        from alembic import command

        with engine.begin() as conn:
            command.downgrade(migrate.alembic_config(conn), "0009")
        assert unread <= _indexes(engine)
    finally:
        engine.dispose()
