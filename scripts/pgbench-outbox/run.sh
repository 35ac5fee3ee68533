#!/usr/bin/env bash
# Raw multi-row INSERT rate into pulsebus.outbox with pgbench, for comparison
# with BenchmarkInsertTx/events=100. Creates a scratch database on the
# server of TEST_DATABASE_URL, applies sql/*.up.sql, runs each script for
# DURATION seconds at 1 and 4 clients, prints rows/s, and drops the database.
#
#   scripts/pgbench-outbox/run.sh            # DURATION=20 CLIENTS="1 4"
set -euo pipefail
cd "$(dirname "$0")"
server=${TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}
duration=${DURATION:-20}
clients=${CLIENTS:-1 4}
db=pulsebus_pgbench_$$
base=${server%%\?*}
base=${base%/*}
query=""
[[ $server == *\?* ]] && query="?${server#*\?}"
url="$base/$db$query"

./gen.sh
psql "$server" -v ON_ERROR_STOP=1 -qc "CREATE DATABASE $db"
trap 'psql "$server" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)"' EXIT
for f in $(ls ../../sql/*.up.sql | sort); do
  psql "$url" -v ON_ERROR_STOP=1 -q -f "$f"
done
psql "$url" -qc 'VACUUM ANALYZE'

for script in insert100.sql insert100_tx.sql; do
  for c in $clients; do
    psql "$url" -qc 'TRUNCATE pulsebus.outbox; CHECKPOINT'
    echo "==> pgbench -n -c $c -j $c -T $duration -f $script"
    out=$(pgbench -n -c "$c" -j "$c" -T "$duration" -f "$script" "$url" 2>&1)
    echo "$out" | grep -E '^(number of transactions actually processed|latency average|tps)'
    tps=$(echo "$out" | sed -nE 's/^tps = ([0-9.]+).*/\1/p')
    rows=$(psql "$url" -Atc 'SELECT count(*) FROM pulsebus.outbox')
    awk -v t="$tps" -v r="$rows" -v d="$duration" -v c="$c" -v s="$script" \
      'BEGIN { printf "RESULT %s clients=%d: %.0f rows/s (tps %.1f x 100; %d rows in %ds)\n", s, c, t * 100, t, r, d }'
  done
done
