#!/usr/bin/env bash
# The README's test command (and CI's): installs what is missing, builds everything
# (CUDA targets included, when they exist) and runs every test; then the same tests under
# AddressSanitizer + UBSan, the concurrency tests under ThreadSanitizer, and every fuzz
# target for a short time (docs/FAULTS.md, "Fuzzing and sanitizers").
#
#   FUZZ_SECONDS=10     seconds per fuzz target (scripts/fuzz.sh --time)
#   SANITIZERS=0        skip the sanitizer and fuzz runs (the plain suite only)
#   TEST_BUDGET_MIN=80  minutes the whole script may take; a stage that would not fit
#                       is skipped and the summary says so
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1
# shellcheck source=scripts/output_base.sh
source scripts/output_base.sh

minutes() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

log=$(mktemp)
start=$SECONDS
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
# The engine against llama.cpp on GGUF files our converter writes ("//bench/peer:...").
bash bench/peer/check.sh 2>&1 | tee -a "$log"; ((PIPESTATUS[0])) && rc=1

# Bazel's per-test lines ("//pkg:name PASSED in 1.2s", "... FAILED", ...) in a log.
count_passed() { grep -cE '^//.* PASSED in' "$1"; }
count_failed() { grep -cE '^//.* (FAILED|TIMEOUT|NO STATUS|FAILED TO BUILD)' "$1"; }
passed=$(count_passed "$log")
failed=$(count_failed "$log")
failed=$((failed + gpu_build_failed))
summary=("tests: ${passed} passed, ${failed} failed ($(minutes $((SECONDS - start))))")

# Sanitizer and fuzz stages, each only if the time left in the budget (TEST_BUDGET_MIN,
# 80 minutes from the start of this script: CI allows 90) covers its usual time on a
# 2-core machine with some margin. A stage that does not fit is not run and says so in
# the summary ("skipped"); one that overruns its share is stopped and counts as failed.
budget_s=$(( ${TEST_BUDGET_MIN:-80} * 60 ))
run_stage() {
  local name=$1 usual_s=$2 kind=$3; shift 3
  local left=$((budget_s - SECONDS))
  if ((left < usual_s * 3 / 2)); then
    summary+=("${name}: skipped, $(minutes $((left > 0 ? left : 0))) left of the budget, needs ~$(minutes "$usual_s")")
    return
  fi
  local t0=$SECONDS slog p f src
  slog=$(mktemp)
  timeout --kill-after=30 "$left" "$@" 2>&1 | tee "$slog"
  src=${PIPESTATUS[0]}
  if [[ $kind == bazel ]]; then
    p=$(count_passed "$slog")
    f=$(count_failed "$slog")
  else  # fuzz.sh's table: one line per target ending in "ok" or "FAILED (exit N)"
    p=$(grep -cE '^[a-z0-9_]+_fuzzer +[0-9]+ .* ok$' "$slog")
    f=$(grep -cE '^[a-z0-9_]+_fuzzer +[0-9]+ .* FAILED' "$slog")
  fi
  rm -f "$slog"
  # A build failure, a timeout or a crash outside any test still fails the run.
  ((src != 0 && f == 0)) && f=1
  ((src == 124)) && summary+=("${name}: stopped at the end of the budget")
  passed=$((passed + p))
  failed=$((failed + f))
  summary+=("${name}: ${p} passed, ${f} failed ($(minutes $((SECONDS - t0))))")
  ((src)) && rc=$src
}

if [[ ${SANITIZERS:-1} != 0 ]]; then
  # Each in an output base of its own (the normal build's cache stays as it is). ASan
  # runs every test: the end-to-end tests are where handoffs, stores and servers meet.
  # TSan runs the tests whose threads do not meet inside uninstrumented gRPC or Abseil
  # (the list and why: scripts/sanitize.sh). --results '': CI does not rewrite the
  # committed fuzz/results.md.
  run_stage asan "${ASAN_USUAL_S:-2100}" bazel scripts/sanitize.sh asan
  run_stage tsan "${TSAN_USUAL_S:-420}" bazel scripts/sanitize.sh tsan
  run_stage fuzz "${FUZZ_USUAL_S:-480}" fuzz scripts/fuzz.sh --time "${FUZZ_SECONDS:-10}" --results ''
  # The extra Bazel servers are not needed after CI's run.
  for base in asan tsan fuzz; do
    bazel --output_base="$(output_base "$base")" shutdown 2>/dev/null
  done
fi

# One closing line for humans and CI: "N passed, N failed".
rm -f "$log"
((gpu_build_failed)) && echo "the GPU test binaries (//engine/cuda:gpu_tests) failed to build"
printf '%s\n' "${summary[@]}"
echo "${passed} passed, ${failed} failed"
((rc)) && exit "$rc"
exit "$gpu_build_failed"
