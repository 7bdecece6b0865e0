#!/usr/bin/env bash
# A throw-away Citus cluster (one coordinator, two workers) for `make test-citus` and the
# Citus bench: installs the extension if missing, starts three PostgreSQL 15 instances in a
# temporary directory on free ports, creates database `espace` with the citus extension on
# each, registers the workers, runs the given command with CITUS_DATABASE_URL pointing at the
# coordinator, then stops and removes everything (also when the command fails).
#
#   tests/citus/cluster.sh <command...>
#
# CITUS_DIR: the folder holding install.sh (default ../shared/citus beside the repository);
# PG_BIN: PostgreSQL 15's binaries (default /usr/lib/postgresql/15/bin); CITUS_LOGS: a folder
# to copy the three servers' logs into before removing them (to read a failure's SQL errors);
# CITUS_PLAIN=1: one plain PostgreSQL instance with the same settings and no citus (the bench's
# single-node baseline).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
CITUS_DIR=${CITUS_DIR:-$repo/../shared/citus}
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
sudo_=$([ "$(id -u)" = 0 ] || echo sudo)

libdir=$("$PG_BIN/pg_config" --pkglibdir 2>/dev/null || echo /usr/lib/postgresql/15/lib)
if [ ! -f "$libdir/citus.so" ]; then
  [ -x "$CITUS_DIR/install.sh" ] || { echo "citus is not installed and $CITUS_DIR/install.sh is missing" >&2; exit 2; }
  $sudo_ "$CITUS_DIR/install.sh"
fi

# initdb refuses root: as root, the instances run as the postgres user.
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }

free_port() {  # the first port from $1 on which nothing listens
  local p=$1
  while (echo >/dev/tcp/127.0.0.1/$p) 2>/dev/null; do p=$((p + 1)); done
  echo $p
}

dir=$(mktemp -d "${TMPDIR:-/tmp}/espace-citus.XXXXXX")
chmod 755 "$dir"
[ "$(id -u)" = 0 ] && chown postgres "$dir"
ports=()
cleanup() {
  for p in "${ports[@]}"; do as_pg "$PG_BIN/pg_ctl -D $dir/$p stop -m immediate" >/dev/null 2>&1 || true; done
  if [ -n "${CITUS_LOGS:-}" ]; then mkdir -p "$CITUS_LOGS" && cp "$dir"/*.log "$CITUS_LOGS"/ || true; fi
  rm -rf "$dir"
}
trap cleanup EXIT INT TERM

next=${CITUS_PORT:-9710}
roles=(coordinator worker1 worker2)
[ "${CITUS_PLAIN:-}" = 1 ] && roles=(single)
for role in "${roles[@]}"; do
  port=$(free_port "$next"); next=$((port + 1)); ports+=("$port")
  as_pg "$PG_BIN/initdb -D $dir/$port -A trust -U postgres" >/dev/null
  cat >> "$dir/$port/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
CONF
  if [ "${CITUS_PLAIN:-}" != 1 ]; then
    printf "shared_preload_libraries = 'citus'\ncitus.enable_stat_counters = on\n" >> "$dir/$port/postgresql.conf"
  fi
  as_pg "$PG_BIN/pg_ctl -D $dir/$port -l $dir/$port.log -w start" >/dev/null
  echo "citus $role on 127.0.0.1:$port" >&2
done

psql_() { "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U postgres -p "$@"; }
for port in "${ports[@]}"; do
  psql_ "$port" -d postgres -c "CREATE DATABASE espace"
  [ "${CITUS_PLAIN:-}" = 1 ] || psql_ "$port" -d espace -c "CREATE EXTENSION citus"
done
coordinator=${ports[0]}
[ "${CITUS_PLAIN:-}" = 1 ] || psql_ "$coordinator" -d espace -c "SELECT citus_set_coordinator_host('127.0.0.1', $coordinator)" >/dev/null
for port in "${ports[@]:1}"; do
  psql_ "$coordinator" -d espace -c "SELECT citus_add_node('127.0.0.1', $port)" >/dev/null
done

export CITUS_DATABASE_URL="postgresql://postgres@127.0.0.1:$coordinator/espace"
"$@"
