#!/usr/bin/env bash
# Runs tls_overhead_bench on a tiny workload and checks that its table and CSV have
# every row. No timing assertions: this only proves the benchmark runs end to end.
set -euo pipefail

bench="$1"
out="${TEST_TMPDIR:-$(mktemp -d)}/tls_overhead"
mkdir -p "$out"
"$bench" --repeats=1 --passages=2 --handoff_tokens=64 --out "$out" > "$out/stdout.txt"

fail() { echo "FAIL: $*" >&2; cat "$out/stdout.txt" >&2; exit 1; }
[[ -s "$out/tls_overhead.md" ]] || fail "no tls_overhead.md written"
[[ -s "$out/tls_overhead.csv" ]] || fail "no tls_overhead.csv written"
for row in "TTFT at the router, ms" "TTFT at the client, ms" "handoff time, ms" \
           "handoff throughput, MB/s"; do
  grep -qF "| $row |" "$out/tls_overhead.md" || fail "no row '$row'"
done
[[ $(tail -n +2 "$out/tls_overhead.csv" | wc -l) -eq 8 ]] || fail "expected 8 CSV rows"
echo "PASS"
