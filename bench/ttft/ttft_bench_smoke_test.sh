#!/usr/bin/env bash
# Runs the TTFT benchmark on a tiny model at two short lengths and checks that the
# table has one row per length with every mode filled in. No timing assertions.
# Also: --print_config gives the prompt lengths and the config, and --backend=cuda either
# fails cleanly (no GPU: exit 2 and a message, before any model is written) or, on a
# machine with a GPU, fills the same table.
set -euo pipefail
out="${TEST_TMPDIR:-$(mktemp -d)}/ttft"
bench/ttft/ttft_bench --shape tiny --lengths 256,512 --repeats 1 --out "$out" --tag smoke > "$out.stdout"
main_table() { sed '/^## Where/q' "$1"; }
split_table() { sed -n '/^## Where/,$p' "$1"; }
rows=$(main_table "$out/ttft_smoke.md" | grep -cE '^\| (2[0-9]{2}|5[0-9]{2}) \|')
[[ "$rows" == 2 ]] || { echo "expected 2 rows, got $rows"; cat "$out/ttft_smoke.md"; exit 1; }
# The block-cached breakdown: one row per length, and a CSV with a header and those rows.
rows=$(split_table "$out/ttft_smoke.md" | grep -cE '^\| (2[0-9]{2}|5[0-9]{2}) \| [0-9.]+ \|')
[[ "$rows" == 2 ]] || { echo "expected 2 breakdown rows, got $rows"; cat "$out/ttft_smoke.md"; exit 1; }
[[ $(wc -l < "$out/ttft_smoke_split.csv") == 3 ]] || { echo "bad split CSV"; exit 1; }
grep -q 'fp32 compute on CPU, f32 KV caches' "$out/ttft_smoke.md" || { echo "no KV dtype"; exit 1; }

# bf16 KV caches: the same table, and the header says so.
bench/ttft/ttft_bench --shape tiny --lengths 256 --repeats 1 --kv_dtype bf16 --out "$out" \
  --tag bf16 --modes full,block_cached > /dev/null
grep -q 'fp32 compute on CPU, bf16 KV caches' "$out/ttft_bf16.md" || { echo "bf16: no header"; exit 1; }
main_table "$out/ttft_bf16.md" | grep -qE '^\| 2[0-9]{2} \| [0-9]+ \| [0-9.]+ \(n=1\) \| [0-9.]+ \(n=1\) \|' ||
  { echo "bf16: no timed row"; cat "$out/ttft_bf16.md"; exit 1; }
if grep -E '^\| [0-9]+ \|' "$out/ttft_smoke.md" | grep -q 'n/a'; then
  echo "a cell is missing"; cat "$out/ttft_smoke.md"; exit 1
fi
lines=$(wc -l < "$out/ttft_smoke.csv")
[[ "$lines" == 9 ]] || { echo "expected 8 CSV rows + header, got $lines lines"; exit 1; }

bench/ttft/ttft_bench --shape small --lengths 512,1024 --print_config > "$out.json"
grep -q '"prompt_tokens": \[500, 950\]' "$out.json" || { echo "bad --print_config"; cat "$out.json"; exit 1; }
grep -q '"hidden_size": 256' "$out.json" || { echo "bad --print_config"; cat "$out.json"; exit 1; }

set +e
bench/ttft/ttft_bench --backend=cuda --shape tiny --lengths 256 --repeats 1 --out "$out/cuda" \
  --tag smoke > "$out.cuda.stdout" 2> "$out.cuda.stderr"
rc=$?
set -e
if [[ $rc == 0 ]]; then  # a GPU: the CUDA backend ran
  grep -q '^Backend: cuda' "$out/cuda/ttft_smoke.md" || { echo "no backend line"; exit 1; }
  rows=$(grep -E '^\| [0-9]+ \|' "$out/cuda/ttft_smoke.md" | grep -vc 'n/a' || true)
  [[ "$rows" == 1 ]] || { echo "cuda: expected 1 full row"; cat "$out/cuda/ttft_smoke.md"; exit 1; }
  echo "ttft smoke: --backend=cuda ran on a GPU"
else
  [[ $rc == 2 ]] || { echo "--backend=cuda: exit $rc, want 2"; cat "$out.cuda.stderr"; exit 1; }
  grep -q 'needs CUDA device 0, but 0 CUDA device(s) were found' "$out.cuda.stderr" ||
    { echo "--backend=cuda: unclear failure"; cat "$out.cuda.stderr"; exit 1; }
  [[ ! -e "$out/cuda" ]] || { echo "--backend=cuda wrote results without a GPU"; exit 1; }
  echo "ttft smoke: --backend=cuda fails cleanly without a GPU"
fi
grep -q '^Backend: cpu.$' "$out/ttft_smoke.md" || { echo "no backend line"; exit 1; }
echo "ttft smoke: ok"
