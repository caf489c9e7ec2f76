#!/usr/bin/env bash
# `make fuzz`: run every Go fuzz target (func FuzzXxx in *_test.go) for a
# short time, one after the other. New crashers land in testdata/fuzz/ of
# the package (commit them: they become regression tests).
#
# env vars:
#   FUZZTIME   -fuzztime per target (default 30s)
#   FUZZ_MATCH only targets whose name matches this extended regexp (default: all)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

fuzztime="${FUZZTIME:-30s}"
match="${FUZZ_MATCH:-.}"
targets="$(grep -rn --include='*_test.go' -E '^func Fuzz[A-Za-z0-9_]*\(' . |
	sed -E 's#^\./##; s#^([^:]*):[0-9]+:func (Fuzz[A-Za-z0-9_]*)\(.*#\1 \2#' |
	grep -E " .*${match}" | sort -u || true)"
if [ -z "$targets" ]; then
	log "no fuzz targets found"
	exit 0
fi

failed=()
n=0
while read -r file name; do
	[ -n "$file" ] || continue
	pkg="./$(dirname "$file")"
	n=$((n + 1))
	log "fuzz $name in $pkg for $fuzztime"
	if ! go test -run='^$' -fuzz="^${name}\$" -fuzztime="$fuzztime" "$pkg"; then
		failed+=("$pkg:$name")
	fi
done <<<"$targets"

if [ "${#failed[@]}" -gt 0 ]; then
	die "fuzz targets failed (${#failed[@]}/$n): ${failed[*]}"
fi
log "all $n fuzz targets ran for $fuzztime without failures"
