// How a request's text becomes Block-Attention blocks. This is the one place that
// decides it, so the passage encoder, the query prefill, the tests and the
// evaluations agree token for token (and therefore on content keys).
//
//   [system block] [passage 1] ... [passage k] [query]
//
// - Text is tokenized exactly as given: no chat template, no separators added.
// - The system block is BOS + the system prompt's tokens when the tokenizer has a BOS
//   token (a BOS-only block when the system prompt is empty), else the system prompt's
//   tokens, and absent when those are empty. It is cached like a passage.
// - A passage block is Encode(text) with no BOS, so its KV does not depend on where
//   in a prompt it appears.
// - The query block is Encode(query), computed fresh for every request.
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
