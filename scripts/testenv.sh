#!/usr/bin/env bash
# A throwaway PostgreSQL + Redis for tombstone's tests.
#
# usage: scripts/testenv.sh up|down|env|status
#   up      start both (stopping a previous env recorded in the state file first)
#   down    stop both and remove their temp dir
#   env     print `export` lines for the tests (eval "$(scripts/testenv.sh env)")
#   status  say whether the recorded env is running
#
# env vars:
#   TOMBSTONE_TEST_PG_PORT     PostgreSQL TCP port on 127.0.0.1 (default 25432)
#   TOMBSTONE_TEST_REDIS_PORT  Redis TCP port on 127.0.0.1      (default 26379)
# The defaults lie below Linux's ephemeral range (32768-60999): a port in
# it can be held by any outgoing connection's local end when the servers
# start, which no listener check sees (it happened once here: "could not
# bind IPv4 address: Address already in use").
#   TOMBSTONE_TESTENV_DIR      where the state file lives     (default <repo>/.testenv)
#   TOMBSTONE_PGBIN            PostgreSQL bin dir (default: newest /usr/lib/postgresql/*/bin)
#
# PostgreSQL: superuser postgres, database tombstone_test, ssl=on (self-signed),
# password_encryption=scram-sha-256, and these roles for auth tests over TCP:
#   md5user/md5pass (md5 auth, md5-stored), scramuser/scrampass (scram-sha-256),
#   passuser/plainpass (cleartext "password" auth), app (no password, trust).
# Any other user over TCP and everyone over the unix socket: trust.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

STATE_DIR="${TOMBSTONE_TESTENV_DIR:-$REPO_ROOT/.testenv}"
STATE_FILE="$STATE_DIR/state"
DEF_PG_PORT="${TOMBSTONE_TEST_PG_PORT:-25432}"
DEF_REDIS_PORT="${TOMBSTONE_TEST_REDIS_PORT:-26379}"
TEST_DB=tombstone_test

# State (read from STATE_FILE): TMP PG_PORT REDIS_PORT PGBIN
TMP="" PG_PORT="" REDIS_PORT="" PGBIN=""

load_state() {
	[ -f "$STATE_FILE" ] || return 1
	local k v
	while IFS='=' read -r k v; do
		case "$k" in
		TMP) TMP="$v" ;;
		PG_PORT) PG_PORT="$v" ;;
		REDIS_PORT) REDIS_PORT="$v" ;;
		PGBIN) PGBIN="$v" ;;
		esac
	done <"$STATE_FILE"
	[ -n "$TMP" ]
}

save_state() {
	mkdir -p "$STATE_DIR"
	{
		printf 'TMP=%s\n' "$TMP"
		printf 'PG_PORT=%s\n' "$PG_PORT"
		printf 'REDIS_PORT=%s\n' "$REDIS_PORT"
		printf 'PGBIN=%s\n' "$PGBIN"
	} >"$STATE_FILE.new"
	mv "$STATE_FILE.new" "$STATE_FILE"
}

cmd_down() {
	if ! load_state; then
		rm -f "$STATE_FILE"
		return 0
	fi
	case "$TMP" in
	/tmp/tombstone-test.*) ;;
	*) die "state file $STATE_FILE names an unexpected temp dir '$TMP'; refusing to touch it" ;;
	esac
	if [ -d "$TMP/pg" ]; then
		local bin="$PGBIN"
		[ -x "$bin/pg_ctl" ] || bin="$(pg_bindir || true)"
		if [ -n "$bin" ]; then
			pg_stop "$bin" "$TMP/pg" immediate
		fi
	fi
	if [ -n "$REDIS_PORT" ] && [ -f "$TMP/redis/redis.pid" ]; then
		redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
		kill_pidfile "$TMP/redis/redis.pid" 5
	fi
	rm -rf "$TMP"
	rm -f "$STATE_FILE"
	log "test env stopped (was $TMP)"
}

fail_up() {
	local msg="$1" pglog="${2:-pglog}"
	log "$msg"
	if [ "$pglog" = pglog ] && [ -f "$TMP/pg.log" ]; then
		log "last lines of $TMP/pg.log:"
		tail -n 40 "$TMP/pg.log" >&2 || true
	fi
	if [ -f "$TMP/redis/redis.log" ]; then
		log "last lines of $TMP/redis/redis.log:"
		tail -n 20 "$TMP/redis/redis.log" >&2 || true
	fi
	die "test env did not come up: $msg"
}

write_pg_conf() {
	local datadir="$1" listen="127.0.0.1"
	if has_ipv6_loopback; then listen="127.0.0.1,::1"; fi
	cat >>"$datadir/postgresql.conf" <<EOF

# ---- tombstone test env ----
listen_addresses = '$listen'
port = $PG_PORT
unix_socket_directories = '$TMP/sock'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
password_encryption = 'scram-sha-256'
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
log_min_messages = warning
log_line_prefix = '%m [%p] %q%u@%d '
log_connections = off
max_prepared_transactions = 20
EOF
	cat >"$datadir/pg_hba.conf" <<'EOF'
# TYPE  DATABASE  USER       ADDRESS        METHOD   (order matters)
local   all       all                       trust
host    all       md5user    127.0.0.1/32   md5
host    all       scramuser  127.0.0.1/32   scram-sha-256
host    all       passuser   127.0.0.1/32   password
host    all       all        127.0.0.1/32   trust
host    all       md5user    ::1/128        md5
host    all       scramuser  ::1/128        scram-sha-256
host    all       passuser   ::1/128        password
host    all       all        ::1/128        trust
EOF
}

make_cert() {
	local datadir="$1" out
	if ! out="$(openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 3650 \
		-subj "/CN=localhost" \
		-addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
		-keyout "$datadir/server.key" -out "$datadir/server.crt" 2>&1)"; then
		printf '%s\n' "$out" >&2
		return 1
	fi
	chmod 0600 "$datadir/server.key"
	chmod 0644 "$datadir/server.crt"
	own_pg "$datadir/server.key" "$datadir/server.crt"
	# A readable copy outside the 0700 data dir, usable as sslrootcert.
	cp "$datadir/server.crt" "$TMP/server.crt"
	chmod 0644 "$TMP/server.crt"
}

cmd_up() {
	bash "$REPO_ROOT/scripts/deps.sh"
	if load_state; then
		log "stopping previous test env ($TMP)"
		cmd_down
	fi
	TMP="" PG_PORT="$DEF_PG_PORT" REDIS_PORT="$DEF_REDIS_PORT"
	PGBIN="$(pg_bindir)" || die "no PostgreSQL server found (run scripts/deps.sh)"
	require_free_ports "$PG_PORT" "$REDIS_PORT"

	TMP="$(make_tmpdir tombstone-test)"
	save_state # from here on, `down` can clean up whatever got started
	UP_OK=0
	trap 'if [ "$UP_OK" != 1 ]; then log "cleaning up the half-started env"; cmd_down || true; fi' EXIT
	mkdir -p "$TMP/sock" "$TMP/redis"
	own_pg "$TMP/sock"

	pg_init "$PGBIN" "$TMP/pg"
	make_cert "$TMP/pg" || fail_up "openssl could not make the server certificate"
	write_pg_conf "$TMP/pg"
	pg_start "$PGBIN" "$TMP/pg" "$TMP/pg.log" || fail_up "PostgreSQL failed to start on port $PG_PORT" nopglog
	wait_pg "$PGBIN" 127.0.0.1 "$PG_PORT" 30 ||
		fail_up "PostgreSQL on 127.0.0.1:$PG_PORT does not accept connections"

	local out
	if ! out="$("$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$TMP/sock" -p "$PG_PORT" -U postgres -d postgres 2>&1 <<SQL
SET password_encryption = 'md5';
CREATE ROLE md5user LOGIN PASSWORD 'md5pass';
RESET password_encryption;
CREATE ROLE scramuser LOGIN PASSWORD 'scrampass';
CREATE ROLE passuser LOGIN PASSWORD 'plainpass';
CREATE ROLE app LOGIN;
CREATE DATABASE $TEST_DB OWNER postgres;
SQL
	)"; then
		printf '%s\n' "$out" >&2
		fail_up "creating roles/database failed"
	fi

	if ! redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --daemonize yes \
		--save '' --appendonly no --dir "$TMP/redis" \
		--pidfile "$TMP/redis/redis.pid" --logfile "$TMP/redis/redis.log" >/dev/null; then
		fail_up "redis-server failed to start on port $REDIS_PORT"
	fi
	wait_redis "$REDIS_PORT" 30 || fail_up "Redis on 127.0.0.1:$REDIS_PORT does not answer PING"

	UP_OK=1
	log "test env up: PostgreSQL 127.0.0.1:$PG_PORT ($PGBIN), Redis 127.0.0.1:$REDIS_PORT, dir $TMP"
}

cmd_env() {
	local pgport="$DEF_PG_PORT" rport="$DEF_REDIS_PORT" bin="" tmp=""
	if load_state; then
		pgport="$PG_PORT" rport="$REDIS_PORT" bin="$PGBIN" tmp="$TMP"
	fi
	[ -n "$bin" ] || bin="$(pg_bindir || true)"
	cat <<EOF
export TOMBSTONE_TEST_PG='postgres://postgres@127.0.0.1:$pgport/$TEST_DB?sslmode=disable'
export TOMBSTONE_TEST_REDIS='127.0.0.1:$rport'
export TOMBSTONE_TEST_PGBIN='$bin'
EOF
	if [ -n "$tmp" ]; then
		cat <<EOF
export TOMBSTONE_TEST_PG_SOCKDIR='$tmp/sock'
export TOMBSTONE_TEST_PG_SSLROOTCERT='$tmp/server.crt'
EOF
	fi
	cat <<EOF
export PGHOST=127.0.0.1 PGPORT=$pgport PGUSER=postgres PGDATABASE=$TEST_DB PGSSLMODE=disable
EOF
}

cmd_status() {
	if ! load_state; then
		echo "no test env recorded in $STATE_FILE"
		return 1
	fi
	local rc=0
	if "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then
		echo "postgres 127.0.0.1:$PG_PORT up ($TMP)"
	else
		echo "postgres 127.0.0.1:$PG_PORT DOWN ($TMP)"
		rc=1
	fi
	if [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; then
		echo "redis    127.0.0.1:$REDIS_PORT up"
	else
		echo "redis    127.0.0.1:$REDIS_PORT DOWN"
		rc=1
	fi
	return "$rc"
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
env) cmd_env ;;
status) cmd_status ;;
*)
	sed -n '2,21p' "$0" >&2
	exit 2
	;;
esac
