"""Shared fixtures: a throw-away PostgreSQL database per test, temp folders; Hypothesis profiles.

Hypothesis profiles (loaded here, before any test module builds its ``@settings``):

- ``ci`` (chosen when ``CI`` is set, as CI services do): derandomized, so a CI run tries
  the same examples every time and fails only on a real change; no example database.
- ``thorough`` (``HYPOTHESIS_PROFILE=thorough``): ten times the examples, random, for the
  separate longer run the README documents.
- otherwise Hypothesis's defaults (random examples on a developer's machine).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

from provisioner.state.store import StateStore
from tests.browser import browser, chrome, test_ca  # noqa: F401 (the browser tests' fixtures)

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=100,
    deadline=None,
    print_blob=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "thorough", max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def hypothesis_profile(env: Mapping[str, str]) -> str:
    """The profile for this environment: HYPOTHESIS_PROFILE if set, ``ci`` under CI, else default."""
    if env.get("HYPOTHESIS_PROFILE"):
        return env["HYPOTHESIS_PROFILE"]
    if env.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
        return "ci"
    return "default"


settings.load_profile(hypothesis_profile(os.environ))

PG_HOST = os.environ.get("BAS_TEST_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("BAS_TEST_PG_PORT", "5432"))
PG_USER = os.environ.get("BAS_TEST_PG_USER", "postgres")


def _admin_connect():
    import psycopg

    return psycopg.connect(
        host=PG_HOST, port=PG_PORT, user=PG_USER, dbname="postgres", connect_timeout=5, autocommit=True
    )


@pytest.fixture()
def pg_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for one test; dropped afterwards.

    PostgreSQL is part of the test environment (scripts/test.sh starts it): an unreachable
    server fails the test rather than skipping it, unless BAS_SKIP_POSTGRES=1 is set.
    """
    if os.environ.get("BAS_SKIP_POSTGRES") == "1":
        pytest.skip("BAS_SKIP_POSTGRES=1")
    name = f"bas_test_{uuid.uuid4().hex[:12]}"
    admin = _admin_connect()
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


MARIA_HOST = os.environ.get("BAS_TEST_MARIADB_HOST", "127.0.0.1")
MARIA_PORT = int(os.environ.get("BAS_TEST_MARIADB_PORT", "3306"))
MARIA_USER = os.environ.get("BAS_TEST_MARIADB_USER", "root")


@pytest.fixture()
def maria_url() -> Iterator[str]:
    """A fresh, empty MariaDB database for one test (the SQL source on MySQL/MariaDB); dropped afterwards.

    MariaDB is part of the test environment (scripts/test.sh starts it): an unreachable
    server fails the test, unless BAS_SKIP_MARIADB=1 is set.
    """
    if os.environ.get("BAS_SKIP_MARIADB") == "1":
        pytest.skip("BAS_SKIP_MARIADB=1")
    import pymysql

    name = f"bas_test_{uuid.uuid4().hex[:12]}"
    admin = pymysql.connect(
        host=MARIA_HOST, port=MARIA_PORT, user=MARIA_USER, connect_timeout=5, autocommit=True
    )
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        yield f"mysql+pymysql://{MARIA_USER}@{MARIA_HOST}:{MARIA_PORT}/{name}?charset=utf8mb4"
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


@pytest.fixture(params=["sqlite", "postgresql", "mariadb"])
def source_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database for a SQL source: a SQLite file, PostgreSQL and MariaDB."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sis.db'}"
    return request.getfixturevalue("pg_url" if request.param == "postgresql" else "maria_url")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database, once as a SQLite file and once as a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bas.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture()
def store(db_url: str) -> Iterator[StateStore]:
    """A state store in that database, closed after the test."""
    s = StateStore(db_url)
    yield s
    s.close()


# The slapd fixtures (a real OpenLDAP server for the Feide LDAP tests).
pytest_plugins = ["tests.slapd_server", "tests.m365test"]


@pytest.fixture(scope="session")
def samba_dc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real Samba AD DC on 127.0.0.1:636 for the session (tests/samba_dc.py); skipped without samba/root."""
    from tests import samba_dc as sdc

    try:
        sdc.check_can_run()
    except sdc.SambaUnavailable as exc:
        pytest.skip(f"no Samba AD DC: {exc}")
    dc = sdc.start_dc(tmp_path_factory.mktemp("samba"))
    try:
        yield dc
    finally:
        dc.stop()
