# shellcheck shell=bash
# Shared helpers for tombstone's dev/test/bench scripts. Source it:
#   . "$(dirname "$0")/lib.sh"
# Nothing here has side effects at source time except setting REPO_ROOT.

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REPO_ROOT

# runuser, pgbouncer and friends live in /usr/sbin on Debian.
case ":$PATH:" in
*:/usr/sbin:*) ;;
*) PATH="$PATH:/usr/sbin:/sbin" ;;
esac

log() { printf '%s\n' "[$(basename "$0")] $*" >&2; }
die() { printf '%s\n' "[$(basename "$0")] ERROR: $*" >&2; exit 1; }

is_root() { [ "$(id -u)" -eq 0 ]; }

# pg_bindir prints the bin directory of the newest installed PostgreSQL server
# (the one holding pg_ctl and initdb). $TOMBSTONE_PGBIN overrides the search.
# Returns 1 (printing nothing) when no server is installed.
pg_bindir() {
	if [ -n "${TOMBSTONE_PGBIN:-}" ]; then
		if [ -x "$TOMBSTONE_PGBIN/pg_ctl" ] && [ -x "$TOMBSTONE_PGBIN/initdb" ]; then
			printf '%s\n' "$TOMBSTONE_PGBIN"
			return 0
		fi
		return 1
	fi
	local d best="" bestv=-1 v
	for d in /usr/lib/postgresql/*/bin; do
		[ -x "$d/pg_ctl" ] && [ -x "$d/initdb" ] || continue
		v="$(basename "$(dirname "$d")")"
		v="${v%%.*}"
		case "$v" in '' | *[!0-9]*) continue ;; esac
		if [ "$v" -gt "$bestv" ]; then
			bestv="$v"
			best="$d"
		fi
	done
	[ -n "$best" ] || return 1
	printf '%s\n' "$best"
}

# as_pg runs a command as the postgres OS user (Postgres and pgbouncer refuse
# to run as root). When not root, the command runs as the current user.
# The working directory is / so that postgres never trips over an unreadable cwd;
# pass absolute paths.
as_pg() {
	if is_root; then
		(cd / && runuser -u postgres -- "$@")
	else
		(cd / && "$@")
	fi
}

# own_pg DIR...: hand directories to the postgres user (no-op when not root).
own_pg() {
	if is_root; then
		chown -R postgres:postgres "$@"
	fi
}

# port_in_use PORT: true when something listens on TCP PORT (any address).
port_in_use() {
	local port="$1"
	if command -v ss >/dev/null 2>&1; then
		ss -Hltn "sport = :$port" 2>/dev/null | grep -q .
	else
		(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null
	fi
}

# require_free_ports PORT...: die with a clear message if any port is taken.
require_free_ports() {
	local p
	for p in "$@"; do
		if port_in_use "$p"; then
			log "port $p is already in use:"
			ss -ltnp "sport = :$p" >&2 2>/dev/null || true
			die "port $p is busy; stop whatever listens there or choose another port (see the script's env vars)"
		fi
	done
}

# has_ipv6_loopback: true when ::1 is configured on this machine.
has_ipv6_loopback() {
	[ -r /proc/net/if_inet6 ] && grep -q '^00000000000000000000000000000001 ' /proc/net/if_inet6
}

# make_tmpdir PREFIX: mktemp -d under /tmp (short paths: unix sockets are
# limited to ~107 bytes), world-traversable so the postgres user can enter it.
make_tmpdir() {
	local d
	d="$(mktemp -d "/tmp/$1.XXXXXX")"
	chmod 0755 "$d"
	printf '%s\n' "$d"
}

# pg_init BINDIR DATADIR: initdb a throwaway cluster with superuser postgres,
# trust auth everywhere (callers rewrite pg_hba.conf when they need more).
pg_init() {
	local bindir="$1" datadir="$2" out
	mkdir -p "$datadir"
	chmod 0700 "$datadir"
	own_pg "$datadir"
	if ! out="$(as_pg "$bindir/initdb" -D "$datadir" -U postgres --auth=trust \
		-E UTF8 --locale=C --no-sync 2>&1)"; then
		printf '%s\n' "$out" >&2
		die "initdb failed for $datadir"
	fi
}

# pg_start BINDIR DATADIR LOGFILE: start a cluster configured via postgresql.conf,
# waiting up to $PG_START_TIMEOUT (default 60) seconds. Prints the log tail on failure.
pg_start() {
	local bindir="$1" datadir="$2" logfile="$3" t="${PG_START_TIMEOUT:-60}"
	touch "$logfile"
	own_pg "$logfile"
	if ! as_pg "$bindir/pg_ctl" -D "$datadir" -l "$logfile" -w -t "$t" start >/dev/null; then
		log "PostgreSQL did not start; last lines of $logfile:"
		tail -n 40 "$logfile" >&2 || true
		return 1
	fi
}

# pg_stop BINDIR DATADIR [MODE]: stop a cluster if it is running (default mode immediate).
pg_stop() {
	local bindir="$1" datadir="$2" mode="${3:-immediate}"
	[ -f "$datadir/postmaster.pid" ] || return 0
	as_pg "$bindir/pg_ctl" -D "$datadir" -m "$mode" -w -t 30 stop >/dev/null 2>&1 || {
		# last resort: kill the postmaster by pid
		local pid
		pid="$(head -n1 "$datadir/postmaster.pid" 2>/dev/null || true)"
		case "$pid" in '' | *[!0-9]*) ;; *) kill -9 "$pid" 2>/dev/null || true ;; esac
	}
}

# wait_pg BINDIR HOST PORT [TIMEOUT] [USER] [DB]: wait until a real query succeeds.
wait_pg() {
	local bindir="$1" host="$2" port="$3" timeout="${4:-30}" user="${5:-postgres}" db="${6:-postgres}"
	local deadline=$((SECONDS + timeout))
	while [ "$SECONDS" -lt "$deadline" ]; do
		if "$bindir/pg_isready" -q -h "$host" -p "$port" -U "$user" -d "$db" -t 2 &&
			PGCONNECT_TIMEOUT=2 PGSSLMODE=disable "$bindir/psql" -X -q -At -h "$host" -p "$port" \
				-U "$user" -d "$db" -c 'select 1' >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.2
	done
	return 1
}

# wait_redis PORT [TIMEOUT]
wait_redis() {
	local port="$1" timeout="${2:-30}"
	local deadline=$((SECONDS + timeout))
	while [ "$SECONDS" -lt "$deadline" ]; do
		if [ "$(redis-cli -h 127.0.0.1 -p "$port" ping 2>/dev/null)" = "PONG" ]; then
			return 0
		fi
		sleep 0.2
	done
	return 1
}

# kill_pidfile FILE [TIMEOUT]: TERM the pid in FILE, then KILL after TIMEOUT seconds.
kill_pidfile() {
	local f="$1" timeout="${2:-10}" pid
	[ -f "$f" ] || return 0
	pid="$(head -n1 "$f" 2>/dev/null || true)"
	case "$pid" in '' | *[!0-9]*) return 0 ;; esac
	kill_pid "$pid" "$timeout"
}

# kill_pid PID [TIMEOUT]: TERM, wait, then KILL.
kill_pid() {
	local pid="$1" timeout="${2:-10}" i
	kill -0 "$pid" 2>/dev/null || return 0
	kill -TERM "$pid" 2>/dev/null || true
	for ((i = 0; i < timeout * 10; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
}

# build_tombstone: go build -o bin/tombstone ./cmd/tombstone, dying clearly on failure.
build_tombstone() {
	command -v go >/dev/null 2>&1 || die "go is not on PATH; cannot build bin/tombstone"
	[ -d "$REPO_ROOT/cmd/tombstone" ] || die "cmd/tombstone does not exist yet; cannot build bin/tombstone"
	log "building bin/tombstone (first build compiles pg_query via cgo, ~1 min)"
	if ! (cd "$REPO_ROOT" && go build -o bin/tombstone ./cmd/tombstone); then
		die "go build -o bin/tombstone ./cmd/tombstone failed"
	fi
}

# with_testenv installs what the tests need, starts the throwaway
# PostgreSQL and Redis (scripts/testenv.sh), exports their addresses, and
# stops them when the calling script exits, however it exits.
with_testenv() {
	bash "$REPO_ROOT/scripts/deps.sh"
	trap 'bash "$REPO_ROOT/scripts/testenv.sh" down' EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	bash "$REPO_ROOT/scripts/testenv.sh" up
	eval "$(bash "$REPO_ROOT/scripts/testenv.sh" env)"
}
