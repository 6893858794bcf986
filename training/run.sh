#!/usr/bin/env bash
# One command to reproduce everything issue 7 ships: the synthetic task's held-out sets
# (eval/data/), both models (models/), the parity fixture (eval/testdata/parity.json) and
# the accuracy table (eval/results/accuracy.md). Extra arguments go to train.py, e.g.
#   training/run.sh --stage1_steps 100 --stage2_steps 50   # a quick smoke run
# Needs Debian's PyTorch: apt-get install -y --no-install-recommends python3-torch python3-numpy
set -euo pipefail
cd "$(dirname "$0")/.."

if ! /usr/bin/python3 -c "import torch, numpy" 2>/dev/null; then
  echo "run.sh: Debian's python3-torch and python3-numpy are needed:" >&2
  echo "  apt-get install -y --no-install-recommends python3-torch python3-numpy" >&2
  exit 1
fi

work="${WORK_DIR:-/tmp/blockserve-training}"
mkdir -p "$work"
bazel build -c opt //training:tokenizer_tool //eval:rag_eval
cp -f "$(bazel info -c opt bazel-bin)/training/tokenizer_tool" "$work/tokenizer_tool"

nice -n 10 /usr/bin/python3 training/train.py --tool "$work/tokenizer_tool" --work_dir "$work" "$@"
nice -n 10 bazel run -c opt //eval:rag_eval
