// BPE tokenizer loaded from a Hugging Face `tokenizer.json` (plus, with
// FromModelDir, the special-token settings of tokenizer_config.json,
// generation_config.json and config.json).
//
// Supported subset of the format (anything else is rejected by FromJson with
// InvalidArgument naming the unsupported feature, never silently
// mis-tokenized):
//   * model: type "BPE" (a missing type is taken as BPE, as in old files) with
//     `vocab` (token -> id), `merges` as "a b" strings or ["a", "b"] pairs,
//     optional `ignore_merges`, `unk_token`, `fuse_unk` and `byte_fallback`.
//     `continuing_subword_prefix` and `end_of_word_suffix` must be null or "".
//   * Two flavours, decided by the file:
//       - byte-level (GPT-2, Llama 3, Qwen): text is mapped to GPT-2 byte
//         symbols (bytes_to_unicode) before BPE;
//       - SentencePiece-style (Llama 2, Mistral): chosen when
//         model.byte_fallback is true or the pre-tokenizer has a Metaspace.
//         BPE starts from Unicode characters; a character missing from the
//         vocab becomes its <0xXX> byte tokens (byte_fallback) or unk_token
//         (consecutive ones fused with fuse_unk).
//   * normalizer: null, NFC, NFD, NFKC, NFKD (through libutf8proc), Prepend,
//     Replace (String or Regex pattern) and Sequence of those. Applied to the
//     text between added tokens, as Hugging Face does.
//   * pre_tokenizer: null (the whole text is one piece), "ByteLevel"
//     (`use_regex` defaults to true and uses the GPT-2 pattern,
//     `add_prefix_space` defaults to false), "Split" with pattern
//     {"Regex": ...} or {"String": ...} and behavior Isolated, Removed,
//     MergedWithPrevious, MergedWithNext or Contiguous (plus `invert`),
//     "Metaspace" (`replacement`, `prepend_scheme` always/first/never or the
//     older `add_prefix_space`, `split`), and "Sequence" of those.
//   * added_tokens: matched literally in the input before normalization
//     (longest match wins); `lstrip`, `rstrip` and `single_word` must be
//     false and `normalized` tokens are matched in the raw text.
//   * post_processor: which special tokens Encode(text, true) puts around the
//     text (see special_prefix()): TemplateProcessing (its "single" template;
//     the "pair" template is not read), BertProcessing and RobertaProcessing
//     ([CLS] $A [SEP] / <s> $A </s>), ByteLevel (no tokens) and Sequence of
//     those; any other type is rejected.
//   * decoder: ignored except that a SentencePiece-style Decode() drops the
//     leading space its Strip/Metaspace decoder drops.
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
// aware) that cuts text into alternating matched / unmatched spans. Where
// PCRE2's Unicode tables are older than libutf8proc's, the pattern's \p{...}
// classes take the newer code points too, and \s leaves out U+180E (no longer
// white space), as Hugging Face's regexes do (tests/tokenizers/README.md).
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

// What a model folder says about special tokens outside tokenizer.json, read
// the way transformers reads it. Token names come from tokenizer_config.json;
// ids from generation_config.json, else config.json.
struct SpecialTokenConfig {
  // tokenizer_config.json exists (even without any of the keys below).
  bool has_tokenizer_config = false;
  // tokenizer_config.json "bos_token" / "eos_token": a string or an
  // AddedToken object {"content": ...}; null or absent is nullopt.
  std::optional<std::string> bos_token;
  std::optional<std::string> eos_token;
  // tokenizer_config.json "add_bos_token" / "add_eos_token", when present.
  std::optional<bool> add_bos_token;
  std::optional<bool> add_eos_token;
  // generation_config.json "bos_token_id" / "eos_token_id" (int or list),
  // each taken from config.json when generation_config.json lacks it.
  std::optional<int64_t> bos_token_id;
  std::vector<int64_t> eos_token_ids;

  // Reads the three files of `dir`; a missing file counts as empty.
  // InvalidArgument naming the file and key for malformed JSON or values.
  static absl::StatusOr<SpecialTokenConfig> Read(const std::string& dir);
};

// An immutable BPE tokenizer. Cheap to copy (copies share state).
// All const methods are thread-safe.
class Tokenizer {
 public:
  // Reads and parses a tokenizer.json. NotFound if the file cannot be opened;
  // otherwise as FromJson.
  static absl::StatusOr<Tokenizer> FromFile(const std::string& path,
                                            const SpecialTokenConfig& special = {});

  // `dir`/tokenizer.json with SpecialTokenConfig::Read(dir).
  static absl::StatusOr<Tokenizer> FromModelDir(const std::string& dir);

  // Parses tokenizer.json text. InvalidArgument for invalid JSON, missing or
  // mistyped model/vocab/merges, unsupported model/normalizer/pre-tokenizer
  // types, merges that refer to tokens not in the vocab, bad regexes, special
  // tokens of `special` that are not in the vocabulary, etc.
  static absl::StatusOr<Tokenizer> FromJson(std::string_view json_text,
                                            const SpecialTokenConfig& special = {});

  // Encodes `text`. Added tokens occurring literally are matched first
  // (longest match) and emitted as their ids; the text between them is
  // normalized, pre-tokenized, (byte-level mapped) and BPE-merged by merge
  // rank. A symbol missing from the vocab becomes unk_token if the model has
  // one and is dropped otherwise. With `add_special_tokens` (Hugging Face's
  // name), special_prefix() goes before the ids and special_suffix() after.
  std::vector<int32_t> Encode(std::string_view text,
                              bool add_special_tokens = false) const;

  // Decodes ids to text by concatenating TokenBytes() of each id; special
  // tokens are skipped if `skip_special`. A SentencePiece-style tokenizer
  // whose decoder strips the leading space drops it from the result. Incomplete UTF-8 sequences are kept
  // as raw bytes, so streaming callers can concatenate partial decodes.
  // InvalidArgument if any id is unknown.
  absl::StatusOr<std::string> Decode(absl::Span<const int32_t> ids,
                                     bool skip_special = false) const;

  // Raw bytes of one token (an added token's content, the byte-level
  // decoding of a vocab token, or for SentencePiece-style vocabularies the
  // token with "▁" as a space and <0xXX> as its byte). InvalidArgument for an unknown id.
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

  // The special tokens Encode(text, true) puts before and after a text, as
  // transformers' tokenizer(text) would. Never guessed from token names:
  //   * the post_processor's single-sequence template (see the top of this
  //     file), else none;
  //   * tokenizer_config.json's add_bos_token, when present, replaces the
  //     leading part: its bos_token (else the bos_token_id) if true, nothing if
  //     false; add_eos_token likewise replaces the trailing part with eos_id();
  //   * for a folder without tokenizer_config.json (BlockServe's own trained
  //     models) and no leading part, the bos_token_id of generation_config or
  //     config.json.
  const std::vector<int32_t>& special_prefix() const;
  const std::vector<int32_t>& special_suffix() const;
  // BOS: the first of special_prefix(), if any.
  std::optional<int32_t> bos_id() const;
  // EOS: tokenizer_config.json's eos_token if any, else the first of
  // eos_ids().
  std::optional<int32_t> eos_id() const;
  // Every id that ends generation: tokenizer_config.json's eos_token and the
  // eos_token_id(s) of generation_config.json (else config.json), in that
  // order, without repeats.
  const std::vector<int32_t>& eos_ids() const;

  // True for added tokens marked "special": true.
  bool IsSpecial(int32_t id) const;

 private:
  struct Impl;
  explicit Tokenizer(std::shared_ptr<const Impl> impl);
  std::shared_ptr<const Impl> impl_;
};

}  // namespace blockserve::engine

#endif  // BLOCKSERVE_ENGINE_TOKENIZER_H_
