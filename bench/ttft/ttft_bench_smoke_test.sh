#!/usr/bin/env bash
# Runs the TTFT benchmark on a tiny model at two short lengths and checks that the
# table has one row per length with every mode filled in. No timing assertions.
set -euo pipefail
out="${TEST_TMPDIR:-$(mktemp -d)}/ttft"
bench/ttft/ttft_bench --shape tiny --lengths 256,512 --repeats 1 --out "$out" --tag smoke > "$out.stdout"
rows=$(grep -cE '^\| (2[0-9]{2}|5[0-9]{2}) \|' "$out/ttft_smoke.md")
[[ "$rows" == 2 ]] || { echo "expected 2 rows, got $rows"; cat "$out/ttft_smoke.md"; exit 1; }
if grep -E '^\| [0-9]+ \|' "$out/ttft_smoke.md" | grep -q 'n/a'; then
  echo "a cell is missing"; cat "$out/ttft_smoke.md"; exit 1
fi
lines=$(wc -l < "$out/ttft_smoke.csv")
[[ "$lines" == 9 ]] || { echo "expected 8 CSV rows + header, got $lines lines"; exit 1; }
echo "ttft smoke: ok"
