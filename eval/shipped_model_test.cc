// The shipped model (models/blockserve-tiny-rag) really answers: held-out questions about
// entities it never saw are answered correctly through the engine, greedily, with
// Block-Attention (passages encoded alone, positions re-encoded).
#include <cstdlib>
#include <string>

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

TEST_F(ShippedModelTest, AnswersTheFirstEightHeldOutQuestionsWithBlockAttention) {
  ASSERT_GE(examples_.size(), 8u);
  for (size_t i = 0; i < 8; ++i) {
    const RagExample& ex = examples_[i];
    absl::StatusOr<ExampleOutcome> out = AnswerExample(*engine_, ex, engine::PrefillOptions{});
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_TRUE(out->correct) << "question " << i << ": " << ex.query << "\n  expected '"
                              << ex.answer << "', generated '" << out->generated << "'";
  }
}

}  // namespace
}  // namespace blockserve::eval
