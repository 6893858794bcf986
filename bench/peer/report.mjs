// Merges run.sh's pieces into bench/results/peer_llama_cpp.{md,csv} and the data files of
// the cost-growth plot:
//   node report.mjs --ours=ttft_peer_ours.csv --llama=llama.csv --sgemm=sgemm.csv
//        --meta=meta.json --out_md=FILE --out_csv=FILE --plot_dir=DIR
// Ratios are speed ratios, ours over llama.cpp's: (llama.cpp ms) / (our ms), so > 1 means
// the engine is faster. "Fastest" = the llama.cpp configuration with the lowest median at
// that row, chosen separately for full prefill and for continuation TTFT.
import fs from 'node:fs';
import {flag} from './llama.mjs';

const readCsv = (path) => {
  const [head, ...rows] = fs.readFileSync(path, 'utf8').trim().split('\n');
  const keys = head.split(',');
  return rows.map((r) => Object.fromEntries(r.split(',').map((v, i) => [keys[i], isNaN(v) ? v : Number(v)])));
};
// ttft_bench's CSV has no run count: a cell whose first run took over its
// --max_cell_seconds ran once, every other cell ran --repeats times.
const meta = JSON.parse(fs.readFileSync(flag('meta'), 'utf8'));
const ours = readCsv(flag('ours')).map((r) => ({
  ...r, runs: r.median_ms > 1000 * meta.ours_max_cell_s ? 1 : meta.repeats}));
const llama = readCsv(flag('llama'));
const sgemm = readCsv(flag('sgemm'));

const cell = (r) => (r.runs === 1 ? `${r.median_ms.toFixed(1)} (n=1)` :
    `${r.median_ms.toFixed(1)} (${r.min_ms.toFixed(1)}–${r.max_ms.toFixed(1)}, n=${r.runs})`);
const tps = (r) => (r.tokens / r.median_ms * 1000).toFixed(0);
const ratio = (theirs, mine) => (theirs && mine ? (theirs.median_ms / mine.median_ms).toFixed(2) + '×' : 'n/a');
const cfg = (r) => `${r.weights.toUpperCase()}, flash ${r.flash}, ${r.threads} thread${r.threads > 1 ? 's' : ''}`;
const fastest = (rows) => rows.reduce((b, r) => (!b || r.median_ms < b.median_ms ? r : b), null);

// The rate the floor uses: the best median over all measured shapes and thread counts.
const rate = fastest(sgemm.map((r) => ({...r, median_ms: -r.median_gflops})));
const gflops = rate.median_gflops;

const tokens = [...new Set(ours.map((r) => r.tokens))].sort((a, b) => a - b);
let summary = '| tokens | ours full ms | ours full tok/s | llama.cpp fastest full ms | its tok/s | its config | full: ours ÷ llama.cpp speed | ours block-cached TTFT ms | llama.cpp fastest continuation TTFT ms | its config | TTFT: ours ÷ llama.cpp speed | block-cached FLOPs floor ms |\n' +
    '|---:|---:|---:|---:|---:|---|---:|---:|---:|---|---:|---:|\n';
let detail = '| tokens | llama.cpp config | full prefill ms | tok/s | continuation TTFT ms | full: ours ÷ this | TTFT: ours ÷ this |\n' +
    '|---:|---|---:|---:|---:|---:|---:|\n';
let csv = 'tokens,passages,engine,config,mode,median_ms,min_ms,max_ms,runs,tokens_per_s,ours_speed_ratio\n';
const plot = {block: '', cont: '', floor: ''};
for (const t of tokens) {
  const of = ours.find((r) => r.tokens === t && r.mode === 'full');
  const ob = ours.find((r) => r.tokens === t && r.mode === 'block_cached');
  const lf = llama.filter((r) => r.tokens === t && r.mode === 'full');
  const lc = llama.filter((r) => r.tokens === t && r.mode === 'continuation');
  const bf = fastest(lf), bc = fastest(lc);
  const floorMs = ob ? ob.flops / (gflops * 1e9) * 1000 : NaN;
  summary += `| ${t} | ${of ? cell(of) : 'n/a'} | ${of ? tps(of) : 'n/a'} | ${bf ? cell(bf) : 'n/a'} | ` +
      `${bf ? tps(bf) : 'n/a'} | ${bf ? cfg(bf) : 'n/a'} | ${ratio(bf, of)} | ${ob ? cell(ob) : 'n/a'} | ` +
      `${bc ? cell(bc) : 'n/a'} | ${bc ? cfg(bc) : 'n/a'} | ${ratio(bc, ob)} | ${floorMs.toFixed(1)} |\n`;
  for (const r of lf) {
    const c = lc.find((x) => x.weights === r.weights && x.flash === r.flash && x.threads === r.threads);
    detail += `| ${t} | ${cfg(r)} | ${cell(r)} | ${tps(r)} | ${c ? cell(c) : 'n/a'} | ${ratio(r, of)} | ${ratio(c, ob)} |\n`;
  }
  for (const r of [of, ob]) {
    if (!r) continue;
    const vs = fastest(r.mode === 'full' ? lf : lc);
    csv += [t, r.passages, 'ours', 'cpu fp32', r.mode, r.median_ms, r.min_ms, r.max_ms, r.runs, tps(r),
      vs ? (vs.median_ms / r.median_ms).toFixed(3) : ''].join(',') + '\n';
  }
  for (const r of [...lf, ...lc]) {
    csv += [t, r.passages, 'llama.cpp', `${r.weights} flash=${r.flash} threads=${r.threads}`, r.mode,
      r.median_ms, r.min_ms, r.max_ms, r.runs, tps(r),
      (r.mode === 'full' ? of : ob) ? ((r.median_ms / (r.mode === 'full' ? of : ob).median_ms)).toFixed(3) : ''].join(',') + '\n';
  }
  if (ob) plot.block += `${t} ${ob.median_ms} ${ob.min_ms} ${ob.max_ms}\n`;
  if (bc) plot.cont += `${t} ${bc.median_ms} ${bc.min_ms} ${bc.max_ms}\n`;
  if (ob) plot.floor += `${t} ${floorMs}\n`;
}
let sgemmTable = '| threads | m×n×k | runs | median GFLOP/s | max GFLOP/s |\n|---:|---|---:|---:|---:|\n';
for (const r of sgemm) sgemmTable += `| ${r.threads} | ${r.m}×${r.n}×${r.k} | ${r.runs} | ${r.median_gflops} | ${r.max_gflops} |\n`;

const md = `# Block-Attention engine vs llama.cpp on the CPU (issue 16)

Date: ${meta.date}. Machine: ${meta.cpu}, ${meta.cores} hardware threads${meta.note ? ` (${meta.note})` : ""}. Load (\`uptime\`) before: ${meta.load_before}; after: ${meta.load_after}.
Command: \`${meta.command}\`

Model: ttft_bench's \`small\` shape (random weights, 4 layers, hidden 256, 8 heads / 2 KV
heads, head_dim 32, MLP 768, byte-level BPE vocabulary of ${meta.vocab}), one folder for both
engines; llama.cpp runs the GGUF that \`hf_to_gguf\` writes from it (F32 or F16 matrices, q/k rows
permuted for ggml's RoPE; \`check.sh\` shows the logits agree). Prompts: the exact token ids
ttft_bench uses (passages of ${meta.passage_tokens} tokens, then the ${meta.query_tokens}-token query), passed as ids.

- **Ours**: \`ttft_bench -c opt\` (the engine's CPU backend, fp32 compute, ${meta.kv_dtype ?? "f32"} KV
  caches, ${meta.cores} threads = all cores): \`full\` = causal prefill of the whole prompt (run only up to ${meta.ours_full_max}
  tokens: longer ones take more than the run's time budget here); \`block cached\` = every
  passage's KV already cached, TTFT of the query.
- **llama.cpp**: node-llama-cpp ${meta.node_llama_cpp} (its prebuilt linux-x64 CPU binary;
  ${meta.llama_system_info}), F16 KV cache, batch (n_batch = n_ubatch) ${meta.batch}: \`full\` = a fresh
  sequence evaluates the prompt and samples the first token; \`continuation\` = the context is
  already in llama.cpp's KV cache (the query's entries erased after the full run), only the
  query is evaluated. Configurations: weights × flash attention × threads;
  rows over ${meta.matrix_max} tokens ran only the configuration with the fastest full prefill at
  the longest row at or under it.
- Cells: median (min–max, n) in ms; a llama.cpp full cell whose first run took over
  ${meta.llama_max_cell_s} s ran once, ours over ${meta.ours_max_cell_s} s (n=1).
- Speed ratios "ours ÷ llama.cpp" = llama.cpp's median ms / ours: > 1 means the engine is faster.
  Goals (issue 16): full prefill ≥ 1.0× llama.cpp's fastest at 512, 2K, 8K; block-cached TTFT
  faster than llama.cpp's continuation at every length.
- FLOPs floor: ttft_bench's analytic block-cached FLOPs / ${gflops} GFLOP/s, the best median
  OpenBLAS sgemm rate measured in this run (${rate.threads} thread(s), ${rate.m}×${rate.n}×${rate.k}; table below).

## Summary

${summary}
## Every llama.cpp configuration

${detail}
## Measured SGEMM rate (sgemm_rate, OpenBLAS)

${sgemmTable}
![block-cached TTFT vs context length](peer_ttft_growth.png)
`;
fs.writeFileSync(flag('out_md'), md);
fs.writeFileSync(flag('out_csv'), csv);
const dir = flag('plot_dir');
fs.writeFileSync(`${dir}/block.dat`, plot.block);
fs.writeFileSync(`${dir}/cont.dat`, plot.cont);
fs.writeFileSync(`${dir}/floor.dat`, plot.floor);
console.log(summary);
