#include "engine/prompt.h"

namespace blockserve::engine {

std::vector<int32_t> SystemBlockTokens(const Tokenizer& tokenizer, std::string_view system_prompt) {
  std::vector<int32_t> ids = tokenizer.special_prefix();
  const std::vector<int32_t> text = tokenizer.Encode(system_prompt);
  ids.insert(ids.end(), text.begin(), text.end());
  return ids;
}

std::vector<int32_t> PassageBlockTokens(const Tokenizer& tokenizer, std::string_view passage) {
  return tokenizer.Encode(passage);
}

std::vector<int32_t> QueryBlockTokens(const Tokenizer& tokenizer, std::string_view query) {
  std::vector<int32_t> ids = tokenizer.Encode(query);
  ids.insert(ids.end(), tokenizer.special_suffix().begin(), tokenizer.special_suffix().end());
  return ids;
}

}  // namespace blockserve::engine
