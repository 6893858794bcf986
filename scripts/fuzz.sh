#!/usr/bin/env bash
# Builds the fuzz targets (fuzz/*_fuzzer.cc) with clang-14, libFuzzer, AddressSanitizer and
# UndefinedBehaviorSanitizer, runs each for a bounded time, prints a table of executions
# and crashes per target and writes it to fuzz/results.md. Exits non-zero when a target
# crashed (or failed to build or run); each crashing input is saved under fuzz/crashes/.
#
#   scripts/fuzz.sh                        # every target, 20 s each
#   scripts/fuzz.sh --time 600 codec_fuzzer tokenizer_fuzzer
#
# The build uses an output base of its own (Bazel's autoconfigured toolchain there is
# clang-14; the normal build's is gcc), so it never evicts or reconfigures the normal
# build, and makes no bazel-* symlinks. Found inputs are kept in a scratch folder; the
# committed corpus (fuzz/corpus/<target>/) is only read. To keep what a long run found,
# merge it in: the binary is printed; `BIN -merge=1 fuzz/corpus/T SCRATCH/T`.
# A crash: add the input to fuzz/corpus/<target>/ (named crash-<what broke>), fix the
# parser, and add a unit test to the parser's own test that fails before the fix.
set -uo pipefail
cd "$(dirname "$0")/.."

usage() {
  sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
  echo "options: --time SECONDS (per target, default 20)  --results FILE (default fuzz/results.md,"
  echo "         '' for none)  --keep (keep the scratch corpus)  TARGET... (default: all)"
}

seconds=20
results=fuzz/results.md
keep=0
targets=()
while (($#)); do
  case "$1" in
    --time) seconds=$2; shift 2 ;;
    --time=*) seconds=${1#*=}; shift ;;
    --results) results=$2; shift 2 ;;
    --results=*) results=${1#*=}; shift ;;
    --keep) keep=1; shift ;;
    -h|--help) usage; exit 0 ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) targets+=("${1%.cc}"); shift ;;
  esac
done
if ((${#targets[@]} == 0)); then
  for f in fuzz/*_fuzzer.cc; do targets+=("$(basename "$f" .cc)"); done
fi
for t in "${targets[@]}"; do
  [[ -f fuzz/$t.cc ]] || { echo "fuzz.sh: no fuzz target fuzz/$t.cc" >&2; exit 2; }
done

command -v clang-14 >/dev/null || { echo "fuzz.sh: clang-14 missing (scripts/setup.sh installs it)" >&2; exit 1; }
# shellcheck source=scripts/output_base.sh
source scripts/output_base.sh
output_base=${BLOCKSERVE_FUZZ_OUTPUT_BASE:-$(output_base fuzz)}
bazel_fuzz() { CC=clang-14 bazel --output_base="$output_base" "$@"; }

labels=()
for t in "${targets[@]}"; do labels+=("//fuzz:$t"); done
echo "fuzz.sh: building ${#targets[@]} targets with clang-14 (output base $output_base)"
if ! bazel_fuzz build --config=fuzz --symlink_prefix=/ "${labels[@]}"; then
  echo "fuzz.sh: build failed"
  exit 1
fi
bin=$(bazel_fuzz info --config=fuzz bazel-bin 2>/dev/null)

scratch=$(mktemp -d "${TMPDIR:-/tmp}/blockserve-fuzz.XXXXXX")
((keep)) || trap 'rm -rf "$scratch"' EXIT
mkdir -p fuzz/crashes

total_runs=0
failed=0
rows=()
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
printf '\n%-24s %8s %12s %10s %6s %8s %8s  %s\n' target seconds executions "exec/s" edges corpus crashes result
for t in "${targets[@]}"; do
  mkdir -p "$scratch/$t"
  log="$scratch/$t.log"
  start=$SECONDS
  # -timeout: one input taking 10 s is a hang, reported like a crash. -max_len: without
  # it libFuzzer mutates inputs up to the largest corpus file, and the deep-nesting crash
  # inputs are 200 KB (longer files are cut when loaded; the replay tests run them whole).
  # New inputs go to the scratch folder (the first one named); the committed corpus is
  # only read.
  UBSAN_OPTIONS=print_stacktrace=1 ASAN_OPTIONS=detect_stack_use_after_return=1 \
  "$bin/fuzz/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
    -print_final_stats=1 -artifact_prefix="fuzz/crashes/$t-" \
    "$scratch/$t" "fuzz/corpus/$t" >"$log" 2>&1
  rc=$?
  took=$((SECONDS - start))
  # libFuzzer's closing stats (also printed after a crash); "Done N runs" when it ends well.
  runs=$(grep -oE 'stat::number_of_executed_(runs|units): *[0-9]+' "$log" | tail -1 | grep -oE '[0-9]+$')
  [[ -n $runs ]] || runs=$(grep -oE '^Done [0-9]+ runs' "$log" | tail -1 | grep -oE '[0-9]+')
  runs=${runs:-0}
  # Coverage: the edges libFuzzer's last status line counts.
  edges=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+')
  edges=${edges:-0}
  corpus=$(find "$scratch/$t" "fuzz/corpus/$t" -type f | wc -l)
  crashes=$(grep -oE "Test unit written to fuzz/crashes/$t-[^ ]+" "$log" | sed 's/.* //')
  ncrashes=$(grep -c . <<<"$crashes")
  if ((rc == 0)); then
    result=ok
  else
    failed=$((failed + 1))
    result="FAILED (exit $rc)"
    ((ncrashes == 0)) && ncrashes=1  # died without saving an input: still a failure
  fi
  total_runs=$((total_runs + runs))
  rate=$((took > 0 ? runs / took : runs))
  printf '%-24s %8s %12s %10s %6s %8s %8s  %s\n' "$t" "$took" "$runs" "$rate" "$edges" "$corpus" "$ncrashes" "$result"
  rows+=("| \`$t\` | $took | $runs | $rate | $edges | $corpus | $ncrashes | $result |")
  if ((rc != 0)); then
    echo "---- $t: the end of its log ($log) ----"
    tail -40 "$log"
    for c in $crashes; do echo "saved input: $c (reproduce: $bin/fuzz/$t $c)"; done
    echo "----"
  fi
done
echo
echo "fuzz.sh: ${#targets[@]} targets, $total_runs executions, $failed failed"

if [[ -n $results ]]; then
  {
    echo "# Fuzzing: executions and crashes per target"
    echo
    echo "\`scripts/fuzz.sh --time $seconds\`: each target built with clang-14, libFuzzer,"
    echo "AddressSanitizer and UndefinedBehaviorSanitizer, run for ${seconds} s from the committed"
    echo "corpus (\`fuzz/corpus/<target>/\`), one after the other. $(date -u +%Y-%m-%d), $(nproc) cores,"
    echo "load average before: $load_before; after: $(cut -d' ' -f1-3 /proc/loadavg). \"edges\": coverage"
    echo "(libFuzzer's cov); \"corpus\": inputs at the end, committed and new."
    echo
    echo "| target | seconds | executions | exec/s | edges | corpus | crashes | result |"
    echo "|---|---:|---:|---:|---:|---:|---:|---|"
    printf '%s\n' "${rows[@]}"
    echo
    echo "Total: $total_runs executions, $failed targets failed."
  } >"$results"
  echo "fuzz.sh: wrote $results"
fi
((failed)) && exit 1
exit 0
