// Compares BlockServe's tokenizer (the encode binary) with Hugging Face's tokenizers
// library (@anush008/tokenizers, a native Node build) on one real tokenizer folder:
//
//   node compare.js --encode=PATH_TO_ENCODE --dir=MODEL_DIR --corpus=corpus.json
//                   [--hf_dir=DIR]  (HF's tokenizer.json from DIR instead: a check that
//                                    a broken copy is caught)
//                   [--wrap=B,A]    (HF must add exactly B special tokens before and A
//                                    after every text: the post-processor is exercised)
//                   [--known_differences]  (the corpus holds texts known to differ: every
//                                    text must give different ids, else exit code 1)
//
// For every text of the corpus the ids must be equal without special tokens and with
// them (HF's add_special_tokens against BlockServe's Encode(text, add_bos=true)), and
// BlockServe's Decode of the ids must equal HF's decode (skip_special_tokens false).
// Prints the match counts; exit code 1 on any difference.
'use strict';
const {execFileSync} = require('child_process');
const fs = require('fs');
const {Tokenizer} = require('@anush008/tokenizers');

function flag(name, fallback) {
  const prefix = `--${name}=`;
  const arg = process.argv.find((a) => a.startsWith(prefix));
  if (arg) return arg.slice(prefix.length);
  if (fallback !== undefined) return fallback;
  throw new Error(`missing ${prefix}`);
}

const same = (a, b) => a.length === b.length && a.every((x, i) => x === Number(b[i]));
const show = (ids) => `[${Array.from(ids).slice(0, 40).join(', ')}${ids.length > 40 ? ', ...' : ''}]`;

async function main() {
  const dir = flag('dir');
  const corpusPath = flag('corpus');
  const texts = JSON.parse(fs.readFileSync(corpusPath, 'utf8'));
  const ours = JSON.parse(execFileSync(flag('encode'),
      [`--model_dir=${dir}`, `--texts=${corpusPath}`], {maxBuffer: 1 << 28}).toString());
  const hf = Tokenizer.fromFile(`${flag('hf_dir', dir)}/tokenizer.json`);
  const counts = {plain: 0, special: 0, decode: 0};
  const wrap = flag('wrap', '');
  const wraps = new Set();
  const failures = [];
  for (let i = 0; i < texts.length; ++i) {
    const plain = (await hf.encode(texts[i], null, {addSpecialTokens: false})).getIds();
    const special = (await hf.encode(texts[i], null, {addSpecialTokens: true})).getIds();
    const decoded = await hf.decode(Array.from(plain), false);
    const label = `text ${i} ${JSON.stringify(texts[i].slice(0, 50))}`;
    // Where HF's plain ids sit inside its ids with special tokens: the wrapping (a
    // text that starts or ends with a special token's text can fit more than one way).
    const fits = Array.from({length: special.length - plain.length + 1}, (_, k) => k)
        .filter((k) => same(plain, Array.from(special.slice(k, k + plain.length))))
        .map((k) => `${k},${special.length - plain.length - k}`);
    const at = fits.includes(wrap) ? wrap : fits[0];
    wraps.add(at === undefined ? 'none' : at);
    if (same(ours.plain[i], plain)) {
      counts.plain++;
    } else {
      failures.push(`${label}: ids\n      hf   ${show(plain)}\n      ours ${show(ours.plain[i])}`);
    }
    if (same(ours.with_bos[i], special)) {
      counts.special++;
    } else {
      failures.push(`${label}: ids with special tokens\n      hf   ${show(special)}\n` +
                    `      ours ${show(ours.with_bos[i])}`);
    }
    if (ours.decoded[i] === decoded) {
      counts.decode++;
    } else {
      failures.push(`${label}: decode\n      hf   ${JSON.stringify(decoded)}\n` +
                    `      ours ${JSON.stringify(ours.decoded[i])}`);
    }
  }
  const n = texts.length;
  const wrapSeen = Array.from(wraps).join(' ');
  if (wrap && wrapSeen !== wrap) {
    failures.push(`hf adds special tokens before,after the text: ${wrapSeen}; expected ${wrap}`);
  }
  console.log(`${dir}: ids ${counts.plain}/${n}, with special tokens ${counts.special}/${n}, ` +
              `decode ${counts.decode}/${n} equal (bos ${ours.bos}, eos ${JSON.stringify(ours.eos)}, ` +
              `hf special tokens before,after: ${wrapSeen})`);
  for (const f of failures.slice(0, 20)) console.log(`  ${f}`);
  if (process.argv.includes('--known_differences')) {
    // Every text must still differ (a known difference that went away must move to the
    // required-equal corpus).
    console.log(`  known differences: ${n - counts.plain}/${n} texts give different ids`);
    process.exit(counts.plain === 0 ? 0 : 1);
  }
  process.exit(failures.length ? 1 : 0);
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
