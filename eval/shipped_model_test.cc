// The shipped model (models/blockserve-tiny-rag) answers held-out questions about
// entities it never saw through the engine, greedily, with
// Block-Attention (passages encoded alone, positions re-encoded).
#include <cstdlib>
#include <iostream>
#include <string>

#include "absl/strings/str_cat.h"

#include "engine/engine.h"
#include "eval/rag_eval.h"
#include "gtest/gtest.h"

namespace blockserve::eval {
namespace {

std::string Runfile(const std::string& path) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  return srcdir == nullptr ? path : std::string(srcdir) + "/blockserve/" + path;
}

class ShippedModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<engine::Engine>> e =
        engine::Engine::Load(Runfile("models/blockserve-tiny-rag"));
    ASSERT_TRUE(e.ok()) << e.status();
    engine_ = *std::move(e);
    absl::StatusOr<std::vector<RagExample>> set = LoadRagExamples(Runfile("eval/data/test.jsonl"));
    ASSERT_TRUE(set.ok()) << set.status();
    examples_ = *std::move(set);
  }

  std::unique_ptr<engine::Engine> engine_;
  std::vector<RagExample> examples_;
};

TEST_F(ShippedModelTest, IsASmallGroupedQueryLlama) {
  const engine::ModelConfig& c = engine_->config();
  EXPECT_EQ(c.model_type, "llama");
  EXPECT_LT(c.num_key_value_heads, c.num_attention_heads);
  EXPECT_FALSE(engine_->eos_ids().empty());
}

// The first 200 held-out single-hop questions, greedy, Block-Attention: the shipped
// model measured 44% here when it was committed (eval/results/accuracy.md, 1000
// questions); picking a value of the right kind at random from the prompt's passages
// scores about 20%, and a random-weight model about 0%. The floor guards the model and
// the engine's block path together.
TEST_F(ShippedModelTest, AnswersHeldOutQuestionsWithBlockAttentionWellAboveChance) {
  ASSERT_GE(examples_.size(), 200u);
  int correct = 0;
  std::string right;
  for (size_t i = 0; i < 200; ++i) {
    absl::StatusOr<ExampleOutcome> out =
        AnswerExample(*engine_, examples_[i], engine::PrefillOptions{});
    ASSERT_TRUE(out.ok()) << out.status();
    if (out->correct) {
      ++correct;
      absl::StrAppend(&right, i, " ");
    }
  }
  std::cout << "correct: " << correct << " of 200; indices: " << right << "\n";
  EXPECT_GE(correct, 70) << "expected at least 35% of 200";
}

// A fixed handful of held-out questions, answered exactly, in block mode. They are the
// first eight of test.jsonl that the shipped model answered correctly when committed
// (it gets about 44% of all right, so they were picked, not drawn): a regression guard
// that any change to the engine's block path or the model folder shows up as a wrong
// answer to a known question.
TEST_F(ShippedModelTest, AnswersEightFixedHeldOutQuestionsWithBlockAttention) {
  for (size_t i : {0, 1, 4, 6, 7, 9, 12, 14}) {
    ASSERT_LT(i, examples_.size());
    const RagExample& ex = examples_[i];
    absl::StatusOr<ExampleOutcome> out = AnswerExample(*engine_, ex, engine::PrefillOptions{});
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_TRUE(out->correct) << "question " << i << ": " << ex.query << "\n  expected '"
                              << ex.answer << "', generated '" << out->generated << "'";
  }
}

}  // namespace
}  // namespace blockserve::eval
