#include "blocks/passage_ref.h"

#include "engine/prompt.h"
#include "engine/tiny_model.h"
#include "gtest/gtest.h"

namespace blockserve::blocks {
namespace {

class PassageRefTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = testing::TempDir() + "/passage_ref_test_model";
    ASSERT_TRUE(engine::WriteTinyModel(dir, {}).ok());
    absl::StatusOr<engine::Tokenizer> t = engine::Tokenizer::FromFile(dir + "/tokenizer.json");
    ASSERT_TRUE(t.ok());
    tokenizer_ = new engine::Tokenizer(*t);
    config_ = engine::TinyModelConfig({}, t->vocab_size());
  }
  static void TearDownTestSuite() { delete tokenizer_; }

  static engine::Tokenizer* tokenizer_;
  static engine::ModelConfig config_;
};

engine::Tokenizer* PassageRefTest::tokenizer_ = nullptr;
engine::ModelConfig PassageRefTest::config_;

TEST_F(PassageRefTest, TextTokensAreThePromptLayoutsPassageBlock) {
  absl::StatusOr<std::vector<int32_t>> t = TextPassageTokens(*tokenizer_, config_, "The river.");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(*t, engine::PassageBlockTokens(*tokenizer_, "The river."));
}

TEST_F(PassageRefTest, EmptyOrInvalidUtf8TextIsInvalidArgument) {
  EXPECT_EQ(TextPassageTokens(*tokenizer_, config_, "").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TextPassageTokens(*tokenizer_, config_, "\xFF\xFE").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(PassageRefTest, TokenIdsMustBeInVocabAndShorterThanTheContext) {
  v1::TokenIds ids;
  ids.add_ids(0);
  ids.add_ids(config_.vocab_size - 1);
  EXPECT_TRUE(TokenIdPassageTokens(config_, ids).ok());
  ids.add_ids(-1);
  EXPECT_EQ(TokenIdPassageTokens(config_, ids).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(TokenIdPassageTokens(config_, v1::TokenIds()).status().code(),
            absl::StatusCode::kInvalidArgument);
  v1::TokenIds long_ids;
  for (int64_t i = 0; i < config_.max_position_embeddings; ++i) long_ids.add_ids(1);
  EXPECT_EQ(TokenIdPassageTokens(config_, long_ids).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(PassageRefTest, PassageWithoutContentIsInvalidArgument) {
  EXPECT_EQ(PassageContentTokens(*tokenizer_, config_, v1::Passage()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace blockserve::blocks
