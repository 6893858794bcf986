#include "blocks/passage_ref.h"

#include "absl/strings/str_cat.h"
#include "contract/request_contract.h"
#include "engine/prompt.h"

namespace blockserve::blocks {
namespace {

absl::Status CheckLength(size_t n, const engine::ModelConfig& config, const char* what) {
  if (n == 0 || static_cast<int64_t>(n) >= config.max_position_embeddings) {
    return absl::InvalidArgumentError(absl::StrCat(
        what, " must have 1..", config.max_position_embeddings - 1,
        " tokens (the model's context length minus one), got ", n));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<int32_t>> TextPassageTokens(const engine::Tokenizer& tokenizer,
                                                       const engine::ModelConfig& config,
                                                       std::string_view text) {
  // The request contract's rule (emptiness, size, UTF-8), checked before tokenizing.
  if (absl::Status s = contract::ValidatePassageText(absl::string_view(text.data(), text.size()),
                                                     "passage text");
      !s.ok()) {
    return s;
  }
  std::vector<int32_t> tokens = engine::PassageBlockTokens(tokenizer, text);
  if (absl::Status s = CheckLength(tokens.size(), config, "passage text"); !s.ok()) return s;
  return tokens;
}

absl::StatusOr<std::vector<int32_t>> TokenIdPassageTokens(const engine::ModelConfig& config,
                                                          const v1::TokenIds& ids) {
  if (absl::Status s = CheckLength(ids.ids_size(), config, "passage token_ids"); !s.ok()) {
    return s;
  }
  for (int i = 0; i < ids.ids_size(); ++i) {
    if (ids.ids(i) < 0 || ids.ids(i) >= config.vocab_size) {
      return absl::InvalidArgumentError(absl::StrCat("passage token_ids[", i, "] = ", ids.ids(i),
                                                     " is outside [0, ", config.vocab_size, ")"));
    }
  }
  return std::vector<int32_t>(ids.ids().begin(), ids.ids().end());
}

absl::StatusOr<std::vector<int32_t>> PassageContentTokens(const engine::Tokenizer& tokenizer,
                                                          const engine::ModelConfig& config,
                                                          const v1::Passage& passage) {
  switch (passage.content_case()) {
    case v1::Passage::kText:
      return TextPassageTokens(tokenizer, config, passage.text());
    case v1::Passage::kTokenIds:
      return TokenIdPassageTokens(config, passage.token_ids());
    case v1::Passage::CONTENT_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError("passage has no content: set text or token_ids");
}

}  // namespace blockserve::blocks
