// The shipped model (models/blockserve-tiny-rag) answers held-out questions about
// entities it never saw through the engine, greedily, with
// Block-Attention (passages encoded alone, positions re-encoded).
#include <cstdlib>
#include <iostream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"

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
// greedy, Block-Attention. It copies: 188 of the 200 answers were spans of the prompt's
// passages when committed. It is right 41.5% of the time
// (83 of 200 when committed; eval/results/accuracy.md has 46.1% over 1000), about the
// score of picking a value of the asked kind uniformly among the prompt's persons (45.4%
// over the 1000): the model has learned what kind of value to copy, not yet whose
// (training/README.md). The floors guard the model and the engine's block path together.
TEST_F(ShippedModelTest, AnswersHeldOutQuestionsByCopyingAValueOfTheAskedKind) {
  ASSERT_GE(examples_.size(), 200u);
  int correct = 0, copied = 0;
  for (size_t i = 0; i < 200; ++i) {
    absl::StatusOr<ExampleOutcome> out =
        AnswerExample(*engine_, examples_[i], engine::PrefillOptions{});
    ASSERT_TRUE(out.ok()) << out.status();
    correct += out->correct;
    const std::string answer(absl::StripAsciiWhitespace(out->generated));
    const std::string passages = absl::StrJoin(examples_[i].passages, "");
    copied += !answer.empty() && passages.find(answer) != std::string::npos;
  }
  std::cout << "correct: " << correct << " of 200; copied from the passages: " << copied << "\n";
  EXPECT_GE(copied, 180) << "expected at least 90% of the answers copied from the passages";
  EXPECT_GE(correct, 75) << "expected at least 37.5% of 200";
}

// A fixed handful of held-out questions, answered exactly, in block mode. They are the
// first eight of test.jsonl that the shipped model answered correctly when committed
// (picked, not drawn): a regression guard that any change to the engine's block path or
// the model folder shows up as a wrong answer to a known question.
TEST_F(ShippedModelTest, AnswersEightFixedHeldOutQuestionsWithBlockAttention) {
  for (size_t i : {1, 3, 4, 5, 10, 17, 18, 19}) {
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
