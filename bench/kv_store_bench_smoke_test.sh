#!/usr/bin/env bash
# Runs kv_store_bench --quick and checks that its table and CSV have every expected row.
# No timing assertions: this only proves the benchmark runs end to end.
set -euo pipefail

bench="$1"
out="${TEST_TMPDIR:-$(mktemp -d)}/kv_store_bench"
mkdir -p "$out"
"$bench" --quick --out "$out" > "$out/stdout.txt"

fail() { echo "FAIL: $*" >&2; cat "$out/stdout.txt" >&2; exit 1; }

[[ -s "$out/kv_store_bench.md" ]] || fail "no kv_store_bench.md written"
[[ -s "$out/kv_store_bench.csv" ]] || fail "no kv_store_bench.csv written"
cmp -s "$out/stdout.txt" "$out/kv_store_bench.md" || fail "printed table differs from kv_store_bench.md"

for dtype in bf16 f32; do
  for store in "memcpy (ceiling)" "streaming-store copy (engine::CopyBypassingCache)" \
               "checksum only (old Hash64 as put / new XXH3 as get)" \
               "codec only (encode / decode)" "shm" "shm GetInto stored-dtype buffer (one copy)" \
               "redis" "redis GetMany x8" \
               "redis-benchmark -c 1 (anchor; GB/s of all clients)" \
               "redis-benchmark -c 4 (anchor; GB/s of all clients)" \
               "tiered (write-through put, local-hit get)" "tiered (remote hit + promote)"; do
    grep -qF "| $store | $dtype | 8 |" "$out/kv_store_bench.md" || fail "no row for '$store' $dtype"
  done
done

rows=$(tail -n +2 "$out/kv_store_bench.csv" | wc -l)
# Per dtype: 9 table rows with put and get (memcpy, streaming copy, checksum, codec, shm,
# redis, two redis-benchmark, tiered), 3 (shm GetInto, GetMany, tiered remote) with get
# only.
[[ "$rows" -eq 42 ]] || fail "expected 42 CSV rows, found $rows"
head -1 "$out/kv_store_bench.csv" | grep -q '^store,dtype,tokens,value_bytes,blocks_per_call,op,reps,median_gbps' \
  || fail "unexpected CSV header"
echo "PASS"
