# Shared by the check scripts that scripts/test.sh runs besides `bazel test`
# (k8s/validate/run.sh, tests/tokenizers/run.sh). Source it after setting
#   CHECK_LABEL   the prefix of each result line, e.g. //k8s/validate
#   CHECK_SHOW    lines of a passing check's output to print (0: none)
# It creates $work (removed on exit) and $failed (0), and defines:
#   now_ms                       milliseconds since the epoch
#   result NAME START_MS STATUS  one line in Bazel's form ("LABEL:NAME PASSED in 1.2s"),
#                                which scripts/test.sh counts with the Bazel tests
#   check NAME COMMAND...        runs it; PASSED, or FAILED with its output indented
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=0

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

result() {
  local took=$(( $(now_ms) - $2 ))
  printf '%s:%-40s %s in %d.%ds\n' "$CHECK_LABEL" "$1" "$3" $((took / 1000)) $((took % 1000 / 100))
}

check() {
  local name=$1 start
  shift
  start=$(now_ms)
  if "$@" > "$work/out" 2>&1; then
    ((CHECK_SHOW > 0)) && sed 's/^/    /' "$work/out" | head -"$CHECK_SHOW"
    result "$name" "$start" PASSED
  else
    sed 's/^/    /' "$work/out" | head -60
    result "$name" "$start" FAILED
    failed=1
  fi
}
