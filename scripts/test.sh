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
  if ! .venv/bin/python -c "import psycopg; psycopg.connect(host='127.0.0.1', user='${BAS_TEST_PG_USER:-postgres}', dbname='postgres', connect_timeout=5).close()"; then
    echo "test: cannot connect to PostgreSQL on 127.0.0.1:5432 as ${BAS_TEST_PG_USER:-postgres} (trust auth expected);" \
         "set BAS_SKIP_POSTGRES=1 to run without it" >&2
    exit 2
  fi
fi

# MariaDB for the SQL source's tests on MySQL/MariaDB (root without a password on
# 127.0.0.1:3306, as on this kind of machine): install and start it when missing.
if [ "${BAS_SKIP_MARIADB:-0}" != 1 ]; then
  if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
    apt_install mariadb-server
  fi
  if ! .venv/bin/python -c "import pymysql; pymysql.connect(host='127.0.0.1', port=3306, user='${BAS_TEST_MARIADB_USER:-root}', connect_timeout=3).close()" 2>/dev/null; then
    echo "test: starting MariaDB"
    as_root mkdir -p /run/mysqld && as_root chown mysql:mysql /run/mysqld 2>/dev/null || true
    as_root start-stop-daemon --start --oknodo --background --chuid mysql --exec /usr/sbin/mariadbd -- --bind-address=127.0.0.1 --port=3306 || true
    for _ in $(seq 1 30); do
      .venv/bin/python -c "import pymysql; pymysql.connect(host='127.0.0.1', port=3306, user='${BAS_TEST_MARIADB_USER:-root}', connect_timeout=3).close()" 2>/dev/null && break
      sleep 1
    done
  fi
  # A freshly installed mariadb-server lets root in only over its socket: then a test user
  # without a password, allowed only the tests' own databases (bas_test_*), over TCP.
  if [ -z "${BAS_TEST_MARIADB_USER:-}" ] && ! .venv/bin/python -c "import pymysql; pymysql.connect(host='127.0.0.1', port=3306, user='root', connect_timeout=3).close()" 2>/dev/null; then
    as_root mariadb -e "CREATE USER IF NOT EXISTS 'bas_test'@'127.0.0.1'; GRANT ALL PRIVILEGES ON \`bas\\_test\\_%\`.* TO 'bas_test'@'127.0.0.1'" || true
    export BAS_TEST_MARIADB_USER=bas_test
  fi
  if ! .venv/bin/python -c "import pymysql; pymysql.connect(host='127.0.0.1', port=3306, user='${BAS_TEST_MARIADB_USER:-root}', connect_timeout=5).close()"; then
    echo "test: cannot connect to MariaDB on 127.0.0.1:3306 as ${BAS_TEST_MARIADB_USER:-root} without a password;" \
         "set BAS_SKIP_MARIADB=1 to run without it" >&2
    exit 2
  fi
fi

# Real directory servers for the connector tests, each run by the tests as a child
# process on 127.0.0.1: OpenLDAP for Feide (tests/slapd_server.py) and a Samba AD DC for
# AD (tests/samba_dc.py). A policy-rc.d keeps the packages' own services from starting
# at install time (a system slapd or samba would take the ports the tests need).
# openssl: the tests' TLS certificates (slapd, local Graph, local FINT); openssh-server: the
# SIS export server the PIFU source picks exports up from over SFTP (tests/sshd_server.py).
# chromium + chromium-driver: the web console's real-browser tests (tests/browser.py) drive
# Debian's Chromium through its chromedriver; BAS_SKIP_BROWSER=1 leaves them out (the tests
# then skip; without it a missing or broken Chromium fails them, never a silent skip).
wanted=(slapd ldap-utils openssl openssh-server)
if [ "${BAS_SKIP_SAMBA:-0}" != 1 ]; then
  wanted+=(samba samba-ad-dc samba-ad-provision winbind)
fi
if [ "${BAS_SKIP_BROWSER:-0}" != 1 ]; then
  wanted+=(chromium chromium-driver)
fi
missing=()
for p in "${wanted[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d'
    trap 'as_root rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt_install "${missing[@]}"
fi

# Selenium uses /usr/bin/chromedriver as given and must never download a driver or browser.
export SE_OFFLINE=true

.venv/bin/ruff check .
# The type checker: every package, strict for the pure core (pyproject.toml [tool.mypy]).
.venv/bin/mypy
# Under CI, Hypothesis is derandomized (the "ci" profile in tests/conftest.py): the same
# examples every run. The random, longer run is separate (README, "Tests").
if [ -n "${CI:-}" ]; then
  export HYPOTHESIS_PROFILE="${HYPOTHESIS_PROFILE:-ci}"
fi
.venv/bin/python -m pytest -q "$@"
