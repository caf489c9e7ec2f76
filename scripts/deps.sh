#!/usr/bin/env bash
# Installs, only when missing, what tombstone's tests, `make run` and
# `make bench` need from Debian packages:
#   postgresql (server: pg_ctl, initdb, postgres, pgbench), postgresql-client
#   (psql, pg_isready), redis-server (+ redis-cli), openssl, iproute2 (ss);
#   with --bench also pgbouncer; and the OS locale de_DE.UTF-8 (package
#   locales, /etc/locale.gen, locale-gen), which the language test sets
#   lc_messages to (Postgres accepts only a locale the OS has).
# apt-get update/install run only when something is missing. Silent when all
# is present. Services installed here are not started (policy-rc.d guard).
#
# usage: scripts/deps.sh [--bench]
#   DEPS_DRY_RUN=1  only print what would be installed
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"

bench=0
for a in "$@"; do
	case "$a" in
	--bench) bench=1 ;;
	-h | --help)
		sed -n '2,13p' "$0"
		exit 0
		;;
	*) die "unknown argument: $a" ;;
	esac
done

missing=()
need() { # need PACKAGE: add once
	local p
	for p in "${missing[@]+"${missing[@]}"}"; do [ "$p" = "$1" ] && return 0; done
	missing+=("$1")
}

bindir="$(pg_bindir || true)"
if [ -z "$bindir" ] || [ ! -x "$bindir/postgres" ] || [ ! -x "$bindir/pgbench" ]; then
	need postgresql
fi
if [ -z "$bindir" ] || [ ! -x "$bindir/psql" ] || [ ! -x "$bindir/pg_isready" ]; then
	need postgresql-client
fi
command -v redis-server >/dev/null 2>&1 || need redis-server
command -v redis-cli >/dev/null 2>&1 || need redis-tools
command -v openssl >/dev/null 2>&1 || need openssl
command -v ss >/dev/null 2>&1 || need iproute2
command -v runuser >/dev/null 2>&1 || need util-linux
# pg_query is C, built through cgo (and -race needs cgo too).
command -v gcc >/dev/null 2>&1 || need gcc
command -v make >/dev/null 2>&1 || need make
if [ "$bench" -eq 1 ]; then
	command -v pgbouncer >/dev/null 2>&1 || need pgbouncer
fi
# test/language_test.go runs the proxy's repairs under a German lc_messages.
TEST_LOCALE=de_DE.UTF-8
has_test_locale() { locale -a 2>/dev/null | grep -qix 'de_DE\.utf-\?8'; }
gen_locale=0
if ! has_test_locale; then
	gen_locale=1
	command -v locale-gen >/dev/null 2>&1 || need locales
fi

if [ "${DEPS_DRY_RUN:-0}" = 1 ] && { [ "${#missing[@]}" -gt 0 ] || [ "$gen_locale" -eq 1 ]; }; then
	[ "${#missing[@]}" -eq 0 ] || echo "would install: ${missing[*]}"
	[ "$gen_locale" -eq 0 ] || echo "would generate the locale $TEST_LOCALE"
	exit 0
fi
sudo_cmd=()
if { [ "${#missing[@]}" -gt 0 ] || [ "$gen_locale" -eq 1 ]; } && ! is_root; then
	command -v sudo >/dev/null 2>&1 || die "not root and no sudo: install ${missing[*]-} (and the locale $TEST_LOCALE) by hand"
	sudo_cmd=(sudo)
fi
if [ "${#missing[@]}" -gt 0 ]; then
	log "installing missing packages: ${missing[*]}"
	command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install ${missing[*]} by hand"
	# Keep Debian's maintainer scripts from starting system services (a stray
	# cluster on 5432 or a pgbouncer on 6432) while installing.
	guard=""
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		guard=/usr/sbin/policy-rc.d
		printf '#!/bin/sh\nexit 101\n' | "${sudo_cmd[@]+"${sudo_cmd[@]}"}" tee "$guard" >/dev/null
		"${sudo_cmd[@]+"${sudo_cmd[@]}"}" chmod 0755 "$guard"
		# shellcheck disable=SC2064
		trap "${sudo_cmd[*]} rm -f '$guard'" EXIT
	fi
	export DEBIAN_FRONTEND=noninteractive
	"${sudo_cmd[@]+"${sudo_cmd[@]}"}" apt-get update -qq >/dev/null
	"${sudo_cmd[@]+"${sudo_cmd[@]}"}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ "$gen_locale" -eq 1 ]; then
	log "generating the locale $TEST_LOCALE"
	# Enable it in /etc/locale.gen (commented out, or absent) and build it.
	if grep -qx "# *$TEST_LOCALE UTF-8" /etc/locale.gen 2>/dev/null; then
		"${sudo_cmd[@]+"${sudo_cmd[@]}"}" sed -i "s/^# *\($TEST_LOCALE UTF-8\)\$/\1/" /etc/locale.gen
	elif ! grep -qx "$TEST_LOCALE UTF-8" /etc/locale.gen 2>/dev/null; then
		echo "$TEST_LOCALE UTF-8" | "${sudo_cmd[@]+"${sudo_cmd[@]}"}" tee -a /etc/locale.gen >/dev/null
	fi
	"${sudo_cmd[@]+"${sudo_cmd[@]}"}" locale-gen >/dev/null
fi

# Verify.
bindir="$(pg_bindir)" || die "no PostgreSQL server found under /usr/lib/postgresql/*/bin after install"
for t in postgres pg_ctl initdb psql pg_isready pgbench; do
	[ -x "$bindir/$t" ] || die "$bindir/$t missing"
done
for t in redis-server redis-cli openssl ss runuser; do
	command -v "$t" >/dev/null 2>&1 || die "$t missing after install"
done
if [ "$bench" -eq 1 ]; then
	command -v pgbouncer >/dev/null 2>&1 || die "pgbouncer missing after install"
fi
has_test_locale || die "the locale $TEST_LOCALE is missing after locale-gen"
if is_root; then
	id postgres >/dev/null 2>&1 || die "OS user 'postgres' does not exist (it comes with the postgresql package)"
fi
if [ "${#missing[@]}" -gt 0 ]; then
	log "ok: PostgreSQL in $bindir"
fi
