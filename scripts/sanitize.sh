#!/usr/bin/env bash
# Runs tests under a sanitizer with gcc, in an output base of its own, so the normal
# build's cache is never evicted (docs/FAULTS.md, "Fuzzing and sanitizers"):
#
#   scripts/sanitize.sh asan            # AddressSanitizer + UBSan, every test
#   scripts/sanitize.sh tsan            # ThreadSanitizer, the tests listed below
#   scripts/sanitize.sh asan //kv_store/... //engine:tokenizer_test   # chosen targets
#   scripts/sanitize.sh asan -//bench/...   # every test but those
#
# Arguments starting with "-//" leave targets out; other arguments starting with "-" go
# to `bazel test`. Prints Bazel's test summary; exits with its status.
set -uo pipefail
cd "$(dirname "$0")/.."

# ThreadSanitizer sees only instrumented synchronization, and Debian's libraries are not
# instrumented: not gRPC (every service test and the end-to-end tests), and not Abseil,
# so a lock or wait on absl::Mutex is invisible to it. decoder_core_test and
# redis_store_test, whose threads meet under absl::Mutex and its Condition waits, gave
# 734 and dozens of reports, every one a read and a write under the same absl::Mutex
# (suppressing absl's frames cannot help: the accesses are in our code). These are the
# tests whose threads (or processes) synchronize through what TSan does see: std::mutex
# and std::condition_variable, pthread mutexes, atomics, thread start and join.
TSAN_TARGETS=(
  //engine:thread_pool_test          # the CPU backend's pool (std::mutex, condition_variable)
  //engine:cpu_attention_test        # attention kernels split over the pool
  //engine:engine_test               # whole forward passes on the pool
  //kv_store:shm_store_test          # threads and forked processes over one segment:
                                     # a robust process-shared pthread mutex and atomics
  //kv_store:codec_test              # a value converted on one thread, hashed on another
  //engine:tokenizer_test            # concurrent encodes sharing one tokenizer
  //common:metrics_test              # counters and histograms from many threads (atomics)
)

config=${1:-}
shift || true
case "$config" in
  asan|tsan) ;;
  *) echo "usage: scripts/sanitize.sh asan|tsan [TARGET...] [-BAZEL_FLAG...]" >&2; exit 2 ;;
esac

targets=()
excluded=()
flags=()
for a in "$@"; do
  case "$a" in
    -//*) excluded+=("$a") ;;
    -*) flags+=("$a") ;;
    *) targets+=("$a") ;;
  esac
done
if ((${#targets[@]} == 0)); then
  if [[ $config == tsan ]]; then
    targets=("${TSAN_TARGETS[@]}")
  else
    # Every package, named one by one: `//...` seen from another output base would walk
    # into the normal build's bazel-<workspace> symlink (Bazel skips only its own).
    for d in */; do
      d=${d%/}
      [[ $d == bazel-* ]] && continue
      [[ -n $(find "$d" -name BUILD -print -quit) ]] && targets+=("//$d/...")
    done
  fi
fi

# shellcheck source=scripts/output_base.sh
source scripts/output_base.sh
output_base=$(output_base "$config")
echo "sanitize.sh: $config, output base $output_base"
# --build_tests_only: the tests and what they need; not the CUDA objects (nvcc, not
# instrumented) nor binaries no test runs.
if [[ $config == asan ]]; then
  # Leaks inside Debian's libraries (.bazelrc's asan section says why this is not there).
  flags=("--test_env=LSAN_OPTIONS=suppressions=$PWD/third_party/system/lsan.supp:print_suppressions=0"
         "${flags[@]}")
fi
bazel --output_base="$output_base" test --config="$config" --build_tests_only \
  --symlink_prefix=/ "${flags[@]}" -- "${targets[@]}" "${excluded[@]}"
