#!/usr/bin/env bash
# The GPU TTFT table in one command, on a machine with an NVIDIA GPU (H100/H200: the CUDA
# code is built for sm_90 plus compute_80 PTX), CUDA at $CUDA_PATH, Bazel, and a python3
# with PyTorch (CUDA build):
#
#   bench/ttft/run_gpu.sh            # = build shape bench peer merge
#
# 1. build  bazel build -c opt //bench/ttft:ttft_bench
# 2. shape  ttft_bench --print_config: the model config and prompt lengths, as JSON, for
#           the peer (one source of truth for the shape)      -> ttft_<S>_shape.json
# 3. bench  ttft_bench --backend=cuda: full prefill, block-attention with cached and with
#           uncached passages, query alone                    -> ttft_<S>_cuda.{md,csv}
# 4. peer   pytorch_peer.py --device cuda: PyTorch's own full prefill of the same shape,
#           bf16, at the same token counts                    -> ttft_<S>_pytorch.{md,csv}
# 5. merge  merge_gpu_table.py: the table                     -> ttft_<S>_gpu.{md,csv}
# (<S> = $SHAPE; files under $OUT.) Steps can be run one at a time, in this order, e.g.
# `run_gpu.sh build shape` then `run_gpu.sh bench`: a machine that limits one command to
# 10 minutes needs that (writing the random 8B model alone takes minutes). A failed bench
# or peer step does not stop the others; the script exits non-zero if any step failed.
#
# Settings (environment): SHAPE (llama3-8b), LENGTHS (512,2048,8192,32768), REPEATS (3),
# WARMUP (1 untimed run per cell), MAX_CELL_SECONDS (60), OUT (bench/results),
# CUDA_PATH (/usr/local/cuda), PYTHON (first of python3, /usr/bin/python3 with torch),
# TTFT_BENCH (a prebuilt ttft_bench: skips the build; build it with -c opt).
#
# Needs on the host: ~50 GB of RAM (the random model is written from fp32 and loaded as
# fp32 before the bf16 upload; cached passage KV is host memory, ~8 GB at 32K tokens) and
# ~16 GB free under $TMPDIR (/tmp) for the bf16 model folder.
#
# STATUS: never run. The CUDA backend has never run on a GPU (engine/cuda/README.md), so
# expect the bench step to be the first real test of it; the peer and the merge have run
# on the CPU only (small shape), see bench/ttft/README.md.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1

SHAPE=${SHAPE:-llama3-8b}
LENGTHS=${LENGTHS:-512,2048,8192,32768}
REPEATS=${REPEATS:-3}
WARMUP=${WARMUP:-1}
MAX_CELL_SECONDS=${MAX_CELL_SECONDS:-60}
OUT=${OUT:-bench/results}
CUDA_PATH=${CUDA_PATH:-/usr/local/cuda}
BIN=${TTFT_BENCH:-bazel-bin/bench/ttft/ttft_bench}
SHAPE_JSON="$OUT/ttft_${SHAPE}_shape.json"
BENCH_TAG="${SHAPE}_cuda" PEER_TAG="${SHAPE}_pytorch"

steps=("$@")
((${#steps[@]})) || steps=(build shape bench peer merge)

pick_python() {
  for py in ${PYTHON:-} python3 /usr/bin/python3; do
    if command -v "$py" > /dev/null && "$py" -c "import torch" 2> /dev/null; then
      echo "$py"
      return 0
    fi
  done
  echo "run_gpu: no python3 with torch found (set PYTHON)" >&2
  return 1
}

say() { echo "== run_gpu: $* ($(date -u +%H:%M:%S) UTC)"; }
failed=()
mkdir -p "$OUT"
if command -v nvidia-smi > /dev/null; then
  nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv,noheader
else
  echo "run_gpu: nvidia-smi not found; the bench and peer steps need a GPU"
fi

for step in "${steps[@]}"; do
  case "$step" in
    build)
      if [[ -n ${TTFT_BENCH:-} ]]; then
        say "build skipped (TTFT_BENCH=$TTFT_BENCH)"
        continue
      fi
      say "build"
      bazel build -c opt --define=CUDA_PATH="$CUDA_PATH" //bench/ttft:ttft_bench || {
        echo "run_gpu: build failed"; exit 1; }
      ;;
    shape)
      say "shape -> $SHAPE_JSON"
      "$BIN" --shape "$SHAPE" --lengths "$LENGTHS" --print_config > "$SHAPE_JSON" || {
        echo "run_gpu: ttft_bench --print_config failed"; exit 1; }
      ;;
    bench)
      say "bench -> $OUT/ttft_${BENCH_TAG}.{md,csv}"
      rm -f "$OUT/ttft_${BENCH_TAG}.md" "$OUT/ttft_${BENCH_TAG}.csv"  # never merge stale rows
      "$BIN" --backend=cuda --shape "$SHAPE" --lengths "$LENGTHS" --repeats "$REPEATS" \
        --warmup "$WARMUP" --max_cell_seconds "$MAX_CELL_SECONDS" --out "$OUT" \
        --tag "$BENCH_TAG" || { echo "run_gpu: the bench step failed"; failed+=(bench); }
      ;;
    peer)
      say "peer -> $OUT/ttft_${PEER_TAG}.{md,csv}"
      [[ -f $SHAPE_JSON ]] || { echo "run_gpu: run the shape step first"; exit 1; }
      py=$(pick_python) || exit 1
      rm -f "$OUT/ttft_${PEER_TAG}.md" "$OUT/ttft_${PEER_TAG}.csv"
      if ! "$py" bench/ttft/pytorch_peer.py --self_test --device cuda; then
        echo "run_gpu: the peer's self-test failed"; failed+=(peer)
      elif ! "$py" bench/ttft/pytorch_peer.py --shape_json "$SHAPE_JSON" --device cuda \
          --warmup "$((WARMUP > 0 ? WARMUP : 1))" --repeats "$REPEATS" \
          --max_cell_seconds "$MAX_CELL_SECONDS" --out "$OUT" --tag "$PEER_TAG"; then
        echo "run_gpu: the peer step failed"; failed+=(peer)
      fi
      ;;
    merge)
      say "merge -> $OUT/ttft_${SHAPE}_gpu.md"
      py=$(pick_python) || py=python3  # the merge needs no torch
      "$py" bench/ttft/merge_gpu_table.py --bench "$OUT/ttft_${BENCH_TAG}.csv" \
        --peer "$OUT/ttft_${PEER_TAG}.csv" --out "$OUT/ttft_${SHAPE}_gpu.md" \
        --title "TTFT on the GPU: BlockServe (CUDA backend) vs PyTorch prefill, ${SHAPE} shape" ||
        { echo "run_gpu: the merge step failed (are both CSVs there?)"; failed+=(merge); }
      ;;
    *)
      echo "run_gpu: unknown step '$step' (build shape bench peer merge)"
      exit 2
      ;;
  esac
done

if ((${#failed[@]})); then
  echo "run_gpu: FAILED: ${failed[*]}"
  exit 1
fi
say "done"
