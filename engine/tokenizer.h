// Byte-level BPE tokenizer loaded from a Hugging Face `tokenizer.json`.
//
// Supported subset of the format (anything else is rejected by FromJson with
// InvalidArgument, never silently mis-tokenized):
//   * model: type "BPE" (a missing type is taken as BPE, as in old files) with
//     `vocab` (token -> id), `merges` as "a b" strings or ["a", "b"] pairs,
//     optional `ignore_merges` and `unk_token`. `byte_fallback`,
//     `continuing_subword_prefix` and `end_of_word_suffix` are rejected.
//   * normalizer: null, or "NFC" (accepted as a no-op: input is assumed to be
//     NFC already, which is what Qwen2-style files expect of ordinary text).
//   * pre_tokenizer: null (the whole text is one piece), "ByteLevel"
//     (`use_regex` defaults to true and uses the GPT-2 pattern,
//     `add_prefix_space` defaults to false), "Split" with pattern
//     {"Regex": ...} or {"String": ...} and behavior Isolated, Removed,
//     MergedWithPrevious, MergedWithNext or Contiguous (plus `invert`), and
//     "Sequence" of those.
//   * added_tokens: matched literally in the input before pre-tokenization
//     (longest match wins); `lstrip`, `rstrip`, `single_word` and
//     `normalized` are ignored.
//   * post_processor: only consulted to find the BOS token (see bos_id()).
//   * decoder: ignored; decoding is always byte-level.
// Text is always byte-level mapped (GPT-2 bytes_to_unicode) before BPE.
#ifndef BLOCKSERVE_ENGINE_TOKENIZER_H_
#define BLOCKSERVE_ENGINE_TOKENIZER_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace blockserve::engine {

// GPT-2's pre-tokenization regex (what ByteLevel with use_regex=true uses).
inline constexpr std::string_view kGpt2SplitPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// Maps raw bytes to their GPT-2 byte-level symbols (one Unicode code point per
// byte, returned as UTF-8). E.g. " " -> "Ġ", "a" -> "a".
std::string ByteLevelEncode(std::string_view bytes);

// Inverse of ByteLevelEncode. A string containing any code point that is not a
// byte-level symbol (or invalid UTF-8) is returned unchanged, matching the
// Hugging Face ByteLevel decoder.
std::string ByteLevelDecode(std::string_view symbols);

// A PCRE2 pattern compiled once (UTF + UCP, so \p{L}, \p{N}, \s are Unicode
// aware) that cuts text into alternating matched / unmatched spans.
// Invalid UTF-8 in the text never matches; it ends up in unmatched spans.
// Copies share the compiled pattern; all methods are thread-safe.
class RegexSplitter {
 public:
  // A half-open byte range [begin, end) of the text.
  struct Segment {
    size_t begin;
    size_t end;
    bool is_match;
  };

  // Compiles `pattern`; if `literal`, the pattern is matched as plain text.
  // Returns InvalidArgument with PCRE2's message for a bad pattern.
  static absl::StatusOr<RegexSplitter> Create(std::string_view pattern,
                                              bool literal = false);

  // Returns non-empty segments that cover `text` exactly, in order. Empty
  // matches are dropped.
  std::vector<Segment> Segments(std::string_view text) const;

  // Isolated split: every non-empty match and every gap between matches.
  std::vector<std::string_view> SplitIsolated(std::string_view text) const;

 private:
  struct Compiled;
  explicit RegexSplitter(std::shared_ptr<const Compiled> compiled);
  std::shared_ptr<const Compiled> compiled_;
};

// An immutable byte-level BPE tokenizer. Cheap to copy (copies share state).
// All const methods are thread-safe.
class Tokenizer {
 public:
  // Reads and parses a tokenizer.json. NotFound if the file cannot be opened;
  // otherwise as FromJson.
  static absl::StatusOr<Tokenizer> FromFile(const std::string& path);

  // Parses tokenizer.json text. InvalidArgument for invalid JSON, missing or
  // mistyped model/vocab/merges, unsupported model/normalizer/pre-tokenizer
  // types, merges that refer to tokens not in the vocab, bad regexes, etc.
  static absl::StatusOr<Tokenizer> FromJson(std::string_view json_text);

  // Encodes `text`. Added tokens occurring literally are matched first
  // (longest match) and emitted as their ids; the remaining text is
  // pre-tokenized, byte-level mapped and BPE-merged by merge rank. A byte-level
  // symbol missing from the vocab becomes unk_token if the model has one and
  // is dropped otherwise. If `add_bos` and bos_id() is set, it is prepended.
  std::vector<int32_t> Encode(std::string_view text, bool add_bos = false) const;

  // Decodes ids to text by concatenating TokenBytes() of each id; special
  // tokens are skipped if `skip_special`. Incomplete UTF-8 sequences are kept
  // as raw bytes, so streaming callers can concatenate partial decodes.
  // InvalidArgument if any id is unknown.
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids,
                                     bool skip_special = false) const;

  // Raw bytes of one token (an added token's content, or the byte-level
  // decoding of a vocab token). InvalidArgument for an unknown id.
  absl::StatusOr<std::string> TokenBytes(int32_t id) const;
  // Same as TokenBytes; named for streaming decode call sites.
  absl::StatusOr<std::string> DecodeToken(int32_t id) const {
    return TokenBytes(id);
  }

  // Max id + 1 over the vocab and added tokens (ids may have holes).
  int32_t vocab_size() const;

  // Id of `token` spelled as in tokenizer.json (byte-level form for vocab
  // tokens, e.g. "Ġthe"; literal content for added tokens). Added tokens take
  // precedence.
  std::optional<int32_t> TokenId(std::string_view token) const;

  // BOS: the leading SpecialToken of a TemplateProcessing post_processor
  // (also inside a Sequence) if any; otherwise the token "<|begin_of_text|>"
  // or else "<s>" if present.
  std::optional<int32_t> bos_id() const;
  // EOS: the first present of "<|end_of_text|>", "</s>", "<|endoftext|>".
  // (Chat end markers like "<|eot_id|>" are not considered.)
  std::optional<int32_t> eos_id() const;

  // True for added tokens marked "special": true.
  bool IsSpecial(int32_t id) const;

 private:
  struct Impl;
  explicit Tokenizer(std::shared_ptr<const Impl> impl);
  std::shared_ptr<const Impl> impl_;
};

}  // namespace blockserve::engine

#endif  // BLOCKSERVE_ENGINE_TOKENIZER_H_
