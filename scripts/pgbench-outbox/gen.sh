#!/usr/bin/env bash
# Writes insert100.sql: one 100-row INSERT into pulsebus.outbox with the
# same values BenchmarkInsertTx (pkg/outbox/bench_test.go) sends: a
# UUID-shaped id, new in every run (event ids are unique in the outbox: 48
# random bits per run and the row number), key course-NNNNNN, type
# lesson.published, source lesson-service, no subject, application/json,
# meta {"tenant":"acme"} and the same ~90-byte JSON payload. pgbench runs
# it as one transaction per script run.
set -euo pipefail
cd "$(dirname "$0")"
rows=${ROWS:-100}
{
  printf '\\set hi random(0, 4294967295)\n\\set lo random(0, 65535)\n'
  printf 'INSERT INTO pulsebus.outbox (event_id, topic, key, type, source, subject, event_time, content_type, meta, payload) VALUES\n'
  for ((i = 0; i < rows; i++)); do
    payload=$(printf '{"lesson_id":"lesson-%06d","title":"Fractions and decimals: a first look at place value (part 1)"}' "$i")
    hex=$(printf '%s' "$payload" | od -An -tx1 | tr -d ' \n')
    sep=','
    ((i == rows - 1)) && sep=';'
    printf "((lpad(to_hex(:hi), 8, '0') || '-' || lpad(to_hex(:lo), 4, '0') || '-7abc-8def-%012x')::uuid, 'lessons', 'course-%06d', 'lesson.published', 'lesson-service', '', '2026-11-25 06:30:00.123456+00', 'application/json', '{\"tenant\": \"acme\"}', '\\\\x%s')%s\n" \
      "$i" "$i" "$hex" "$sep"
  done
} > insert100.sql
# The same with explicit BEGIN/COMMIT: three round trips, as pgx's
# Begin/InsertTx/Commit in the Go benchmark.
{ echo 'BEGIN;'; cat insert100.sql; echo 'COMMIT;'; } > insert100_tx.sql
