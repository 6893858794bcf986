// llama.cpp's side of bench/peer (run.sh drives it): on the prompts ttft_bench uses
// (prompt_tokens' JSON: each row's context = its passages, then the shared query), for each
// configuration (weights F32/F16 x flash attention off/on x 1/2 threads; F16 KV cache,
// node-llama-cpp's default) it times
//   full          a fresh sequence evaluates the whole prompt (context + query) and samples
//                 the first token greedily: full prefill, as ttft_bench's `full`;
//   continuation  the context is already in llama.cpp's KV cache (left there by the full
//                 run, with the query's entries erased), only the query is evaluated and the
//                 first token sampled: llama.cpp's prefix-cache TTFT.
//
//   node llama_cpp_peer.mjs --prompts=FILE --gguf=f32=A.gguf,f16=B.gguf --out_csv=FILE
//        [--threads=1,2] [--flash=off,on] [--batch=512] [--repeats=3]
//        [--max_cell_seconds=30] [--full_matrix_max_tokens=8192]
//
// Each cell: median, min and max of --repeats runs; a full cell whose first run took over
// --max_cell_seconds runs once (n=1). Rows longer than --full_matrix_max_tokens run only
// the configuration with the fastest full prefill at the longest row at or under it (each
// configuration there costs a full prefill of the whole context, minutes at 32K on this
// machine). --batch is node-llama-cpp's batchSize, which it uses as both llama.cpp's n_batch
// and n_ubatch (so 512 = llama.cpp's default physical batch).
// CSV: tokens,passages,weights,flash,threads,mode,median_ms,min_ms,max_ms,runs
import fs from 'node:fs';
import {loadLlama, flag, firstToken} from './llama.mjs';

const prompts = JSON.parse(fs.readFileSync(flag('prompts'), 'utf8'));
const ggufs = Object.fromEntries(flag('gguf').split(',').map((kv) => kv.split('=')));
const threadList = flag('threads', '1,2').split(',').map(Number);
const flashList = flag('flash', 'off,on').split(',');
const batch = Number(flag('batch', '512'));
const repeats = Number(flag('repeats', '3'));
const maxCellMs = 1000 * Number(flag('max_cell_seconds', '30'));
const matrixMax = Number(flag('full_matrix_max_tokens', '8192'));
const outCsv = flag('out_csv');

const configs = [];
for (const weights of Object.keys(ggufs)) {
  for (const flash of flashList) for (const threads of threadList) configs.push({weights, flash, threads});
}
const label = (c) => `${c.weights} flash ${c.flash} ${c.threads}t`;

function summarize(ms) {
  const s = [...ms].sort((a, b) => a - b);
  // The upper middle for even counts, as ttft_bench.
  return {median: s[Math.floor(s.length / 2)], min: s[0], max: s[s.length - 1], runs: s.length};
}

const lines = ['tokens,passages,weights,flash,threads,mode,median_ms,min_ms,max_ms,runs'];
function record(row, c, mode, cell) {
  lines.push([row.tokens, row.passages, c.weights, c.flash, c.threads, mode, cell.median.toFixed(3),
    cell.min.toFixed(3), cell.max.toFixed(3), cell.runs].join(','));
  fs.writeFileSync(outCsv, lines.join('\n') + '\n');  // after every cell: a crash keeps the rest
  console.error(`llama.cpp ${label(c)} ${row.tokens} tokens ${mode}: ${cell.median.toFixed(1)} ms ` +
                `(${cell.min.toFixed(1)}-${cell.max.toFixed(1)}, n=${cell.runs})`);
}

const llama = await loadLlama();
console.error(`llama.cpp: ${llama.systemInfo.trim()}`);
const models = {};
async function measure(c, rows) {
  models[c.weights] ??= await llama.loadModel({modelPath: ggufs[c.weights], gpuLayers: 0});
  const longest = Math.max(...rows.map((r) => r.tokens));
  const context = await models[c.weights].createContext({
    contextSize: longest + 64,
    batchSize: batch,
    flashAttention: c.flash === 'on',
    threads: {ideal: c.threads, min: c.threads},
    sequences: 1,
  });
  const sequence = context.getSequence();
  const results = {};
  for (const row of rows) {
    const prompt = row.context.concat(prompts.query);
    const full = [];
    let token;
    for (let r = 0; r < repeats; ++r) {
      await sequence.clearHistory();
      const t0 = performance.now();
      token = (await firstToken(sequence, prompt)).token;
      full.push(performance.now() - t0);
      if (full[0] > maxCellMs) break;
    }
    results[row.tokens] = summarize(full);
    record(row, c, 'full', results[row.tokens]);
    const cont = [];
    for (let r = 0; r < repeats; ++r) {
      await sequence.eraseContextTokenRanges([{start: row.context.length, end: sequence.nextTokenIndex}]);
      if (sequence.nextTokenIndex !== row.context.length) throw new Error('query not erased from the KV cache');
      const t0 = performance.now();
      const next = (await firstToken(sequence, prompts.query)).token;
      cont.push(performance.now() - t0);
      // Same state, same greedy token: the continuation really reused the cached context.
      if (next !== token) throw new Error(`continuation token ${next} != full prefill token ${token}`);
    }
    record(row, c, 'continuation', summarize(cont));
  }
  await context.dispose();
  return results;
}

const small = prompts.rows.filter((r) => r.tokens <= matrixMax);
const big = prompts.rows.filter((r) => r.tokens > matrixMax);
let best = configs[0], bestMs = Infinity;
for (const c of configs) {
  if (small.length === 0) break;
  const res = await measure(c, small);
  const ms = res[Math.max(...small.map((r) => r.tokens))].median;
  if (ms < bestMs) best = c, bestMs = ms;
}
if (big.length > 0) {
  console.error(`llama.cpp: rows over ${matrixMax} tokens with the fastest configuration only: ${label(best)}`);
  await measure(best, big);
}
