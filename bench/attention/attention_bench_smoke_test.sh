#!/usr/bin/env bash
# Runs attention_bench on tiny sizes and checks its files: a Markdown row and a CSV row per
# cell, every number in the CSV parses and times and rates are positive. No speed
# assertions: this proves the benchmark runs and writes what it claims.
set -euo pipefail

bench="$1"
out="${TEST_TMPDIR:-$(mktemp -d)}/attention"
mkdir -p "$out"
"$bench" --shapes=small,llama8b --prefill=40 --query_past=70 --query_rows=5 --decode_past=130 \
  --repeats=2 --out "$out" --tag=smoke > "$out/stdout.txt"

fail() { echo "FAIL: $*" >&2; cat "$out/stdout.txt" >&2; exit 1; }
[[ -s "$out/smoke.md" ]] || fail "no smoke.md written"
[[ -s "$out/smoke.csv" ]] || fail "no smoke.csv written"
for shape in small llama8b; do
  grep -qE "^\| $shape \| prefill \| 40 \| 0 \| 40 \| [0-9.]+ \([0-9.]+-[0-9.]+\) \| 2 \|" "$out/smoke.md" ||
    fail "no prefill row for $shape"
  grep -qE "^\| $shape \| query \| 5 \| 70 \| 75 \|" "$out/smoke.md" || fail "no query row for $shape"
  grep -qE "^\| $shape \| decode \| 1 \| 130 \| 131 \|" "$out/smoke.md" || fail "no decode row for $shape"
done
# Header plus 6 rows; columns 9.. (times, runs, flops, rates) are positive numbers.
[[ $(wc -l < "$out/smoke.csv") == 7 ]] || fail "smoke.csv should have 6 rows"
awk -F, 'NR > 1 { if (NF != 16) exit 1; for (i = 9; i <= 16; ++i) if (!($i + 0 > 0)) exit 1 }' \
  "$out/smoke.csv" || fail "smoke.csv has a malformed or non-positive field"
# The bf16 K/V overload runs through the same table.
"$bench" --shapes=small --prefill=40 --query_past=70 --query_rows=5 --decode_past=130 \
  --repeats=1 --kv=bf16 --out "$out" --tag=smoke_bf16 > "$out/stdout.txt"
grep -q "K/V in bf16" "$out/smoke_bf16.md" || fail "smoke_bf16.md does not say bf16"
[[ $(wc -l < "$out/smoke_bf16.csv") == 4 ]] || fail "smoke_bf16.csv should have 3 rows"
echo "PASS"
