#!/bin/bash
# Per-row cost of the batch row's BEFORE INSERT trigger: the function of
# 42962a4 (before the freeze) against HEAD's, interleaved, 20k rows each,
# on the test cluster (scripts/testenv.sh up; PGPORT to use another).
# Run from the repository's root after `make build` (bin/tombstone).
set -e
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-25432} PGUSER=${PGUSER:-postgres}
old=$(mktemp)
trap 'rm -f "$old"' EXIT
git show 42962a4:tombstone/sql/functions_batches.sql | sed -n '/-- _batch_defaults completes/,/^\$\$;/p' \
  | sed 's/FUNCTION tombstone._batch_defaults()/FUNCTION tombstone._batch_defaults_old()/' > "$old"
psql -qX -c "DROP DATABASE IF EXISTS trigbench" -c "CREATE DATABASE trigbench" >/dev/null
"${TOMBSTONE_BIN:-bin/tombstone}" init --dsn "host=$PGHOST port=$PGPORT user=$PGUSER dbname=trigbench sslmode=disable" >/dev/null
export PGDATABASE=trigbench
psql -qX -f "$old" >/dev/null
psql -qX -c "CREATE TABLE t (id int)" >/dev/null
for round in 1 2 3 4 5; do
  for fn in _batch_defaults_old _batch_defaults; do
    psql -qX -c "CREATE OR REPLACE TRIGGER batch_defaults BEFORE INSERT ON tombstone.batches FOR EACH ROW EXECUTE FUNCTION tombstone.$fn()" >/dev/null
    ms=$(psql -qXAt -c "\timing on" -c "INSERT INTO tombstone.batches (sql, tables) SELECT 'x', '{\"public.t\": 1}' FROM generate_series(1, 20000)" | grep -o 'Time: [0-9.]*' | awk '{print $2}')
    echo "round $round $fn ${ms} ms"
  done
done
psql -qX -d postgres -c "DROP DATABASE trigbench" >/dev/null
