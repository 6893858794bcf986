#!/usr/bin/env bash
# Runs the in-process TTFT benchmark and plots it (log-log TTFT vs prompt length).
# Usage: bench/ttft/run.sh [ttft_bench flags...]   e.g. --shape small --repeats 3
# Results: bench/results/ttft_<tag>.{md,csv,png}. Installs gnuplot (Debian) if missing.
# This is the CPU run (the default --backend=cpu). The GPU table (CUDA backend vs PyTorch's
# own prefill) is bench/ttft/run_gpu.sh, never run yet: see bench/ttft/README.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
bash scripts/setup.sh
if ! command -v gnuplot > /dev/null; then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends gnuplot-nox
fi
bazel build -c opt //bench/ttft:ttft_bench
out=bench/results
bazel-bin/bench/ttft/ttft_bench --out "$out" "$@" | tee /dev/stderr > /dev/null
csv=$(ls -t "$out"/ttft_*.csv | head -1)
png="${csv%.csv}.png"
bash bench/ttft/plot.sh "$csv" "$png"
echo "wrote $png"
