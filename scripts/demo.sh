#!/usr/bin/env bash
# The README's main command: installs what is missing, builds, and runs the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bazel run //demo:demo -- "$@"
