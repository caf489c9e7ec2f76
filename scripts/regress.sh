#!/usr/bin/env bash
# `make regress`: PostgreSQL's own regression suite (src/test/regress, the
# parallel schedule, installcheck style) of the installed server's exact
# version, run twice on identical throwaway clusters — directly, then through
# the tombstone proxy — and compared test by test: how many tests printed the
# same results/<test>.out both times, which did not (a diff each), and which
# failed against expected/ in each run. Both runs use the same tests, so the
# direct run is the reference; its own failures are an environment problem,
# reported apart.
#
# What it does, and what it caches under $TOMBSTONE_REGRESS_DIR (a second run
# only rebuilds bin/tombstone):
#   - installs what is missing with apt-get (one `apt-get update`, only when
#     something must be fetched): the server, dpkg-dev (dpkg-source), gcc;
#     adds a deb-src entry (/etc/apt/sources.list.d/tombstone-src.*, a copy of
#     the Debian entries of sources.list / debian.sources) when none exists;
#   - `apt-get source postgresql-<major>=<installed version>`, keeps its
#     src/test/regress; Debian offering only another version of that major
#     is warned about loudly and used (the comparison stays valid: both runs
#     run the same tests; only the direct run's pass/fail may suffer);
#   - builds regress.so from regress.c with pg_config's flags against the
#     server headers (postgresql-server-dev-<major> when installed, else its
#     .deb of the same version unpacked into the cache: no clang/llvm install),
#     next to links to the server's autoinc.so and refint.so (--dlpath);
#   - runs pg_regress (postgresql-client's, in lib/pgxs) as the postgres user
#     against cluster 1, then against the proxy (guards.require_where: false,
#     all else default) in front of cluster 2. pg_regress drops and creates
#     database `regression` itself, through the proxy too: the proxy installs
#     its store in `regression` (and `postgres`) on first use, as it does for
#     any database, so the suite runs on a protected database.
#     Both clusters: initdb --locale=C -E UTF8, fsync off, and
#     max_prepared_transactions = 2 as pg_regress's own temp instance
#     (`make check`) sets it.
#
# Output ($TOMBSTONE_REGRESS_OUT, emptied first): summary.txt (also printed),
# diffs/<test>.diff (direct vs proxied results), direct/ and proxy/ (each
# run's results/, regression.diffs, pg_regress.log, postgresql.log),
# proxy.log, tombstone.yaml. Exit 0 when both runs completed, whatever they
# printed (3 under TOMBSTONE_REGRESS_STRICT=1 when a test differs); another
# non-zero code when the harness broke (a run timed out, pg_regress could
# not run, a cluster or the proxy did not start).
#
# usage: scripts/regress.sh
#
# env vars:
#   TOMBSTONE_REGRESS_DIR      cache: source, regress.so   (default /var/tmp/tombstone-regress)
#   TOMBSTONE_REGRESS_OUT      output dir                  (default <repo>/regress-out)
#   TOMBSTONE_REGRESS_TESTS    run only these tests, in this order, after
#                              test_setup (e.g. "int4 triggers"); a test that
#                              needs another's objects needs it listed too
#   TOMBSTONE_REGRESS_TIMEOUT  seconds each run may take   (default 7200; the
#                              proxied run took 695 s here, the direct one 105 s)
#   TOMBSTONE_REGRESS_DIRECT_PORT  cluster 1 on 127.0.0.1  (default 29401)
#   TOMBSTONE_REGRESS_PG_PORT      cluster 2 on 127.0.0.1  (default 29402)
#   TOMBSTONE_REGRESS_PROXY_PORT   the proxy on 127.0.0.1  (default 29410)
#     (these lie in Linux's ephemeral range: if a bind fails although the
#     port check passed, an outgoing connection held it; pick others)
#   TOMBSTONE_REGRESS_NO_BUILD     1 = use the existing bin/tombstone as is
#   TOMBSTONE_REGRESS_STRICT       1 = exit 3 when a test differs through the
#                              proxy (make test runs a subset so)
#   TOMBSTONE_PGBIN            PostgreSQL bin dir (default: newest installed)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

CACHE="${TOMBSTONE_REGRESS_DIR:-/var/tmp/tombstone-regress}"
OUT="${TOMBSTONE_REGRESS_OUT:-$REPO_ROOT/regress-out}"
TIMEOUT="${TOMBSTONE_REGRESS_TIMEOUT:-7200}"
# (Below the kernel's ephemeral range, 32768–60999 here: a port in it can
# be taken, between the check below and a listen, by a client connection
# of the run itself — CI failed once on "address already in use".)
DIRECT_PORT="${TOMBSTONE_REGRESS_DIRECT_PORT:-29401}"
PG_PORT="${TOMBSTONE_REGRESS_PG_PORT:-29402}"
PROXY_PORT="${TOMBSTONE_REGRESS_PROXY_PORT:-29410}"
# shellcheck disable=SC2206 # word splitting is the point
SUBSET=(${TOMBSTONE_REGRESS_TESTS:-})
case "$TIMEOUT" in '' | *[!0-9]*) die "TOMBSTONE_REGRESS_TIMEOUT must be a number of seconds, not '$TIMEOUT'" ;; esac
case "$CACHE" in /*) ;; *) CACHE="$REPO_ROOT/$CACHE" ;; esac
case "$OUT" in /*) ;; *) OUT="$REPO_ROOT/$OUT" ;; esac

WORK=""
PROXY_PID=""
GUARD=""
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	if [ -n "$PROXY_PID" ]; then
		kill_pid "$PROXY_PID" 15
	fi
	if [ -n "$WORK" ]; then
		pg_stop "$PGBIN" "$WORK/direct/pg" immediate
		pg_stop "$PGBIN" "$WORK/proxy/pg" immediate
		rm -rf "$WORK"
	fi
	if [ -n "$GUARD" ]; then
		"${SUDO[@]+"${SUDO[@]}"}" rm -f "$GUARD"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---- packages ----------------------------------------------------------

SUDO=()
if ! is_root; then
	command -v sudo >/dev/null 2>&1 || die "not root and no sudo: run as root (apt-get, runuser)"
	SUDO=(sudo)
fi
APT_UPDATED=0

apt_update_once() {
	[ "$APT_UPDATED" = 1 ] && return 0
	log "apt-get update"
	"${SUDO[@]+"${SUDO[@]}"}" apt-get update -qq >/dev/null || die "apt-get update failed"
	APT_UPDATED=1
}

apt_install() { # apt_install PACKAGE[=VERSION]...
	command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install $* by hand"
	# Keep Debian's maintainer scripts from starting a cluster on 5432.
	if [ -z "$GUARD" ] && [ ! -e /usr/sbin/policy-rc.d ]; then
		GUARD=/usr/sbin/policy-rc.d
		printf '#!/bin/sh\nexit 101\n' | "${SUDO[@]+"${SUDO[@]}"}" tee "$GUARD" >/dev/null
		"${SUDO[@]+"${SUDO[@]}"}" chmod 0755 "$GUARD"
	fi
	apt_update_once
	log "installing $*"
	DEBIAN_FRONTEND=noninteractive "${SUDO[@]+"${SUDO[@]}"}" apt-get install -y -qq \
		--no-install-recommends "$@" >/dev/null || die "apt-get install $* failed"
}

# deb_src_entry writes a deb-src twin of the Debian archive entries of
# sources.list (one-line format) and sources.list.d/debian.sources (deb822),
# unless a deb-src entry exists already. Returns 0 when it wrote one.
deb_src_entry() {
	local list=/etc/apt/sources.list deb822=/etc/apt/sources.list.d/debian.sources
	local d=/etc/apt/sources.list.d wrote=1 text
	if grep -qsE '^[[:space:]]*deb-src[[:space:]]' "$list" "$d"/*.list ||
		grep -qsE '^Types:.*deb-src' "$d"/*.sources; then
		return 1
	fi
	if [ -f "$deb822" ]; then
		# One stanza per paragraph; "Types: deb" becomes "Types: deb-src".
		text="$(awk 'BEGIN { RS = ""; ORS = "\n\n" }
			/(^|\n)Types:[^\n]*deb/ && !/(^|\n)Enabled:[[:space:]]*no/ {
				sub(/Types:[^\n]*/, "Types: deb-src"); print }' "$deb822")"
		if [ -n "$text" ]; then
			printf '# written by tombstone scripts/regress.sh (apt-get source)\n%s\n' "$text" |
				"${SUDO[@]+"${SUDO[@]}"}" tee "$d/tombstone-src.sources" >/dev/null
			log "added deb-src entries: $d/tombstone-src.sources"
			wrote=0
		fi
	fi
	if [ -f "$list" ]; then
		text="$(sed -nE 's/^([[:space:]]*)deb([[:space:]])/\1deb-src\2/p' "$list")"
		if [ -n "$text" ]; then
			printf '# written by tombstone scripts/regress.sh (apt-get source)\n%s\n' "$text" |
				"${SUDO[@]+"${SUDO[@]}"}" tee "$d/tombstone-src.list" >/dev/null
			log "added deb-src entries: $d/tombstone-src.list"
			wrote=0
		fi
	fi
	[ "$wrote" = 0 ] || die "no Debian archive entry in $list or $deb822 to copy as deb-src; add a deb-src line by hand"
}

T0=$SECONDS
missing=()
PGBIN="$(pg_bindir || true)"
if [ -z "$PGBIN" ]; then
	missing+=(postgresql)
fi
command -v dpkg-source >/dev/null 2>&1 || missing+=(dpkg-dev)
command -v gcc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
command -v timeout >/dev/null 2>&1 || missing+=(coreutils)
command -v runuser >/dev/null 2>&1 || missing+=(util-linux)
if [ "${#missing[@]}" -gt 0 ]; then
	apt_install "${missing[@]}"
	PGBIN="$(pg_bindir)" || die "no PostgreSQL server under /usr/lib/postgresql/*/bin after install"
fi
is_root && { id postgres >/dev/null 2>&1 || die "OS user 'postgres' does not exist (it comes with the postgresql package)"; }

MAJOR="$(basename "$(dirname "$PGBIN")")"
PGLIB="$(dirname "$PGBIN")/lib"
PG_CONFIG="$PGBIN/pg_config"
PG_REGRESS="$PGLIB/pgxs/src/test/regress/pg_regress"
SERVER_VERSION="$("$PGBIN/postgres" --version | awk '{print $3}')" # 15.18
SRC_PKG="postgresql-$MAJOR"
PKG_VERSION="$(dpkg-query -W -f='${Version}' "$SRC_PKG" 2>/dev/null || true)" # 15.18-0+deb12u1
[ -n "$PKG_VERSION" ] || die "$PGBIN is not from Debian's package $SRC_PKG; cannot pick its source package"
case "$PKG_VERSION" in
"$SERVER_VERSION"-* | "$SERVER_VERSION") ;;
*) die "package $SRC_PKG $PKG_VERSION does not match the server binary ($SERVER_VERSION): reinstall it" ;;
esac
if [ ! -x "$PG_REGRESS" ] || [ ! -x "$PG_CONFIG" ]; then
	apt_install "postgresql-client-$MAJOR=$PKG_VERSION"
fi
[ -x "$PG_REGRESS" ] || die "$PG_REGRESS missing (it comes with postgresql-client-$MAJOR)"
for so in autoinc refint; do
	[ -r "$PGLIB/$so.so" ] || die "$PGLIB/$so.so missing (contrib's spi modules come with postgresql-$MAJOR)"
done

# ---- source and regress.so (cached) ------------------------------------

# src_version picks the source version: the installed one when Debian offers
# it, else (loudly) the newest of the same upstream release, else of the
# same major.
src_version() {
	local offered v
	offered="$(apt-cache showsrc "$SRC_PKG" 2>/dev/null | sed -n 's/^Version: //p' | sort -u)"
	if printf '%s\n' "$offered" | grep -qxF "$PKG_VERSION"; then
		printf '%s\n' "$PKG_VERSION"
		return 0
	fi
	[ -n "$offered" ] || return 1
	v="$(printf '%s\n' "$offered" | grep -E "^${SERVER_VERSION//./\\.}-" | sort -V | tail -n1 || true)"
	[ -n "$v" ] || v="$(printf '%s\n' "$offered" | grep -E "^$MAJOR\." | sort -V | tail -n1 || true)"
	[ -n "$v" ] || return 1
	printf '%s\n' "$v"
}

# A cache entry for the installed version is used as is; one for another
# version (a fallback) only when Debian still offers nothing better — asked
# only when no exact entry exists.
VER_DIR="$CACHE/$PKG_VERSION"
FETCHED=0
if [ ! -f "$VER_DIR/ok" ]; then
	added=0
	deb_src_entry && added=1
	[ "$added" = 1 ] && apt_update_once
	SRC_VERSION="$(src_version || true)"
	if [ -z "$SRC_VERSION" ] && [ "$APT_UPDATED" = 0 ]; then
		apt_update_once
		SRC_VERSION="$(src_version || true)"
	fi
	[ -n "$SRC_VERSION" ] || die "Debian offers no source of $SRC_PKG (apt-cache showsrc $SRC_PKG is empty)"
	if [ "$SRC_VERSION" != "$PKG_VERSION" ]; then
		log "**********************************************************************"
		log "WARNING: the server is $SRC_PKG $PKG_VERSION but Debian offers its source"
		log "WARNING: only as $SRC_VERSION: running THAT version's regression tests."
		log "WARNING: direct-run failures may come from the version skew; the"
		log "WARNING: direct-vs-proxy comparison is still like for like."
		log "**********************************************************************"
		VER_DIR="$CACHE/$SRC_VERSION"
	fi
fi
if [ ! -f "$VER_DIR/ok" ]; then
	FETCHED=1
	SRC_VERSION="$(basename "$VER_DIR")"
	log "fetching $SRC_PKG $SRC_VERSION source into $VER_DIR"
	rm -rf "$VER_DIR"
	mkdir -p "$VER_DIR/dl"
	# apt drops root for downloads when the target dir lets it.
	if id _apt >/dev/null 2>&1; then chown _apt "$VER_DIR/dl" 2>/dev/null || true; fi
	(cd "$VER_DIR/dl" && apt-get source -qq --download-only "$SRC_PKG=$SRC_VERSION" >/dev/null) ||
		die "apt-get source $SRC_PKG=$SRC_VERSION failed"
	(cd "$VER_DIR/dl" && dpkg-source -q -x --no-check ./*.dsc src >/dev/null) ||
		die "dpkg-source -x of $SRC_PKG $SRC_VERSION failed"
	mv "$VER_DIR/dl/src/src/test/regress" "$VER_DIR/regress"

	# Server headers of the same version: the installed -dev package's, else
	# its .deb unpacked here (installing it would pull clang and llvm).
	inc="$("$PG_CONFIG" --includedir-server)"
	if [ ! -f "$inc/postgres.h" ]; then
		(cd "$VER_DIR/dl" && apt-get download -qq "postgresql-server-dev-$MAJOR=$PKG_VERSION" >/dev/null 2>&1) ||
			(cd "$VER_DIR/dl" && apt-get download -qq "postgresql-server-dev-$MAJOR=$SRC_VERSION" >/dev/null) ||
			die "apt-get download postgresql-server-dev-$MAJOR failed"
		dpkg-deb -x "$VER_DIR"/dl/postgresql-server-dev-"$MAJOR"_*.deb "$VER_DIR/dl/dev"
		inc="$VER_DIR/dl/dev$inc"
		[ -f "$inc/postgres.h" ] || die "no postgres.h in postgresql-server-dev-$MAJOR"
	fi
	mkdir -p "$VER_DIR/lib"
	# shellcheck disable=SC2046 # pg_config prints flag lists
	gcc $("$PG_CONFIG" --cflags) $("$PG_CONFIG" --cflags_sl) $("$PG_CONFIG" --cppflags) \
		-I"$inc" -shared -o "$VER_DIR/lib/regress.so" "$VER_DIR/regress/regress.c" ||
		die "compiling regress.c failed"
	ln -sf "$PGLIB/autoinc.so" "$PGLIB/refint.so" "$VER_DIR/lib/"
	rm -rf "$VER_DIR/dl"
	chmod -R a+rX "$VER_DIR"
	printf '%s\n' "$SRC_VERSION" >"$VER_DIR/ok"
fi
SRC_VERSION="$(cat "$VER_DIR/ok")"
INPUT="$VER_DIR/regress"
DLPATH="$VER_DIR/lib"
if is_root; then
	# The postgres user reads the tests (pg_regress) and their data files and
	# loads regress.so (the server): the cache's parents must let it through.
	as_pg test -r "$INPUT/parallel_schedule" -a -r "$DLPATH/regress.so" ||
		die "the postgres user cannot read $VER_DIR; choose a TOMBSTONE_REGRESS_DIR it can reach"
fi
FETCH_SECS=$((SECONDS - T0))

if [ "${TOMBSTONE_REGRESS_NO_BUILD:-0}" = 1 ] && [ -x bin/tombstone ]; then
	log "using existing bin/tombstone"
else
	build_tombstone
fi
BUILD_SECS=$((SECONDS - T0 - FETCH_SECS))

# ---- the runs ----------------------------------------------------------

require_free_ports "$DIRECT_PORT" "$PG_PORT" "$PROXY_PORT"

if [ -e "$OUT" ]; then
	[ -f "$OUT/.tombstone-regress" ] || [ -z "$(ls -A "$OUT")" ] ||
		die "$OUT exists and is not a previous output of this script; refusing to empty it"
	rm -rf "$OUT"
fi
mkdir -p "$OUT/diffs"
touch "$OUT/.tombstone-regress"

WORK="$(make_tmpdir tombstone-regress)"

# cluster NAME PORT: initdb and start a throwaway cluster under $WORK/NAME.
cluster() {
	local name="$1" port="$2" dir="$WORK/$1"
	mkdir -p "$dir/sock" "$dir/out"
	chmod 0755 "$dir"
	own_pg "$dir/sock" "$dir/out"
	pg_init "$PGBIN" "$dir/pg"
	cat >>"$dir/pg/postgresql.conf" <<EOF

# ---- tombstone make regress ----
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir/sock'
fsync = off
synchronous_commit = off
full_page_writes = off
# as pg_regress's temp instance (make check) sets it; 0 takes prepared_xacts_1.out
max_prepared_transactions = 2
log_line_prefix = '%m [%p] %q%u@%d '
EOF
	pg_start "$PGBIN" "$dir/pg" "$dir/postgresql.log" || die "PostgreSQL ($name) failed to start on port $port"
	wait_pg "$PGBIN" 127.0.0.1 "$port" 30 || die "PostgreSQL ($name) on 127.0.0.1:$port does not accept connections"
}

# suite NAME PORT: pg_regress against 127.0.0.1:PORT, output to $WORK/NAME/out,
# copied to $OUT/NAME. Sets SUITE_RC (pg_regress's, 124 on timeout) and SUITE_SECS.
suite() {
	local name="$1" port="$2" out="$WORK/$1/out" t=$SECONDS
	local args=(--inputdir="$INPUT" --outputdir="$out" --bindir="$PGBIN" --dlpath="$DLPATH"
		--host=127.0.0.1 --port="$port" --user=postgres)
	if [ "${#SUBSET[@]}" -gt 0 ]; then
		args+=(test_setup)
		local x
		for x in "${SUBSET[@]}"; do [ "$x" = test_setup ] || args+=("$x"); done
	else
		args+=(--schedule="$INPUT/parallel_schedule")
	fi
	log "$name run: pg_regress against 127.0.0.1:$port (timeout ${TIMEOUT}s)"
	SUITE_RC=0
	# As the postgres user: the server writes into results/ (COPY TO a file).
	local run=("$PG_REGRESS")
	is_root && run=(runuser -u postgres -- "$PG_REGRESS")
	(cd / && timeout -k 30 "$TIMEOUT" "${run[@]}" "${args[@]}") >"$OUT/$name.pg_regress.log" 2>&1 || SUITE_RC=$?
	SUITE_SECS=$((SECONDS - t))
	mkdir -p "$OUT/$name"
	mv "$OUT/$name.pg_regress.log" "$OUT/$name/pg_regress.log"
	cp -r "$out/." "$OUT/$name/" 2>/dev/null || true
	case "$SUITE_RC" in
	0 | 1) log "$name run: done in ${SUITE_SECS}s (pg_regress exit $SUITE_RC)" ;;
	124 | 137) log "$name run: TIMED OUT after ${SUITE_SECS}s; last lines of its log:"; tail -n 5 "$OUT/$name/pg_regress.log" >&2 ;;
	*) log "$name run: pg_regress failed (exit $SUITE_RC); last lines of its log:"; tail -n 20 "$OUT/$name/pg_regress.log" >&2 ;;
	esac
}

cluster direct "$DIRECT_PORT"
suite direct "$DIRECT_PORT"
DIRECT_RC=$SUITE_RC DIRECT_SECS=$SUITE_SECS
pg_stop "$PGBIN" "$WORK/direct/pg" fast
cp "$WORK/direct/postgresql.log" "$OUT/direct/postgresql.log"

cluster proxy "$PG_PORT"
cat >"$OUT/tombstone.yaml" <<EOF
# scripts/regress.sh: every key at its default but this one (the suite
# deletes without WHERE).
guards:
  require_where: false
EOF
log "starting bin/tombstone proxy on 127.0.0.1:$PROXY_PORT (log: $OUT/proxy.log)"
PGHOST=127.0.0.1 PGPORT="$PG_PORT" PGUSER=postgres PGDATABASE=postgres PGSSLMODE=disable \
	bin/tombstone proxy --config "$OUT/tombstone.yaml" --listen "127.0.0.1:$PROXY_PORT" \
	--upstream "127.0.0.1:$PG_PORT" >"$OUT/proxy.log" 2>&1 &
PROXY_PID=$!
deadline=$((SECONDS + 30))
until PGCONNECT_TIMEOUT=2 PGSSLMODE=disable "$PGBIN/psql" -X -q -At -h 127.0.0.1 \
	-p "$PROXY_PORT" -U postgres -d postgres -c 'select 1' >/dev/null 2>&1; do
	kill -0 "$PROXY_PID" 2>/dev/null || {
		PROXY_PID=""
		tail -n 20 "$OUT/proxy.log" >&2
		die "the proxy exited during startup"
	}
	[ "$SECONDS" -lt "$deadline" ] || die "the proxy does not answer on 127.0.0.1:$PROXY_PORT after 30s"
	sleep 0.2
done
suite proxy "$PROXY_PORT"
PROXY_RC=$SUITE_RC PROXY_SECS=$SUITE_SECS
kill_pid "$PROXY_PID" 15
PROXY_PID=""
pg_stop "$PGBIN" "$WORK/proxy/pg" fast
cp "$WORK/proxy/postgresql.log" "$OUT/proxy/postgresql.log"

# ---- comparison --------------------------------------------------------

# The tests, in schedule order.
if [ "${#SUBSET[@]}" -gt 0 ]; then
	tests=(test_setup)
	for x in "${SUBSET[@]}"; do [ "$x" = test_setup ] || tests+=("$x"); done
else
	mapfile -t tests < <(awk '$1 == "test:" { for (i = 2; i <= NF; i++) print $i }' "$INPUT/parallel_schedule")
fi

# status NAME TEST: ok, FAILED, "failed (ignored)" or "no result", from pg_regress's log
# ("test x ... ok 12 ms", "     x ... FAILED 12 ms").
status() {
	awk -v t="$2" '($1 == "test" && $2 == t && $3 == "...") { sub(/.*\.\.\. */, ""); sub(/ +[0-9]+ ms$/, ""); print; exit }
		($1 == t && $2 == "...") { sub(/.*\.\.\. */, ""); sub(/ +[0-9]+ ms$/, ""); print; exit }' \
		"$OUT/$1/pg_regress.log" | grep . || echo "no result"
}

same=() differ=() direct_fail=() proxy_fail=()
direct_ok=0 proxy_ok=0
for t in "${tests[@]}"; do
	d="$OUT/direct/results/$t.out" p="$OUT/proxy/results/$t.out"
	ds="$(status direct "$t")" ps="$(status proxy "$t")"
	case "$ds" in ok) direct_ok=$((direct_ok + 1)) ;; FAILED) direct_fail+=("$t") ;; *) direct_fail+=("$t ($ds)") ;; esac
	case "$ps" in ok) proxy_ok=$((proxy_ok + 1)) ;; FAILED) proxy_fail+=("$t") ;; *) proxy_fail+=("$t ($ps)") ;; esac
	if [ -f "$d" ] && [ -f "$p" ] && cmp -s "$d" "$p"; then
		same+=("$t")
		continue
	fi
	differ+=("$t")
	[ -f "$d" ] || d=/dev/null
	[ -f "$p" ] || p=/dev/null
	diff -u --label "direct/results/$t.out" --label "proxy/results/$t.out" "$d" "$p" >"$OUT/diffs/$t.diff" || true
done

names() { # names WORD...: the words space separated, or "none"
	if [ "$#" -eq 0 ]; then printf ' none'; else printf ' %s' "$@"; fi
}

{
	printf 'regress: PostgreSQL %s (package %s), tests of source %s%s\n' \
		"$SERVER_VERSION" "$PKG_VERSION" "$SRC_VERSION" \
		"$([ "$SRC_VERSION" = "$PKG_VERSION" ] || echo ' — VERSION MISMATCH, see the warning above')"
	printf 'regress: fetch+build %ss (%s), proxy build %ss, direct run %ss, proxied run %ss\n' \
		"$FETCH_SECS" "$([ "$FETCHED" = 1 ] && echo fetched || echo cached)" "$BUILD_SECS" "$DIRECT_SECS" "$PROXY_SECS"
	printf 'regress: %d tests, %d identical, %d differ:%s\n' "${#tests[@]}" "${#same[@]}" "${#differ[@]}" \
		"$(names "${differ[@]+"${differ[@]}"}")"
	printf 'regress: direct run vs expected/ (failures here are the environment, not the proxy): %d ok, failed:%s\n' \
		"$direct_ok" "$(names "${direct_fail[@]+"${direct_fail[@]}"}")"
	printf 'regress: proxied run vs expected/: %d ok, failed:%s\n' \
		"$proxy_ok" "$(names "${proxy_fail[@]+"${proxy_fail[@]}"}")"
	printf 'regress: diffs (direct vs proxied) in %s/diffs, proxy log %s/proxy.log\n' "$OUT" "$OUT"
} | tee "$OUT/summary.txt"

broken=0
for r in "direct:$DIRECT_RC" "proxy:$PROXY_RC"; do
	case "${r#*:}" in
	0 | 1) ;;
	124 | 137)
		log "the ${r%%:*} run timed out after ${TIMEOUT}s: the comparison covers what it finished"
		broken=1
		;;
	*)
		log "the ${r%%:*} run did not complete (pg_regress exit ${r#*:}; see $OUT/${r%%:*}/pg_regress.log)"
		broken=1
		;;
	esac
done
if [ "$broken" = 0 ] && [ "${TOMBSTONE_REGRESS_STRICT:-0}" = 1 ] && [ "${#differ[@]}" -gt 0 ]; then
	log "TOMBSTONE_REGRESS_STRICT: differ through the proxy:$(names "${differ[@]}")"
	for t in "${differ[@]}"; do head -n 60 "$OUT/diffs/$t.diff" >&2; done
	exit 3
fi
exit "$broken"
