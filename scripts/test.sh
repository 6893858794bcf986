#!/usr/bin/env bash
# The README's test command (and CI's): installs what is missing, builds everything
# (CUDA targets included, when they exist) and runs every test.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh || exit 1

log=$(mktemp)
bazel test //... 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}

# One closing line for humans and CI: "N passed, N failed".
passed=$(grep -cE '^//.* PASSED in' "$log")
failed=$(grep -cE '^//.* (FAILED|TIMEOUT|NO STATUS|FAILED TO BUILD)' "$log")
rm -f "$log"
echo "${passed} passed, ${failed} failed"
exit "$rc"
