#!/usr/bin/env bash
# `make run`: a throwaway PostgreSQL (trust auth) plus the tombstone proxy in
# front of it, for trying things by hand. Ctrl-C stops both and removes the
# temp dir.
#
# usage: scripts/run.sh [extra proxy flags...]   e.g. --config configs/tombstone.yaml
#
# env vars:
#   TOMBSTONE_RUN_PG_PORT   PostgreSQL port on 127.0.0.1   (default 55433)
#   TOMBSTONE_RUN_LISTEN    proxy listen address           (default 127.0.0.1:6432)
#   TOMBSTONE_RUN_NO_BUILD  1 = use the existing bin/tombstone as is
#   TOMBSTONE_PGBIN         PostgreSQL bin dir (default: newest installed)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

PG_PORT="${TOMBSTONE_RUN_PG_PORT:-55433}"
LISTEN="${TOMBSTONE_RUN_LISTEN:-127.0.0.1:6432}"
LISTEN_PORT="${LISTEN##*:}"

bash scripts/deps.sh
PGBIN="$(pg_bindir)" || die "no PostgreSQL server found"
require_free_ports "$PG_PORT" "$LISTEN_PORT"

if [ "${TOMBSTONE_RUN_NO_BUILD:-0}" = 1 ] && [ -x bin/tombstone ]; then
	log "using existing bin/tombstone"
else
	build_tombstone
fi

TMP=""
PROXY_PID=""
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$PROXY_PID" ]; then
		log "stopping proxy (pid $PROXY_PID)"
		kill_pid "$PROXY_PID" 15
	fi
	if [ -n "$TMP" ]; then
		log "stopping PostgreSQL and removing $TMP"
		pg_stop "$PGBIN" "$TMP/pg" fast
		rm -rf "$TMP"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

TMP="$(make_tmpdir tombstone-run)"
mkdir -p "$TMP/sock"
own_pg "$TMP/sock"
pg_init "$PGBIN" "$TMP/pg"
cat >>"$TMP/pg/postgresql.conf" <<EOF

# ---- tombstone make run ----
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$TMP/sock'
max_connections = 100
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
pg_start "$PGBIN" "$TMP/pg" "$TMP/pg.log" || die "PostgreSQL failed to start on port $PG_PORT"
wait_pg "$PGBIN" 127.0.0.1 "$PG_PORT" 30 || die "PostgreSQL on 127.0.0.1:$PG_PORT does not accept connections"
log "PostgreSQL $("$PGBIN/postgres" --version | awk '{print $3}') on 127.0.0.1:$PG_PORT (log: $TMP/pg.log)"

log "starting: bin/tombstone proxy --listen $LISTEN --upstream 127.0.0.1:$PG_PORT $*"
PGHOST=127.0.0.1 PGPORT="$PG_PORT" PGUSER=postgres PGDATABASE=postgres PGSSLMODE=disable \
	bin/tombstone proxy --listen "$LISTEN" --upstream "127.0.0.1:$PG_PORT" "$@" &
PROXY_PID=$!

# Wait until the proxy answers a query (or dies).
deadline=$((SECONDS + 30))
until PGCONNECT_TIMEOUT=2 PGSSLMODE=disable "$PGBIN/psql" -X -q -At -h "${LISTEN%:*}" \
	-p "$LISTEN_PORT" -U postgres -d postgres -c 'select 1' >/dev/null 2>&1; do
	kill -0 "$PROXY_PID" 2>/dev/null || {
		wait "$PROXY_PID" || true
		PROXY_PID=""
		die "the proxy exited during startup"
	}
	[ "$SECONDS" -lt "$deadline" ] || die "the proxy does not answer on $LISTEN after 30s"
	sleep 0.2
done

cat >&2 <<EOF

  tombstone proxy is up.
    DSN:      postgres://postgres@$LISTEN/postgres?sslmode=disable
    psql:     psql 'postgres://postgres@$LISTEN/postgres?sslmode=disable'
    direct:   psql 'postgres://postgres@127.0.0.1:$PG_PORT/postgres?sslmode=disable'
  Ctrl-C stops the proxy and PostgreSQL and deletes $TMP.

EOF

rc=0
wait "$PROXY_PID" || rc=$?
PROXY_PID=""
log "proxy exited with status $rc"
exit "$rc"
