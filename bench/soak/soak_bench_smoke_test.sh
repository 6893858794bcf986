#!/usr/bin/env bash
# Runs soak_bench briefly (one store fault) and checks that its tables and the RSS curve
# are written for every service. No memory assertions: this proves the benchmark runs.
set -euo pipefail

bench="$1"
out="${TEST_TMPDIR:-$(mktemp -d)}/soak"
mkdir -p "$out"
"$bench" --requests=150 --clients=3 --fault_every_s=2 --fault_ms=200 --out "$out" > "$out/stdout.txt"

fail() { echo "FAIL: $*" >&2; cat "$out/stdout.txt" >&2; exit 1; }
[[ -s "$out/soak.md" ]] || fail "no soak.md written"
for service in router query_prefill decoder passage_encoder; do
  grep -qF "| $service |" "$out/soak.md" || fail "no row for $service"
  grep -q ",$service," "$out/soak.csv" || fail "no curve for $service"
done
grep -qF "every service exited 0" "$out/soak.md" || fail "a service did not exit cleanly"
echo "PASS"
