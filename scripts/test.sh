#!/usr/bin/env bash
# Install the test dependencies and run the whole test suite (lint, unit, HTTP tests on SQLite,
# and on PostgreSQL when its server binaries are installed: a private cluster is started on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip 2>&1 | grep -v WARNING || true
.venv/bin/pip install -q -e '.[test]' 2>&1 | grep -v WARNING || true
.venv/bin/ruff check fhir_server conformance_tests tests scripts bench
.venv/bin/ruff format --check fhir_server conformance_tests tests scripts bench
.venv/bin/mypy
pgdir=""
if [ -z "${FHIR_TEST_POSTGRES_URL:-}" ] && scripts/postgres.sh available; then
  pgdir=$(mktemp -d /tmp/fhir-pg.XXXXXX)
  # a free loopback port (another cluster may hold the default one); a server that does not start fails the run
  PGPORT=$(.venv/bin/python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  export PGPORT
  trap 'scripts/postgres.sh stop "$pgdir"; rm -rf "$pgdir"' EXIT
  started=$(scripts/postgres.sh start "$pgdir") || { echo "PostgreSQL did not start: $pgdir/server.log" >&2; exit 1; }
  eval "$started"
  export FHIR_TEST_POSTGRES_URL
fi
echo "PostgreSQL for tests: ${FHIR_TEST_POSTGRES_URL:-none (PostgreSQL tests will be skipped)}"
.venv/bin/pytest "$@"
