#include "engine/bpe_trainer.h"

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "engine/tokenizer.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include <nlohmann/json.hpp>

namespace blockserve::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::SizeIs;
using json = nlohmann::json;

constexpr char kCorpus[] =
    "hello world hello there hello again, world of words.\n"
    "the cat sat on the mat; the dog sat on the log.\n";

json MustTrain(const std::string& corpus, int num_merges,
               const std::vector<std::string>& special_tokens = {}) {
  absl::StatusOr<std::string> text =
      TrainByteLevelBpeJson(corpus, num_merges, special_tokens);
  EXPECT_TRUE(text.ok()) << text.status();
  return json::parse(text.value_or("{}"));
}

TEST(BpeTrainerTest, SameInputGivesIdenticalJson) {
  absl::StatusOr<std::string> first = TrainByteLevelBpeJson(kCorpus, 40, {"</s>"});
  absl::StatusOr<std::string> second = TrainByteLevelBpeJson(kCorpus, 40, {"</s>"});
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(*first, *second);
}

TEST(BpeTrainerTest, NumMergesIsRespected) {
  const json root = MustTrain(kCorpus, 10);
  EXPECT_THAT(root["model"]["merges"], SizeIs(10));
  EXPECT_THAT(root["model"]["vocab"], SizeIs(256 + 10));
}

TEST(BpeTrainerTest, StopsEarlyWhenNoPairOccursTwice) {
  const json root = MustTrain("abcdefg", 100);
  EXPECT_THAT(root["model"]["merges"], IsEmpty());
  EXPECT_THAT(root["model"]["vocab"], SizeIs(256));
}

TEST(BpeTrainerTest, TiesGoToLexicographicallySmallestPair) {
  // Pair counts: (a,b)=2, (Ġ,c)=2, (c,d)=2, (Ġ,a)=1; "a" < "c" < "Ġ".
  const json root = MustTrain("ab ab cd cd", 10);
  EXPECT_THAT(root["model"]["merges"], ElementsAre("a b", "c d", "Ġ cd"));
}

TEST(BpeTrainerTest, FrequentWordsBecomeSingleTokens) {
  std::string corpus;
  for (int i = 0; i < 50; ++i) corpus += " hello world";
  absl::StatusOr<std::string> text = TrainByteLevelBpeJson(corpus, 20, {});
  ASSERT_TRUE(text.ok()) << text.status();
  absl::StatusOr<Tokenizer> tokenizer = Tokenizer::FromJson(*text);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  ASSERT_TRUE(tokenizer->TokenId("Ġhello").has_value());
  EXPECT_THAT(tokenizer->Encode(" hello world"),
              ElementsAre(*tokenizer->TokenId("Ġhello"),
                          *tokenizer->TokenId("Ġworld")));
}

TEST(BpeTrainerTest, ByteSymbolsOccupyIdsInByteOrder) {
  const json root = MustTrain(kCorpus, 5);
  const json& vocab = root["model"]["vocab"];
  EXPECT_EQ(vocab["Ā"], 0);    // Byte 0.
  EXPECT_EQ(vocab["Ġ"], 32);   // Space.
  EXPECT_EQ(vocab["a"], 97);
  EXPECT_EQ(vocab["ÿ"], 255);
}

TEST(BpeTrainerTest, SpecialTokensFollowVocabAndAreMatchedAsSingleIds) {
  absl::StatusOr<std::string> text =
      TrainByteLevelBpeJson(kCorpus, 12, {"<s>", "</s>"});
  ASSERT_TRUE(text.ok()) << text.status();
  const json root = json::parse(*text);
  ASSERT_THAT(root["added_tokens"], SizeIs(2));
  EXPECT_EQ(root["added_tokens"][0]["id"], 256 + 12);
  EXPECT_EQ(root["added_tokens"][1]["content"], "</s>");
  EXPECT_EQ(root["added_tokens"][1]["special"], true);
  SpecialTokenConfig special;
  special.bos_token = "<s>";
  special.eos_token = "</s>";
  special.add_bos_token = true;
  absl::StatusOr<Tokenizer> tokenizer = Tokenizer::FromJson(*text, special);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ(tokenizer->bos_id(), 268);
  EXPECT_EQ(tokenizer->eos_id(), 269);
  EXPECT_EQ(tokenizer->vocab_size(), 270);
  const std::vector<int32_t> ids = tokenizer->Encode("<s>hi</s>");
  EXPECT_EQ(ids.front(), 268);
  EXPECT_EQ(ids.back(), 269);
}

TEST(BpeTrainerTest, OutputLooksLikeHuggingFaceTokenizerJson) {
  const json root = MustTrain(kCorpus, 3);
  EXPECT_EQ(root["version"], "1.0");
  EXPECT_TRUE(root["normalizer"].is_null());
  EXPECT_EQ(root["pre_tokenizer"]["type"], "ByteLevel");
  EXPECT_EQ(root["pre_tokenizer"]["add_prefix_space"], false);
  EXPECT_EQ(root["pre_tokenizer"]["use_regex"], true);
  EXPECT_EQ(root["decoder"]["type"], "ByteLevel");
  EXPECT_EQ(root["model"]["type"], "BPE");
  EXPECT_TRUE(root["model"]["dropout"].is_null());
  EXPECT_EQ(root["model"]["byte_fallback"], false);
  EXPECT_EQ(root["model"]["ignore_merges"], false);
  EXPECT_TRUE(root["model"]["merges"][0].is_string());
}

TEST(BpeTrainerTest, EmptyCorpusGivesByteOnlyTokenizer) {
  absl::StatusOr<std::string> text = TrainByteLevelBpeJson("", 10, {});
  ASSERT_TRUE(text.ok()) << text.status();
  absl::StatusOr<Tokenizer> tokenizer = Tokenizer::FromJson(*text);
  ASSERT_TRUE(tokenizer.ok()) << tokenizer.status();
  EXPECT_EQ(tokenizer->vocab_size(), 256);
  EXPECT_THAT(tokenizer->Encode("ab"), ElementsAre(97, 98));
}

TEST(BpeTrainerTest, NegativeNumMergesIsInvalidArgument) {
  EXPECT_EQ(TrainByteLevelBpeJson(kCorpus, -1, {}).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(BpeTrainerTest, BadSpecialTokensAreInvalidArgument) {
  EXPECT_EQ(TrainByteLevelBpeJson(kCorpus, 5, {"<s>", "<s>"}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TrainByteLevelBpeJson(kCorpus, 5, {""}).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TrainByteLevelBpeJson(kCorpus, 5, {"a"}).status().code(),
            absl::StatusCode::kInvalidArgument);  // Collides with byte "a".
  EXPECT_EQ(TrainByteLevelBpeJson(kCorpus, 5, {"\xFF"}).status().code(),
            absl::StatusCode::kInvalidArgument);  // Not valid UTF-8.
}

}  // namespace
}  // namespace blockserve::engine
