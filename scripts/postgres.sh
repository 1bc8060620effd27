#!/usr/bin/env bash
# A private PostgreSQL cluster on loopback for tests and benchmarks (Debian's postgresql package).
#   scripts/postgres.sh available   exit 0 if the server binaries are installed
#   scripts/postgres.sh install     apt-get install postgresql (needs root)
#   scripts/postgres.sh start DIR   initdb DIR (if new) and start on port $PGPORT (default 55432);
#                                   prints: export FHIR_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:PORT/postgres
#   scripts/postgres.sh stop DIR
set -euo pipefail
cmd=${1:-}
dir=${2:-${TMPDIR:-/tmp}/fhir-pg}
port=${PGPORT:-55432}
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
case "$cmd" in
  available) [ -n "$bindir" ] && [ -x "$bindir/initdb" ] ;;
  install)
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2 && apt-get install -y -q postgresql >&2 ;;
  start)
    [ -n "$bindir" ] || { echo "PostgreSQL is not installed (scripts/postgres.sh install)" >&2; exit 1; }
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
    if [ ! -f "$dir/PG_VERSION" ]; then
      as_pg "$bindir/initdb" -D "$dir" -A trust -U postgres -E UTF8 --locale=C.UTF-8 >&2
    fi
    as_pg "$bindir/pg_ctl" -D "$dir" -l "$dir/server.log" -o "-p $port -c listen_addresses=127.0.0.1 -k $dir -c max_connections=300 -c fsync=on" -w start >&2
    echo "export FHIR_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:$port/postgres" ;;
  stop)
    as_pg "$bindir/pg_ctl" -D "$dir" -m fast stop >&2 || true ;;
  *) echo "usage: $0 available|install|start DIR|stop DIR" >&2; exit 2 ;;
esac
