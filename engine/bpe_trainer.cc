#include "engine/bpe_trainer.h"

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "engine/tokenizer.h"
#include <nlohmann/json.hpp>

namespace blockserve::engine {
namespace {

using ordered_json = nlohmann::ordered_json;

// A distinct pre-tokenized piece as a sequence of token ids, with how often it
// occurs in the corpus.
struct Word {
  std::vector<int32_t> symbols;
  int64_t count;
};

// Vocabulary under construction: id -> byte-level token string and back.
struct Vocab {
  std::vector<std::string> tokens;
  absl::flat_hash_map<std::string, int32_t> ids;

  int32_t Add(const std::string& token) {
    const auto [it, inserted] =
        ids.try_emplace(token, static_cast<int32_t>(tokens.size()));
    if (inserted) tokens.push_back(token);
    return it->second;
  }
};

uint64_t PairKey(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
         static_cast<uint32_t>(right);
}

absl::StatusOr<std::vector<Word>> CountWords(std::string_view corpus) {
  absl::StatusOr<RegexSplitter> splitter =
      RegexSplitter::Create(kGpt2SplitPattern);
  if (!splitter.ok()) return splitter.status();
  std::map<std::string_view, int64_t> counts;  // Ordered: deterministic.
  for (std::string_view piece : splitter->SplitIsolated(corpus)) {
    ++counts[piece];
  }
  std::vector<Word> words;
  words.reserve(counts.size());
  for (const auto& [piece, count] : counts) {
    Word word{{}, count};
    for (const char c : piece) word.symbols.push_back(static_cast<uint8_t>(c));
    words.push_back(std::move(word));
  }
  return words;
}

// Finds the most frequent adjacent pair (ties: lexicographically smallest
// token pair). Returns false if no pair occurs at least twice.
bool FindBestPair(const std::vector<Word>& words, const Vocab& vocab,
                  int32_t& best_left, int32_t& best_right) {
  absl::flat_hash_map<uint64_t, int64_t> pair_counts;
  for (const Word& word : words) {
    for (size_t i = 0; i + 1 < word.symbols.size(); ++i) {
      pair_counts[PairKey(word.symbols[i], word.symbols[i + 1])] += word.count;
    }
  }
  int64_t best_count = 0;
  for (const auto& [key, count] : pair_counts) {
    const auto left = static_cast<int32_t>(key >> 32);
    const auto right = static_cast<int32_t>(key & 0xFFFFFFFFu);
    const bool better =
        count > best_count ||
        (count == best_count &&
         std::tie(vocab.tokens[left], vocab.tokens[right]) <
             std::tie(vocab.tokens[best_left], vocab.tokens[best_right]));
    if (better) {
      best_count = count;
      best_left = left;
      best_right = right;
    }
  }
  return best_count >= 2;
}

// Replaces every non-overlapping (left, right) occurrence, left to right.
void ApplyMerge(int32_t left, int32_t right, int32_t merged,
                std::vector<Word>& words) {
  for (Word& word : words) {
    std::vector<int32_t>& s = word.symbols;
    size_t out = 0;
    for (size_t i = 0; i < s.size(); ++out) {
      if (i + 1 < s.size() && s[i] == left && s[i + 1] == right) {
        s[out] = merged;
        i += 2;
      } else {
        s[out] = s[i];
        ++i;
      }
    }
    s.resize(out);
  }
}

ordered_json ByteLevelNode(bool add_prefix_space, bool trim_offsets) {
  return ordered_json{{"type", "ByteLevel"},
                      {"add_prefix_space", add_prefix_space},
                      {"trim_offsets", trim_offsets},
                      {"use_regex", true}};
}

ordered_json AddedTokensNode(const std::vector<std::string>& special_tokens,
                             int32_t first_id) {
  ordered_json list = ordered_json::array();
  for (size_t i = 0; i < special_tokens.size(); ++i) {
    list.push_back(ordered_json{{"id", first_id + static_cast<int32_t>(i)},
                                {"content", special_tokens[i]},
                                {"single_word", false},
                                {"lstrip", false},
                                {"rstrip", false},
                                {"normalized", false},
                                {"special", true}});
  }
  return list;
}

ordered_json ModelNode(const Vocab& vocab,
                       const std::vector<std::string>& merges) {
  ordered_json vocab_node = ordered_json::object();
  for (size_t id = 0; id < vocab.tokens.size(); ++id) {
    vocab_node[vocab.tokens[id]] = id;
  }
  return ordered_json{{"type", "BPE"},
                      {"dropout", nullptr},
                      {"unk_token", nullptr},
                      {"continuing_subword_prefix", nullptr},
                      {"end_of_word_suffix", nullptr},
                      {"fuse_unk", false},
                      {"byte_fallback", false},
                      {"ignore_merges", false},
                      {"vocab", std::move(vocab_node)},
                      {"merges", merges}};
}

absl::Status CheckSpecialTokens(const std::vector<std::string>& special_tokens,
                                const Vocab& vocab) {
  absl::flat_hash_set<std::string> seen;
  for (const std::string& token : special_tokens) {
    if (token.empty()) {
      return absl::InvalidArgumentError(
          "expected non-empty special tokens, found \"\"");
    }
    if (!seen.insert(token).second) {
      return absl::InvalidArgumentError(absl::StrCat(
          "expected distinct special tokens, found \"", token, "\" twice"));
    }
    if (vocab.ids.contains(token)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "expected special tokens distinct from vocab tokens, found \"",
          token, "\" in the trained vocab"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::string> TrainByteLevelBpeJson(
    std::string_view corpus, int num_merges,
    const std::vector<std::string>& special_tokens) {
  if (num_merges < 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected num_merges >= 0, found ", num_merges));
  }
  absl::StatusOr<std::vector<Word>> words = CountWords(corpus);
  if (!words.ok()) return words.status();
  Vocab vocab;
  for (int b = 0; b < 256; ++b) {
    vocab.Add(ByteLevelEncode(std::string(1, static_cast<char>(b))));
  }
  std::vector<std::string> merges;
  int32_t left = 0;
  int32_t right = 0;
  for (int m = 0; m < num_merges && FindBestPair(*words, vocab, left, right);
       ++m) {
    // Copy first: Add() may reallocate `tokens`.
    const std::string left_token = vocab.tokens[left];
    const std::string right_token = vocab.tokens[right];
    const int32_t merged = vocab.Add(left_token + right_token);
    merges.push_back(absl::StrCat(left_token, " ", right_token));
    ApplyMerge(left, right, merged, *words);
  }
  if (absl::Status s = CheckSpecialTokens(special_tokens, vocab); !s.ok()) {
    return s;
  }
  try {
    ordered_json root;
    root["version"] = "1.0";
    root["truncation"] = nullptr;
    root["padding"] = nullptr;
    root["added_tokens"] = AddedTokensNode(
        special_tokens, static_cast<int32_t>(vocab.tokens.size()));
    root["normalizer"] = nullptr;
    root["pre_tokenizer"] = ByteLevelNode(false, true);
    root["post_processor"] = ByteLevelNode(true, false);
    root["decoder"] = ByteLevelNode(true, true);
    root["model"] = ModelNode(vocab, merges);
    return root.dump(2);
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected special tokens to be valid UTF-8, found: ", e.what()));
  }
}

}  // namespace blockserve::engine
