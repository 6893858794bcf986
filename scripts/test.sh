#!/usr/bin/env bash
# The README's test command (and CI's): installs what is missing, builds everything
# (CUDA targets included, when they exist) and runs every test.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1

log=$(mktemp)
# The CUDA code: libraries are part of //...; the GPU test binaries are tagged manual (CI
# has no GPU), so compile and link them here; scripts/gpu_test.sh runs them on a GPU.
gpu_build_failed=0
bazel build //engine/cuda:gpu_tests || gpu_build_failed=1
bazel test //... 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}

# The Kubernetes manifests; its "//k8s/validate:... PASSED in" lines count below.
bash k8s/validate/run.sh 2>&1 | tee -a "$log"; ((PIPESTATUS[0])) && rc=1
# The tokenizer against Hugging Face's on real tokenizer files ("//tests/tokenizers:...").
bash tests/tokenizers/run.sh 2>&1 | tee -a "$log"; ((PIPESTATUS[0])) && rc=1

# One closing line for humans and CI: "N passed, N failed".
passed=$(grep -cE '^//.* PASSED in' "$log")
failed=$(grep -cE '^//.* (FAILED|TIMEOUT|NO STATUS|FAILED TO BUILD)' "$log")
failed=$((failed + gpu_build_failed))
rm -f "$log"
((gpu_build_failed)) && echo "the GPU test binaries (//engine/cuda:gpu_tests) failed to build"
echo "${passed} passed, ${failed} failed"
((rc)) && exit "$rc"
exit "$gpu_build_failed"
