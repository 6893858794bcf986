#!/usr/bin/env bash
# Builds and runs the GPU tests: the CUDA kernels against their CPU twins, the engine's
# exactness checks on the CUDA backend, the GPU block cache, and the NCCL KV transfer
# (which skips unless the machine has >= 2 GPUs). These are tagged "manual" and "gpu",
# so `bazel test //...` (CI, no GPU) never runs them; CI only compiles them.
#
# Needs: a CUDA GPU (compute capability >= 8.0; native code for sm_90), CUDA 13 with
# cuBLAS and NCCL at $CUDA_PATH (default /usr/local/cuda).
# Usage: scripts/gpu_test.sh [extra bazel flags]
set -uo pipefail
cd "$(dirname "$0")/.."
CUDA_PATH=${CUDA_PATH:-/usr/local/cuda}

TESTS=(
  //engine/cuda:kernels_test
  //engine/cuda:gpu_block_cache_test
  //engine/cuda:cuda_backend_test
  //handoff/nccl:nccl_kv_test
)

if command -v nvidia-smi >/dev/null; then
  nvidia-smi -L
else
  echo "gpu_test: nvidia-smi not found; the tests will fail if no GPU is usable"
fi

bazel test --define=CUDA_PATH="$CUDA_PATH" --test_output=errors "$@" "${TESTS[@]}"
rc=$?

# What ran: per test binary, the gtest cases that passed, failed and were skipped.
echo
device=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | paste -sd, -)
echo "GPU tests (device: ${device:-none found})"
for t in "${TESTS[@]}"; do
  log="bazel-testlogs/${t#//}"
  log="${log/://}/test.log"
  if [[ ! -f $log ]]; then
    echo "  $t: no log (not built or not run)"
    continue
  fi
  # One line per finished test case ends with its time, "(N ms)"; summaries do not.
  ok=$(grep -cE '^\[       OK \] .*\([0-9]+ ms\)$' "$log")
  bad=$(grep -cE '^\[  FAILED  \] .*\([0-9]+ ms\)$' "$log")
  skipped=$(grep -cE '^\[  SKIPPED \] .*\([0-9]+ ms\)$' "$log")
  echo "  $t: ${ok} passed, ${bad} failed, ${skipped} skipped"
  grep -E '^\[  (FAILED  |SKIPPED )\] .*\([0-9]+ ms\)$' "$log" | head -20 | sed 's/^/      /'
done
exit "$rc"
