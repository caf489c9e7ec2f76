#!/usr/bin/env bash
# `make soak`: the differential restore tester (TestRestoreModel in
# test/restore_model_test.go) with random seeds and bigger rounds, run after
# run for SOAK_TIME seconds. Starts the throwaway PostgreSQL + Redis as
# scripts/test.sh does (and always tears them down); stops at the first
# failing run and prints its seed, its violations and the command that
# replays it. Exits 1 on a failure, 0 when time ran out without one.
#
# env vars:
#   SOAK_TIME                 seconds to keep starting runs (default 600)
#   SOAK_SEED                 seed of the first run (default random); each
#                             run's rounds use seed, seed+1, …; the next run
#                             starts after them
#   TOMBSTONE_RESTORE_ROUNDS  schemas per run (default 4)
#   TOMBSTONE_RESTORE_STEPS   steps per schema (default 300)
#   plus testenv.sh's TOMBSTONE_TEST_PG_PORT / TOMBSTONE_TEST_REDIS_PORT
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

soak="${SOAK_TIME:-600}"
rounds="${TOMBSTONE_RESTORE_ROUNDS:-4}"
steps="${TOMBSTONE_RESTORE_STEPS:-300}"
seed="${SOAK_SEED:-$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')}"
log "soak for ${soak}s, first seed $seed ($rounds rounds of $steps steps per run)"

with_testenv

out="$(mktemp "${TMPDIR:-/tmp}/tombstone-soak.XXXXXX")"
end=$((SECONDS + soak))
runs=0
while [ "$SECONDS" -lt "$end" ]; do
	log "run $((runs + 1)): seed $seed"
	if ! TOMBSTONE_RESTORE_SEED="$seed" TOMBSTONE_RESTORE_ROUNDS="$rounds" TOMBSTONE_RESTORE_STEPS="$steps" \
		go test -count=1 -timeout 60m -run '^TestRestoreModel$' ./test/ >"$out" 2>&1; then
		grep -E 'VIOLATION \[|replay:|panic|Error Trace|Error:' "$out" | grep -v 'VIOLATION (again)' >&2 || tail -n 40 "$out" >&2
		log "FAILED at seed $seed (run $((runs + 1)), ${SECONDS}s); full log: $out"
		log "replay: TOMBSTONE_RESTORE_SEED=$seed TOMBSTONE_RESTORE_ROUNDS=$rounds TOMBSTONE_RESTORE_STEPS=$steps go test -count=1 -run TestRestoreModel -v ./test/"
		exit 1
	fi
	runs=$((runs + 1))
	seed=$((seed + rounds))
done
rm -f "$out"
log "no failure in $runs run(s) of $rounds rounds × $steps steps (${SECONDS}s)"
