#include "engine/prompt.h"

namespace blockserve::engine {

std::vector<int32_t> SystemBlockTokens(const Tokenizer& tokenizer, std::string_view system_prompt) {
  return tokenizer.Encode(system_prompt, /*add_bos=*/true);
}

std::vector<int32_t> PassageBlockTokens(const Tokenizer& tokenizer, std::string_view passage) {
  return tokenizer.Encode(passage);
}

std::vector<int32_t> QueryBlockTokens(const Tokenizer& tokenizer, std::string_view query) {
  return tokenizer.Encode(query);
}

}  // namespace blockserve::engine
