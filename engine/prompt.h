// How a request's text becomes Block-Attention blocks. This is the one place that
// decides it, so the passage encoder, the query prefill, the tests and the
// evaluations agree token for token (and therefore on content keys).
//
//   [system block] [passage 1] ... [passage k] [query]
//
// - Text is tokenized exactly as given: no chat template, no separators added.
// - The whole prompt is one sequence to the tokenizer's post-processor template
//   (Tokenizer::special_prefix() / special_suffix(), e.g. BOS before it): its leading
//   special tokens open the system block and its trailing ones (rare: an EOS) close
//   the query block, so a prompt gets what transformers' tokenizer(prompt) adds.
// - The system block is the leading special tokens (usually BOS) + the system prompt's
//   tokens (a BOS-only block when the system prompt is empty), absent when both are
//   empty. It is cached like a passage.
// - A passage block is Encode(text) with no special tokens, so its KV does not depend
//   on where in a prompt it appears.
// - The query block is Encode(query) + the trailing special tokens, computed fresh for
//   every request.
#ifndef BLOCKSERVE_ENGINE_PROMPT_H_
#define BLOCKSERVE_ENGINE_PROMPT_H_

#include <string_view>
#include <vector>

#include "engine/tokenizer.h"

namespace blockserve::engine {

std::vector<int32_t> SystemBlockTokens(const Tokenizer& tokenizer, std::string_view system_prompt);
std::vector<int32_t> PassageBlockTokens(const Tokenizer& tokenizer, std::string_view passage);
std::vector<int32_t> QueryBlockTokens(const Tokenizer& tokenizer, std::string_view query);

}  // namespace blockserve::engine

#endif  // BLOCKSERVE_ENGINE_PROMPT_H_
