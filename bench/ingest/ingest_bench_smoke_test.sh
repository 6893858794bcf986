#!/usr/bin/env bash
# Runs ingest_bench briefly and checks its table: a row per encoder count, every passage
# encoded once and none failed (a rerun encoding anything counts as failed). No speed
# assertions: this proves the benchmark runs and its counts add up.
set -euo pipefail

bench="$1"
out="${TEST_TMPDIR:-$(mktemp -d)}/ingest"
mkdir -p "$out"
"$bench" --passages=12 --words=20 --clients=2 --batch=4 --repeats=1 --out "$out" > "$out/stdout.txt"

fail() { echo "FAIL: $*" >&2; cat "$out/stdout.txt" >&2; exit 1; }
[[ -s "$out/ingest.md" ]] || fail "no ingest.md written"
for n in 1 2; do
  grep -qE "^\| $n \| [0-9.]+ \| .* \| 12 \| 0 \|$" "$out/ingest.md" || fail "no good row for $n encoder(s)"
done
[[ $(grep -c '^[12],0,12,' "$out/ingest.csv") == 2 ]] || fail "ingest.csv lacks a run"
echo "PASS"
