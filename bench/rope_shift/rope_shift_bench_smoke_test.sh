#!/usr/bin/env bash
# Runs the RoPE shift benchmark at one short length and checks its table and CSV: one
# row per KV shape and dtype, every variant timed. No timing assertions.
set -euo pipefail
bench=$1
out="${TEST_TMPDIR:-$(mktemp -d)}/rope"
"$bench" --tokens 300 --repeats 1 --out "$out" --tag smoke > "$out.stdout"
rows=$(grep -cE '^\| .* \| (F32|BF16) \| 300 \| [0-9]+ \| [0-9.]+ \| [0-9.]+ \| [0-9.]+ \|' "$out/smoke.md")
[[ "$rows" == 4 ]] || { echo "expected 4 rows, got $rows"; cat "$out/smoke.md"; exit 1; }
lines=$(wc -l < "$out/smoke.csv")
[[ "$lines" == 13 ]] || { echo "expected 12 CSV rows + header, got $lines lines"; exit 1; }
grep -q '^Cached blocks of 150 tokens' "$out/smoke.md" || { echo "no header"; exit 1; }
"$bench" --tokens 0 > /dev/null 2>&1 && { echo "--tokens 0 accepted"; exit 1; }
echo "rope shift smoke: ok"
