#include "engine/tokenizer.h"

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/bpe_trainer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace blockserve::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr char kLlama3Pattern[] =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

// --- Test fixtures -----------------------------------------------------------

constexpr char kCorpus[] =
    "The quick brown fox jumps over the lazy dog. The dog sleeps.\n"
    "the the the and and and of of of to to to in in in is is is\n"
    "\tIndented line with a tab.\n"
    "Numbers: 12345 67890 3.14159 2024-01-01\n"
    "Caf\xC3\xA9 cr\xC3\xA8me br\xC3\xBBl\xC3\xA9" "e, na\xC3\xAFve r\xC3\xA9sum\xC3\xA9.\n"
    "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x81\xAE\xE6\x96\x87\xE7\xAB\xA0 "
    "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\n"
    "I'm sure you'll see they've done it; we'd known it's true.\n";

const Tokenizer& TrainedTokenizer() {
  static const Tokenizer* const kTokenizer = [] {
    absl::StatusOr<std::string> json =
        TrainByteLevelBpeJson(kCorpus, 200, {"<|endoftext|>"});
    EXPECT_TRUE(json.ok()) << json.status();
    absl::StatusOr<Tokenizer> tokenizer = Tokenizer::FromJson(*json);
    EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
    return new Tokenizer(*std::move(tokenizer));
  }();
  return *kTokenizer;
}

constexpr char kByteLevelPreTokenizer[] =
    R"({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
        "use_regex": true})";

constexpr char kStringMerges[] = R"(["b c", "a b", "a bc"])";

// Vocab a b c bc ab abc Ġ; merge ranks: "b c" < "a b" < "a bc". Applying
// "a b" first would turn "abc" into [ab, c] instead of [abc].
std::string TinyJson(const std::string& merges = kStringMerges,
                     const std::string& pre_tokenizer = kByteLevelPreTokenizer,
                     const std::string& extra_model_fields = "") {
  return R"({
  "version": "1.0",
  "truncation": null,
  "padding": null,
  "added_tokens": [
    {"id": 7, "content": "<s>", "single_word": false, "lstrip": false,
     "rstrip": false, "normalized": false, "special": true},
    {"id": 8, "content": "</s>", "single_word": false, "lstrip": false,
     "rstrip": false, "normalized": false, "special": true},
    {"id": 9, "content": "<|user|>", "single_word": false, "lstrip": false,
     "rstrip": false, "normalized": true, "special": false},
    {"id": 10, "content": "<unused>", "single_word": false, "lstrip": false,
     "rstrip": false, "normalized": false, "special": true},
    {"id": 11, "content": "<unused>2", "single_word": false, "lstrip": false,
     "rstrip": false, "normalized": false, "special": true}
  ],
  "normalizer": null,
  "pre_tokenizer": )" +
         pre_tokenizer + R"(,
  "post_processor": null,
  "decoder": {"type": "ByteLevel", "add_prefix_space": true,
              "trim_offsets": true, "use_regex": true},
  "model": {
    "type": "BPE", "dropout": null, "unk_token": null,
    "continuing_subword_prefix": null, "end_of_word_suffix": null,
    "fuse_unk": false, "byte_fallback": false, )" +
         extra_model_fields + R"(
    "vocab": {"a": 0, "b": 1, "c": 2, "bc": 3, "ab": 4, "abc": 5, "Ġ": 6},
    "merges": )" +
         merges + R"(
  }
})";
}

std::string Replace(std::string text, const std::string& from,
                    const std::string& to);

Tokenizer MustLoad(const std::string& json) {
  absl::StatusOr<Tokenizer> tokenizer = Tokenizer::FromJson(json);
  EXPECT_TRUE(tokenizer.ok()) << tokenizer.status();
  return *std::move(tokenizer);
}

// Vocab for "Hello world 12345": single symbols plus merged words/digits.
// Merge "3 4" outranks "12 3", so an unsplit "12345" gives [12, 34, 5] while
// the 3-digit pieces "123" + "45" give [123, 45].
constexpr char kHelloVocab[] = R"({
  "H": 0, "e": 1, "l": 2, "o": 3, "Ġ": 4, "w": 5, "r": 6, "d": 7,
  "1": 8, "2": 9, "3": 10, "4": 11, "5": 12,
  "He": 13, "Hel": 14, "Hell": 15, "Hello": 16,
  "Ġw": 17, "Ġwo": 18, "Ġwor": 19, "Ġworl": 20, "Ġworld": 21,
  "12": 22, "34": 23, "123": 24, "45": 25})";
constexpr char kHelloMerges[] = R"([
  "H e", "He l", "Hel l", "Hell o",
  "Ġ w", "Ġw o", "Ġwo r", "Ġwor l", "Ġworl d",
  "1 2", "3 4", "12 3", "4 5"])";

std::string HelloJson(const std::string& pre_tokenizer,
                      bool ignore_merges = false,
                      const std::string& merges = kHelloMerges) {
  return std::string(R"({"added_tokens": [], "pre_tokenizer": )") +
         pre_tokenizer + R"(, "model": {"type": "BPE", "ignore_merges": )" +
         (ignore_merges ? "true" : "false") + R"(, "vocab": )" + kHelloVocab +
         R"(, "merges": )" + merges + "}}";
}

std::string Llama3PreTokenizer() {
  std::string escaped;
  for (const char c : std::string(kLlama3Pattern)) {
    if (c == '\\' || c == '"') escaped.push_back('\\');
    escaped.push_back(c);
  }
  return R"({"type": "Sequence", "pretokenizers": [
      {"type": "Split", "pattern": {"Regex": ")" +
         escaped + R"("}, "behavior": "Isolated", "invert": false},
      {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
       "use_regex": false}]})";
}

// --- Byte-level mapping and regex splitting ----------------------------------

TEST(ByteLevelTest, MapsSpaceAndNewlineToGpt2Symbols) {
  EXPECT_EQ(ByteLevelEncode(" "), "Ġ");
  EXPECT_EQ(ByteLevelEncode("\n"), "Ċ");
  EXPECT_EQ(ByteLevelEncode("a!~"), "a!~");
  EXPECT_EQ(ByteLevelEncode(std::string(1, '\0')), "Ā");
}

TEST(ByteLevelTest, DecodeInvertsEncodeForAllBytes) {
  std::string all_bytes;
  for (int b = 0; b < 256; ++b) all_bytes.push_back(static_cast<char>(b));
  EXPECT_EQ(ByteLevelDecode(ByteLevelEncode(all_bytes)), all_bytes);
}

TEST(ByteLevelTest, DecodeKeepsStringsWithNonSymbolCodePointsUnchanged) {
  EXPECT_EQ(ByteLevelDecode("<|endoftext|>"), "<|endoftext|>");
  EXPECT_EQ(ByteLevelDecode("日本"), "日本");
}

TEST(RegexSplitterTest, Gpt2PatternSplitsWordsSpacesAndContractions) {
  absl::StatusOr<RegexSplitter> splitter =
      RegexSplitter::Create(kGpt2SplitPattern);
  ASSERT_TRUE(splitter.ok()) << splitter.status();
  EXPECT_THAT(splitter->SplitIsolated("Hello  world, it's 42"),
              ElementsAre("Hello", " ", " world", ",", " it", "'s", " 42"));
}

TEST(RegexSplitterTest, UnicodeLettersMatchPropertyClasses) {
  absl::StatusOr<RegexSplitter> splitter =
      RegexSplitter::Create(kGpt2SplitPattern);
  ASSERT_TRUE(splitter.ok()) << splitter.status();
  EXPECT_THAT(splitter->SplitIsolated("h\xC3\xA9llo \xE6\x97\xA5\xE6\x9C\xAC"),
              ElementsAre("h\xC3\xA9llo", " \xE6\x97\xA5\xE6\x9C\xAC"));
}

TEST(RegexSplitterTest, Llama3PatternGroupsDigitsByThreeAndIgnoresCase) {
  absl::StatusOr<RegexSplitter> splitter = RegexSplitter::Create(kLlama3Pattern);
  ASSERT_TRUE(splitter.ok()) << splitter.status();
  EXPECT_THAT(splitter->SplitIsolated("Hello world 12345"),
              ElementsAre("Hello", " world", " ", "123", "45"));
  EXPECT_THAT(splitter->SplitIsolated("DON'T"), ElementsAre("DON", "'T"));
}

// Unicode 15 code points (newer than the Unicode 14 tables of Debian 12's
// PCRE2): the Nag Mundari digits one and two (Nd) and the Kawi letters A and AA
// (Lo). libutf8proc's categories are added to the pattern's classes.
constexpr char kNagMundari1[] = "\xF0\x9E\x93\xB1";
constexpr char kNagMundari2[] = "\xF0\x9E\x93\xB2";
constexpr char kKawiA[] = "\xF0\x91\xBC\x84";
constexpr char kKawiAa[] = "\xF0\x91\xBC\x85";

TEST(RegexSplitterTest, CategoriesKnowCodePointsNewerThanPcre2) {
  const std::string digits = absl::StrCat("12", kNagMundari1, kNagMundari2);
  absl::StatusOr<RegexSplitter> llama3 = RegexSplitter::Create(kLlama3Pattern);
  ASSERT_TRUE(llama3.ok()) << llama3.status();
  EXPECT_THAT(llama3->SplitIsolated(digits + " x"),
              ElementsAre(absl::StrCat("12", kNagMundari1), kNagMundari2, " x"));
  const std::string kawi = absl::StrCat(kKawiA, kKawiAa);
  EXPECT_THAT(llama3->SplitIsolated("." + kawi), ElementsAre("." + kawi));
  for (const char* pattern : {R"(\P{N}+)", R"([^\p{N}]+)", R"(\p{^Nd}+)", R"([^\pN]+)"}) {
    absl::StatusOr<RegexSplitter> splitter = RegexSplitter::Create(pattern);
    ASSERT_TRUE(splitter.ok()) << splitter.status();
    const std::string text = absl::StrCat("a", kNagMundari1, "b");
    EXPECT_THAT(splitter->Segments(text),
                ElementsAre(Field(&RegexSplitter::Segment::is_match, true),
                            Field(&RegexSplitter::Segment::is_match, false),
                            Field(&RegexSplitter::Segment::is_match, true)))
        << pattern;
  }
  for (const char* pattern : {R"(\p{Lo}+)", R"([\p{L}]+)", R"(\pL+)", R"(\p{L&}+|\p{L}+)"}) {
    absl::StatusOr<RegexSplitter> splitter = RegexSplitter::Create(pattern);
    ASSERT_TRUE(splitter.ok()) << splitter.status();
    EXPECT_THAT(splitter->Segments(kawi),
                ElementsAre(Field(&RegexSplitter::Segment::is_match, true)))
        << pattern;
  }
  // Literal text and \Q...\E are not rewritten.
  absl::StatusOr<RegexSplitter> quoted = RegexSplitter::Create(R"(\Q\p{N}\E)");
  ASSERT_TRUE(quoted.ok()) << quoted.status();
  EXPECT_THAT(quoted->SplitIsolated(absl::StrCat("1\\p{N}", kNagMundari1)),
              ElementsAre("1", "\\p{N}", kNagMundari1));
}

// U+180E MONGOLIAN VOWEL SEPARATOR is a format character (Cf) since Unicode 6.3,
// not white space, though PCRE2's \s still matches it.
constexpr char kMongolianVowelSeparator[] = "\xE1\xA0\x8E";

TEST(RegexSplitterTest, MongolianVowelSeparatorIsNotWhiteSpace) {
  const auto matches = [](const char* pattern, const std::string& text) {
    absl::StatusOr<RegexSplitter> splitter = RegexSplitter::Create(pattern);
    EXPECT_TRUE(splitter.ok()) << splitter.status();
    std::vector<std::string> out;
    for (const RegexSplitter::Segment& s : splitter->Segments(text)) {
      if (s.is_match) out.push_back(text.substr(s.begin, s.end - s.begin));
    }
    return out;
  };
  const std::string mvs = kMongolianVowelSeparator;
  EXPECT_THAT(matches(R"(\s+)", " " + mvs + "\t"), ElementsAre(" ", "\t"));
  EXPECT_THAT(matches(R"(\S+)", " " + mvs + "\t"), ElementsAre(mvs));
  EXPECT_THAT(matches(R"([\s]+)", " " + mvs + "\t"), ElementsAre(" ", "\t"));
  EXPECT_THAT(matches(R"([^\s\p{L}]+)", "a" + mvs + ". b"), ElementsAre(mvs + "."));
  EXPECT_THAT(matches(kGpt2SplitPattern.data(), "a " + mvs + mvs + " b"),
              ElementsAre("a", " " + mvs + mvs, " b"));
  // Other white space is unchanged: tab, newline, NEL, no-break and ideographic space.
  EXPECT_THAT(matches(R"(\s+)", "a\t\n\xC2\x85\xC2\xA0\xE3\x80\x80z"),
              ElementsAre("\t\n\xC2\x85\xC2\xA0\xE3\x80\x80"));
}

TEST(RegexSplitterTest, InvalidUtf8EndsUpInGapsInsteadOfFailing) {
  absl::StatusOr<RegexSplitter> splitter =
      RegexSplitter::Create(kGpt2SplitPattern);
  ASSERT_TRUE(splitter.ok()) << splitter.status();
  EXPECT_THAT(splitter->SplitIsolated("ab\xFF" "cd"),
              ElementsAre("ab", "\xFF", "cd"));
}

TEST(RegexSplitterTest, PatternThatMatchesEmptyStillTerminates) {
  absl::StatusOr<RegexSplitter> splitter = RegexSplitter::Create("x*");
  ASSERT_TRUE(splitter.ok()) << splitter.status();
  EXPECT_THAT(splitter->SplitIsolated("axxb"), ElementsAre("a", "xx", "b"));
}

TEST(RegexSplitterTest, BadPatternIsInvalidArgument) {
  absl::StatusOr<RegexSplitter> splitter = RegexSplitter::Create("(unclosed");
  EXPECT_EQ(splitter.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(splitter.status().message()), HasSubstr("(unclosed"));
}

// --- Round trips with a trained tokenizer ------------------------------------

class TrainedRoundTripTest : public ::testing::TestWithParam<std::string> {};

TEST_P(TrainedRoundTripTest, DecodeOfEncodeReturnsOriginalText) {
  const Tokenizer& tokenizer = TrainedTokenizer();
  const std::vector<int32_t> ids = tokenizer.Encode(GetParam());
  absl::StatusOr<std::string> decoded = tokenizer.Decode(ids);
  ASSERT_TRUE(decoded.ok()) << decoded.status();
  EXPECT_EQ(*decoded, GetParam());
}

INSTANTIATE_TEST_SUITE_P(
    Texts, TrainedRoundTripTest,
    ::testing::Values(
        "The quick brown fox jumps over the lazy dog.",
        "line one\n  line two\twith tab\n\n\tindented  \n",
        "Caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E "
        "\xF0\x9F\x99\x82 e\xCC\x81",
        "unseen words: zyxw qqqq 99999999 <|endoftext|> tail",
        std::string("raw \xFF\xFE bytes \0 here", 19), ""));

TEST(TrainedTokenizerTest, EmptyStringEncodesToNoIds) {
  EXPECT_THAT(TrainedTokenizer().Encode(""), IsEmpty());
}

TEST(TrainedTokenizerTest, FrequentTextUsesFewerIdsThanBytes) {
  const std::string text = "the the the and and and";
  EXPECT_LT(TrainedTokenizer().Encode(text).size(), text.size() / 2);
}

TEST(TrainedTokenizerTest, ConcatenatedTokenBytesRebuildMultibyteText) {
  const Tokenizer& tokenizer = TrainedTokenizer();
  const std::string text = "\xF0\x9F\x99\x82\xF0\x9F\x99\x83";  // 🙂🙃
  const std::vector<int32_t> ids = tokenizer.Encode(text);
  ASSERT_GT(ids.size(), 1u);  // Unseen emoji are split into byte tokens.
  std::string streamed;
  for (const int32_t id : ids) {
    absl::StatusOr<std::string> bytes = tokenizer.DecodeToken(id);
    ASSERT_TRUE(bytes.ok()) << bytes.status();
    streamed += *bytes;
  }
  EXPECT_EQ(streamed, text);
}

TEST(TrainedTokenizerTest, TokenNamesAloneGiveNoBosAndNoEos) {
  const Tokenizer& tokenizer = TrainedTokenizer();
  ASSERT_TRUE(tokenizer.TokenId("<|endoftext|>").has_value());
  EXPECT_FALSE(tokenizer.eos_id().has_value());
  EXPECT_THAT(tokenizer.eos_ids(), IsEmpty());
  EXPECT_FALSE(tokenizer.bos_id().has_value());
  EXPECT_EQ(tokenizer.Encode("a", /*add_special_tokens=*/true), tokenizer.Encode("a"));
}

TEST(TrainedTokenizerTest, ConcurrentEncodesAgree) {
  const Tokenizer& tokenizer = TrainedTokenizer();
  const std::string text = kCorpus;
  const std::vector<int32_t> expected = tokenizer.Encode(text);
  std::vector<std::vector<int32_t>> results(8);
  std::vector<std::thread> threads;
  for (auto& result : results) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20; ++i) result = tokenizer.Encode(text);
    });
  }
  for (auto& thread : threads) thread.join();
  for (const auto& result : results) EXPECT_EQ(result, expected);
}

TEST(TrainedTokenizerTest, FromFileLoadsTheSameTokenizer) {
  absl::StatusOr<std::string> json =
      TrainByteLevelBpeJson(kCorpus, 50, {"<|endoftext|>"});
  ASSERT_TRUE(json.ok()) << json.status();
  const std::string path = ::testing::TempDir() + "/tokenizer_test.json";
  std::ofstream(path, std::ios::binary) << *json;
  absl::StatusOr<Tokenizer> from_file = Tokenizer::FromFile(path);
  ASSERT_TRUE(from_file.ok()) << from_file.status();
  const Tokenizer from_json = MustLoad(*json);
  EXPECT_EQ(from_file->Encode(kCorpus), from_json.Encode(kCorpus));
  EXPECT_EQ(from_file->vocab_size(), from_json.vocab_size());
}

// --- Exact ids with hand-written tokenizer.json ------------------------------

TEST(TinyTokenizerTest, MergesApplyInRankOrder) {
  const Tokenizer tokenizer = MustLoad(TinyJson());
  EXPECT_THAT(tokenizer.Encode("abc"), ElementsAre(5));  // Not [ab, c].
  EXPECT_THAT(tokenizer.Encode("abab"), ElementsAre(4, 4));
  EXPECT_THAT(tokenizer.Encode("ab abc"), ElementsAre(4, 6, 5));
  EXPECT_THAT(tokenizer.Encode("cab"), ElementsAre(2, 4));
}

TEST(TinyTokenizerTest, ArrayMergesGiveSameIdsAsStringMerges) {
  const Tokenizer strings = MustLoad(TinyJson(kStringMerges));
  const Tokenizer arrays =
      MustLoad(TinyJson(R"([["b", "c"], ["a", "b"], ["a", "bc"]])"));
  for (const char* text : {"abc", "abab", "ab abc", "cab", "bcbca"}) {
    EXPECT_EQ(arrays.Encode(text), strings.Encode(text)) << text;
  }
  EXPECT_THAT(arrays.Encode("abc"), ElementsAre(5));
}

TEST(TinyTokenizerTest, ReversedMergeRanksChangeTheResult) {
  const Tokenizer tokenizer =
      MustLoad(TinyJson(R"(["a b", "b c", "a bc"])"));
  EXPECT_THAT(tokenizer.Encode("abc"), ElementsAre(4, 2));
}

TEST(TinyTokenizerTest, AddPrefixSpacePrependsSpaceToText) {
  const Tokenizer tokenizer = MustLoad(TinyJson(
      kStringMerges,
      R"({"type": "ByteLevel", "add_prefix_space": true, "use_regex": true})"));
  EXPECT_THAT(tokenizer.Encode("abc"), ElementsAre(6, 5));
}

TEST(TinyTokenizerTest, NullPreTokenizerKeepsTextAsOnePiece) {
  const Tokenizer tokenizer = MustLoad(TinyJson(kStringMerges, "null"));
  // With the GPT-2 regex "ab abc" would be two pieces; as one piece the
  // space symbol sits between them and nothing merges across it.
  EXPECT_THAT(tokenizer.Encode("ab abc"), ElementsAre(4, 6, 5));
  EXPECT_THAT(tokenizer.Encode("abab"), ElementsAre(4, 4));
}

TEST(TinyTokenizerTest, SplitWithStringPatternAndRemovedBehaviorDropsSpaces) {
  const Tokenizer tokenizer = MustLoad(TinyJson(
      kStringMerges,
      R"({"type": "Sequence", "pretokenizers": [
           {"type": "Split", "pattern": {"String": " "},
            "behavior": "Removed", "invert": false},
           {"type": "ByteLevel", "add_prefix_space": false,
            "use_regex": false}]})"));
  EXPECT_THAT(tokenizer.Encode("ab abc"), ElementsAre(4, 5));
}

TEST(TinyTokenizerTest, SymbolsMissingFromVocabAreDroppedWithoutUnkToken) {
  const Tokenizer tokenizer = MustLoad(TinyJson());
  EXPECT_THAT(tokenizer.Encode("abx"), ElementsAre(4));
}

TEST(TinyTokenizerTest, SpecialTokensInTextAreSingleIds) {
  const Tokenizer tokenizer = MustLoad(TinyJson());
  EXPECT_THAT(tokenizer.Encode("ab<s>abc</s>"), ElementsAre(4, 7, 5, 8));
  EXPECT_THAT(tokenizer.Encode("<|user|>abc"), ElementsAre(9, 5));
}

TEST(TinyTokenizerTest, LongestAddedTokenWins) {
  const Tokenizer tokenizer = MustLoad(TinyJson());
  EXPECT_THAT(tokenizer.Encode("<unused>2<unused>"), ElementsAre(11, 10));
}

TEST(TinyTokenizerTest, DecodeIncludesOrSkipsSpecialTokens) {
  const Tokenizer tokenizer = MustLoad(TinyJson());
  const std::vector<int32_t> ids = {9, 4, 7, 6, 5, 8};
  absl::StatusOr<std::string> with_special = tokenizer.Decode(ids);
  ASSERT_TRUE(with_special.ok()) << with_special.status();
  EXPECT_EQ(*with_special, "<|user|>ab<s> abc</s>");
  absl::StatusOr<std::string> without =
      tokenizer.Decode(ids, /*skip_special=*/true);
  ASSERT_TRUE(without.ok()) << without.status();
  EXPECT_EQ(*without, "<|user|>ab abc");  // <|user|> is not special.
}

TEST(TinyTokenizerTest, IsSpecialOnlyForSpecialAddedTokens) {
  const Tokenizer tokenizer = MustLoad(TinyJson());
  EXPECT_TRUE(tokenizer.IsSpecial(7));
  EXPECT_FALSE(tokenizer.IsSpecial(9));
  EXPECT_FALSE(tokenizer.IsSpecial(0));
  EXPECT_FALSE(tokenizer.IsSpecial(-1));
  EXPECT_FALSE(tokenizer.IsSpecial(1000));
}

TEST(TinyTokenizerTest, BosAndEosAreNeverGuessedFromTokenNames) {
  const Tokenizer tokenizer = MustLoad(TinyJson());  // Has "<s>" and "</s>".
  EXPECT_EQ(tokenizer.bos_id(), std::nullopt);
  EXPECT_EQ(tokenizer.eos_id(), std::nullopt);
  EXPECT_THAT(tokenizer.Encode("abc", /*add_special_tokens=*/true), ElementsAre(5));
}

TEST(TinyTokenizerTest, BosAndEosComeFromTokenizerConfig) {
  SpecialTokenConfig special;
  special.has_tokenizer_config = true;
  special.bos_token = "<s>";
  special.eos_token = "</s>";
  special.add_bos_token = true;
  special.eos_token_ids = {10, 8};
  absl::StatusOr<Tokenizer> tokenizer = Tokenizer::FromJson(TinyJson(), special);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ(tokenizer->bos_id(), 7);
  EXPECT_EQ(tokenizer->eos_id(), 8);
  EXPECT_THAT(tokenizer->eos_ids(), ElementsAre(8, 10));
  EXPECT_THAT(tokenizer->Encode("abc", /*add_special_tokens=*/true), ElementsAre(7, 5));
  // A bos_token without add_bos_token adds nothing (Qwen: bos_token null,
  // config.json's bos_token_id set).
  special.add_bos_token.reset();
  special.bos_token_id = 7;
  tokenizer = Tokenizer::FromJson(TinyJson(), special);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ(tokenizer->bos_id(), std::nullopt);
  // Without tokenizer_config.json, config.json's bos_token_id is the BOS.
  special.has_tokenizer_config = false;
  tokenizer = Tokenizer::FromJson(TinyJson(), special);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ(tokenizer->bos_id(), 7);
}

TEST(TinyTokenizerTest, AddBosTokenFalseOverridesTheTemplate) {
  std::string json = Replace(TinyJson(), R"("post_processor": null)",
                             R"("post_processor": {"type": "TemplateProcessing", "single": [
                                 {"SpecialToken": {"id": "<s>", "type_id": 0}},
                                 {"Sequence": {"id": "A", "type_id": 0}}],
                                 "special_tokens": {"<s>": {"id": "<s>", "ids": [7]}}})");
  EXPECT_EQ(MustLoad(json).bos_id(), 7);
  SpecialTokenConfig special;
  special.add_bos_token = false;
  special.bos_token = "<s>";
  absl::StatusOr<Tokenizer> tokenizer = Tokenizer::FromJson(json, special);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ(tokenizer->bos_id(), std::nullopt);
}

TEST(TinyTokenizerTest, SpecialTokensMissingFromTheVocabAreErrors) {
  SpecialTokenConfig special;
  special.eos_token = "<|im_end|>";
  absl::StatusOr<Tokenizer> tokenizer = Tokenizer::FromJson(TinyJson(), special);
  EXPECT_THAT(std::string(tokenizer.status().message()), HasSubstr("<|im_end|>"));
  special = SpecialTokenConfig();
  special.eos_token_ids = {99};
  tokenizer = Tokenizer::FromJson(TinyJson(), special);
  EXPECT_THAT(std::string(tokenizer.status().message()), HasSubstr("99"));
}

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  ASSERT_TRUE(out.good()) << path;
}

TEST(SpecialTokenConfigTest, ReadsTheThreeFilesAsTransformersDoes) {
  const std::string dir = ::testing::TempDir() + "/special_token_config";
  std::filesystem::create_directories(dir);
  WriteFile(dir + "/tokenizer.json", TinyJson());
  WriteFile(dir + "/tokenizer_config.json",
            R"({"bos_token": {"__type": "AddedToken", "content": "<s>"},
                "eos_token": "</s>", "add_bos_token": true, "add_eos_token": true})");
  WriteFile(dir + "/generation_config.json", R"({"eos_token_id": [10, 11]})");
  WriteFile(dir + "/config.json", R"({"bos_token_id": 7, "eos_token_id": 8})");
  absl::StatusOr<SpecialTokenConfig> special = SpecialTokenConfig::Read(dir);
  ASSERT_TRUE(special.ok()) << special.status();
  EXPECT_TRUE(special->has_tokenizer_config);
  EXPECT_EQ(special->bos_token, "<s>");
  EXPECT_EQ(special->eos_token, "</s>");
  EXPECT_EQ(special->add_bos_token, true);
  EXPECT_EQ(special->add_eos_token, true);
  EXPECT_EQ(special->bos_token_id, 7);  // generation_config.json has none.
  EXPECT_THAT(special->eos_token_ids, ElementsAre(10, 11));
  absl::StatusOr<Tokenizer> tokenizer = Tokenizer::FromModelDir(dir);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ(tokenizer->bos_id(), 7);
  EXPECT_THAT(tokenizer->eos_ids(), ElementsAre(8, 10, 11));
  EXPECT_THAT(tokenizer->Encode("abc", /*add_special_tokens=*/true), ElementsAre(7, 5, 8));

  WriteFile(dir + "/tokenizer_config.json", R"({"add_bos_token": "yes"})");
  EXPECT_THAT(std::string(SpecialTokenConfig::Read(dir).status().message()),
              HasSubstr("add_bos_token"));
  WriteFile(dir + "/tokenizer_config.json", R"({"add_eos_token": 1})");
  EXPECT_THAT(std::string(SpecialTokenConfig::Read(dir).status().message()),
              HasSubstr("add_eos_token"));
  std::filesystem::remove(dir + "/tokenizer_config.json");
  std::filesystem::remove(dir + "/generation_config.json");
  special = SpecialTokenConfig::Read(dir);
  ASSERT_TRUE(special.ok()) << special.status();
  EXPECT_FALSE(special->has_tokenizer_config);
  EXPECT_THAT(special->eos_token_ids, ElementsAre(8));
}

// TinyJson() with `processor` as its post_processor.
std::string WithPostProcessor(const std::string& processor) {
  return Replace(TinyJson(), R"("post_processor": null)",
                 absl::StrCat(R"("post_processor": )", processor));
}

// A TemplateProcessing whose single template is `single`; "<s>" is 7, "</s>"
// 8 and "<unused>" 10 (tokens of TinyJson()).
std::string Template(const std::string& single) {
  return absl::StrCat(R"({"type": "TemplateProcessing", "single": [)", single, R"(],
      "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
      "special_tokens": {"<s>": {"id": "<s>", "ids": [7], "tokens": ["<s>"]},
                         "</s>": {"id": "</s>", "ids": [8], "tokens": ["</s>"]},
                         "<unused>": {"id": "<unused>", "ids": [10], "tokens": ["<unused>"]}}})");
}

constexpr char kBos[] = R"({"SpecialToken": {"id": "<s>", "type_id": 0}})";
constexpr char kEos[] = R"({"SpecialToken": {"id": "</s>", "type_id": 0}})";
constexpr char kText[] = R"({"Sequence": {"id": "A", "type_id": 0}})";

TEST(PostProcessorTest, BosComesFromATemplateInsideASequence) {
  const Tokenizer tokenizer = MustLoad(WithPostProcessor(absl::StrCat(
      R"({"type": "Sequence", "processors": [
          {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false,
           "use_regex": true}, )",
      Template(R"({"SpecialToken": {"id": "<unused>", "type_id": 0}}, )" +
               std::string(kText)),
      "]}")));
  EXPECT_EQ(tokenizer.bos_id(), 10);
  EXPECT_THAT(tokenizer.special_suffix(), IsEmpty());
  EXPECT_THAT(tokenizer.Encode("abc", /*add_special_tokens=*/true), ElementsAre(10, 5));
}

TEST(PostProcessorTest, TemplateWithATrailingEos) {
  const Tokenizer tokenizer =
      MustLoad(WithPostProcessor(Template(absl::StrCat(kText, ", ", kEos))));
  EXPECT_EQ(tokenizer.bos_id(), std::nullopt);
  EXPECT_THAT(tokenizer.special_suffix(), ElementsAre(8));
  EXPECT_THAT(tokenizer.Encode("abc", /*add_special_tokens=*/true), ElementsAre(5, 8));
  EXPECT_THAT(tokenizer.Encode("", /*add_special_tokens=*/true), ElementsAre(8));
  EXPECT_THAT(tokenizer.Encode("abc"), ElementsAre(5));
}

TEST(PostProcessorTest, TemplateWithTokensOnBothSides) {
  const Tokenizer tokenizer = MustLoad(
      WithPostProcessor(Template(absl::StrCat(kBos, ", ", kText, ", ", kEos, ", ", kEos))));
  EXPECT_EQ(tokenizer.bos_id(), 7);
  EXPECT_THAT(tokenizer.Encode("abc ab", /*add_special_tokens=*/true),
              ElementsAre(7, 5, 6, 4, 8, 8));
  // add_bos_token / add_eos_token of tokenizer_config.json replace each side.
  SpecialTokenConfig special;
  special.has_tokenizer_config = true;
  special.bos_token = "<unused>";
  special.eos_token = "</s>";
  special.add_bos_token = true;
  absl::StatusOr<Tokenizer> configured =
      Tokenizer::FromJson(WithPostProcessor(Template(absl::StrCat(kBos, ", ", kText, ", ", kEos))),
                          special);
  ASSERT_TRUE(configured.ok()) << configured.status();
  EXPECT_THAT(configured->Encode("abc", /*add_special_tokens=*/true), ElementsAre(10, 5, 8));
  special.add_bos_token = false;
  special.add_eos_token = false;
  configured = Tokenizer::FromJson(
      WithPostProcessor(Template(absl::StrCat(kBos, ", ", kText, ", ", kEos))), special);
  ASSERT_TRUE(configured.ok()) << configured.status();
  EXPECT_THAT(configured->Encode("abc", /*add_special_tokens=*/true), ElementsAre(5));
  special.add_eos_token = true;
  configured = Tokenizer::FromJson(WithPostProcessor(Template(kText)), special);
  ASSERT_TRUE(configured.ok()) << configured.status();
  EXPECT_THAT(configured->Encode("abc", /*add_special_tokens=*/true), ElementsAre(5, 8));
}

TEST(PostProcessorTest, SequenceOfTemplatesWrapsInOrder) {
  const Tokenizer tokenizer = MustLoad(WithPostProcessor(absl::StrCat(
      R"({"type": "Sequence", "processors": [)",
      Template(absl::StrCat(kBos, ", ", kText, ", ", kEos)), ", ",
      Template(R"({"SpecialToken": {"id": "<unused>", "type_id": 0}}, )" + std::string(kText) +
               ", " + kBos),
      "]}")));
  EXPECT_THAT(tokenizer.Encode("abc", /*add_special_tokens=*/true), ElementsAre(10, 7, 5, 8, 7));
}

TEST(PostProcessorTest, BertAndRobertaProcessing) {
  const Tokenizer bert = MustLoad(WithPostProcessor(
      R"({"type": "BertProcessing", "sep": ["</s>", 8], "cls": ["<unused>", 10]})"));
  EXPECT_THAT(bert.Encode("abc", /*add_special_tokens=*/true), ElementsAre(10, 5, 8));
  const Tokenizer roberta = MustLoad(WithPostProcessor(
      R"({"type": "RobertaProcessing", "sep": ["</s>", 8], "cls": ["<s>", 7],
          "trim_offsets": true, "add_prefix_space": false})"));
  EXPECT_THAT(roberta.Encode("abc", /*add_special_tokens=*/true), ElementsAre(7, 5, 8));
}

TEST(PostProcessorTest, UnsupportedOrBrokenProcessorsAreClearErrors) {
  const auto error = [](const std::string& processor) {
    absl::StatusOr<Tokenizer> tokenizer = Tokenizer::FromJson(WithPostProcessor(processor));
    EXPECT_FALSE(tokenizer.ok()) << processor;
    return std::string(tokenizer.status().message());
  };
  EXPECT_THAT(error(R"({"type": "NoSuchProcessing"})"),
              HasSubstr("unsupported tokenizer.json feature: expected post_processor.type"));
  // A single template must hold the text (sequence A) once, never sequence B.
  EXPECT_THAT(error(Template(absl::StrCat(kBos, R"(, {"Sequence": {"id": "B", "type_id": 0}})"))),
              HasSubstr("unsupported tokenizer.json feature: post_processor.single[1]"));
  EXPECT_THAT(error(Template(absl::StrCat(kText, ", ", kText))),
              HasSubstr("sequence \"A\" exactly once"));
  EXPECT_THAT(error(Template(kBos)), HasSubstr("no Sequence piece"));
  // A special token the template does not list, or one whose id is not a token.
  EXPECT_THAT(error(Template(R"({"SpecialToken": {"id": "<x>", "type_id": 0}}, )" +
                             std::string(kText))),
              HasSubstr("special_tokens to give the ids of \"<x>\""));
  EXPECT_THAT(error(Replace(Template(absl::StrCat(kBos, ", ", kText)), R"("ids": [7])",
                            R"("ids": [70])")),
              HasSubstr("special token id 70 is not in the vocabulary"));
  EXPECT_THAT(error(R"({"type": "BertProcessing", "sep": ["</s>"], "cls": ["<s>", 7]})"),
              HasSubstr("post_processor.sep"));
}

TEST(TinyTokenizerTest, VocabSizeIsMaxIdPlusOneAndTokenIdLooksUpBoth) {
  const Tokenizer tokenizer = MustLoad(TinyJson());
  EXPECT_EQ(tokenizer.vocab_size(), 12);
  EXPECT_EQ(tokenizer.TokenId("Ġ"), 6);
  EXPECT_EQ(tokenizer.TokenId("</s>"), 8);
  EXPECT_EQ(tokenizer.TokenId("zzz"), std::nullopt);
}

TEST(TinyTokenizerTest, TokenBytesUndoesByteLevelMapping) {
  const Tokenizer tokenizer = MustLoad(TinyJson());
  absl::StatusOr<std::string> space = tokenizer.TokenBytes(6);
  ASSERT_TRUE(space.ok()) << space.status();
  EXPECT_EQ(*space, " ");
}

// --- Llama-3 style pre-tokenizer ---------------------------------------------

TEST(Llama3StyleTest, SplitThenByteLevelGroupsDigitsByAtMostThree) {
  const Tokenizer tokenizer = MustLoad(HelloJson(Llama3PreTokenizer()));
  EXPECT_THAT(tokenizer.Encode("Hello world 12345"),
              ElementsAre(16, 21, 4, 24, 25));  // Hello Ġworld Ġ 123 45
}

TEST(Llama3StyleTest, Gpt2ByteLevelKeepsDigitRunWhole) {
  // Control for the test above: without 3-digit grouping the ids differ.
  const Tokenizer tokenizer = MustLoad(HelloJson(kByteLevelPreTokenizer));
  EXPECT_THAT(tokenizer.Encode("Hello world 12345"),
              ElementsAre(16, 21, 4, 22, 23, 12));  // ... Ġ 12 34 5
}

TEST(Llama3StyleTest, IgnoreMergesEmitsWholePieceFoundInVocab) {
  const Tokenizer with_ignore = MustLoad(HelloJson(
      Llama3PreTokenizer(), /*ignore_merges=*/true, /*merges=*/"[]"));
  EXPECT_THAT(with_ignore.Encode("Hello 12"), ElementsAre(16, 4, 22));
  const Tokenizer without = MustLoad(HelloJson(
      Llama3PreTokenizer(), /*ignore_merges=*/false, /*merges=*/"[]"));
  EXPECT_THAT(without.Encode("Hello 12"),
              ElementsAre(0, 1, 2, 2, 3, 4, 8, 9));
}

// --- Malformed input ---------------------------------------------------------

void ExpectInvalid(const std::string& json, const std::string& mention) {
  absl::StatusOr<Tokenizer> tokenizer = Tokenizer::FromJson(json);
  ASSERT_FALSE(tokenizer.ok());
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(tokenizer.status().message()), HasSubstr(mention));
}

std::string Replace(std::string text, const std::string& from,
                    const std::string& to) {
  const size_t pos = text.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  return text.replace(pos, from.size(), to);
}

TEST(MalformedTest, InvalidJsonIsInvalidArgument) {
  ExpectInvalid("{not json", "parse");
  ExpectInvalid("", "parse");
}

TEST(MalformedTest, TopLevelMustBeAnObject) { ExpectInvalid("[1, 2]", "array"); }

TEST(MalformedTest, MissingModelIsInvalidArgument) {
  ExpectInvalid(R"({"version": "1.0", "added_tokens": []})", "model");
}

TEST(MalformedTest, WordPieceModelIsRejected) {
  ExpectInvalid(Replace(TinyJson(), R"("type": "BPE")", R"("type": "WordPiece")"),
                "WordPiece");
}

TEST(MalformedTest, MergeWithUnknownTokenIsRejected) {
  ExpectInvalid(TinyJson(R"(["b c", "a z"])"), "\"z\"");
}

TEST(MalformedTest, MergeWhoseResultIsNotInVocabIsRejected) {
  ExpectInvalid(TinyJson(R"(["c a"])"), "\"ca\"");
}

TEST(MalformedTest, MalformedMergeEntryIsRejected) {
  ExpectInvalid(TinyJson(R"(["abc"])"), "merges[0]");
  ExpectInvalid(TinyJson(R"([["a"]])"), "merges[0]");
  ExpectInvalid(TinyJson(R"([42])"), "merges[0]");
}

TEST(MalformedTest, VocabNotAnObjectIsRejected) {
  ExpectInvalid(R"({"model": {"type": "BPE", "vocab": "abc", "merges": []}})",
                "model.vocab");
  ExpectInvalid(R"({"model": {"type": "BPE", "vocab": [], "merges": []}})",
                "model.vocab");
}

TEST(MalformedTest, MissingMergesIsRejected) {
  ExpectInvalid(R"({"model": {"type": "BPE", "vocab": {"a": 0}}})",
                "model.merges");
}

TEST(MalformedTest, NegativeOrNonIntegerIdIsRejected) {
  ExpectInvalid(Replace(TinyJson(), R"("a": 0)", R"("a": -1)"), "-1");
  ExpectInvalid(Replace(TinyJson(), R"("a": 0)", R"("a": "zero")"), "zero");
}

TEST(MalformedTest, BadRegexPatternIsRejected) {
  ExpectInvalid(
      TinyJson(kStringMerges,
               R"({"type": "Split", "pattern": {"Regex": "(a"},
                   "behavior": "Isolated", "invert": false})"),
      "regex");
}

TEST(MalformedTest, UnsupportedPreTokenizerIsRejected) {
  ExpectInvalid(TinyJson(kStringMerges, R"({"type": "Whitespace"})"),
                "Whitespace");
}

TEST(MalformedTest, EmptyStringSubwordAffixesAreAcceptedOthersRejected) {
  // Qwen's files carry "" where others carry null.
  MustLoad(Replace(TinyJson(), R"("continuing_subword_prefix": null)",
                   R"("continuing_subword_prefix": "")"));
  MustLoad(Replace(TinyJson(), R"("end_of_word_suffix": null)",
                   R"("end_of_word_suffix": "")"));
  ExpectInvalid(Replace(TinyJson(), R"("continuing_subword_prefix": null)",
                        R"("continuing_subword_prefix": "##")"),
                "continuing_subword_prefix");
  ExpectInvalid(Replace(TinyJson(), R"("end_of_word_suffix": null)",
                        R"("end_of_word_suffix": "</w>")"),
                "end_of_word_suffix");
}

TEST(MalformedTest, StrippingAddedTokensAreRejected) {
  ExpectInvalid(Replace(TinyJson(), R"("id": 7, "content": "<s>", "single_word": false, "lstrip": false)",
                        R"("id": 7, "content": "<s>", "single_word": false, "lstrip": true)"),
                "lstrip");
}

TEST(MalformedTest, UnsupportedSplitBehaviorIsRejected) {
  ExpectInvalid(
      TinyJson(kStringMerges,
               R"({"type": "Split", "pattern": {"Regex": "a"},
                   "behavior": "Sideways", "invert": false})"),
      "Sideways");
}

TEST(MalformedTest, ByteFallbackWithByteLevelIsRejected) {
  ExpectInvalid(TinyJson(kStringMerges, kByteLevelPreTokenizer,
                         R"("byte_fallback": true,)"),
                "byte_fallback");
}

TEST(MalformedTest, UnsupportedNormalizerIsRejected) {
  ExpectInvalid(Replace(TinyJson(), R"("normalizer": null)",
                        R"("normalizer": {"type": "Lowercase"})"),
                "Lowercase");
}

TEST(MalformedTest, AddedTokenWithoutContentIsRejected) {
  ExpectInvalid(Replace(TinyJson(), R"("content": "<s>")", R"("content": 5)"),
                "added_tokens[0].content");
}

TEST(MalformedTest, NonexistentFileIsNotFound) {
  absl::StatusOr<Tokenizer> tokenizer =
      Tokenizer::FromFile("/nonexistent/dir/tokenizer.json");
  EXPECT_EQ(tokenizer.status().code(), absl::StatusCode::kNotFound);
}

TEST(MalformedTest, DirectoryInsteadOfFileIsAnError) {
  absl::StatusOr<Tokenizer> tokenizer = Tokenizer::FromFile(::testing::TempDir());
  EXPECT_FALSE(tokenizer.ok());
}

TEST(MalformedTest, DecodeOfUnknownIdIsInvalidArgument) {
  const Tokenizer tokenizer = MustLoad(TinyJson());
  for (const int32_t id : {-1, 12, 1 << 30}) {
    absl::StatusOr<std::string> text = tokenizer.Decode({4, id});
    EXPECT_EQ(text.status().code(), absl::StatusCode::kInvalidArgument) << id;
    EXPECT_THAT(std::string(text.status().message()),
                HasSubstr(std::to_string(id)));
  }
}

TEST(MalformedTest, TokenBytesOfIdInHoleIsInvalidArgument) {
  // Ids 0..6 and 7..11 are all used; make a hole by moving "Ġ" to id 20.
  const Tokenizer tokenizer =
      MustLoad(Replace(TinyJson(), R"("Ġ": 6)", R"("Ġ": 20)"));
  EXPECT_EQ(tokenizer.vocab_size(), 21);
  EXPECT_EQ(tokenizer.TokenBytes(6).status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::string> space = tokenizer.TokenBytes(20);
  ASSERT_TRUE(space.ok()) << space.status();
  EXPECT_EQ(*space, " ");
}

// "model" nested a million deep: Describe()'s dump() of it recursed once per level and
// overflowed the stack (SIGSEGV). Refused before parsing; nested pre-tokenizer Sequences,
// walked recursively, are bounded by the same limit.
TEST(MalformedTest, DeeplyNestedJsonIsInvalidArgumentNotAStackOverflow) {
  const int depth = 1'000'000;
  const std::string json =
      R"({"model": )" + std::string(depth, '[') + std::string(depth, ']') + "}";
  absl::StatusOr<Tokenizer> t = Tokenizer::FromJson(json);
  EXPECT_EQ(t.status().code(), absl::StatusCode::kInvalidArgument) << t.status();
  EXPECT_NE(t.status().message().find("nested deeper than"), std::string_view::npos)
      << t.status();
}

// --- Normalizers ---

// A byte-level tokenizer that knows "é" (NFC) as one token.
std::string CafeJson(const std::string& normalizer) {
  absl::StatusOr<std::string> json = TrainByteLevelBpeJson("caf\xC3\xA9 caf\xC3\xA9 caf\xC3\xA9", 20, {});
  EXPECT_TRUE(json.ok()) << json.status();
  return Replace(*json, R"("normalizer": null)", R"("normalizer": )" + normalizer);
}

constexpr char kNfc[] = "caf\xC3\xA9";       // é as U+00E9
constexpr char kNfd[] = "cafe\xCC\x81";      // e + U+0301

TEST(NormalizerTest, NfcMakesDecomposedTextEncodeAsComposed) {
  const Tokenizer plain = MustLoad(CafeJson("null"));
  ASSERT_NE(plain.Encode(kNfd), plain.Encode(kNfc));
  const Tokenizer nfc = MustLoad(CafeJson(R"({"type": "NFC"})"));
  EXPECT_EQ(nfc.Encode(kNfd), plain.Encode(kNfc));
  EXPECT_EQ(nfc.Encode(kNfc), plain.Encode(kNfc));
  EXPECT_EQ(*nfc.Decode(nfc.Encode(kNfd)), kNfc);
}

TEST(NormalizerTest, NfdNfkcNfkdAndSequences) {
  const Tokenizer plain = MustLoad(CafeJson("null"));
  EXPECT_EQ(MustLoad(CafeJson(R"({"type": "NFD"})")).Encode(kNfc), plain.Encode(kNfd));
  EXPECT_EQ(MustLoad(CafeJson(R"({"type": "NFKD"})")).Encode(kNfc), plain.Encode(kNfd));
  // NFKC folds the ligature U+FB01 into "fi"; NFC keeps it.
  const std::string ligature = "\xEF\xAC\x81";
  EXPECT_EQ(MustLoad(CafeJson(R"({"type": "NFKC"})")).Encode(ligature), plain.Encode("fi"));
  EXPECT_EQ(MustLoad(CafeJson(R"({"type": "NFC"})")).Encode(ligature), plain.Encode(ligature));
  const Tokenizer sequence = MustLoad(CafeJson(
      R"({"type": "Sequence", "normalizers": [{"type": "NFC"},
          {"type": "Replace", "pattern": {"Regex": "a+"}, "content": "c"}]})"));
  EXPECT_EQ(sequence.Encode("caaaaf" + std::string(kNfd)), plain.Encode("ccfccf\xC3\xA9"));
}

TEST(NormalizerTest, InvalidUtf8IsLeftAsItIs) {
  const Tokenizer plain = MustLoad(CafeJson("null"));
  const Tokenizer nfc = MustLoad(CafeJson(R"({"type": "NFC"})"));
  const std::string broken = "caf\xC3";
  EXPECT_EQ(nfc.Encode(broken), plain.Encode(broken));
}

// --- SentencePiece-style BPE (Llama 2 / Mistral) ---

std::string SentencePieceJson(const std::string& normalizer, const std::string& pre_tokenizer,
                              const std::string& decoder) {
  return R"({
  "added_tokens": [
    {"id": 0, "content": "<unk>", "special": true},
    {"id": 1, "content": "<s>", "special": true}],
  "normalizer": )" + normalizer + R"(,
  "pre_tokenizer": )" + pre_tokenizer + R"(,
  "post_processor": {"type": "TemplateProcessing", "single": [
      {"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
      "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}},
  "decoder": )" + decoder + R"(,
  "model": {"type": "BPE", "unk_token": "<unk>", "fuse_unk": true, "byte_fallback": true,
    "vocab": {"<unk>": 0, "<s>": 1, "\u2581": 2, "h": 3, "i": 4, "hi": 5, "\u2581hi": 6,
              "<0xE2>": 7, "<0x98>": 8, "<0x83>": 9},
    "merges": ["h i", "\u2581 hi"]}
})";
}

constexpr char kLlama2Normalizer[] =
    R"({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": "\u2581"},
        {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]})";
constexpr char kLlama2Decoder[] =
    R"({"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        {"type": "ByteFallback"}, {"type": "Fuse"},
        {"type": "Strip", "content": " ", "start": 1, "stop": 0}]})";

TEST(SentencePieceTest, Llama2StyleNormalizerByteFallbackAndFusedUnknowns) {
  const Tokenizer t = MustLoad(SentencePieceJson(kLlama2Normalizer, "null", kLlama2Decoder));
  EXPECT_THAT(t.Encode("hi hi"), ElementsAre(6, 6));
  EXPECT_THAT(t.Encode("hi\xE2\x98\x83", /*add_special_tokens=*/true), ElementsAre(1, 6, 7, 8, 9));
  EXPECT_THAT(t.Encode("hixyz"), ElementsAre(6, 0));  // x, y, z fused into one <unk>.
  EXPECT_THAT(t.Encode("<s>hi"), ElementsAre(1, 6));  // Prepend after an added token too.
  EXPECT_EQ(*t.Decode({6, 7, 8, 9, 6}), "hi\xE2\x98\x83 hi");
  EXPECT_EQ(*t.TokenBytes(6), " hi");
  EXPECT_EQ(*t.TokenBytes(8), "\x98");
}

TEST(SentencePieceTest, MetaspacePrependSchemes) {
  const std::string first = SentencePieceJson(
      "null", R"({"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": false})",
      R"({"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first"})");
  const Tokenizer t = MustLoad(first);
  EXPECT_THAT(t.Encode("hi hi"), ElementsAre(6, 6));
  EXPECT_THAT(t.Encode("<s>hi"), ElementsAre(1, 5));  // Not at the start: no "▁".
  EXPECT_EQ(*t.Decode({6, 6}), "hi hi");
  const Tokenizer always = MustLoad(Replace(first, R"("prepend_scheme": "first", "split")",
                                            R"("prepend_scheme": "always", "split")"));
  EXPECT_THAT(always.Encode("<s>hi"), ElementsAre(1, 6));
  const Tokenizer split = MustLoad(Replace(first, R"("split": false)", R"("split": true)"));
  EXPECT_THAT(split.Encode("hi hi"), ElementsAre(6, 6));
}

}  // namespace
}  // namespace blockserve::engine
