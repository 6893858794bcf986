#!/usr/bin/env bash
# plot.sh RESULTS.csv OUT.png: log-log TTFT (median ms) vs prompt tokens, one line per mode.
set -euo pipefail
csv=$1 png=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for mode in full block_cached block_uncached query_only; do
  awk -F, -v m="$mode" 'NR > 1 && $3 == m { print $1, $4, $5, $6 }' "$csv" > "$tmp/$mode.dat"
done
gnuplot <<GP
set terminal pngcairo size 900,600 font "sans,11"
set output "$png"
set logscale xy
set xlabel "prompt tokens (query fixed)"
set ylabel "time to first token, ms (median; bars: min-max)"
set title "Block-Attention vs full prefill: $(basename "$csv" .csv)" noenhanced
set key top left
set grid
plot "$tmp/full.dat" using 1:2:3:4 with yerrorlines lw 2 title "full prefill", \
     "$tmp/block_cached.dat" using 1:2:3:4 with yerrorlines lw 2 title "block, all passages cached", \
     "$tmp/block_uncached.dat" using 1:2:3:4 with yerrorlines lw 2 title "block, nothing cached", \
     "$tmp/query_only.dat" using 1:2:3:4 with yerrorlines lw 2 title "query alone (no RAG)"
GP
