#!/usr/bin/env bash
# `make test`: install deps, start the throwaway PostgreSQL + Redis, run
# go vet and go test against them, and always tear the env down.
# Exits with go test's exit code (or go vet's, if vet fails).
#
# env vars:
#   TEST_PKGS      packages to test        (default ./...)
#   TEST_TIMEOUT   go test -timeout        (default 20m)
#   GOTESTFLAGS    extra go test flags, word-split (e.g. "-v -run TestProxy")
#   SKIP_VET=1     skip go vet
#   RACE_PKGS      packages run again under the race detector afterwards
#                  (default ./proxy/ ./test/, the concurrent ones; empty: none)
#   plus testenv.sh's TOMBSTONE_TEST_PG_PORT / TOMBSTONE_TEST_REDIS_PORT
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

with_testenv

pkgs="${TEST_PKGS:-./...}"
# shellcheck disable=SC2206 # word splitting is the point
extra=(${GOTESTFLAGS:-})

if [ "${SKIP_VET:-0}" != 1 ]; then
	log "go vet $pkgs"
	go vet "$pkgs"
fi

log "go test -count=1 -timeout ${TEST_TIMEOUT:-20m} ${extra[*]+"${extra[*]}"} $pkgs"
rc=0
go test -count=1 -timeout "${TEST_TIMEOUT:-20m}" ${extra[@]+"${extra[@]}"} "$pkgs" || rc=$?
# The proxy's two pumps, its event loop and its shutdown share state: run
# their tests again under the race detector.
# shellcheck disable=SC2206 # word splitting is the point
race=(${RACE_PKGS-./proxy/ ./test/})
if [ "$rc" = 0 ] && [ "${#race[@]}" -gt 0 ]; then
	log "go test -race -count=1 ${race[*]}"
	go test -race -count=1 -timeout "${TEST_TIMEOUT:-20m}" ${extra[@]+"${extra[@]}"} "${race[@]}" || rc=$?
fi
exit "$rc"
