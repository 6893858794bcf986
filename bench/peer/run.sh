#!/usr/bin/env bash
# The engine side by side with llama.cpp on the CPU (issue 16), in one run:
#   1. builds ttft_bench, hf_to_gguf, prompt_tokens, sgemm_rate, make_tiny_model (-c opt);
#   2. writes ttft_bench's "small" random model once (shape from ttft_bench --print_config,
#      written by engine/tiny_model's WriteTinyModel via make_tiny_model) and converts it to
#      GGUF, F32 and F16;
#   3. ours: ttft_bench --model_dir on that folder, modes full and block_cached;
#   4. llama.cpp: llama_cpp_peer.mjs on the same token ids (prompt_tokens), every config;
#   5. the machine's SGEMM rate (sgemm_rate), `uptime` before and after;
#   6. report.mjs -> bench/results/peer_llama_cpp.{md,csv}; gnuplot ->
#      bench/results/peer_ttft_growth.png (block-cached TTFT, llama.cpp's continuation TTFT
#      and the FLOPs floor vs context length).
# Usage: bench/peer/run.sh [--lengths 512,2048,8192,32768] [--repeats 3] [--quick] [--out DIR]
#                          [--ours_full_max 8192]   (our full prefill only up to this length)
#                          [--kv_dtype bf16|f32]    (our KV caches; bf16 as the services run)
#   PEER_BENCH_NOTE="..."  a note on the machine's state for the results header
#   --quick   lengths 512,2048, 1 repeat, 1 thread only, results in $TMPDIR/peer_quick (not
#             bench/results): a few minutes, to try the pipeline
# The full run took 29 minutes on the 2-core build VM at load 7-9 (12 of them llama.cpp's
# one full prefill at 32K, needed to hold the context for its continuation TTFT).
set -euo pipefail
cd "$(dirname "$0")/../.."
command_line="bench/peer/run.sh $*"
lengths=512,2048,8192,32768 repeats=3 out=bench/results threads=1,2 ours_full_max=8192
kv_dtype=bf16
while (($#)); do
  case $1 in
    --lengths) lengths=$2; shift 2 ;;
    --repeats) repeats=$2; shift 2 ;;
    --ours_full_max) ours_full_max=$2; shift 2 ;;
    --kv_dtype) kv_dtype=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --quick) lengths=512,2048 repeats=1 threads=1 out=${TMPDIR:-/tmp}/peer_quick; shift ;;
    *) echo "run.sh: unknown flag $1 (see the header)" >&2; exit 2 ;;
  esac
done
bash scripts/setup.sh
if ! command -v gnuplot > /dev/null; then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO="sudo"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends gnuplot-nox
fi
bazel build -c opt //bench/ttft:ttft_bench //bench/peer:hf_to_gguf //bench/peer:prompt_tokens \
  //bench/peer:sgemm_rate //engine:make_tiny_model
bin=$(bazel info -c opt bazel-bin 2> /dev/null)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
out=$(cd "$out" && pwd)

# 2. The model: ttft_bench's shape, written by the code ttft_bench writes it with.
"$bin/bench/ttft/ttft_bench" --shape small --lengths "$lengths" --print_config > "$work/shape.json"
node -e '
  const s = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")).config;
  console.log(`--hidden_size=${s.hidden_size} --intermediate_size=${s.intermediate_size} ` +
      `--layers=${s.num_hidden_layers} --heads=${s.num_attention_heads} ` +
      `--kv_heads=${s.num_key_value_heads} --max_positions=${s.max_position_embeddings}`);
  if (s.rope_theta !== 10000 || s.tie_word_embeddings || s.torch_dtype !== "float32")
    throw new Error("the small shape changed: update the make_tiny_model flags in run.sh");
' "$work/shape.json" > "$work/model_flags"
# shellcheck disable=SC2046
"$bin/engine/make_tiny_model" --out "$work/small" $(cat "$work/model_flags")
node -e '  // the folder must be exactly the shape ttft_bench would write
  const fs = require("fs");
  const want = JSON.parse(fs.readFileSync(process.argv[1], "utf8")).config;
  const got = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
  for (const k of Object.keys(want))
    if (JSON.stringify(want[k]) !== JSON.stringify(got[k])) throw new Error(`config.json ${k}: ${got[k]} != ${want[k]}`);
' "$work/shape.json" "$work/small/config.json"
for t in f32 f16; do
  "$bin/bench/peer/hf_to_gguf" --model "$work/small" --out "$work/small_$t.gguf" --type "$t"
done
"$bin/bench/peer/prompt_tokens" --model "$work/small" --lengths "$lengths" > "$work/prompts.json"

load_before=$(uptime)
echo "== ours (ttft_bench)"
# Block-cached at every length; full prefill only up to --ours_full_max tokens (our full
# prefill at 32K takes 4-20+ minutes here, more than the whole run's budget). Both runs
# draw the same prompt ids for the lengths they share (ttft_bench draws them in order).
"$bin/bench/ttft/ttft_bench" --model_dir "$work/small" --lengths "$lengths" \
  --modes block_cached --repeats "$repeats" --max_cell_seconds 60 --kv_dtype "$kv_dtype" \
  --out "$work" --tag peer_ours_block
full_lengths=$(tr , '\n' <<< "$lengths" | awk -v m="$ours_full_max" '$1 <= m' | paste -sd,)
cp "$work/ttft_peer_ours_block.csv" "$work/ttft_peer_ours.csv"
if [[ -n $full_lengths ]]; then
  "$bin/bench/ttft/ttft_bench" --model_dir "$work/small" --lengths "$full_lengths" \
    --modes full --repeats "$repeats" --max_cell_seconds 60 --kv_dtype "$kv_dtype" \
    --out "$work" --tag peer_ours_full
  tail -n +2 "$work/ttft_peer_ours_full.csv" >> "$work/ttft_peer_ours.csv"
fi
echo "== llama.cpp"
(cd bench/peer && node llama_cpp_peer.mjs --prompts="$work/prompts.json" \
  --gguf="f32=$work/small_f32.gguf,f16=$work/small_f16.gguf" --threads="$threads" \
  --repeats="$repeats" --max_cell_seconds=30 --out_csv="$work/llama.csv")
echo "== sgemm"
"$bin/bench/peer/sgemm_rate" | tee "$work/sgemm.csv"
load_after=$(uptime)

node -e '
  const [cmd, before, after, shape, peer, repeats, ours_full_max] = process.argv.slice(1);
  const fs = require("fs");
  const s = JSON.parse(fs.readFileSync(shape, "utf8"));
  const cpu = fs.readFileSync("/proc/cpuinfo", "utf8").match(/model name\s*:\s*(.*)/)[1];
  const pkg = JSON.parse(fs.readFileSync(`${peer}/node_modules/node-llama-cpp/package.json`, "utf8"));
  const flags = fs.readFileSync("/proc/cpuinfo", "utf8").match(/flags\s*:\s*(.*)/)[1].split(" ");
  console.log(JSON.stringify({
    command: cmd, date: new Date().toISOString().replace(/\.\d+Z$/, " UTC").replace("T", " "),
    load_before: before.trim(), load_after: after.trim(), cpu,
    cores: require("os").cpus().length, vocab: s.config.vocab_size,
    passage_tokens: s.passage_tokens, query_tokens: s.query_tokens, node_llama_cpp: pkg.version,
    llama_system_info: "CPU features " + ["avx", "avx2", "fma", "f16c", "avx512f"].filter((f) => flags.includes(f)).join(" "),
    batch: 512, matrix_max: 8192, llama_max_cell_s: 30, ours_max_cell_s: 60, repeats: Number(repeats), ours_full_max: Number(ours_full_max), kv_dtype: process.argv[8],
    note: process.env.PEER_BENCH_NOTE || ""}));
' "$command_line" "$load_before" "$load_after" "$work/shape.json" bench/peer "$repeats" "$ours_full_max" "$kv_dtype" > "$work/meta.json"
(cd bench/peer && node report.mjs --ours="$work/ttft_peer_ours.csv" --llama="$work/llama.csv" \
  --sgemm="$work/sgemm.csv" --meta="$work/meta.json" --out_md="$out/peer_llama_cpp.md" \
  --out_csv="$out/peer_llama_cpp.csv" --plot_dir="$work")
gnuplot <<GP
set terminal pngcairo size 900,600 font "sans,11"
set output "$out/peer_ttft_growth.png"
set logscale xy
set xlabel "context tokens (passages + 50-token query)"
set ylabel "time to first token, ms (median; bars: min-max)"
set title "Block-cached TTFT vs llama.cpp prefix-cache continuation (small model, CPU)"
set key top left
set grid
plot "$work/block.dat" using 1:2:3:4 with yerrorlines lw 2 title "ours, block-cached", \
     "$work/cont.dat" using 1:2:3:4 with yerrorlines lw 2 title "llama.cpp continuation (fastest config)", \
     "$work/floor.dat" using 1:2 with lines lw 2 dt 2 title "FLOPs floor (block-cached FLOPs / measured SGEMM rate)"
GP
echo "wrote $out/peer_llama_cpp.{md,csv} and $out/peer_ttft_growth.png"
