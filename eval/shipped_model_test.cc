// The shipped model (models/blockserve-tiny-rag) answers held-out questions about
// entities it never saw through the engine, greedily, with
// Block-Attention (passages encoded alone, positions re-encoded).
#include <cstdlib>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

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

// What the shipped model can do, measured on the first 200 held-out single-hop questions,
// greedy, Block-Attention: 196 of 200 right when committed (eval/results/accuracy.md has
// 98.5% over all 1000). Answering with the asked kind of value of a random person of the
// prompt (what the previous model did: it knew what kind of answer to copy, not whose)
// scores about 45% here, so the margin below is what finding the right passage is worth.
TEST_F(ShippedModelTest, AnswersHeldOutQuestionsFromTheRightPassage) {
  ASSERT_GE(examples_.size(), 200u);
  const std::vector<RagExample> first(examples_.begin(), examples_.begin() + 200);
  int correct = 0;
  for (const RagExample& ex : first) {
    absl::StatusOr<ExampleOutcome> out = AnswerExample(*engine_, ex, engine::PrefillOptions{});
    ASSERT_TRUE(out.ok()) << out.status();
    correct += out->correct;
  }
  std::optional<double> random_pick = RandomCandidatePercent(first);
  ASSERT_TRUE(random_pick.has_value());
  std::cout << "correct: " << correct << " of 200; a random candidate: " << *random_pick
            << "%\n";
  EXPECT_GE(correct, 190) << "expected at least 95% of 200";
  EXPECT_GE(correct / 2.0, *random_pick + 40) << "expected 40 points over a random candidate";
}

// The first eight held-out questions, answered exactly, in block mode: a regression guard
// that any change to the engine's block path or the model folder shows up as a wrong
// answer to a known question.
TEST_F(ShippedModelTest, AnswersTheFirstEightHeldOutQuestionsWithBlockAttention) {
  for (size_t i = 0; i < 8; ++i) {
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
