// A passage's block tokens from what a client sent (text or token ids), checked by the
// model-dependent rules of proto Passage / PassageRef (tokenized length, vocabulary).
// BlockCache resolves both ingested passages and a prompt's references through these,
// so a passage is accepted, and tokenized, identically on ingest and at query time.
#ifndef BLOCKSERVE_BLOCKS_PASSAGE_REF_H_
#define BLOCKSERVE_BLOCKS_PASSAGE_REF_H_

#include <cstdint>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/model_config.h"
#include "engine/tokenizer.h"
#include "proto/blockserve.pb.h"

namespace blockserve::blocks {

// engine::PassageBlockTokens(text). InvalidArgument for text that breaks
// contract::ValidatePassageText (empty, over its byte limit, invalid UTF-8), or that
// tokenizes to 0 or >= context length tokens.
absl::StatusOr<std::vector<int32_t>> TextPassageTokens(const engine::Tokenizer& tokenizer,
                                                       const engine::ModelConfig& config,
                                                       std::string_view text);

// The ids as given. InvalidArgument for 0 or >= context length ids, or an id outside
// [0, vocab_size).
absl::StatusOr<std::vector<int32_t>> TokenIdPassageTokens(const engine::ModelConfig& config,
                                                          const v1::TokenIds& ids);

// A Passage's content (text or token_ids); InvalidArgument when neither is set.
absl::StatusOr<std::vector<int32_t>> PassageContentTokens(const engine::Tokenizer& tokenizer,
                                                          const engine::ModelConfig& config,
                                                          const v1::Passage& passage);

}  // namespace blockserve::blocks

#endif  // BLOCKSERVE_BLOCKS_PASSAGE_REF_H_
