#include "engine/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <optional>
#include <queue>
#include <sstream>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/json_nesting.h"
#include "engine/utf8.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include <nlohmann/json.hpp>

namespace blockserve::engine {
namespace {

using json = nlohmann::json;

// The system Abseil may define absl::string_view as its own type; convert
// explicitly so the code builds with either configuration.
absl::string_view Sv(std::string_view s) { return {s.data(), s.size()}; }

// ---------------------------------------------------------------------------
// UTF-8 and the GPT-2 byte <-> symbol table.

void AppendUtf8(char32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

// Byte-level symbols are code points below this bound (256 + 68 remapped).
constexpr char32_t kSymbolCodePointLimit = 256 + 68;

struct ByteTables {
  std::array<std::string, 256> symbol_of_byte;
  std::array<int, kSymbolCodePointLimit> byte_of_symbol;
};

// GPT-2 bytes_to_unicode: printable Latin-1 bytes map to themselves, the
// other 68 bytes map to 256, 257, ... in increasing byte order.
ByteTables BuildByteTables() {
  ByteTables tables;
  tables.byte_of_symbol.fill(-1);
  char32_t next_remapped = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) ||
                           (b >= 174 && b <= 255);
    const char32_t cp = printable ? static_cast<char32_t>(b) : next_remapped++;
    AppendUtf8(cp, tables.symbol_of_byte[b]);
    tables.byte_of_symbol[cp] = b;
  }
  return tables;
}

const ByteTables& GetByteTables() {
  static const ByteTables* const kTables = new ByteTables(BuildByteTables());
  return *kTables;
}

}  // namespace

std::string ByteLevelEncode(std::string_view bytes) {
  const ByteTables& tables = GetByteTables();
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char c : bytes) {
    out += tables.symbol_of_byte[static_cast<unsigned char>(c)];
  }
  return out;
}

std::string ByteLevelDecode(std::string_view symbols) {
  const ByteTables& tables = GetByteTables();
  std::string out;
  out.reserve(symbols.size());
  for (size_t pos = 0; pos < symbols.size();) {
    char32_t cp = 0;
    const size_t len = DecodeUtf8Char(symbols, pos, cp);
    if (len == 0 || cp >= kSymbolCodePointLimit ||
        tables.byte_of_symbol[cp] < 0) {
      return std::string(symbols);
    }
    out.push_back(static_cast<char>(tables.byte_of_symbol[cp]));
    pos += len;
  }
  return out;
}

// ---------------------------------------------------------------------------
// RegexSplitter

struct RegexSplitter::Compiled {
  pcre2_code* code = nullptr;
  ~Compiled() { pcre2_code_free(code); }
};

RegexSplitter::RegexSplitter(std::shared_ptr<const Compiled> compiled)
    : compiled_(std::move(compiled)) {}

absl::StatusOr<RegexSplitter> RegexSplitter::Create(std::string_view pattern,
                                                    bool literal) {
  // PCRE2_LITERAL may not be combined with PCRE2_UCP.
  const uint32_t options =
      PCRE2_UTF | PCRE2_MATCH_INVALID_UTF |
      (literal ? PCRE2_LITERAL : static_cast<uint32_t>(PCRE2_UCP));
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()),
                    pattern.size(), options, &error_code, &error_offset,
                    /*ccontext=*/nullptr);
  if (code == nullptr) {
    PCRE2_UCHAR message[256];
    pcre2_get_error_message(error_code, message, sizeof(message));
    return absl::InvalidArgumentError(absl::StrCat(
        "expected a valid PCRE2 regex, found \"", Sv(pattern),
        "\" (error at offset ", error_offset, ": ",
        reinterpret_cast<const char*>(message), ")"));
  }
  // Best effort: without JIT support the interpreter is used.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  auto compiled = std::make_shared<Compiled>();
  compiled->code = code;
  return RegexSplitter(std::move(compiled));
}

std::vector<RegexSplitter::Segment> RegexSplitter::Segments(
    std::string_view text) const {
  std::vector<Segment> segments;
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)>
      match_data(pcre2_match_data_create_from_pattern(compiled_->code, nullptr),
                 &pcre2_match_data_free);
  if (match_data == nullptr) return {{0, text.size(), false}};
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t gap_begin = 0;
  size_t search_from = 0;
  uint32_t options = 0;
  while (search_from <= text.size()) {
    const int rc = pcre2_match(compiled_->code, subject, text.size(),
                               search_from, options, match_data.get(),
                               /*mcontext=*/nullptr);
    if (rc < 0) break;  // No match (or a resource limit): rest is a gap.
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match_data.get());
    const size_t begin = ovector[0];
    const size_t end = ovector[1];
    if (end < begin || begin < gap_begin) break;  // \K oddities.
    if (begin > gap_begin) segments.push_back({gap_begin, begin, false});
    if (end > begin) segments.push_back({begin, end, true});
    gap_begin = end;
    search_from = end;
    // After an empty match, ask for a non-empty one at the same spot (or any
    // match further on) so the loop always makes progress.
    options = (end == begin) ? PCRE2_NOTEMPTY_ATSTART : 0;
  }
  if (gap_begin < text.size()) {
    segments.push_back({gap_begin, text.size(), false});
  }
  return segments;
}

std::vector<std::string_view> RegexSplitter::SplitIsolated(
    std::string_view text) const {
  std::vector<std::string_view> pieces;
  for (const Segment& s : Segments(text)) {
    pieces.push_back(text.substr(s.begin, s.end - s.begin));
  }
  return pieces;
}

// ---------------------------------------------------------------------------
// Tokenizer internals

namespace {

// Ids must stay below this bound so the id -> token table stays reasonable.
constexpr int64_t kMaxTokenId = int64_t{1} << 24;
// Pieces longer than this are not cached; the cache is cleared when full.
constexpr size_t kMaxCachedPieceBytes = 64;
constexpr size_t kMaxCacheEntries = size_t{1} << 16;

enum class SplitBehavior {
  kIsolated,
  kRemoved,
  kMergedWithPrevious,
  kMergedWithNext,
  kContiguous,
};

// One pre-tokenizer stage, applied to every piece produced so far.
struct PreTokenizerStep {
  bool add_prefix_space = false;
  std::optional<RegexSplitter> splitter;  // nullopt: piece is kept whole.
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
};

struct AddedToken {
  std::string content;
  int32_t id;
  bool special;
};

struct MergeRule {
  int32_t rank;
  int32_t merged_id;
};

uint64_t PairKey(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) |
         static_cast<uint32_t>(right);
}

// Groups segments of `text` into pieces following HF's SplitDelimiterBehavior.
std::vector<std::string> GroupSegments(
    std::string_view text, std::vector<RegexSplitter::Segment> segments,
    SplitBehavior behavior, bool invert) {
  std::vector<std::string> out;
  bool previous_was_match = false;
  std::optional<std::string> pending_match;  // For kMergedWithNext.
  for (RegexSplitter::Segment& segment : segments) {
    if (invert) segment.is_match = !segment.is_match;
    const std::string_view piece =
        text.substr(segment.begin, segment.end - segment.begin);
    switch (behavior) {
      case SplitBehavior::kIsolated:
        out.emplace_back(piece);
        break;
      case SplitBehavior::kRemoved:
        if (!segment.is_match) out.emplace_back(piece);
        break;
      case SplitBehavior::kMergedWithPrevious:
        if (segment.is_match && !out.empty() && !previous_was_match) {
          out.back().append(piece);
        } else {
          out.emplace_back(piece);
        }
        break;
      case SplitBehavior::kContiguous:
        if (segment.is_match && !out.empty() && previous_was_match) {
          out.back().append(piece);
        } else {
          out.emplace_back(piece);
        }
        break;
      case SplitBehavior::kMergedWithNext:
        if (segment.is_match) {
          if (pending_match.has_value()) out.push_back(*pending_match);
          pending_match = std::string(piece);
        } else {
          out.push_back(absl::StrCat(pending_match.value_or(""), Sv(piece)));
          pending_match.reset();
        }
        break;
    }
    previous_was_match = segment.is_match;
  }
  if (pending_match.has_value()) out.push_back(*pending_match);
  return out;
}

// Applies one step to one piece, appending results to `out`.
void ApplyStep(const PreTokenizerStep& step, std::string piece,
               std::vector<std::string>& out) {
  if (step.add_prefix_space && !piece.empty() && piece.front() != ' ') {
    piece.insert(piece.begin(), ' ');
  }
  if (!step.splitter.has_value()) {
    out.push_back(std::move(piece));
    return;
  }
  std::vector<std::string> grouped =
      GroupSegments(piece, step.splitter->Segments(piece), step.behavior,
                    step.invert);
  for (std::string& g : grouped) {
    if (!g.empty()) out.push_back(std::move(g));
  }
}

// --- JSON helpers: each returns a Status naming what was expected. ---

// Returns the member `key` of `object`, or nullptr if absent or null.
const json* FindMember(const json& object, const char* key) {
  if (!object.is_object()) return nullptr;
  const auto it = object.find(key);
  if (it == object.end() || it->is_null()) return nullptr;
  return &*it;
}

std::string Describe(const json& value) {
  std::string text = value.dump();
  if (text.size() > 60) text = text.substr(0, 57) + "...";
  return absl::StrCat(value.type_name(), " ", text);
}

absl::StatusOr<std::string> GetString(const json& object, const char* key,
                                      const std::string& where) {
  const json* value = FindMember(object, key);
  if (value == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected ", where, ".", key, " to be a string, found none"));
  }
  if (!value->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected ", where, ".", key, " to be a string, found ", Describe(*value)));
  }
  return value->get<std::string>();
}

absl::StatusOr<bool> GetBool(const json& object, const char* key,
                             const std::string& where, bool default_value) {
  const json* value = FindMember(object, key);
  if (value == nullptr) return default_value;
  if (!value->is_boolean()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected ", where, ".", key, " to be a boolean, found ", Describe(*value)));
  }
  return value->get<bool>();
}

absl::StatusOr<int32_t> ToTokenId(const json& value, const std::string& where) {
  if (!value.is_number_integer() || value.get<int64_t>() < 0 ||
      value.get<int64_t>() >= kMaxTokenId) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected ", where, " to be an integer id in [0, ",
                     kMaxTokenId, "), found ", Describe(value)));
  }
  return static_cast<int32_t>(value.get<int64_t>());
}

// --- Pre-tokenizer parsing ---

absl::Status ParsePreTokenizer(const json& node, const std::string& where,
                               std::vector<PreTokenizerStep>& steps);

absl::Status ParseByteLevel(const json& node, const std::string& where,
                            std::vector<PreTokenizerStep>& steps) {
  PreTokenizerStep step;
  absl::StatusOr<bool> add_prefix_space =
      GetBool(node, "add_prefix_space", where, false);
  if (!add_prefix_space.ok()) return add_prefix_space.status();
  absl::StatusOr<bool> use_regex = GetBool(node, "use_regex", where, true);
  if (!use_regex.ok()) return use_regex.status();
  step.add_prefix_space = *add_prefix_space;
  if (*use_regex) {
    absl::StatusOr<RegexSplitter> splitter =
        RegexSplitter::Create(kGpt2SplitPattern);
    if (!splitter.ok()) return splitter.status();
    step.splitter = *std::move(splitter);
  }
  steps.push_back(std::move(step));
  return absl::OkStatus();
}

absl::StatusOr<SplitBehavior> ParseBehavior(const json& node,
                                            const std::string& where) {
  const json* value = FindMember(node, "behavior");
  if (value == nullptr) return SplitBehavior::kIsolated;
  static constexpr std::pair<std::string_view, SplitBehavior> kNames[] = {
      {"Isolated", SplitBehavior::kIsolated},
      {"Removed", SplitBehavior::kRemoved},
      {"MergedWithPrevious", SplitBehavior::kMergedWithPrevious},
      {"MergedWithNext", SplitBehavior::kMergedWithNext},
      {"Contiguous", SplitBehavior::kContiguous},
  };
  if (value->is_string()) {
    for (const auto& [name, behavior] : kNames) {
      if (value->get<std::string>() == name) return behavior;
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "expected ", where,
      ".behavior to be one of Isolated, Removed, MergedWithPrevious, "
      "MergedWithNext, Contiguous; found ",
      Describe(*value)));
}

absl::Status ParseSplit(const json& node, const std::string& where,
                        std::vector<PreTokenizerStep>& steps) {
  const json* pattern = FindMember(node, "pattern");
  const json* regex = pattern ? FindMember(*pattern, "Regex") : nullptr;
  const json* literal = pattern ? FindMember(*pattern, "String") : nullptr;
  const json* text = regex != nullptr ? regex : literal;
  if (text == nullptr || !text->is_string()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected ", where,
        ".pattern to be {\"Regex\": string} or {\"String\": string}, found ",
        pattern ? Describe(*pattern) : "none"));
  }
  absl::StatusOr<RegexSplitter> splitter = RegexSplitter::Create(
      text->get<std::string>(), /*literal=*/regex == nullptr);
  if (!splitter.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ".pattern: ", splitter.status().message()));
  }
  absl::StatusOr<SplitBehavior> behavior = ParseBehavior(node, where);
  if (!behavior.ok()) return behavior.status();
  absl::StatusOr<bool> invert = GetBool(node, "invert", where, false);
  if (!invert.ok()) return invert.status();
  PreTokenizerStep step;
  step.splitter = *std::move(splitter);
  step.behavior = *behavior;
  step.invert = *invert;
  steps.push_back(std::move(step));
  return absl::OkStatus();
}

absl::Status ParseSequence(const json& node, const std::string& where,
                           std::vector<PreTokenizerStep>& steps) {
  const json* children = FindMember(node, "pretokenizers");
  if (children == nullptr || !children->is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected ", where, ".pretokenizers to be an array, found ",
        children ? Describe(*children) : "none"));
  }
  for (size_t i = 0; i < children->size(); ++i) {
    absl::Status status = ParsePreTokenizer(
        (*children)[i], absl::StrCat(where, ".pretokenizers[", i, "]"), steps);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::Status ParsePreTokenizer(const json& node, const std::string& where,
                               std::vector<PreTokenizerStep>& steps) {
  absl::StatusOr<std::string> type = GetString(node, "type", where);
  if (!type.ok()) return type.status();
  if (*type == "ByteLevel") return ParseByteLevel(node, where, steps);
  if (*type == "Split") return ParseSplit(node, where, steps);
  if (*type == "Sequence") return ParseSequence(node, where, steps);
  return absl::InvalidArgumentError(
      absl::StrCat("expected ", where,
                   ".type to be ByteLevel, Split or Sequence, found \"", *type,
                   "\""));
}

absl::Status CheckNormalizer(const json& root) {
  const json* normalizer = FindMember(root, "normalizer");
  if (normalizer == nullptr) return absl::OkStatus();
  absl::StatusOr<std::string> type =
      GetString(*normalizer, "type", "normalizer");
  if (!type.ok()) return type.status();
  if (*type == "NFC") return absl::OkStatus();
  if (*type == "Sequence") {
    const json* children = FindMember(*normalizer, "normalizers");
    if (children != nullptr && children->is_array() && children->empty()) {
      return absl::OkStatus();
    }
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "expected normalizer to be null, NFC or an empty Sequence, found \"",
      *type, "\""));
}

}  // namespace

struct Tokenizer::Impl {
  absl::flat_hash_map<std::string, int32_t> vocab;
  absl::flat_hash_map<uint64_t, MergeRule> merges;
  std::array<int32_t, 256> byte_ids;  // -1 if the byte's symbol is missing.
  bool ignore_merges = false;
  std::optional<int32_t> unk_id;
  std::vector<PreTokenizerStep> steps;

  std::vector<AddedToken> added;  // Sorted by content length, longest first.
  std::array<std::vector<size_t>, 256> added_by_first_byte;  // Into `added`.
  absl::flat_hash_map<std::string, int32_t> added_ids;

  std::vector<std::string> id_bytes;
  std::vector<bool> id_known;
  std::vector<bool> id_special;
  std::optional<int32_t> bos;
  std::optional<int32_t> eos;

  mutable absl::Mutex cache_mu;
  mutable absl::flat_hash_map<std::string, std::vector<int32_t>> cache
      ABSL_GUARDED_BY(cache_mu);

  absl::Status ParseModel(const json& root);
  absl::Status ParseVocab(const json& model);
  absl::Status ParseMerges(const json& model);
  absl::Status ParseAddedTokens(const json& root);
  void BuildIdTables();
  void FindBosEos(const json& root);

  std::optional<int32_t> Lookup(std::string_view token) const;
  // Returns the added token matching at text[pos], longest first.
  const AddedToken* MatchAdded(std::string_view text, size_t pos) const;
  void EncodeOrdinary(std::string_view text, std::vector<int32_t>& out) const;
  void EncodePiece(std::string_view piece, std::vector<int32_t>& out) const;
  std::vector<int32_t> BpePiece(std::string_view piece) const;
};

namespace {

// A symbol in the doubly linked list used while merging one piece.
struct Symbol {
  int32_t id;
  int prev;
  int next;
};

struct Candidate {
  int32_t rank;
  int left;  // Position of the left symbol.
  int32_t left_id;
  int32_t right_id;
  bool operator>(const Candidate& other) const {
    return std::tie(rank, left) > std::tie(other.rank, other.left);
  }
};

}  // namespace

absl::Status Tokenizer::Impl::ParseVocab(const json& model) {
  const json* vocab_json = FindMember(model, "vocab");
  if (vocab_json == nullptr || !vocab_json->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected model.vocab to be an object of token -> id, found ",
        vocab_json ? Describe(*vocab_json) : "none"));
  }
  vocab.reserve(vocab_json->size());
  for (const auto& [token, id_json] : vocab_json->items()) {
    absl::StatusOr<int32_t> id =
        ToTokenId(id_json, absl::StrCat("model.vocab[\"", token, "\"]"));
    if (!id.ok()) return id.status();
    vocab[token] = *id;
  }
  const ByteTables& tables = GetByteTables();
  for (int b = 0; b < 256; ++b) {
    const auto it = vocab.find(tables.symbol_of_byte[b]);
    byte_ids[b] = it == vocab.end() ? -1 : it->second;
  }
  return absl::OkStatus();
}

absl::Status Tokenizer::Impl::ParseMerges(const json& model) {
  const json* merges_json = FindMember(model, "merges");
  if (merges_json == nullptr || !merges_json->is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected model.merges to be an array, found ",
        merges_json ? Describe(*merges_json) : "none"));
  }
  merges.reserve(merges_json->size());
  for (size_t rank = 0; rank < merges_json->size(); ++rank) {
    const json& entry = (*merges_json)[rank];
    std::string left, right;
    if (entry.is_string()) {
      const std::string text = entry.get<std::string>();
      const size_t space = text.find(' ');
      if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos) {
        return absl::InvalidArgumentError(absl::StrCat(
            "expected model.merges[", rank, "] to be \"left right\", found \"",
            text, "\""));
      }
      left = text.substr(0, space);
      right = text.substr(space + 1);
    } else if (entry.is_array() && entry.size() == 2 && entry[0].is_string() &&
               entry[1].is_string()) {
      left = entry[0].get<std::string>();
      right = entry[1].get<std::string>();
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "expected model.merges[", rank,
          "] to be a \"left right\" string or a [left, right] pair, found ",
          Describe(entry)));
    }
    const std::string merged = left + right;
    for (const std::string* token :
         std::array<const std::string*, 3>{&left, &right, &merged}) {
      if (!vocab.contains(*token)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "model.merges[", rank, "] (\"", left, "\", \"", right,
            "\") refers to token \"", *token, "\", which is not in model.vocab"));
      }
    }
    merges.try_emplace(PairKey(vocab[left], vocab[right]),
                       MergeRule{static_cast<int32_t>(rank), vocab[merged]});
  }
  return absl::OkStatus();
}

absl::Status Tokenizer::Impl::ParseModel(const json& root) {
  const json* model = FindMember(root, "model");
  if (model == nullptr || !model->is_object()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected \"model\" to be an object, found ",
        model ? Describe(*model) : "none"));
  }
  if (const json* type = FindMember(*model, "type"); type != nullptr) {
    if (!type->is_string() || type->get<std::string>() != "BPE") {
      return absl::InvalidArgumentError(absl::StrCat(
          "expected model.type \"BPE\", found ", Describe(*type)));
    }
  }
  absl::StatusOr<bool> byte_fallback =
      GetBool(*model, "byte_fallback", "model", false);
  if (!byte_fallback.ok()) return byte_fallback.status();
  if (*byte_fallback) {
    return absl::InvalidArgumentError(
        "expected a byte-level BPE (model.byte_fallback false), found "
        "byte_fallback true (SentencePiece-style BPE is unsupported)");
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const json* value = FindMember(*model, key);
    if (value != nullptr && !(value->is_string() && value->empty())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "expected model.", key, " to be null, found ", Describe(*value)));
    }
  }
  absl::StatusOr<bool> ignore = GetBool(*model, "ignore_merges", "model", false);
  if (!ignore.ok()) return ignore.status();
  ignore_merges = *ignore;
  if (absl::Status status = ParseVocab(*model); !status.ok()) return status;
  if (absl::Status status = ParseMerges(*model); !status.ok()) return status;
  if (const json* unk = FindMember(*model, "unk_token"); unk != nullptr) {
    if (!unk->is_string()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "expected model.unk_token to be a string or null, found ",
          Describe(*unk)));
    }
    const auto it = vocab.find(unk->get<std::string>());
    if (it != vocab.end()) unk_id = it->second;
  }
  return absl::OkStatus();
}

absl::Status Tokenizer::Impl::ParseAddedTokens(const json& root) {
  const json* list = FindMember(root, "added_tokens");
  if (list == nullptr) return absl::OkStatus();
  if (!list->is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected added_tokens to be an array, found ", Describe(*list)));
  }
  for (size_t i = 0; i < list->size(); ++i) {
    const json& entry = (*list)[i];
    const std::string where = absl::StrCat("added_tokens[", i, "]");
    absl::StatusOr<std::string> content = GetString(entry, "content", where);
    if (!content.ok()) return content.status();
    if (content->empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "expected ", where, ".content to be non-empty, found \"\""));
    }
    const json* id_json = FindMember(entry, "id");
    if (id_json == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("expected ", where, ".id to be an integer, found none"));
    }
    absl::StatusOr<int32_t> id = ToTokenId(*id_json, where + ".id");
    if (!id.ok()) return id.status();
    absl::StatusOr<bool> special = GetBool(entry, "special", where, false);
    if (!special.ok()) return special.status();
    added.push_back({*std::move(content), *id, *special});
  }
  std::stable_sort(added.begin(), added.end(),
                   [](const AddedToken& a, const AddedToken& b) {
                     return a.content.size() > b.content.size();
                   });
  for (size_t i = 0; i < added.size(); ++i) {
    added_ids.try_emplace(added[i].content, added[i].id);
    added_by_first_byte[static_cast<unsigned char>(added[i].content[0])]
        .push_back(i);
  }
  return absl::OkStatus();
}

void Tokenizer::Impl::BuildIdTables() {
  int32_t size = 0;
  for (const auto& [token, id] : vocab) size = std::max(size, id + 1);
  for (const AddedToken& token : added) size = std::max(size, token.id + 1);
  id_bytes.assign(size, std::string());
  id_known.assign(size, false);
  id_special.assign(size, false);
  for (const auto& [token, id] : vocab) {
    id_bytes[id] = ByteLevelDecode(token);
    id_known[id] = true;
  }
  // Added tokens are raw text and override a vocab entry with the same id.
  for (const AddedToken& token : added) {
    id_bytes[token.id] = token.content;
    id_known[token.id] = true;
    id_special[token.id] = id_special[token.id] || token.special;
  }
}

namespace {

// Finds the leading SpecialToken name of a TemplateProcessing's "single"
// template, also looking inside a post-processor Sequence.
std::optional<std::string> TemplateBosName(const json& processor) {
  const json* type = FindMember(processor, "type");
  if (type == nullptr || !type->is_string()) return std::nullopt;
  if (*type == "Sequence") {
    const json* children = FindMember(processor, "processors");
    if (children == nullptr || !children->is_array()) return std::nullopt;
    for (const json& child : *children) {
      if (std::optional<std::string> name = TemplateBosName(child)) return name;
    }
    return std::nullopt;
  }
  if (*type != "TemplateProcessing") return std::nullopt;
  const json* single = FindMember(processor, "single");
  if (single == nullptr || !single->is_array() || single->empty()) {
    return std::nullopt;
  }
  const json* special = FindMember((*single)[0], "SpecialToken");
  const json* id = special ? FindMember(*special, "id") : nullptr;
  if (id == nullptr || !id->is_string()) return std::nullopt;
  return id->get<std::string>();
}

}  // namespace

std::optional<int32_t> Tokenizer::Impl::Lookup(std::string_view token) const {
  if (const auto it = added_ids.find(Sv(token)); it != added_ids.end()) {
    return it->second;
  }
  if (const auto it = vocab.find(Sv(token)); it != vocab.end()) return it->second;
  return std::nullopt;
}

void Tokenizer::Impl::FindBosEos(const json& root) {
  if (const json* processor = FindMember(root, "post_processor")) {
    if (std::optional<std::string> name = TemplateBosName(*processor)) {
      bos = Lookup(*name);
    }
  }
  const auto first_present =
      [&](std::initializer_list<std::string_view> names) -> std::optional<int32_t> {
    for (std::string_view name : names) {
      if (std::optional<int32_t> id = Lookup(name)) return id;
    }
    return std::nullopt;
  };
  if (!bos.has_value()) bos = first_present({"<|begin_of_text|>", "<s>"});
  eos = first_present({"<|end_of_text|>", "</s>", "<|endoftext|>"});
}

const AddedToken* Tokenizer::Impl::MatchAdded(std::string_view text,
                                              size_t pos) const {
  for (const size_t index :
       added_by_first_byte[static_cast<unsigned char>(text[pos])]) {
    const AddedToken& token = added[index];
    if (text.substr(pos, token.content.size()) == token.content) return &token;
  }
  return nullptr;
}

std::vector<int32_t> Tokenizer::Impl::BpePiece(std::string_view piece) const {
  std::vector<Symbol> symbols;
  symbols.reserve(piece.size());
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  const auto push_pair = [&](int left) {
    if (left < 0 || symbols[left].next < 0) return;
    const int right = symbols[left].next;
    const auto it = merges.find(PairKey(symbols[left].id, symbols[right].id));
    if (it == merges.end()) return;
    queue.push({it->second.rank, left, symbols[left].id, symbols[right].id});
  };
  const int n = static_cast<int>(piece.size());
  for (int i = 0; i < n; ++i) {
    symbols.push_back({byte_ids[static_cast<unsigned char>(piece[i])], i - 1,
                       i + 1 < n ? i + 1 : -1});
  }
  for (int i = 0; i + 1 < n; ++i) push_pair(i);
  while (!queue.empty()) {
    const Candidate top = queue.top();
    queue.pop();
    Symbol& left = symbols[top.left];
    // Stale if the left symbol was merged away or changed, or its neighbour
    // is no longer the recorded right symbol.
    if (left.id != top.left_id || left.next < 0 ||
        symbols[left.next].id != top.right_id) {
      continue;
    }
    const int right = left.next;
    left.id = merges.at(PairKey(top.left_id, top.right_id)).merged_id;
    left.next = symbols[right].next;
    if (left.next >= 0) symbols[left.next].prev = top.left;
    symbols[right].id = -2;  // Dead: never equals a valid id.
    if (left.prev >= 0) push_pair(left.prev);
    push_pair(top.left);
  }
  std::vector<int32_t> ids;
  for (int i = n > 0 ? 0 : -1; i >= 0; i = symbols[i].next) {
    if (symbols[i].id >= 0) {
      ids.push_back(symbols[i].id);
    } else if (unk_id.has_value()) {
      ids.push_back(*unk_id);
    }
  }
  return ids;
}

void Tokenizer::Impl::EncodePiece(std::string_view piece,
                                  std::vector<int32_t>& out) const {
  if (ignore_merges) {
    if (const auto it = vocab.find(ByteLevelEncode(piece)); it != vocab.end()) {
      out.push_back(it->second);
      return;
    }
  }
  const bool cacheable = piece.size() <= kMaxCachedPieceBytes;
  if (cacheable) {
    absl::MutexLock lock(&cache_mu);
    if (const auto it = cache.find(Sv(piece)); it != cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids = BpePiece(piece);
  out.insert(out.end(), ids.begin(), ids.end());
  if (cacheable) {
    absl::MutexLock lock(&cache_mu);
    if (cache.size() >= kMaxCacheEntries) cache.clear();
    cache.try_emplace(std::string(piece), std::move(ids));
  }
}

void Tokenizer::Impl::EncodeOrdinary(std::string_view text,
                                     std::vector<int32_t>& out) const {
  if (text.empty()) return;
  std::vector<std::string> pieces = {std::string(text)};
  for (const PreTokenizerStep& step : steps) {
    std::vector<std::string> next;
    for (std::string& piece : pieces) ApplyStep(step, std::move(piece), next);
    pieces = std::move(next);
  }
  for (const std::string& piece : pieces) EncodePiece(piece, out);
}

// ---------------------------------------------------------------------------
// Tokenizer

Tokenizer::Tokenizer(std::shared_ptr<const Impl> impl)
    : impl_(std::move(impl)) {}

absl::StatusOr<Tokenizer> Tokenizer::FromFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file.is_open()) {
    return absl::NotFoundError(
        absl::StrCat("expected a readable tokenizer.json at \"", path,
                     "\", found no such file (or no permission)"));
  }
  std::ostringstream contents;
  contents << file.rdbuf();
  if (file.bad() || contents.fail()) {
    return absl::InvalidArgumentError(
        absl::StrCat("could not read tokenizer.json at \"", path, "\""));
  }
  absl::StatusOr<Tokenizer> tokenizer = FromJson(contents.str());
  if (!tokenizer.ok()) {
    return absl::Status(tokenizer.status().code(),
                        absl::StrCat(path, ": ", tokenizer.status().message()));
  }
  return tokenizer;
}

absl::StatusOr<Tokenizer> Tokenizer::FromJson(std::string_view json_text) {
  // Before parsing: Describe() and the pre-tokenizer and post-processor walks recurse.
  if (absl::Status s = CheckJsonNesting(json_text); !s.ok()) return s;
  try {
    json root = json::parse(json_text.begin(), json_text.end());
    if (!root.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "expected a JSON object at the top level, found ", Describe(root)));
    }
    auto impl = std::make_shared<Impl>();
    if (absl::Status s = CheckNormalizer(root); !s.ok()) return s;
    if (absl::Status s = impl->ParseModel(root); !s.ok()) return s;
    if (absl::Status s = impl->ParseAddedTokens(root); !s.ok()) return s;
    if (const json* pre = FindMember(root, "pre_tokenizer")) {
      absl::Status s = ParsePreTokenizer(*pre, "pre_tokenizer", impl->steps);
      if (!s.ok()) return s;
    }
    impl->BuildIdTables();
    impl->FindBosEos(root);
    return Tokenizer(std::move(impl));
  } catch (const json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected valid tokenizer.json, found: ", e.what()));
  } catch (const std::exception& e) {
    return absl::InternalError(
        absl::StrCat("failed to load tokenizer.json: ", e.what()));
  }
}

std::vector<int32_t> Tokenizer::Encode(std::string_view text,
                                       bool add_bos) const {
  std::vector<int32_t> ids;
  if (add_bos && impl_->bos.has_value()) ids.push_back(*impl_->bos);
  size_t segment_begin = 0;
  for (size_t pos = 0; pos < text.size();) {
    const AddedToken* token = impl_->MatchAdded(text, pos);
    if (token == nullptr) {
      ++pos;
      continue;
    }
    impl_->EncodeOrdinary(text.substr(segment_begin, pos - segment_begin), ids);
    ids.push_back(token->id);
    pos += token->content.size();
    segment_begin = pos;
  }
  impl_->EncodeOrdinary(text.substr(segment_begin), ids);
  return ids;
}

absl::StatusOr<std::string> Tokenizer::TokenBytes(int32_t id) const {
  if (id < 0 || id >= vocab_size() || !impl_->id_known[id]) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected a token id in the vocabulary (size ",
                     vocab_size(), "), found ", id));
  }
  return impl_->id_bytes[id];
}

absl::StatusOr<std::string> Tokenizer::Decode(absl::Span<const int32_t> ids,
                                              bool skip_special) const {
  std::string text;
  for (const int32_t id : ids) {
    absl::StatusOr<std::string> bytes = TokenBytes(id);
    if (!bytes.ok()) return bytes.status();
    if (skip_special && IsSpecial(id)) continue;
    text += *bytes;
  }
  return text;
}

int32_t Tokenizer::vocab_size() const {
  return static_cast<int32_t>(impl_->id_bytes.size());
}

std::optional<int32_t> Tokenizer::TokenId(std::string_view token) const {
  return impl_->Lookup(token);
}

std::optional<int32_t> Tokenizer::bos_id() const { return impl_->bos; }

std::optional<int32_t> Tokenizer::eos_id() const { return impl_->eos; }

bool Tokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < vocab_size() && impl_->id_special[id];
}

}  // namespace blockserve::engine
