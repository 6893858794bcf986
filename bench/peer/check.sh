#!/usr/bin/env bash
# Checks that llama.cpp (node-llama-cpp 3.21.1's prebuilt CPU binary, pinned by
# package-lock.json; scripts/setup.sh runs `npm ci` here) computes the same model as the
# engine from the GGUF that hf_to_gguf writes, so bench/peer's timings compare the same
# computation. Each check runs logits_check.mjs: for prompts of several lengths, the last
# position's log-probabilities from llama.cpp and from the engine (engine/logits, full
# prefill) must agree (max abs difference below the tolerance) with the same argmax.
#   rag_f32            models/blockserve-tiny-rag (trained, tied embeddings), F32 weights
#                      and KV, flash attention off; tolerance 1e-2
#   rag_f32_flash      the same with flash attention on; tolerance 5e-2: llama.cpp's CPU
#                      flash-attention path is less exact (measured 1.4e-2 at 7 tokens,
#                      the size of the F16-weight differences, against ~2e-5 without it)
#   small_f32          a random model of ttft_bench's "small" shape (GQA 8/2, head_dim 32)
#   small_f16          the same with F16 weights and F16 KV (the benchmark's F16 rows);
#                      tolerance 0.1 (fp16 rounding gives ~1-2e-2)
#   offline            rag_f32 again inside a network namespace with no network at all
#                      (unshare -rn): node-llama-cpp neither downloads nor builds anything
#   unpermuted_fails   a GGUF written WITHOUT the q/k row permutation must fail rag_f32's
#                      comparison: the check can catch a wrong RoPE layout
# Prints one line per check in Bazel's form ("//bench/peer:NAME PASSED in 1.2s"); exit
# code 1 if any check failed.
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
here=$repo/bench/peer
CHECK_LABEL=//bench/peer
CHECK_SHOW=6
# shellcheck source=scripts/check_lib.sh
source "$repo/scripts/check_lib.sh"

if ! command -v node > /dev/null || [[ ! -d $here/node_modules/@node-llama-cpp/linux-x64 ]]; then
  echo "bench/peer: missing node or bench/peer/node_modules: run scripts/setup.sh"
  result tools "$(now_ms)" FAILED
  exit 1
fi
start=$(now_ms)
if ! (cd "$repo" && bazel build //bench/peer:hf_to_gguf //engine:logits //engine:make_tiny_model \
    > "$work/build" 2>&1); then
  tail -30 "$work/build"
  result build "$start" FAILED
  exit 1
fi
bin=$(cd "$repo" && bazel info bazel-bin 2> /dev/null)
rag=$repo/models/blockserve-tiny-rag
# ttft_bench --shape small (bench/ttft/ttft_bench.cc ShapeOptions), shorter max positions.
"$bin/engine/make_tiny_model" --out "$work/small" --hidden_size 256 --intermediate_size 768 \
  --layers 4 --heads 8 --kv_heads 2 --max_positions 4096 > /dev/null 2>&1
convert() { "$bin/bench/peer/hf_to_gguf" --model "$1" --out "$2" "${@:3}" > /dev/null 2>&1; }
convert "$rag" "$work/rag_f32.gguf" --type f32
convert "$rag" "$work/rag_unpermuted.gguf" --type f32 --permute_qk=false
convert "$work/small" "$work/small_f32.gguf" --type f32
convert "$work/small" "$work/small_f16.gguf" --type f16

compare() {  # MODEL_DIR GGUF [MORE FLAGS]
  (cd "$here" && node logits_check.mjs --logits_bin="$bin/engine/logits" --model_dir="$1" \
    --gguf="$2" "${@:3}")
}
fails() { ! "$@"; }

check rag_f32 compare "$rag" "$work/rag_f32.gguf" --lengths=1,7,64,500
check rag_f32_flash compare "$rag" "$work/rag_f32.gguf" --lengths=7,500 --flash=on --tolerance=0.05
check small_f32 compare "$work/small" "$work/small_f32.gguf" --lengths=7,64,500,1500
check small_f16 compare "$work/small" "$work/small_f16.gguf" --lengths=7,500 --kv=F16 --tolerance=0.1
if unshare -rn true 2> /dev/null; then
  check offline unshare -rn bash -c "$(declare -f compare); here=$here bin=$bin; \
    compare $rag $work/rag_f32.gguf --lengths=7"
else
  echo "    unshare -rn is not permitted here: offline use not checked"
  result offline "$(now_ms)" SKIPPED
fi
check unpermuted_fails fails compare "$rag" "$work/rag_unpermuted.gguf" --lengths=7,64
exit "$failed"
