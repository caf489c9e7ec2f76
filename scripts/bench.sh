#!/usr/bin/env bash
# `make bench`: tombstone's benchmarks on a throwaway PostgreSQL.
#
# Targets (what a benchmark connects to), started lazily as sections need them:
#   direct     PostgreSQL itself                        127.0.0.1:$BENCH_PG_PORT
#   pgbouncer  pgbouncer, session mode, in front of it  127.0.0.1:$BENCH_PGBOUNCER_PORT
#   pgbouncer-fresh                                     127.0.0.1:$BENCH_PGBOUNCER_FRESH_PORT
#              the same with server_lifetime = 0: a new server connection
#              (a new backend) for every client, as direct connections and
#              the proxy have
#   go-forward, c-forward                               127.0.0.1:$BENCH_GO_FORWARD_PORT, $BENCH_C_FORWARD_PORT
#              references: the least an epoll forwarder does (one recv, one
#              send per readable socket), in Go (bench/forward) and in C
#              (bench/cforward); built and started by this script
#   proxy      bin/tombstone proxy in front of it       127.0.0.1:$BENCH_PROXY_PORT
#
# Sections (BENCH_SECTIONS, space separated, run in order):
#   pgbench    pgbench -S (select-only), simple and prepared protocol, rounds
#              interleaved across targets (who goes first rotates): median
#              tps per target and mode, the median of each round's
#              proxy/pgbouncer ratios (and the references' ratios), and the
#              CPU each proxy process used per transaction
#              (/proc/<pid>/stat around each run).
#   deletes    a DELETE of 50k of 200k rows: plain (direct) vs tombstoned
#              (through the proxy); UNDELETE BATCH of those rows (console,
#              through the proxy) vs INSERT … SELECT from a copy; and a
#              selective restore of 3 tenants out of one batch of 1M
#              tombstoned rows. Rounds interleaved (bench/deletes).
#   reaper     1M expired tombstones purged by `tombstone reaper --once`
#              while pgbench (read-write) runs: rows/s, worst pgbench latency.
#   oltp       the OLTP delete workload (issue 17): pgbench, a script that
#              deletes one row by key and inserts it back, simple and
#              prepared, direct vs pgbouncer vs proxy, rounds interleaved;
#              the proxy/pgbouncer ratio, CPU per transaction (the whole
#              machine's from /proc/stat, and each relay process's), and
#              rows deleted vs tombstones.
#   ddl        BENCH_DDL_TABLES (200) x CREATE TABLE + INSERT, then as many
#              DROP TABLE, in a psql script: without the store, directly
#              with it, through the proxy (not in the default sections;
#              issue 17's schema changes).
#   memory     the proxy's peak and current RSS after DELETEs of 1, 10 and
#              50 MB of text, then 16 sessions sending 1 MB ones at once
#              (bench/memory; limits.plan_bytes and plan_budget_bytes).
# Add a section by defining `section_<name>` below (see the notes above
# section_pgbench) and naming it in BENCH_SECTIONS.
#
# env vars:
#   BENCH_SECTIONS        sections to run                     (default "pgbench oltp deletes reaper memory")
#   BENCH_REAPER_CHUNK    reaper --chunk in section reaper    (default 50000)
#   BENCH_DDL_TABLES      tables per step in section ddl      (default 200)
#   BENCH_TARGETS         targets for comparisons             (default "direct pgbouncer pgbouncer-fresh go-forward c-forward proxy")
#   ROUNDS                rounds per target and mode          (default 5)
#   DURATION              seconds per pgbench run             (default 8)
#   BENCH_CLIENTS         pgbench -c                          (default 8)
#   BENCH_JOBS            pgbench -j                          (default 2)
#   BENCH_SCALE           pgbench -i -s                       (default 10)
#   BENCH_PG_PORT         PostgreSQL port                     (default 55440)
#   BENCH_PROXY_PORT      proxy port                          (default 55441)
#   BENCH_PGBOUNCER_PORT  pgbouncer port                      (default 55442)
#   BENCH_PGBOUNCER_FRESH_PORT  pgbouncer-fresh port          (default 55443)
#   BENCH_GO_FORWARD_PORT reference Go forwarder port         (default 55444)
#   BENCH_C_FORWARD_PORT  reference C forwarder port          (default 55445)
#   BENCH_OUT             markdown results file               (default bench/results.md)
#   BENCH_NO_BUILD        1 = use the existing bin/tombstone as is
#   BENCH_PROXY_ARGS      extra flags for `tombstone proxy`, word-split
#   TOMBSTONE_PGBIN       PostgreSQL bin dir (default: newest installed)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

BENCH_SECTIONS="${BENCH_SECTIONS:-pgbench oltp deletes reaper memory}"
# Every target, in the order reports list them.
ALL_TARGETS="direct pgbouncer pgbouncer-fresh go-forward c-forward proxy"
BENCH_TARGETS="${BENCH_TARGETS:-$ALL_TARGETS}"
ROUNDS="${ROUNDS:-5}"
DURATION="${DURATION:-8}"
BENCH_CLIENTS="${BENCH_CLIENTS:-8}"
BENCH_JOBS="${BENCH_JOBS:-2}"
BENCH_SCALE="${BENCH_SCALE:-10}"
BENCH_PG_PORT="${BENCH_PG_PORT:-55440}"
BENCH_PROXY_PORT="${BENCH_PROXY_PORT:-55441}"
BENCH_PGBOUNCER_PORT="${BENCH_PGBOUNCER_PORT:-55442}"
BENCH_PGBOUNCER_FRESH_PORT="${BENCH_PGBOUNCER_FRESH_PORT:-55443}"
BENCH_GO_FORWARD_PORT="${BENCH_GO_FORWARD_PORT:-55444}"
BENCH_C_FORWARD_PORT="${BENCH_C_FORWARD_PORT:-55445}"
BENCH_OUT="${BENCH_OUT:-bench/results.md}"
BENCH_DB=bench
# The commit measured, read before anything is built; "(dirty)" when the
# code differs from it (the results file itself does not count).
BENCH_REV="$(git rev-parse --short HEAD 2>/dev/null || true)"
if [ -n "$BENCH_REV" ] && ! git diff --quiet HEAD -- . ':(exclude)bench/results.md' 2>/dev/null; then
	BENCH_REV+=" (dirty)"
fi
export PGSSLMODE=disable PGUSER=postgres PGCONNECT_TIMEOUT=10
unset PGPASSWORD PGSERVICE PGOPTIONS

for v in ROUNDS DURATION BENCH_CLIENTS BENCH_JOBS BENCH_SCALE BENCH_PG_PORT BENCH_PROXY_PORT BENCH_PGBOUNCER_PORT BENCH_PGBOUNCER_FRESH_PORT BENCH_GO_FORWARD_PORT BENCH_C_FORWARD_PORT; do
	case "${!v}" in '' | *[!0-9]*) die "$v must be a positive integer (got '${!v}')" ;; esac
	[ "${!v}" -gt 0 ] || die "$v must be > 0"
done
for s in $BENCH_SECTIONS; do
	case "$s" in *[!a-z0-9_]*) die "bad section name '$s'" ;; esac
done
for t in $BENCH_TARGETS; do
	case " $ALL_TARGETS " in *" $t "*) ;; *) die "unknown target '$t' in BENCH_TARGETS (${ALL_TARGETS// /, })" ;; esac
done

# ---------------------------------------------------------------- infrastructure

TMP=""
PGBIN=""
declare -A PID=() # processes this script started and owns: proxy, go-forward, c-forward
STARTED="" # targets running, space separated
MD=""      # markdown body collected from sections

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	local p
	for p in "${PID[@]}"; do
		kill_pid "$p" 15
	done
	if [ -n "$TMP" ]; then
		kill_pidfile "$TMP/pgbouncer/pgbouncer.pid" 10
		kill_pidfile "$TMP/pgbouncer-fresh/pgbouncer.pid" 10
		[ -n "$PGBIN" ] && pg_stop "$PGBIN" "$TMP/pg" immediate
		rm -rf "$TMP"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

has_target() { case " $BENCH_TARGETS " in *" $1 "*) return 0 ;; *) return 1 ;; esac }

target_port() {
	case "$1" in
	direct) echo "$BENCH_PG_PORT" ;;
	proxy) echo "$BENCH_PROXY_PORT" ;;
	pgbouncer) echo "$BENCH_PGBOUNCER_PORT" ;;
	pgbouncer-fresh) echo "$BENCH_PGBOUNCER_FRESH_PORT" ;;
	go-forward) echo "$BENCH_GO_FORWARD_PORT" ;;
	c-forward) echo "$BENCH_C_FORWARD_PORT" ;;
	*) die "unknown target $1" ;;
	esac
}

# target_pid TARGET: the process id of a proxy target ("" for direct).
target_pid() {
	case "$1" in
	pgbouncer | pgbouncer-fresh) cat "$TMP/$1/pgbouncer.pid" ;;
	*) echo "${PID[$1]:-}" ;;
	esac
}

# cpu_ticks PID: user + system CPU time of the process so far, in clock ticks.
cpu_ticks() {
	sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# machine_ticks: CPU time the whole machine has spent busy so far (user,
# nice, system, irq, softirq; /proc/stat), in clock ticks. Per transaction
# it is what one transaction costs pgbench, the relay and PostgreSQL
# together: noise from outside slows a run down but adds little to it.
machine_ticks() {
	awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8; exit }' /proc/stat
}

# per_txn A B: microseconds per transaction of run RUN_TXNS between tick counts A and B.
per_txn() {
	awk -v a="$1" -v b="$2" -v hz="$(getconf CLK_TCK)" -v n="$RUN_TXNS" 'BEGIN { printf "%.0f", (b - a) / hz * 1e6 / n }'
}

# sql [PORT] SQL: run SQL in the bench database (default: directly on PostgreSQL), print -At output.
sql() {
	local port="$BENCH_PG_PORT"
	if [ "$#" -gt 1 ]; then
		port="$1"
		shift
	fi
	"$PGBIN/psql" -X -q -At -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -d "$BENCH_DB" -c "$1"
}

# md LINE...: append lines to the markdown results.
md() {
	local l
	for l in "$@"; do MD+="$l"$'\n'; done
}

# row FORMAT CELL...: one table row, on the terminal (printf FORMAT) and
# in the markdown.
row() {
	local fmt="$1" line="|" c
	shift
	# shellcheck disable=SC2059 # the format is the caller's
	printf "$fmt\n" "$@"
	for c in "$@"; do line+=" $c |"; done
	md "$line"
}

start_pg() {
	log "starting PostgreSQL on 127.0.0.1:$BENCH_PG_PORT"
	pg_init "$PGBIN" "$TMP/pg"
	cat >>"$TMP/pg/postgresql.conf" <<EOF

# ---- tombstone bench ----
listen_addresses = '127.0.0.1'
port = $BENCH_PG_PORT
unix_socket_directories = '$TMP/sock'
max_connections = 100
shared_buffers = 256MB
fsync = off
synchronous_commit = off
full_page_writes = off
checkpoint_timeout = 30min
max_wal_size = 4GB
EOF
	pg_start "$PGBIN" "$TMP/pg" "$TMP/pg.log" || die "PostgreSQL failed to start on port $BENCH_PG_PORT"
	wait_pg "$PGBIN" 127.0.0.1 "$BENCH_PG_PORT" 30 || die "PostgreSQL on 127.0.0.1:$BENCH_PG_PORT does not accept connections"
	"$PGBIN/createdb" -h 127.0.0.1 -p "$BENCH_PG_PORT" "$BENCH_DB"
	log "pgbench -i -s $BENCH_SCALE"
	local out
	if ! out="$("$PGBIN/pgbench" -i -q -s "$BENCH_SCALE" -h 127.0.0.1 -p "$BENCH_PG_PORT" "$BENCH_DB" 2>&1)"; then
		printf '%s\n' "$out" >&2
		die "pgbench -i failed"
	fi
	sql "VACUUM ANALYZE" >/dev/null
}

# start_pgbouncer NAME PORT [INI LINE]: pgbouncer in session mode in $TMP/NAME.
start_pgbouncer() {
	local name="$1" port="$2" extra="${3:-}"
	local d="$TMP/$name"
	log "starting $name (session mode${extra:+, $extra}) on 127.0.0.1:$port"
	command -v pgbouncer >/dev/null 2>&1 || die "pgbouncer not installed (scripts/deps.sh --bench)"
	mkdir -p "$d"
	printf '"postgres" ""\n' >"$d/userlist.txt"
	cat >"$d/pgbouncer.ini" <<EOF
[databases]
* = host=127.0.0.1 port=$BENCH_PG_PORT

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir = $d
auth_type = trust
auth_file = $d/userlist.txt
admin_users = postgres
pool_mode = session
max_client_conn = 100
default_pool_size = 20
ignore_startup_parameters = extra_float_digits
logfile = $d/pgbouncer.log
pidfile = $d/pgbouncer.pid
log_connections = 0
log_disconnections = 0
$extra
EOF
	own_pg "$d"
	if ! as_pg pgbouncer -d "$d/pgbouncer.ini" >"$TMP/pgbouncer.out" 2>&1; then
		cat "$TMP/pgbouncer.out" >&2
		tail -n 20 "$d/pgbouncer.log" >&2 2>/dev/null || true
		die "$name failed to start"
	fi
	if ! wait_pg "$PGBIN" 127.0.0.1 "$port" 30 postgres "$BENCH_DB"; then
		tail -n 20 "$d/pgbouncer.log" >&2 2>/dev/null || true
		die "$name on 127.0.0.1:$port does not pass queries through"
	fi
}

start_proxy() {
	log "starting bin/tombstone proxy on 127.0.0.1:$BENCH_PROXY_PORT"
	[ -x bin/tombstone ] || die "bin/tombstone missing"
	# shellcheck disable=SC2206 # word splitting is the point
	local extra=(${BENCH_PROXY_ARGS:-})
	# In a session of its own (setsid), as pgbouncer daemonizes into one and
	# PostgreSQL runs in one: with the kernel's autogroups each session's
	# processes share a CPU share, and pgbench's session is this script's.
	PGHOST=127.0.0.1 PGPORT="$BENCH_PG_PORT" PGUSER=postgres PGDATABASE="$BENCH_DB" \
		setsid bin/tombstone proxy --listen "127.0.0.1:$BENCH_PROXY_PORT" \
		--upstream "127.0.0.1:$BENCH_PG_PORT" ${extra[@]+"${extra[@]}"} >"$TMP/proxy.log" 2>&1 &
	PID[proxy]=$!
	await_started proxy
}

# await_started TARGET: wait (30 s at most) until the process this script
# started for TARGET (PID[TARGET], log $TMP/TARGET.log) passes queries
# through; dies with its log if it exits or does not.
await_started() {
	local t="$1" port deadline=$((SECONDS + 30))
	port="$(target_port "$t")"
	until wait_pg "$PGBIN" 127.0.0.1 "$port" 1 postgres "$BENCH_DB"; do
		if ! kill -0 "${PID[$t]}" 2>/dev/null; then
			unset "PID[$t]"
			tail -n 30 "$TMP/$t.log" >&2 || true
			die "$t exited during startup (log above)"
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			tail -n 30 "$TMP/$t.log" >&2 || true
			die "$t does not pass queries through on 127.0.0.1:$port after 30s"
		fi
	done
}

# start_forward NAME: build and start a reference forwarder (bench/forward
# in Go, bench/cforward in C) in a session of its own, like the proxy.
start_forward() {
	local name="$1" port bin="$TMP/$1"
	port="$(target_port "$name")"
	log "starting the reference $name on 127.0.0.1:$port"
	case "$name" in
	go-forward)
		go build -o "$bin" ./bench/forward || die "cannot build bench/forward"
		setsid "$bin" -listen "127.0.0.1:$port" -upstream "127.0.0.1:$BENCH_PG_PORT" >"$TMP/$name.log" 2>&1 &
		;;
	c-forward)
		gcc -O2 -o "$bin" bench/cforward/forward.c || die "cannot build bench/cforward"
		setsid "$bin" "$port" "$BENCH_PG_PORT" >"$TMP/$name.log" 2>&1 &
		;;
	esac
	PID[$name]=$!
	await_started "$name"
}

# need_target NAME: start the target (and PostgreSQL behind it) if not running yet.
need_target() {
	case " $STARTED " in *" $1 "*) return 0 ;; esac
	case "$1" in
	direct) start_pg ;;
	pgbouncer)
		need_target direct
		start_pgbouncer pgbouncer "$BENCH_PGBOUNCER_PORT"
		;;
	pgbouncer-fresh)
		need_target direct
		start_pgbouncer pgbouncer-fresh "$BENCH_PGBOUNCER_FRESH_PORT" "server_lifetime = 0"
		;;
	proxy)
		need_target direct
		start_proxy
		;;
	go-forward | c-forward)
		need_target direct
		start_forward "$1"
		;;
	*) die "unknown target $1" ;;
	esac
	STARTED+=" $1"
}

# pgbench_run PORT ARGS...: run pgbench against the bench db on PORT; sets
# RUN_TPS (excluding connection time) and RUN_TXNS (transactions processed).
# Dies with pgbench's output on failure.
pgbench_run() {
	local port="$1" out
	shift
	if ! out="$("$PGBIN/pgbench" -h 127.0.0.1 -p "$port" -n "$@" "$BENCH_DB" 2>&1)"; then
		printf '%s\n' "$out" | tail -n 20 >&2
		die "pgbench $* on port $port failed"
	fi
	RUN_TPS="$(printf '%s\n' "$out" | sed -nE 's/^tps = ([0-9.]+) \(without initial connection time\).*/\1/p' | tail -n1)"
	RUN_TXNS="$(printf '%s\n' "$out" | sed -nE 's/^number of transactions actually processed: ([0-9]+).*/\1/p' | tail -n1)"
	if [ -z "$RUN_TPS" ] || [ -z "$RUN_TXNS" ] || [ "$RUN_TXNS" = 0 ]; then
		printf '%s\n' "$out" | tail -n 20 >&2
		die "could not find tps and transactions in pgbench output"
	fi
}

# stats FMT "NUM ...": the median (mean of the middle two for an even
# count), the lowest and the highest of a space-separated list, each printed
# with FMT; nothing for an empty list.
stats() {
	# shellcheck disable=SC2086 # the list is space-separated numbers
	printf '%s\n' $2 | sort -g | awk -v f="$1" 'NF { a[++n] = $1 } END {
		if (n == 0) exit
		m = (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
		printf f " " f " " f "\n", m, a[1], a[n] }'
}

# median "NUM ...": the median of a space-separated list, 1 decimal ("-" for
# an empty one).
median() {
	local m
	read -r m _ <<<"$(stats %.1f "$1")"
	echo "${m:--}"
}

# summary "NUM ...": "median× [lowest, highest]" of ratios ("-" for none).
summary() {
	local m lo hi
	read -r m lo hi <<<"$(stats %.2f "$1")"
	if [ -z "$m" ]; then
		echo -
	else
		printf '%s× [%s, %s]\n' "$m" "$lo" "$hi"
	fi
}

# ratio A B: A/B with 2 decimals, "-" when either is missing.
ratio() {
	if [ -z "$1" ] || [ -z "$2" ] || [ "$1" = - ] || [ "$2" = - ]; then
		echo -
		return
	fi
	awk -v a="$1" -v b="$2" 'BEGIN { if (b == 0) print "-"; else printf "%.2f\n", a / b }'
}

# rotated N WORD...: the words rotated left by N (to vary who goes first each round).
rotated() {
	local n="$1"
	shift
	local -a w=("$@")
	local i k="${#w[@]}"
	for ((i = 0; i < k; i++)); do printf '%s ' "${w[$(((i + n) % k))]}"; done
}

# ---------------------------------------------------------------- sections
# A section is a function section_<name>. It calls need_target for what it uses,
# measures, prints a human-readable summary to stdout, and appends a markdown
# snippet with `md` (start it with a "## " heading). Helpers: sql, pgbench_run,
# median, summary, ratio, rotated, target_port, target_pid, cpu_ticks; $TMP is
# a scratch dir removed on exit.

# section_reaper: 1M expired tombstones (1000 batches x 1000 rows, written
# straight into a shadow table as postgres), purged by `bin/tombstone reaper
# --once` while pgbench (TPC-B-like, read-write, -c BENCH_CLIENTS) runs
# against the same database; reports purge rows/s and pgbench's worst
# transaction latency while the reaper ran (from pgbench -l) next to its
# worst before it started.
section_reaper() {
	need_target direct
	if [ "${BENCH_NO_BUILD:-0}" != 1 ] || [ ! -x bin/tombstone ]; then build_tombstone; fi
	local dsn="postgres://postgres@127.0.0.1:$BENCH_PG_PORT/$BENCH_DB?sslmode=disable"
	local rows=1000000 batches=1000 chunk="${BENCH_REAPER_CHUNK:-50000}"
	sql "DROP TABLE IF EXISTS reaper_items; CREATE TABLE reaper_items (id bigint PRIMARY KEY, tenant_id int, name text, payload text, at timestamptz)"
	bin/tombstone init --dsn "$dsn" >/dev/null
	log "reaper: writing $rows expired tombstones in $batches batches"
	sql "SET session_replication_role = replica; -- tombstones loaded, not captured
		INSERT INTO tombstone.batches (id, sql, tables, purge_after)
		SELECT 900000000 + g, 'DELETE FROM reaper_items', jsonb_build_object('public.reaper_items', $rows / $batches), now() - interval '1 hour'
		FROM generate_series(1, $batches) g;
		INSERT INTO tombstone.public__reaper_items (_ts_batch, _ts_cause, _ts_deleted_at, id, tenant_id, name, payload, at)
		SELECT 900000001 + g / ($rows / $batches), 'delete', now(), g, g % 1000, 'name ' || g, repeat('x', 60), now()
		FROM generate_series(0, $rows - 1) g"
	sql "VACUUM ANALYZE tombstone.public__reaper_items"
	sql "VACUUM ANALYZE tombstone.batches"
	sql "CHECKPOINT"

	local secs=$((DURATION > 15 ? DURATION : 15))
	log "reaper: pgbench -c $BENCH_CLIENTS -j $BENCH_JOBS -T $secs (read-write), reaper --once --chunk $chunk after 3 s"
	mkdir -p "$TMP/pgbench-log"
	(cd "$TMP/pgbench-log" && "$PGBIN/pgbench" -h 127.0.0.1 -p "$BENCH_PG_PORT" -n -c "$BENCH_CLIENTS" -j "$BENCH_JOBS" \
		-T "$secs" -l --log-prefix=pgb "$BENCH_DB" >"$TMP/pgbench-reaper.out" 2>&1) &
	local pgb=$!
	sleep 3
	local t0 t1
	t0="$(date +%s%N)"
	bin/tombstone reaper --dsn "$dsn" --once --json --chunk "$chunk" --log-level warn >"$TMP/reaper.json" \
		|| die "reaper --once failed: $(cat "$TMP/reaper.json")"
	t1="$(date +%s%N)"
	wait "$pgb" || die "pgbench failed: $(cat "$TMP/pgbench-reaper.out")"
	local purged ns rps
	purged="$(sed -n 's/.*"rows_purged": *\([0-9]*\).*/\1/p' "$TMP/reaper.json")"
	ns="$(sed -n 's/.*"duration_ns": *\([0-9]*\).*/\1/p' "$TMP/reaper.json")"
	rps="$(awk -v r="$purged" -v n="$ns" 'BEGIN { printf "%.0f", r / (n / 1e9) }')"
	# pgbench -l lines: client xact latency_us script epoch_s epoch_us.
	local during before tps
	during="$(cat "$TMP"/pgbench-log/pgb.* | awk -v a="$t0" -v b="$t1" '{ end = ($5 * 1e6 + $6) * 1000; start = end - $3 * 1000;
		if (end >= a && start <= b && $3 > m) m = $3 } END { printf "%.1f", m / 1000 }')"
	before="$(cat "$TMP"/pgbench-log/pgb.* | awk -v a="$t0" '{ end = ($5 * 1e6 + $6) * 1000; if (end < a && $3 > m) m = $3 } END { printf "%.1f", m / 1000 }')"
	tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$TMP/pgbench-reaper.out" | head -n1)"
	printf '\nreaper: purged %s tombstones in %.2f s = %s rows/s (chunk %s); pgbench %s tps, worst latency %s ms while reaping (%s ms before)\n' \
		"$purged" "$(awk -v n="$ns" 'BEGIN { print n / 1e9 }')" "$rps" "$chunk" "${tps%.*}" "$during" "$before"
	md "## reaper throughput" "" \
		"\`bin/tombstone reaper --once --chunk $chunk\` over $purged expired tombstones ($batches batches), while \`pgbench -c $BENCH_CLIENTS -j $BENCH_JOBS\` (TPC-B-like, read-write, scale $BENCH_SCALE) ran on the same database." "" \
		"| rows purged | seconds | rows/s | pgbench tps | worst pgbench latency while reaping | worst before |" \
		"| ---: | ---: | ---: | ---: | ---: | ---: |" \
		"| $purged | $(awk -v n="$ns" 'BEGIN { printf "%.2f", n / 1e9 }') | $rps | ${tps%.*} | $during ms | $before ms |" ""
	sql "DROP TABLE reaper_items"
}

section_deletes() {
	need_target proxy
	log "building bench/deletes"
	go build -o "$TMP/deletes" ./bench/deletes
	local base="postgres://postgres@127.0.0.1"
	"$TMP/deletes" -rounds "$ROUNDS" -md "$TMP/deletes.md" \
		-direct "$base:$BENCH_PG_PORT/$BENCH_DB?sslmode=disable" \
		-proxy "$base:$BENCH_PROXY_PORT/$BENCH_DB?sslmode=disable"
	MD+="$(cat "$TMP/deletes.md")"$'\n\n'
}

section_memory() {
	need_target proxy
	log "building bench/memory"
	go build -o "$TMP/memory" ./bench/memory
	"$TMP/memory" -pid "$(target_pid proxy)" -md "$TMP/memory.md" \
		-proxy "postgres://postgres@127.0.0.1:$BENCH_PROXY_PORT/$BENCH_DB?sslmode=disable"
	MD+="$(cat "$TMP/memory.md")"$'\n\n'
}

# section_pgbench: pgbench -S against every target, rounds interleaved (who
# goes first rotates). Reports median tps per target and mode; for each
# pgbouncer target the median (and range) of the rounds' proxy/pgbouncer
# ratios — each round's pair ran back to back, so slow phases of the machine
# hit both — and the CPU each proxy process used per transaction.
section_pgbench() {
	local -a targets=()
	local t
	for t in $ALL_TARGETS; do
		if has_target "$t"; then
			targets+=("$t")
			need_target "$t"
		fi
	done
	local -A samples=() cpu=() round=() ratios=()
	local r mode pid c0 us pair a b
	for ((r = 0; r < ROUNDS; r++)); do
		for mode in simple prepared; do
			round=()
			for t in $(rotated "$r" "${targets[@]}"); do
				pid="$(target_pid "$t")"
				[ -z "$pid" ] || c0="$(cpu_ticks "$pid")"
				pgbench_run "$(target_port "$t")" -S -c "$BENCH_CLIENTS" -j "$BENCH_JOBS" -T "$DURATION" -M "$mode"
				us=""
				if [ -n "$pid" ]; then
					us="$(awk -v a="$c0" -v b="$(cpu_ticks "$pid")" -v hz="$(getconf CLK_TCK)" -v n="$RUN_TXNS" \
						'BEGIN { printf "%.2f", (b - a) / hz * 1e6 / n }')"
					cpu["$t/$mode"]+="$us "
				fi
				log "round $((r + 1))/$ROUNDS  $mode  $t: $RUN_TPS tps${us:+, $us µs CPU per transaction}"
				samples["$t/$mode"]+="$RUN_TPS "
				round["$t"]="$RUN_TPS"
			done
			# paired ratios A:B of this round, A/B
			for pair in proxy:pgbouncer proxy:pgbouncer-fresh go-forward:pgbouncer c-forward:pgbouncer proxy:go-forward; do
				a="${pair%%:*}" b="${pair#*:}"
				if [ -n "${round[$a]:-}" ] && [ -n "${round[$b]:-}" ]; then
					ratios["$pair/$mode"]+="$(awk -v p="${round[$a]}" -v q="${round[$b]}" 'BEGIN { printf "%.3f", p / q }') "
				fi
			done
		done
	done

	local title="pgbench -S (select-only): scale $BENCH_SCALE, $BENCH_CLIENTS clients, $BENCH_JOBS threads, ${DURATION}s x $ROUNDS rounds"
	local -A med=()
	for t in "${targets[@]}"; do
		for mode in simple prepared; do
			med["$t/$mode"]="$(median "${samples[$t/$mode]:-}")"
		done
	done
	printf '\n%s, median tps\n' "$title"
	printf '%-9s %10s %10s %16s %10s %13s %17s\n' mode direct pgbouncer pgbouncer-fresh proxy proxy/direct pgbouncer/direct
	md "## pgbench select-only" "" "$title." "" \
		"Median tps. \`pgbouncer\` is session mode as configured by default: a client's server connection goes back to its pool afterwards and the next client reuses that backend, warm. \`pgbouncer-fresh\` is the same with \`server_lifetime = 0\`: every client gets a new backend, as it does connecting directly or through the proxy (one client connection = one server connection, authentication relayed)." "" \
		"| mode | direct | pgbouncer | pgbouncer-fresh | proxy | proxy/direct | pgbouncer/direct |" \
		"| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
	local d p f
	for mode in simple prepared; do
		d="${med[direct/$mode]:--}" b="${med[pgbouncer/$mode]:--}" f="${med[pgbouncer-fresh/$mode]:--}" p="${med[proxy/$mode]:--}"
		row '%-9s %10s %10s %16s %10s %13s %17s' "$mode" "$d" "$b" "$f" "$p" "$(ratio "$p" "$d")" "$(ratio "$b" "$d")"
	done

	printf '\nproxy / pgbouncer, median of the per-round ratios [lowest, highest]; CPU per transaction (µs, median)\n'
	printf '%-9s %24s %24s %10s %16s %10s\n' mode proxy/pgbouncer proxy/pgbouncer-fresh pgbouncer pgbouncer-fresh proxy
	md "" "Proxy against pgbouncer: the median of the rounds' ratios (each round ran the targets back to back) with the lowest and highest round, and the median CPU time (user + system, from \`/proc/<pid>/stat\`) each proxy process used per transaction." "" \
		"| mode | proxy / pgbouncer | proxy / pgbouncer-fresh | CPU µs/tx: pgbouncer | pgbouncer-fresh | proxy |" \
		"| --- | ---: | ---: | ---: | ---: | ---: |"
	local rb rf cb cf cp
	for mode in simple prepared; do
		rb="$(summary "${ratios[proxy:pgbouncer/$mode]:-}")" rf="$(summary "${ratios[proxy:pgbouncer-fresh/$mode]:-}")"
		cb="$(median "${cpu[pgbouncer/$mode]:-}")" cf="$(median "${cpu[pgbouncer-fresh/$mode]:-}")"
		cp="$(median "${cpu[proxy/$mode]:-}")"
		row '%-9s %24s %24s %10s %16s %10s' "$mode" "$rb" "$rf" "$cb" "$cf" "$cp"
	done

	if has_target go-forward || has_target c-forward; then
		printf '\nreference forwarders (no framing, no parsing), median of the per-round ratios [lowest, highest]; CPU per transaction (µs, median)\n'
		printf '%-9s %24s %24s %24s %11s %10s\n' mode go-forward/pgbouncer c-forward/pgbouncer proxy/go-forward go-forward c-forward
		md "" "Reference forwarders: the least an epoll loop can do between pgbench and PostgreSQL — accept, dial, one recv and one send per readable socket, no framing, tracking or parsing — in Go (\`bench/forward\`, waiting and yielding as the proxy's event loop does) and in C (\`bench/cforward\`). They tell a Go event loop's own cost from the proxy's. Median of the rounds' ratios with the lowest and highest round, and median CPU per transaction." "" \
			"| mode | go-forward / pgbouncer | c-forward / pgbouncer | proxy / go-forward | CPU µs/tx: go-forward | c-forward |" \
			"| --- | ---: | ---: | ---: | ---: | ---: |"
		local rg rc rp cg cc
		for mode in simple prepared; do
			rg="$(summary "${ratios[go-forward:pgbouncer/$mode]:-}")" rc="$(summary "${ratios[c-forward:pgbouncer/$mode]:-}")"
			rp="$(summary "${ratios[proxy:go-forward/$mode]:-}")"
			cg="$(median "${cpu[go-forward/$mode]:-}")" cc="$(median "${cpu[c-forward/$mode]:-}")"
			row '%-9s %24s %24s %24s %11s %10s' "$mode" "$rg" "$rc" "$rp" "$cg" "$cc"
		done
	fi

	md "" "Raw samples (per round: tps; CPU µs per transaction of the proxy process):" ""
	local s c
	for t in "${targets[@]}"; do
		for mode in simple prepared; do
			s="${samples[$t/$mode]:-}"
			c="${cpu[$t/$mode]:-}"
			md "- $t, $mode: ${s% }${c:+; CPU ${c% }}"
		done
	done
	md ""
}

# section_oltp: the OLTP delete workload of issue 17 — pgbench with a
# custom script that deletes one row of a 100k-row table by key and puts it
# back (INSERT … ON CONFLICT DO NOTHING), -c BENCH_CLIENTS -j BENCH_JOBS,
# simple and prepared protocol, rounds interleaved across direct, pgbouncer
# and the proxy: median tps, the median of the rounds' proxy/pgbouncer
# ratios, and whether every row the proxy's runs deleted has its tombstone
# (the table's n_tup_del against the shadow table's rows).
# stale_resends: statements the proxy has planned again and re-sent after
# a stale catalog, by its log.
stale_resends() {
	grep -c "re-planned and re-sent" "$TMP/proxy.log" || true
}

# settled_deletes TABLE: its n_tup_del once the backends that deleted
# from it have reported: unchanged for two seconds (a backend reports its
# counts at most once a second, and at its exit).
settled_deletes() {
	local n m i
	n="$(sql "SELECT n_tup_del FROM pg_stat_user_tables WHERE relid = '$1'::regclass")"
	for ((i = 0; i < 30; i++)); do
		sleep 2
		m="$(sql "SELECT n_tup_del FROM pg_stat_user_tables WHERE relid = '$1'::regclass")"
		[ "$m" != "$n" ] || break
		n="$m"
	done
	echo "$n"
}

section_oltp() {
	local -a targets=()
	local t
	for t in direct pgbouncer proxy; do
		if has_target "$t"; then
			targets+=("$t")
			need_target "$t"
		fi
	done
	# Two tables alike, both protected (a direct DELETE runs their capture
	# trigger too): the proxy's runs delete from oltp_proxied only, so its
	# n_tup_del counts their deletes alone — pgbouncer's pooled backends,
	# idle, may report theirs as late as ten seconds after a run when the
	# statistics are busy.
	local tbl
	for tbl in oltp_accounts oltp_proxied; do
		sql "DROP TABLE IF EXISTS $tbl; CREATE TABLE $tbl (id int PRIMARY KEY, v text);
			INSERT INTO $tbl SELECT g, 'v' || g FROM generate_series(1, 100000) g" >/dev/null
		sql "VACUUM ANALYZE $tbl" >/dev/null
		sed "s/TABLE/$tbl/g" >"$TMP/$tbl.sql" <<'SCRIPT'
\set id random(1, 100000)
DELETE FROM TABLE WHERE id = :id;
INSERT INTO TABLE VALUES (:id, 'v') ON CONFLICT DO NOTHING;
SCRIPT
	done
	if has_target proxy; then
		# The proxy installs its store (and the tables' shadows) when it
		# first plans a DELETE in the database.
		sql "$BENCH_PROXY_PORT" "DELETE FROM oltp_proxied WHERE id = 0" >/dev/null
	fi
	local -A samples=() round=() ratios=() mcpu=() pcpu=() cround=() cratios=()
	local r mode del0 ts0 deleted=0 captured=0 shadow="" m0 p0 pid us note d c rs0 rs resent=0
	for ((r = 0; r < ROUNDS; r++)); do
		for mode in simple prepared; do
			round=()
			for t in $(rotated "$r" "${targets[@]}"); do
				tbl=oltp_accounts
				if [ "$t" = proxy ]; then
					tbl=oltp_proxied
					shadow="$(sql "SELECT to_regclass('tombstone.public__oltp_proxied')")"
					[ -n "$shadow" ] || die "oltp_proxied has no shadow table: is the proxy's store installed in $BENCH_DB?"
					del0="$(settled_deletes $tbl)"
					ts0="$(sql "SELECT count(*) FROM $shadow")"
					rs0="$(stale_resends)"
				fi
				pid="$(target_pid "$t")"
				[ -z "$pid" ] || p0="$(cpu_ticks "$pid")"
				m0="$(machine_ticks)"
				pgbench_run "$(target_port "$t")" -f "$TMP/$tbl.sql" -c "$BENCH_CLIENTS" -j "$BENCH_JOBS" -T "$DURATION" -M "$mode"
				us="$(per_txn "$m0" "$(machine_ticks)")"
				mcpu["$t/$mode"]+="$us "
				cround["$t"]="$us"
				if [ -n "$pid" ]; then
					pcpu["$t/$mode"]+="$(per_txn "$p0" "$(cpu_ticks "$pid")") "
				fi
				note=""
				if [ "$t" = proxy ]; then
					d="$(($(settled_deletes $tbl) - del0))" c="$(($(sql "SELECT count(*) FROM $shadow") - ts0))"
					rs="$(($(stale_resends) - rs0))"
					deleted=$((deleted + d)) captured=$((captured + c)) resent=$((resent + rs))
					note=", $d rows deleted, $c tombstones, $rs statements re-sent"
				fi
				log "round $((r + 1))/$ROUNDS  oltp $mode  $t: $RUN_TPS tps, $us µs machine CPU per transaction$note"
				samples["$t/$mode"]+="$RUN_TPS "
				round["$t"]="$RUN_TPS"
			done
			if [ -n "${round[proxy]:-}" ] && [ -n "${round[pgbouncer]:-}" ]; then
				ratios["$mode"]+="$(awk -v p="${round[proxy]}" -v q="${round[pgbouncer]}" 'BEGIN { printf "%.3f", p / q }') "
				# (pgbouncer's cost over the proxy's: a throughput the
				# machine's CPU would allow, as the tps ratio is)
				cratios["$mode"]+="$(awk -v p="${cround[proxy]}" -v q="${cround[pgbouncer]}" 'BEGIN { printf "%.3f", q / p }') "
			fi
		done
	done
	local title="OLTP deletes (pgbench script: DELETE one row by key, INSERT it back ON CONFLICT DO NOTHING; 100k rows): $BENCH_CLIENTS clients, $BENCH_JOBS threads, ${DURATION}s x $ROUNDS rounds"
	printf '\n%s, median tps\n' "$title"
	printf '%-9s %10s %10s %10s %26s\n' mode direct pgbouncer proxy "proxy/pgbouncer [lo, hi]"
	md "## OLTP deletes" "" "$title. Median tps, and the median of the rounds' proxy/pgbouncer ratios with the lowest and highest round." "" \
		"| mode | direct | pgbouncer | proxy | proxy / pgbouncer |" \
		"| --- | ---: | ---: | ---: | ---: |"
	for mode in simple prepared; do
		row '%-9s %10s %10s %10s %26s' "$mode" "$(median "${samples[direct/$mode]:-}")" "$(median "${samples[pgbouncer/$mode]:-}")" \
			"$(median "${samples[proxy/$mode]:-}")" "$(summary "${ratios[$mode]:-}")"
	done
	printf '\nmachine CPU per transaction, µs (pgbench, relay and PostgreSQL together; medians)\n'
	printf '%-9s %10s %10s %10s %15s %13s %26s\n' mode direct pgbouncer proxy "pgbouncer's own" "proxy's own" "pgbouncer/proxy [lo, hi]"
	md "" "CPU per transaction, µs: the whole machine's (pgbench, relay and PostgreSQL together; \`/proc/stat\` around each run), which" \
		"noise from outside the machine disturbs far less than tps; the relay processes' own; and pgbouncer's machine CPU per" \
		"transaction over the proxy's, per round (the throughput ratio the CPU alone would allow)." "" \
		"| mode | direct | pgbouncer | proxy | the pgbouncer process | the proxy process | pgbouncer / proxy |" \
		"| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
	for mode in simple prepared; do
		row '%-9s %10s %10s %10s %15s %13s %26s' "$mode" "$(median "${mcpu[direct/$mode]:-}")" "$(median "${mcpu[pgbouncer/$mode]:-}")" \
			"$(median "${mcpu[proxy/$mode]:-}")" "$(median "${pcpu[pgbouncer/$mode]:-}")" "$(median "${pcpu[proxy/$mode]:-}")" \
			"$(summary "${cratios[$mode]:-}")"
	done
	if has_target proxy; then
		printf 'rows the proxy runs deleted: %s; tombstones written meanwhile: %s; statements re-sent after a stale catalog: %s\n' \
			"$deleted" "$captured" "$resent"
		md "" "Rows the proxy's runs deleted (the table's \`n_tup_del\`, which counts the rows of a statement that failed too): $deleted;" \
			"tombstones written meanwhile: $captured; statements the proxy re-sent after a stale catalog (each first failed, TS001): $resent."
	fi
	md ""
}

# section_ddl: schema changes as migrations and test suites send them
# (issue 17) — BENCH_DDL_TABLES times CREATE TABLE (with a primary key)
# and one INSERT, then as many DROP TABLE, in one psql script each: in a
# database without the store ("none"), directly in the proxy's database
# (whose DDL event triggers give each new table its shadow), and through
# the proxy (where each DROP moves the table to the trash); rounds
# rotating; median milliseconds and the ratios to "none".
section_ddl() {
	need_target proxy
	local n="${BENCH_DDL_TABLES:-200}" r i t0 t1 target port db name step ms
	local -A took=()
	# The store installed first (the proxy installs it at its first DELETE
	# in a database), as in a database the proxy serves.
	sql "CREATE TABLE IF NOT EXISTS ddl_seed (id int PRIMARY KEY)" >/dev/null
	sql "$BENCH_PROXY_PORT" "DELETE FROM ddl_seed WHERE id = 0" >/dev/null
	sql "DROP DATABASE IF EXISTS ${BENCH_DB}_nostore" >/dev/null
	sql "CREATE DATABASE ${BENCH_DB}_nostore" >/dev/null
	for ((r = 0; r < ROUNDS; r++)); do
		for target in $(rotated "$r" none direct proxy); do
			port="$BENCH_PG_PORT" db="$BENCH_DB"
			case "$target" in
			none) db="${BENCH_DB}_nostore" ;;
			proxy) port="$BENCH_PROXY_PORT" ;;
			esac
			name="ddl_${target}_$r"
			: >"$TMP/create.sql"
			: >"$TMP/drop.sql"
			for ((i = 0; i < n; i++)); do
				printf 'CREATE TABLE %s_%d (id int PRIMARY KEY, v text);\nINSERT INTO %s_%d VALUES (1, %s);\n' \
					"$name" "$i" "$name" "$i" "'x'" >>"$TMP/create.sql"
				printf 'DROP TABLE %s_%d;\n' "$name" "$i" >>"$TMP/drop.sql"
			done
			for step in create drop; do
				t0="$(date +%s%N)"
				"$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -d "$db" -f "$TMP/$step.sql" >/dev/null ||
					die "ddl $step ($target) failed"
				t1="$(date +%s%N)"
				ms="$(((t1 - t0) / 1000000))"
				took["$target/$step"]+="$ms "
				log "round $((r + 1))/$ROUNDS  ddl $step $n tables  $target: $ms ms"
			done
		done
	done
	local title="Schema changes: $n x CREATE TABLE (primary key) + INSERT, then $n x DROP TABLE, one psql script each; $ROUNDS rounds"
	printf '\n%s, median ms\n' "$title"
	printf '%-8s %12s %12s %12s %14s %14s\n' step "no store" direct proxy "direct/none" "proxy/none"
	md "## Schema changes" "" "$title. Median milliseconds: in a database without the store, directly in the proxy's database (its DDL event triggers run), through the proxy." "" \
		"| step | no store | direct | proxy | direct / no store | proxy / no store |" "| --- | ---: | ---: | ---: | ---: | ---: |"
	local z d p
	for step in create drop; do
		z="$(median "${took[none/$step]:-}")" d="$(median "${took[direct/$step]:-}")" p="$(median "${took[proxy/$step]:-}")"
		row '%-8s %12s %12s %12s %14s %14s' "$step" "$z" "$d" "$p" \
			"$(awk -v a="$d" -v b="$z" 'BEGIN { if (b > 0) printf "%.1f×", a / b; else print "-" }')" \
			"$(awk -v a="$p" -v b="$z" 'BEGIN { if (b > 0) printf "%.1f×", a / b; else print "-" }')"
	done
	md ""
}

# ---------------------------------------------------------------- main

for s in $BENCH_SECTIONS; do
	declare -F "section_$s" >/dev/null || die "unknown section '$s' (have: $(declare -F | awk '$3 ~ /^section_/ {sub("section_","",$3); printf "%s ", $3}'))"
done

bash scripts/deps.sh --bench
PGBIN="$(pg_bindir)" || die "no PostgreSQL server found"
ports=("$BENCH_PG_PORT")
for t in $BENCH_TARGETS; do
	[ "$t" = direct ] || ports+=("$(target_port "$t")")
done
require_free_ports "${ports[@]}"

if has_target proxy; then
	if [ "${BENCH_NO_BUILD:-0}" = 1 ] && [ -x bin/tombstone ]; then
		log "using existing bin/tombstone"
	else
		build_tombstone
	fi
fi

TMP="$(make_tmpdir tombstone-bench)"
mkdir -p "$TMP/sock"
own_pg "$TMP/sock"

for s in $BENCH_SECTIONS; do
	log "section $s"
	"section_$s"
done

mkdir -p "$(dirname "$BENCH_OUT")"
{
	echo "# tombstone benchmarks"
	echo
	echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
	if [ -n "$BENCH_REV" ]; then
		echo "- commit: $BENCH_REV"
	fi
	echo "- machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
	echo "- PostgreSQL: $("$PGBIN/postgres" --version | awk '{print $3}') (fsync=off, shared_buffers=256MB, max_connections=100)"
	if has_target pgbouncer || has_target pgbouncer-fresh; then
		echo "- pgbouncer: $(pgbouncer --version 2>/dev/null | head -n1 | awk '{print $NF}') (session mode, pool 20; pgbouncer-fresh: server_lifetime = 0)"
	fi
	echo "- client, server and proxies share the same machine; numbers compare targets, not absolute capacity"
	echo
	printf '%s' "$MD"
} >"$BENCH_OUT"
log "wrote $BENCH_OUT"
