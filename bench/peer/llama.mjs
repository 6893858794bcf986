// Loads llama.cpp through node-llama-cpp the only way bench/peer allows: its prebuilt
// linux-x64 CPU binary (the @node-llama-cpp/linux-x64 package that npm ci installed),
// never building from source and never downloading anything, so it works offline.
import {getLlama, LlamaLogLevel} from 'node-llama-cpp';

export async function loadLlama() {
  const llama = await getLlama({
    gpu: false,                // CPU only: the GPU binaries are not installed (npm ci --omit=optional)
    build: 'never',            // a missing binary is an error, not a cmake build
    skipDownload: true,        // never fetch llama.cpp's source
    usePrebuiltBinaries: true,
    progressLogs: false,
    logLevel: LlamaLogLevel.error,
    maxThreads: 0,             // so a context's `threads` is the exact thread count used
  });
  if (llama.buildType !== 'prebuilt') {
    throw new Error(`node-llama-cpp loaded a ${llama.buildType} binary, expected the prebuilt one`);
  }
  return llama;
}

// argv flags of the form --name=value.
export function flag(name, fallback) {
  const prefix = `--${name}=`;
  const arg = process.argv.find((a) => a.startsWith(prefix));
  if (arg) return arg.slice(prefix.length);
  if (fallback !== undefined) return fallback;
  throw new Error(`missing ${prefix}`);
}

// Evaluates `tokens` after what the sequence already holds and samples one token greedily
// from the last position's logits (time to first token). Only the last position computes
// logits; the sampled token is not added to the sequence.
export async function firstToken(sequence, tokens, generateNext = {token: true}) {
  const input = tokens.slice(0, -1);
  input.push([tokens[tokens.length - 1], {generateNext}]);
  const out = await sequence.controlledEvaluate(input);
  return out[out.length - 1].next;
}
