#!/usr/bin/env bash
# Run every test: lint, then pytest (unit, integration against PostgreSQL on
# 127.0.0.1:5432, end-to-end through the CLI). Installs what is missing first.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"

# PostgreSQL for the state-store and source tests: install and start it when missing.
if [ "${BAS_SKIP_POSTGRES:-0}" != 1 ]; then
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    apt_install postgresql
  fi
  if ! (command -v pg_isready >/dev/null && pg_isready -q -h 127.0.0.1 -p 5432); then
    echo "test: starting PostgreSQL"
    for v in $(ls /etc/postgresql 2>/dev/null); do
      as_root pg_ctlcluster --skip-systemctl-redirect "$v" main start || true
    done
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
  # The tests connect as "postgres" over TCP without a password (trust, as on this
  # kind of machine); say so clearly if that does not work.
  if ! .venv/bin/python -c "import psycopg2; psycopg2.connect(host='127.0.0.1', user='${BAS_TEST_PG_USER:-postgres}', dbname='postgres', connect_timeout=5).close()"; then
    echo "test: cannot connect to PostgreSQL on 127.0.0.1:5432 as ${BAS_TEST_PG_USER:-postgres} (trust auth expected);" \
         "set BAS_SKIP_POSTGRES=1 to run without it" >&2
    exit 2
  fi
fi

.venv/bin/ruff check .
.venv/bin/python -m pytest -q "$@"
