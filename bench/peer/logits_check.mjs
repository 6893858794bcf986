// Checks the converted GGUF against the engine: for several prompts (token ids), the
// last position's next-token distribution from llama.cpp (node-llama-cpp, GGUF from
// hf_to_gguf) must match the engine's (engine/logits, full causal prefill of the same
// ids on the Hugging Face folder).
//
//   node logits_check.mjs --logits_bin=PATH --model_dir=DIR --gguf=FILE
//        [--lengths=1,7,64,500] [--tolerance=0.01] [--flash=off|on] [--kv=F32|F16]
//
// node-llama-cpp hands out probabilities (softmax at temperature 1, no top-k/p cut), not
// raw logits, so both sides are compared as log-probabilities: log p = logit - logsumexp,
// i.e. the logits up to one constant per prompt. Fails (exit 1) when any prompt's max
// |log p_llama - log p_ours| over the vocabulary exceeds the tolerance or the argmax
// differs. Prompts are deterministic pseudo-random ids over the whole vocabulary.
import {execFileSync} from 'node:child_process';
import fs from 'node:fs';
import {loadLlama, flag, firstToken} from './llama.mjs';

const modelDir = flag('model_dir');
const lengths = flag('lengths', '1,7,64,500').split(',').map(Number);
const tolerance = Number(flag('tolerance', '0.01'));
const vocab = JSON.parse(fs.readFileSync(`${modelDir}/config.json`, 'utf8')).vocab_size;

function prompt(n, seed) {  // a small LCG: the same ids on every run
  let x = seed >>> 0;
  return Array.from({length: n}, () => (x = (Math.imul(x, 1664525) + 1013904223) >>> 0) % vocab);
}

function logSoftmax(logits) {
  const m = Math.max(...logits);
  const lse = m + Math.log(logits.reduce((s, v) => s + Math.exp(v - m), 0));
  return logits.map((v) => v - lse);
}

const argmax = (a) => a.reduce((best, v, i) => (v > a[best] ? i : best), 0);

const llama = await loadLlama();
const model = await llama.loadModel({modelPath: flag('gguf'), gpuLayers: 0});
const kv = flag('kv', 'F32');
const context = await model.createContext({
  contextSize: Math.max(...lengths) + 256,
  batchSize: 512,
  flashAttention: flag('flash', 'off') === 'on',
  experimentalKvCacheKeyType: kv,
  experimentalKvCacheValueType: kv,
});
const sequence = context.getSequence();
let failed = false;
for (const [i, n] of lengths.entries()) {
  const ids = prompt(n, 1000 + i);
  const ours = logSoftmax(JSON.parse(execFileSync(flag('logits_bin'), [`--model=${modelDir}`],
      {input: JSON.stringify({blocks: [ids], mode: 'full'}), maxBuffer: 1 << 26}).toString()).logits_last);
  await sequence.clearHistory();
  const next = await firstToken(sequence, ids, {
    probabilities: true, token: true, options: {temperature: 1, topK: 0, topP: 1, minP: 0}});
  const theirs = new Array(vocab).fill(-Infinity);
  for (const [token, p] of next.probabilities) theirs[token] = Math.log(p);
  let diff = 0;
  for (let t = 0; t < vocab; ++t) diff = Math.max(diff, Math.abs(theirs[t] - ours[t]));
  if (ours.length !== vocab) diff = Infinity;
  const ok = diff < tolerance && argmax(theirs) === argmax(ours);
  failed ||= !ok;
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${n} tokens: max |dlogp| ${diff.toExponential(2)}, ` +
              `argmax llama.cpp ${argmax(theirs)} engine ${argmax(ours)}`);
}
process.exit(failed ? 1 : 0);
