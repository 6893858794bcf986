#include "engine/tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
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
// Where PCRE2's Unicode classes differ from Hugging Face's.
//
// PCRE2 classifies \p{...} by the Unicode version it was built with (14.0 for
// Debian 12's 10.42), while Hugging Face's regexes know newer versions. The code
// points that PCRE2 takes as unassigned (Cn) but libutf8proc (15.0 in Debian 12)
// assigns a category are added to each general-category class of a pattern, so
// e.g. \p{N} also matches the Nag Mundari digits of Unicode 15. And PCRE2's \s
// keeps U+180E MONGOLIAN VOWEL SEPARATOR, a format character (Cf) since Unicode
// 6.3 and no longer white space: \s is narrowed to white space by category.

struct UnicodeFixes {
  // Character-class text (\x{..}-\x{..} ranges) per general category name ("L",
  // "Lu", ..., plus "L&" / "LC"): the code points PCRE2 does not know.
  absl::flat_hash_map<std::string, std::string> newer;
  // Ranges of the code points PCRE2's \s matches that are neither separators (Z)
  // nor controls (Cc, as tab and newline) to libutf8proc.
  std::string not_space;
};

// Appends `cp` to `ranges`, extending the last range when it ends just before.
void AddToRanges(char32_t cp, std::vector<std::pair<char32_t, char32_t>>& ranges) {
  if (!ranges.empty() && ranges.back().second + 1 == cp) {
    ranges.back().second = cp;
  } else {
    ranges.push_back({cp, cp});
  }
}

std::string ClassRanges(absl::Span<const std::pair<char32_t, char32_t>> ranges) {
  std::string text;
  for (const auto& [first, last] : ranges) {
    char range[40];
    std::snprintf(range, sizeof(range), "\\x{%X}-\\x{%X}", static_cast<unsigned>(first),
                  static_cast<unsigned>(last));
    text += range;
  }
  return text;
}

// Calls `visit` with each code point of `text` (valid UTF-8) that `pattern` matches.
void ForEachMatch(const char* pattern, std::string_view text,
                  const std::function<void(char32_t)>& visit) {
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  std::unique_ptr<pcre2_code, decltype(&pcre2_code_free)> code(
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern), PCRE2_ZERO_TERMINATED,
                    PCRE2_UTF | PCRE2_UCP, &error_code, &error_offset, nullptr),
      &pcre2_code_free);
  if (code == nullptr) return;
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> match(
      pcre2_match_data_create_from_pattern(code.get(), nullptr), &pcre2_match_data_free);
  if (match == nullptr) return;
  for (size_t from = 0;
       pcre2_match(code.get(), reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), from,
                   0, match.get(), nullptr) > 0;) {
    const size_t begin = pcre2_get_ovector_pointer(match.get())[0];
    char32_t cp = 0;
    const size_t length = DecodeUtf8Char(text, begin, cp);
    if (length == 0) break;
    from = begin + length;
    visit(cp);
  }
}

UnicodeFixes FindUnicodeFixes() {
  // Every code point utf8proc assigns (except private use), as one UTF-8 text.
  std::string assigned;
  for (char32_t cp = 0; cp <= 0x10FFFF; ++cp) {
    if (cp >= 0xD800 && cp <= 0xDFFF) continue;
    const utf8proc_category_t category = utf8proc_category(static_cast<utf8proc_int32_t>(cp));
    if (category != UTF8PROC_CATEGORY_CN && category != UTF8PROC_CATEGORY_CO) {
      AppendUtf8(cp, assigned);
    }
  }
  absl::flat_hash_map<std::string, std::vector<std::pair<char32_t, char32_t>>> newer;
  ForEachMatch(R"(\p{Cn})", assigned, [&](char32_t cp) {
    const std::string category = utf8proc_category_string(static_cast<utf8proc_int32_t>(cp));
    AddToRanges(cp, newer[category]);
    AddToRanges(cp, newer[category.substr(0, 1)]);
    if (category == "Lu" || category == "Ll" || category == "Lt") {
      AddToRanges(cp, newer["L&"]);
      AddToRanges(cp, newer["LC"]);
    }
  });
  std::vector<std::pair<char32_t, char32_t>> not_space;
  ForEachMatch(R"(\s)", assigned, [&](char32_t cp) {
    const std::string category = utf8proc_category_string(static_cast<utf8proc_int32_t>(cp));
    if (category[0] != 'Z' && category != "Cc") AddToRanges(cp, not_space);
  });
  UnicodeFixes fixes;
  for (const auto& [name, ranges] : newer) fixes.newer[name] = ClassRanges(ranges);
  fixes.not_space = ClassRanges(not_space);
  return fixes;
}

// `pattern` with the UnicodeFixes applied:
//   * the newer code points join its \p{Category} classes: outside a bracket class
//     \p{X} becomes [\p{X}...] and \P{X} [^\p{X}...]; inside one the ranges
//     follow \p{X} (a \P{X} inside a bracket class is left as it is);
//   * \s becomes (?:(?![not_space])\s) and \S (?:\S|[not_space]); a bracket class
//     with \s in it, [..\s..], becomes (?:(?![not_space])[..\s..]) and a negated
//     one, [^..\s..], (?:[^..\s..]|[not_space]).
std::string WithUnicodeFixes(std::string_view pattern) {
  static const UnicodeFixes* const kFixes = new UnicodeFixes(FindUnicodeFixes());
  const std::string& not_space = kFixes->not_space;
  std::string out;
  bool in_class = false;
  size_t class_start = 0;  // Where the bracket class begins in `out`.
  bool class_negated = false;
  bool class_has_space = false;
  for (size_t i = 0; i < pattern.size();) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char next = pattern[i + 1];
      if (next == 'Q') {  // \Q...\E is literal text.
        const size_t end = pattern.find("\\E", i + 2);
        const size_t stop = end == std::string_view::npos ? pattern.size() : end + 2;
        out.append(pattern.substr(i, stop - i));
        i = stop;
        continue;
      }
      if ((next == 's' || next == 'S') && !not_space.empty()) {
        if (in_class) {
          class_has_space = class_has_space || next == 's';
          out.append(pattern.substr(i, 2));
        } else {
          out += next == 's' ? "(?:(?![" + not_space + "])\\s)" : "(?:\\S|[" + not_space + "])";
        }
        i += 2;
        continue;
      }
      if ((next != 'p' && next != 'P') || i + 2 >= pattern.size()) {
        out.append(pattern.substr(i, 2));
        i += 2;
        continue;
      }
      size_t end = i + 3;
      std::string_view name = pattern.substr(i + 2, 1);
      if (pattern[i + 2] == '{') {
        const size_t close = pattern.find('}', i + 3);
        if (close == std::string_view::npos) {
          out.append(pattern.substr(i));
          break;
        }
        name = pattern.substr(i + 3, close - i - 3);
        end = close + 1;
      }
      bool negated = next == 'P';
      if (!name.empty() && name.front() == '^') {
        negated = !negated;
        name.remove_prefix(1);
      }
      const auto extra = kFixes->newer.find(Sv(name));
      const std::string_view original = pattern.substr(i, end - i);
      i = end;
      if (extra == kFixes->newer.end() || (in_class && negated)) {
        out.append(original);
      } else if (in_class) {
        out.append(original);
        out += extra->second;
      } else {
        out += negated ? "[^\\p{" : "[\\p{";
        out.append(name);
        out += "}" + extra->second + "]";
      }
      continue;
    }
    if (c == '[' && !in_class) {
      in_class = true;
      class_start = out.size();
      class_has_space = false;
      out.push_back(c);
      ++i;
      // A ']' right after '[' or '[^' is literal.
      class_negated = i < pattern.size() && pattern[i] == '^';
      if (class_negated) out.push_back(pattern[i++]);
      if (i < pattern.size() && pattern[i] == ']') out.push_back(pattern[i++]);
      continue;
    }
    out.push_back(c);
    ++i;
    if (c == '[' && in_class && i < pattern.size() && pattern[i] == ':') {
      const size_t close = pattern.find(":]", i);  // A POSIX class [:name:].
      const size_t stop = close == std::string_view::npos ? pattern.size() : close + 2;
      out.append(pattern.substr(i, stop - i));
      i = stop;
    } else if (c == ']' && in_class) {
      in_class = false;
      if (class_has_space) {
        const std::string body = out.substr(class_start);
        out.resize(class_start);
        out += class_negated ? "(?:" + body + "|[" + not_space + "])"
                             : "(?:(?![" + not_space + "])" + body + ")";
      }
    }
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
  const std::string compiled_pattern =
      literal ? std::string(pattern) : WithUnicodeFixes(pattern);
  int error_code = 0;
  PCRE2_SIZE error_offset = 0;
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(compiled_pattern.data()),
                    compiled_pattern.size(), options, &error_code, &error_offset,
                    /*ccontext=*/nullptr);
  if (code == nullptr && compiled_pattern != pattern) {
    // The pattern as written: the error (and its offset) is reported in it.
    code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                         options, &error_code, &error_offset, /*ccontext=*/nullptr);
  }
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

enum class PrependScheme { kNever, kFirst, kAlways };

// One pre-tokenizer stage, applied to every piece produced so far.
struct PreTokenizerStep {
  bool add_prefix_space = false;
  bool byte_level = false;  // A ByteLevel step.
  // Metaspace: spaces become `metaspace`, which is prepended per
  // `prepend`; with split, `splitter` cuts before each one.
  std::optional<std::string> metaspace;
  PrependScheme prepend = PrependScheme::kNever;
  std::optional<RegexSplitter> splitter;  // nullopt: piece is kept whole.
  SplitBehavior behavior = SplitBehavior::kIsolated;
  bool invert = false;
};

// One normalizer stage, applied to the text between added tokens.
struct NormalizerStep {
  enum class Kind { kUnicode, kPrepend, kReplace };
  Kind kind = Kind::kUnicode;
  int unicode_options = 0;  // utf8proc_option_t flags for kUnicode.
  std::string text;  // kPrepend: the prefix; kReplace: the replacement.
  std::optional<RegexSplitter> pattern;  // kReplace: what is replaced.
};

std::string ReplaceAll(std::string_view text, const std::string& from,
                       const std::string& to) {
  std::string out;
  size_t pos = 0;
  while (!from.empty()) {
    const size_t hit = text.find(from, pos);
    if (hit == std::string_view::npos) break;
    out.append(text.substr(pos, hit - pos));
    out.append(to);
    pos = hit + from.size();
  }
  out.append(text.substr(pos));
  return out;
}

// Applies one normalizer stage. Text libutf8proc refuses (invalid UTF-8,
// which Hugging Face's Rust strings cannot hold) is left as it is.
std::string Normalize(const NormalizerStep& step, std::string text) {
  switch (step.kind) {
    case NormalizerStep::Kind::kUnicode: {
      if (text.empty()) return text;
      utf8proc_uint8_t* mapped = nullptr;
      const utf8proc_ssize_t n = utf8proc_map(
          reinterpret_cast<const utf8proc_uint8_t*>(text.data()),
          static_cast<utf8proc_ssize_t>(text.size()), &mapped,
          static_cast<utf8proc_option_t>(step.unicode_options));
      if (n >= 0 && mapped != nullptr) {
        text.assign(reinterpret_cast<const char*>(mapped), static_cast<size_t>(n));
      }
      std::free(mapped);
      return text;
    }
    case NormalizerStep::Kind::kPrepend:
      return text.empty() ? text : step.text + text;
    case NormalizerStep::Kind::kReplace: {
      std::string out;
      for (const RegexSplitter::Segment& segment : step.pattern->Segments(text)) {
        if (segment.is_match) {
          out += step.text;
        } else {
          out.append(text, segment.begin, segment.end - segment.begin);
        }
      }
      return out;
    }
  }
  return text;
}

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

// Applies one step to one piece, appending results to `out`. `at_start`:
// the piece begins the whole input (Metaspace's "first" scheme).
void ApplyStep(const PreTokenizerStep& step, std::string piece, bool at_start,
               std::vector<std::string>& out) {
  if (step.add_prefix_space && !piece.empty() && piece.front() != ' ') {
    piece.insert(piece.begin(), ' ');
  }
  if (step.metaspace.has_value()) {
    piece = ReplaceAll(piece, " ", *step.metaspace);
    const bool prepend = step.prepend == PrependScheme::kAlways ||
                         (step.prepend == PrependScheme::kFirst && at_start);
    if (prepend && !piece.empty() && piece.rfind(*step.metaspace, 0) != 0) {
      piece.insert(0, *step.metaspace);
    }
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
  step.byte_level = true;
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

// A node's "pattern": {"Regex": string} or {"String": string} (a literal), compiled.
absl::StatusOr<RegexSplitter> ParsePattern(const json& node, const std::string& where) {
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
  return splitter;
}

absl::Status ParseSplit(const json& node, const std::string& where,
                        std::vector<PreTokenizerStep>& steps) {
  absl::StatusOr<RegexSplitter> splitter = ParsePattern(node, where);
  if (!splitter.ok()) return splitter.status();
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

// A "Sequence" node: parses each element of its array `member` with `parse_child`, in
// order (`where` names the node in errors).
template <typename Step, typename ParseChild>
absl::Status ParseChildren(const json& node, const std::string& where, const char* member,
                           std::vector<Step>& steps, ParseChild parse_child) {
  const json* children = FindMember(node, member);
  if (children == nullptr || !children->is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected ", where, ".", member, " to be an array, found ",
        children ? Describe(*children) : "none"));
  }
  for (size_t i = 0; i < children->size(); ++i) {
    absl::Status status =
        parse_child((*children)[i], absl::StrCat(where, ".", member, "[", i, "]"), steps);
    if (!status.ok()) return status;
  }
  return absl::OkStatus();
}

absl::Status ParseSequence(const json& node, const std::string& where,
                           std::vector<PreTokenizerStep>& steps) {
  return ParseChildren(node, where, "pretokenizers", steps, ParsePreTokenizer);
}

absl::Status ParseMetaspace(const json& node, const std::string& where,
                            std::vector<PreTokenizerStep>& steps) {
  PreTokenizerStep step;
  step.metaspace = "\u2581";
  if (FindMember(node, "replacement") != nullptr) {
    absl::StatusOr<std::string> replacement = GetString(node, "replacement", where);
    if (!replacement.ok()) return replacement.status();
    if (replacement->empty()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "expected ", where, ".replacement to be non-empty, found \"\""));
    }
    step.metaspace = *replacement;
  }
  // Older files have add_prefix_space (true means "always") instead.
  absl::StatusOr<bool> add_prefix_space =
      GetBool(node, "add_prefix_space", where, true);
  if (!add_prefix_space.ok()) return add_prefix_space.status();
  step.prepend = *add_prefix_space ? PrependScheme::kAlways : PrependScheme::kNever;
  if (const json* scheme = FindMember(node, "prepend_scheme")) {
    if (*scheme == "always") {
      step.prepend = PrependScheme::kAlways;
    } else if (*scheme == "first") {
      step.prepend = PrependScheme::kFirst;
    } else if (*scheme == "never") {
      step.prepend = PrependScheme::kNever;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "expected ", where,
          ".prepend_scheme to be always, first or never, found ", Describe(*scheme)));
    }
  }
  absl::StatusOr<bool> split = GetBool(node, "split", where, true);
  if (!split.ok()) return split.status();
  if (*split) {
    absl::StatusOr<RegexSplitter> splitter =
        RegexSplitter::Create(*step.metaspace, /*literal=*/true);
    if (!splitter.ok()) return splitter.status();
    step.splitter = *std::move(splitter);
    step.behavior = SplitBehavior::kMergedWithNext;
  }
  steps.push_back(std::move(step));
  return absl::OkStatus();
}

absl::Status ParsePreTokenizer(const json& node, const std::string& where,
                               std::vector<PreTokenizerStep>& steps) {
  absl::StatusOr<std::string> type = GetString(node, "type", where);
  if (!type.ok()) return type.status();
  if (*type == "ByteLevel") return ParseByteLevel(node, where, steps);
  if (*type == "Split") return ParseSplit(node, where, steps);
  if (*type == "Metaspace") return ParseMetaspace(node, where, steps);
  if (*type == "Sequence") return ParseSequence(node, where, steps);
  return absl::InvalidArgumentError(absl::StrCat(
      "unsupported tokenizer.json feature: expected ", where,
      ".type to be ByteLevel, Split, Metaspace or Sequence, found \"", *type,
      "\""));
}

absl::Status ParseNormalizer(const json& node, const std::string& where,
                             std::vector<NormalizerStep>& steps) {
  absl::StatusOr<std::string> type = GetString(node, "type", where);
  if (!type.ok()) return type.status();
  static constexpr std::pair<std::string_view, int> kUnicodeForms[] = {
      {"NFC", UTF8PROC_STABLE | UTF8PROC_COMPOSE},
      {"NFD", UTF8PROC_STABLE | UTF8PROC_DECOMPOSE},
      {"NFKC", UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT},
      {"NFKD", UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT},
  };
  for (const auto& [name, options] : kUnicodeForms) {
    if (*type == name) {
      NormalizerStep step;
      step.unicode_options = options;
      steps.push_back(std::move(step));
      return absl::OkStatus();
    }
  }
  if (*type == "Prepend") {
    absl::StatusOr<std::string> prepend = GetString(node, "prepend", where);
    if (!prepend.ok()) return prepend.status();
    NormalizerStep step;
    step.kind = NormalizerStep::Kind::kPrepend;
    step.text = *std::move(prepend);
    steps.push_back(std::move(step));
    return absl::OkStatus();
  }
  if (*type == "Replace") {
    absl::StatusOr<RegexSplitter> splitter = ParsePattern(node, where);
    if (!splitter.ok()) return splitter.status();
    absl::StatusOr<std::string> content = GetString(node, "content", where);
    if (!content.ok()) return content.status();
    NormalizerStep step;
    step.kind = NormalizerStep::Kind::kReplace;
    step.text = *std::move(content);
    step.pattern = *std::move(splitter);
    steps.push_back(std::move(step));
    return absl::OkStatus();
  }
  if (*type == "Sequence") {
    return ParseChildren(node, where, "normalizers", steps, ParseNormalizer);
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "unsupported tokenizer.json feature: expected ", where,
      ".type to be NFC, NFD, NFKC, NFKD, Prepend, Replace or Sequence, found \"",
      *type, "\""));
}

}  // namespace

struct Tokenizer::Impl {
  absl::flat_hash_map<std::string, int32_t> vocab;
  absl::flat_hash_map<uint64_t, MergeRule> merges;
  // Byte-level: the id of each byte's symbol. SentencePiece-style with
  // byte_fallback: the id of "<0xXX>". -1 if missing.
  std::array<int32_t, 256> byte_ids;
  bool sentencepiece = false;  // Character-level BPE (see tokenizer.h).
  bool byte_fallback = false;
  bool fuse_unk = false;
  bool decode_strips_space = false;  // Decode() drops one leading space.
  bool ignore_merges = false;
  std::optional<int32_t> unk_id;
  std::vector<NormalizerStep> normalizers;
  std::vector<PreTokenizerStep> steps;

  std::vector<AddedToken> added;  // Sorted by content length, longest first.
  std::array<std::vector<size_t>, 256> added_by_first_byte;  // Into `added`.
  absl::flat_hash_map<std::string, int32_t> added_ids;

  std::vector<std::string> id_bytes;
  std::vector<bool> id_known;
  std::vector<bool> id_special;
  std::vector<int32_t> prefix;  // Special tokens before a sequence.
  std::vector<int32_t> suffix;  // Special tokens after it.
  std::optional<int32_t> eos;
  std::vector<int32_t> eos_list;

  mutable absl::Mutex cache_mu;
  mutable absl::flat_hash_map<std::string, std::vector<int32_t>> cache
      ABSL_GUARDED_BY(cache_mu);

  absl::Status ParseModel(const json& root);
  absl::Status ParseVocab(const json& model);
  absl::Status ParseMerges(const json& model);
  absl::Status ParseAddedTokens(const json& root);
  void BuildIdTables();
  absl::Status FindBosEos(const json& root, const SpecialTokenConfig& special);
  absl::Status CheckDecoder(const json& root);

  std::optional<int32_t> Lookup(std::string_view token) const;
  // Returns the added token matching at text[pos], longest first.
  const AddedToken* MatchAdded(std::string_view text, size_t pos) const;
  // Encodes text between added tokens; `at_start`: it begins the input.
  void EncodeOrdinary(std::string_view text, bool at_start,
                      std::vector<int32_t>& out) const;
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
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    const auto it =
        vocab.find(sentencepiece ? std::string(name) : tables.symbol_of_byte[b]);
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
  absl::StatusOr<bool> fallback = GetBool(*model, "byte_fallback", "model", false);
  if (!fallback.ok()) return fallback.status();
  byte_fallback = *fallback;
  sentencepiece = sentencepiece || byte_fallback;
  absl::StatusOr<bool> fuse = GetBool(*model, "fuse_unk", "model", false);
  if (!fuse.ok()) return fuse.status();
  fuse_unk = *fuse;
  // Hugging Face treats "" like null (Qwen's files carry "").
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const json* value = FindMember(*model, key);
    if (value != nullptr &&
        !(value->is_string() && value->get<std::string>().empty())) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unsupported tokenizer.json feature: expected model.", key,
          " to be null or \"\", found ", Describe(*value)));
    }
  }
  if (const json* dropout = FindMember(*model, "dropout");
      dropout != nullptr && !(dropout->is_number() && dropout->get<double>() == 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unsupported tokenizer.json feature: expected model.dropout to be null, found ",
        Describe(*dropout)));
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
    for (const char* key : {"lstrip", "rstrip", "single_word"}) {
      absl::StatusOr<bool> flag = GetBool(entry, key, where, false);
      if (!flag.ok()) return flag.status();
      if (*flag) {
        return absl::InvalidArgumentError(absl::StrCat(
            "unsupported tokenizer.json feature: ", where, ".", key,
            " is true (\"", *content, "\")"));
      }
    }
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
    id_known[id] = true;
    if (!sentencepiece) {
      id_bytes[id] = ByteLevelDecode(token);
      continue;
    }
    unsigned int byte = 0;
    char tail = 0;
    if (byte_fallback && token.size() == 6 &&
        std::sscanf(token.c_str(), "<0x%2X%c", &byte, &tail) == 2 && tail == '>') {
      id_bytes[id] = std::string(1, static_cast<char>(byte));
    } else {
      id_bytes[id] = ReplaceAll(token, "\u2581", " ");
    }
  }
  // Added tokens are raw text and override a vocab entry with the same id.
  for (const AddedToken& token : added) {
    id_bytes[token.id] = token.content;
    id_known[token.id] = true;
    id_special[token.id] = id_special[token.id] || token.special;
  }
}

namespace {

// The special tokens a post_processor puts around a single sequence.
struct SequenceWrap {
  std::vector<int64_t> prefix;
  std::vector<int64_t> suffix;
};

// Reads ["name", id] (BertProcessing's and RobertaProcessing's cls / sep).
absl::StatusOr<int64_t> NamedTokenId(const json& node, const char* key,
                                     const std::string& where) {
  const json* pair = FindMember(node, key);
  if (pair == nullptr || !pair->is_array() || pair->size() != 2 ||
      !(*pair)[0].is_string() || !(*pair)[1].is_number_integer()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected ", where, ".", key, " to be [token, id], found ",
        pair == nullptr ? std::string("none") : Describe(*pair)));
  }
  return (*pair)[1].get<int64_t>();
}

// TemplateProcessing's "single" template: SpecialToken pieces before and after
// the one Sequence piece "A", with their ids from "special_tokens". The "pair"
// template is not read: BlockServe never encodes pairs.
absl::Status ParseTemplate(const json& node, const std::string& where,
                           SequenceWrap& wrap) {
  const json* single = FindMember(node, "single");
  if (single == nullptr || !single->is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected ", where, ".single to be an array, found ",
        single == nullptr ? std::string("none") : Describe(*single)));
  }
  const json* special_tokens = FindMember(node, "special_tokens");
  bool seen_sequence = false;
  for (size_t i = 0; i < single->size(); ++i) {
    const json& piece = (*single)[i];
    const std::string at = absl::StrCat(where, ".single[", i, "]");
    if (const json* sequence = FindMember(piece, "Sequence")) {
      absl::StatusOr<std::string> id = GetString(*sequence, "id", at + ".Sequence");
      if (!id.ok()) return id.status();
      if (*id != "A" || seen_sequence) {
        return absl::InvalidArgumentError(absl::StrCat(
            "unsupported tokenizer.json feature: ", at, " is sequence \"", *id,
            "\"; a single template must hold sequence \"A\" exactly once"));
      }
      seen_sequence = true;
      continue;
    }
    const json* special = FindMember(piece, "SpecialToken");
    if (special == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "expected ", at, " to be a SpecialToken or a Sequence, found ", Describe(piece)));
    }
    absl::StatusOr<std::string> name = GetString(*special, "id", at + ".SpecialToken");
    if (!name.ok()) return name.status();
    const json* entry = special_tokens == nullptr ? nullptr
                                                  : FindMember(*special_tokens, name->c_str());
    const json* ids = entry == nullptr ? nullptr : FindMember(*entry, "ids");
    if (ids == nullptr || !ids->is_array() ||
        !std::all_of(ids->begin(), ids->end(),
                     [](const json& id) { return id.is_number_integer(); })) {
      return absl::InvalidArgumentError(absl::StrCat(
          "expected ", where, ".special_tokens to give the ids of \"", *name,
          "\" (", at, ") as an array of integers"));
    }
    std::vector<int64_t>& side = seen_sequence ? wrap.suffix : wrap.prefix;
    for (const json& id : *ids) side.push_back(id.get<int64_t>());
  }
  if (!seen_sequence) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unsupported tokenizer.json feature: ", where,
        ".single has no Sequence piece for the text"));
  }
  return absl::OkStatus();
}

// Adds what post_processor `node` puts around a single sequence to `wrap`
// (a later processor of a Sequence wraps the result of the earlier ones).
absl::Status ParsePostProcessor(const json& node, const std::string& where,
                                SequenceWrap& wrap) {
  absl::StatusOr<std::string> type = GetString(node, "type", where);
  if (!type.ok()) return type.status();
  SequenceWrap own;
  if (*type == "ByteLevel") return absl::OkStatus();  // Offsets only.
  if (*type == "Sequence") {
    const json* children = FindMember(node, "processors");
    if (children == nullptr || !children->is_array()) {
      return absl::InvalidArgumentError(
          absl::StrCat("expected ", where, ".processors to be an array"));
    }
    for (size_t i = 0; i < children->size(); ++i) {
      absl::Status s = ParsePostProcessor(
          (*children)[i], absl::StrCat(where, ".processors[", i, "]"), wrap);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  } else if (*type == "TemplateProcessing") {
    if (absl::Status s = ParseTemplate(node, where, own); !s.ok()) return s;
  } else if (*type == "BertProcessing" || *type == "RobertaProcessing") {
    // [CLS] $A [SEP] and <s> $A </s>: the same shape for one sequence; their
    // other settings (trim_offsets, add_prefix_space) only move offsets.
    absl::StatusOr<int64_t> cls = NamedTokenId(node, "cls", where);
    if (!cls.ok()) return cls.status();
    absl::StatusOr<int64_t> sep = NamedTokenId(node, "sep", where);
    if (!sep.ok()) return sep.status();
    own = {{*cls}, {*sep}};
  } else {
    return absl::InvalidArgumentError(absl::StrCat(
        "unsupported tokenizer.json feature: expected ", where,
        ".type to be TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel "
        "or Sequence, found \"", *type, "\""));
  }
  own.prefix.insert(own.prefix.end(), wrap.prefix.begin(), wrap.prefix.end());
  own.suffix.insert(own.suffix.begin(), wrap.suffix.begin(), wrap.suffix.end());
  wrap = std::move(own);
  return absl::OkStatus();
}

}  // namespace

std::optional<int32_t> Tokenizer::Impl::Lookup(std::string_view token) const {
  if (const auto it = added_ids.find(Sv(token)); it != added_ids.end()) {
    return it->second;
  }
  if (const auto it = vocab.find(Sv(token)); it != vocab.end()) return it->second;
  return std::nullopt;
}

absl::Status Tokenizer::Impl::FindBosEos(const json& root,
                                         const SpecialTokenConfig& special) {
  const auto by_name = [&](const std::optional<std::string>& name,
                           const char* key) -> absl::StatusOr<std::optional<int32_t>> {
    if (!name.has_value()) return std::optional<int32_t>();
    if (std::optional<int32_t> id = Lookup(*name)) return id;
    return absl::InvalidArgumentError(absl::StrCat(
        "tokenizer_config.json: ", key, " \"", *name,
        "\" is not a token of tokenizer.json"));
  };
  const auto by_id = [&](int64_t id, const char* key) -> absl::StatusOr<int32_t> {
    if (id < 0 || id >= static_cast<int64_t>(id_known.size()) || !id_known[id]) {
      return absl::InvalidArgumentError(absl::StrCat(
          key, " ", id, " (generation_config.json or config.json) is not a token id of "
          "tokenizer.json"));
    }
    return static_cast<int32_t>(id);
  };
  absl::StatusOr<std::optional<int32_t>> bos_token = by_name(special.bos_token, "bos_token");
  if (!bos_token.ok()) return bos_token.status();
  absl::StatusOr<std::optional<int32_t>> eos_token = by_name(special.eos_token, "eos_token");
  if (!eos_token.ok()) return eos_token.status();
  std::optional<int32_t> bos_by_id;
  if (special.bos_token_id.has_value()) {
    absl::StatusOr<int32_t> id = by_id(*special.bos_token_id, "bos_token_id");
    if (!id.ok()) return id.status();
    bos_by_id = *id;
  }

  // Which special tokens wrap a sequence: the post_processor, with
  // tokenizer_config.json's add_bos_token / add_eos_token replacing its leading /
  // trailing part when present (as transformers' Llama-style tokenizers rebuild
  // the template from them).
  SequenceWrap wrap;
  if (const json* processor = FindMember(root, "post_processor")) {
    absl::Status s = ParsePostProcessor(*processor, "post_processor", wrap);
    if (!s.ok()) return s;
  }
  for (const std::vector<int64_t>* side : {&wrap.prefix, &wrap.suffix}) {
    for (const int64_t id : *side) {
      if (id < 0 || id >= static_cast<int64_t>(id_known.size()) || !id_known[id]) {
        return absl::InvalidArgumentError(absl::StrCat(
            "post_processor: special token id ", id, " is not in the vocabulary"));
      }
    }
  }
  if (special.add_bos_token.has_value()) {
    wrap.prefix.clear();
    if (*special.add_bos_token) {
      std::optional<int32_t> bos = bos_token->has_value() ? *bos_token : bos_by_id;
      if (!bos.has_value()) {
        return absl::InvalidArgumentError(
            "tokenizer_config.json: add_bos_token is true but there is no bos_token "
            "(nor bos_token_id)");
      }
      wrap.prefix.push_back(*bos);
    }
  } else if (wrap.prefix.empty() && !special.has_tokenizer_config && bos_by_id) {
    wrap.prefix.push_back(*bos_by_id);
  }
  if (eos_token->has_value()) eos_list.push_back(**eos_token);
  for (const int64_t raw : special.eos_token_ids) {
    absl::StatusOr<int32_t> id = by_id(raw, "eos_token_id");
    if (!id.ok()) return id.status();
    if (std::find(eos_list.begin(), eos_list.end(), *id) == eos_list.end()) {
      eos_list.push_back(*id);
    }
  }
  if (!eos_list.empty()) eos = eos_list.front();
  if (special.add_eos_token.has_value()) {
    wrap.suffix.clear();
    if (*special.add_eos_token) {
      if (!eos.has_value()) {
        return absl::InvalidArgumentError(
            "tokenizer_config.json: add_eos_token is true but there is no eos_token "
            "(nor eos_token_id)");
      }
      wrap.suffix.push_back(*eos);
    }
  }
  prefix.assign(wrap.prefix.begin(), wrap.prefix.end());
  suffix.assign(wrap.suffix.begin(), wrap.suffix.end());
  return absl::OkStatus();
}

absl::Status Tokenizer::Impl::CheckDecoder(const json& root) {
  if (!sentencepiece) return absl::OkStatus();
  const json* decoder = FindMember(root, "decoder");
  if (decoder == nullptr) return absl::OkStatus();
  std::vector<const json*> parts = {decoder};
  if (const json* children = FindMember(*decoder, "decoders");
      children != nullptr && children->is_array()) {
    parts.clear();
    for (const json& child : *children) parts.push_back(&child);
  }
  for (const json* part : parts) {
    const json* type = FindMember(*part, "type");
    if (type == nullptr) continue;
    if (*type == "Strip") {
      const json* start = FindMember(*part, "start");
      decode_strips_space = start != nullptr && start->is_number_integer() &&
                            start->get<int64_t>() > 0;
    } else if (*type == "Metaspace") {
      const json* scheme = FindMember(*part, "prepend_scheme");
      const json* add_prefix = FindMember(*part, "add_prefix_space");
      decode_strips_space = scheme != nullptr ? *scheme != "never"
                            : add_prefix == nullptr || *add_prefix == true;
    }
  }
  return absl::OkStatus();
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
  // Initial symbols: one per byte (byte-level) or per character
  // (SentencePiece-style); -1 for a missing one.
  std::vector<int32_t> initial;
  if (!sentencepiece) {
    for (const char c : piece) initial.push_back(byte_ids[static_cast<unsigned char>(c)]);
  } else {
    bool previous_unknown = false;
    for (size_t pos = 0; pos < piece.size();) {
      char32_t cp = 0;
      size_t len = DecodeUtf8Char(piece, pos, cp);
      if (len == 0) len = 1;  // An invalid byte stands alone.
      const std::string_view ch = piece.substr(pos, len);
      pos += len;
      if (const auto it = vocab.find(Sv(ch)); it != vocab.end()) {
        initial.push_back(it->second);
        previous_unknown = false;
        continue;
      }
      if (byte_fallback &&
          std::all_of(ch.begin(), ch.end(), [&](char c) {
            return byte_ids[static_cast<unsigned char>(c)] >= 0;
          })) {
        for (const char c : ch) initial.push_back(byte_ids[static_cast<unsigned char>(c)]);
        previous_unknown = false;
        continue;
      }
      if (!(fuse_unk && previous_unknown)) initial.push_back(-1);
      previous_unknown = true;
    }
  }
  const int n = static_cast<int>(initial.size());
  for (int i = 0; i < n; ++i) {
    symbols.push_back({initial[i], i - 1, i + 1 < n ? i + 1 : -1});
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
    const auto it = vocab.find(sentencepiece ? std::string(piece) : ByteLevelEncode(piece));
    if (it != vocab.end()) {
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

void Tokenizer::Impl::EncodeOrdinary(std::string_view text, bool at_start,
                                     std::vector<int32_t>& out) const {
  if (text.empty()) return;
  std::string normalized(text);
  for (const NormalizerStep& step : normalizers) {
    normalized = Normalize(step, std::move(normalized));
  }
  std::vector<std::string> pieces = {std::move(normalized)};
  for (const PreTokenizerStep& step : steps) {
    std::vector<std::string> next;
    for (size_t i = 0; i < pieces.size(); ++i) {
      ApplyStep(step, std::move(pieces[i]), at_start && i == 0, next);
    }
    pieces = std::move(next);
  }
  for (const std::string& piece : pieces) EncodePiece(piece, out);
}

// ---------------------------------------------------------------------------
// Tokenizer

Tokenizer::Tokenizer(std::shared_ptr<const Impl> impl)
    : impl_(std::move(impl)) {}

absl::StatusOr<Tokenizer> Tokenizer::FromFile(const std::string& path,
                                              const SpecialTokenConfig& special) {
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
  absl::StatusOr<Tokenizer> tokenizer = FromJson(contents.str(), special);
  if (!tokenizer.ok()) {
    return absl::Status(tokenizer.status().code(),
                        absl::StrCat(path, ": ", tokenizer.status().message()));
  }
  return tokenizer;
}

absl::StatusOr<Tokenizer> Tokenizer::FromModelDir(const std::string& dir) {
  absl::StatusOr<SpecialTokenConfig> special = SpecialTokenConfig::Read(dir);
  if (!special.ok()) return special.status();
  return FromFile(dir + "/tokenizer.json", *special);
}

absl::StatusOr<Tokenizer> Tokenizer::FromJson(std::string_view json_text,
                                              const SpecialTokenConfig& special) {
  // Before parsing: Describe() and the pre-tokenizer and post-processor walks recurse.
  if (absl::Status s = CheckJsonNesting(json_text); !s.ok()) return s;
  try {
    json root = json::parse(json_text.begin(), json_text.end());
    if (!root.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "expected a JSON object at the top level, found ", Describe(root)));
    }
    auto impl = std::make_shared<Impl>();
    if (const json* normalizer = FindMember(root, "normalizer")) {
      absl::Status s = ParseNormalizer(*normalizer, "normalizer", impl->normalizers);
      if (!s.ok()) return s;
    }
    if (const json* pre = FindMember(root, "pre_tokenizer")) {
      absl::Status s = ParsePreTokenizer(*pre, "pre_tokenizer", impl->steps);
      if (!s.ok()) return s;
    }
    const bool has_byte_level = std::any_of(
        impl->steps.begin(), impl->steps.end(),
        [](const PreTokenizerStep& step) { return step.byte_level; });
    impl->sentencepiece = std::any_of(
        impl->steps.begin(), impl->steps.end(),
        [](const PreTokenizerStep& step) { return step.metaspace.has_value(); });
    if (absl::Status s = impl->ParseModel(root); !s.ok()) return s;
    if (impl->sentencepiece && has_byte_level) {
      return absl::InvalidArgumentError(
          "unsupported tokenizer.json feature: a ByteLevel pre-tokenizer together with "
          "SentencePiece-style BPE (model.byte_fallback or a Metaspace pre-tokenizer)");
    }
    if (absl::Status s = impl->ParseAddedTokens(root); !s.ok()) return s;
    impl->BuildIdTables();
    if (absl::Status s = impl->FindBosEos(root, special); !s.ok()) return s;
    if (absl::Status s = impl->CheckDecoder(root); !s.ok()) return s;
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
                                       bool add_special_tokens) const {
  std::vector<int32_t> ids;
  if (add_special_tokens) ids = impl_->prefix;
  size_t segment_begin = 0;
  for (size_t pos = 0; pos < text.size();) {
    const AddedToken* token = impl_->MatchAdded(text, pos);
    if (token == nullptr) {
      ++pos;
      continue;
    }
    impl_->EncodeOrdinary(text.substr(segment_begin, pos - segment_begin),
                          segment_begin == 0, ids);
    ids.push_back(token->id);
    pos += token->content.size();
    segment_begin = pos;
  }
  impl_->EncodeOrdinary(text.substr(segment_begin), segment_begin == 0, ids);
  if (add_special_tokens) ids.insert(ids.end(), impl_->suffix.begin(), impl_->suffix.end());
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
  if (impl_->decode_strips_space && !text.empty() && text.front() == ' ') {
    text.erase(0, 1);
  }
  return text;
}

int32_t Tokenizer::vocab_size() const {
  return static_cast<int32_t>(impl_->id_bytes.size());
}

std::optional<int32_t> Tokenizer::TokenId(std::string_view token) const {
  return impl_->Lookup(token);
}

std::optional<int32_t> Tokenizer::bos_id() const {
  if (impl_->prefix.empty()) return std::nullopt;
  return impl_->prefix.front();
}

const std::vector<int32_t>& Tokenizer::special_prefix() const { return impl_->prefix; }

const std::vector<int32_t>& Tokenizer::special_suffix() const { return impl_->suffix; }

std::optional<int32_t> Tokenizer::eos_id() const { return impl_->eos; }

const std::vector<int32_t>& Tokenizer::eos_ids() const { return impl_->eos_list; }

bool Tokenizer::IsSpecial(int32_t id) const {
  return id >= 0 && id < vocab_size() && impl_->id_special[id];
}

// ---------------------------------------------------------------------------
// SpecialTokenConfig

namespace {

// Parses `dir`/`name` into `root`; false (and OK) if the file does not exist.
absl::StatusOr<bool> ReadJsonFile(const std::string& dir, const char* name, json& root) {
  const std::string path = absl::StrCat(dir, "/", name);
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return false;
  std::ifstream file(path, std::ios::binary);
  if (!file.is_open()) {
    return absl::NotFoundError(absl::StrCat("cannot read ", path));
  }
  std::ostringstream contents;
  contents << file.rdbuf();
  const std::string text = contents.str();
  if (absl::Status s = CheckJsonNesting(text); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", s.message()));
  }
  root = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!root.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": expected a JSON object"));
  }
  return true;
}

// "bos_token": "..." or {"content": "...", ...} (an AddedToken); null is none.
absl::StatusOr<std::optional<std::string>> TokenName(const json& root, const char* key) {
  const json* value = FindMember(root, key);
  if (value == nullptr) return std::optional<std::string>();
  if (value->is_string()) return std::optional<std::string>(value->get<std::string>());
  if (const json* content = FindMember(*value, "content");
      content != nullptr && content->is_string()) {
    return std::optional<std::string>(content->get<std::string>());
  }
  return absl::InvalidArgumentError(absl::StrCat(
      "tokenizer_config.json: expected ", key,
      " to be a string, {\"content\": string} or null, found ", Describe(*value)));
}

// Reads "bos_token_id" and "eos_token_id" (an int or a list of ints) of one
// file into the fields of `out` that are still unset.
absl::Status ReadTokenIds(const json& root, const char* file, SpecialTokenConfig& out) {
  const auto bad = [&](const char* key, const json& value) {
    return absl::InvalidArgumentError(absl::StrCat(
        file, ": expected ", key, " to be a non-negative integer", 
        std::string_view(key) == "eos_token_id" ? " or a list of them" : "",
        ", found ", Describe(value)));
  };
  if (const json* bos = FindMember(root, "bos_token_id");
      bos != nullptr && !out.bos_token_id.has_value()) {
    if (!bos->is_number_integer() || bos->get<int64_t>() < 0) return bad("bos_token_id", *bos);
    out.bos_token_id = bos->get<int64_t>();
  }
  if (const json* eos = FindMember(root, "eos_token_id");
      eos != nullptr && out.eos_token_ids.empty()) {
    const json list = eos->is_array() ? *eos : json::array({*eos});
    for (const json& id : list) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0) return bad("eos_token_id", *eos);
      out.eos_token_ids.push_back(id.get<int64_t>());
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<SpecialTokenConfig> SpecialTokenConfig::Read(const std::string& dir) {
  SpecialTokenConfig config;
  json root;
  absl::StatusOr<bool> found = ReadJsonFile(dir, "tokenizer_config.json", root);
  if (!found.ok()) return found.status();
  if (*found) {
    config.has_tokenizer_config = true;
    absl::StatusOr<std::optional<std::string>> bos = TokenName(root, "bos_token");
    if (!bos.ok()) return bos.status();
    absl::StatusOr<std::optional<std::string>> eos = TokenName(root, "eos_token");
    if (!eos.ok()) return eos.status();
    config.bos_token = *std::move(bos);
    config.eos_token = *std::move(eos);
    for (const auto& [key, value] :
         {std::pair("add_bos_token", &config.add_bos_token),
          std::pair("add_eos_token", &config.add_eos_token)}) {
      const json* add = FindMember(root, key);
      if (add == nullptr) continue;
      if (!add->is_boolean()) {
        return absl::InvalidArgumentError(absl::StrCat(
            "tokenizer_config.json: expected ", key, " to be a boolean, found ",
            Describe(*add)));
      }
      *value = add->get<bool>();
    }
  }
  for (const char* name : {"generation_config.json", "config.json"}) {
    found = ReadJsonFile(dir, name, root);
    if (!found.ok()) return found.status();
    if (!*found) continue;
    if (absl::Status s = ReadTokenIds(root, name, config); !s.ok()) return s;
  }
  return config;
}

}  // namespace blockserve::engine
