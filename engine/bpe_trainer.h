// Minimal byte-level BPE trainer for building small test and demo tokenizers.
#ifndef BLOCKSERVE_ENGINE_BPE_TRAINER_H_
#define BLOCKSERVE_ENGINE_BPE_TRAINER_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace blockserve::engine {

// Trains a byte-level BPE on `corpus` (pre-tokenized with the GPT-2 ByteLevel
// regex, kGpt2SplitPattern) and returns a complete Hugging Face style
// tokenizer.json text that Tokenizer::FromJson accepts.
//
// Vocab: ids 0..255 are the byte-level symbols of bytes 0..255 (GPT-2
// bytes_to_unicode), followed by one new id per merge in merge order. Each
// step merges the most frequent adjacent pair (counted over word
// occurrences); ties go to the lexicographically smallest (left, right) pair
// of byte-level token strings, so the output is deterministic. Training stops
// after `num_merges` merges or earlier when no pair occurs at least twice. If
// a merge produces a token that already exists (reachable by two different
// splits), the merge is recorded but no new id is added.
// `special_tokens` become added_tokens (special=true) with the ids after the
// vocab, in the given order.
//
// Errors: InvalidArgument if num_merges < 0, or a special token is empty,
// duplicated, or equal to a vocab token.
absl::StatusOr<std::string> TrainByteLevelBpeJson(
    std::string_view corpus, int num_merges,
    const std::vector<std::string>& special_tokens);

}  // namespace blockserve::engine

#endif  // BLOCKSERVE_ENGINE_BPE_TRAINER_H_
