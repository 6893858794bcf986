// Through the services (router -> query_prefill -> decoder over the shared-memory store,
// passages ingested through the router), the held-out RAG questions get exactly the
// in-process engine's answers, token for token, in block and in full mode. It compares
// and does not score, so it holds for any model, good or not.
//
// The model folder and the examples are the runfiles models/blockserve-tiny-rag and
// eval/data/test.jsonl; the environment variables BLOCKSERVE_EVAL_MODEL and
// BLOCKSERVE_EVAL_DATA (absolute paths) override them, e.g.
//   bazel test //eval:services_accuracy_test --test_env=BLOCKSERVE_EVAL_MODEL=/path/model
//       --test_env=BLOCKSERVE_EVAL_DATA=/path/examples.jsonl
#include <cstdlib>
#include <string>

#include "client/router_client.h"
#include "engine/engine.h"
#include "eval/rag_eval.h"
#include "eval/rag_services.h"
#include "gtest/gtest.h"
#include "tests/blockserve_system.h"

namespace blockserve::eval {
namespace {

constexpr size_t kExamples = 12;

std::string PathFromEnv(const char* name, const std::string& runfile) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? value : testing::RunfilePath(runfile);
}

class ServicesAccuracyTest : public ::testing::TestWithParam<v1::AttentionMode> {
 protected:
  // One system for both modes, started from the main thread (see server_process.h).
  static void SetUpTestSuite() {
    const std::string model_dir = PathFromEnv("BLOCKSERVE_EVAL_MODEL", "models/blockserve-tiny-rag");
    const std::string data = PathFromEnv("BLOCKSERVE_EVAL_DATA", "eval/data/test.jsonl");
    absl::StatusOr<std::vector<RagExample>> set = LoadRagExamples(data);
    ASSERT_TRUE(set.ok()) << set.status();
    ASSERT_GE(set->size(), kExamples) << data;
    set->resize(kExamples);
    examples_ = new std::vector<RagExample>(*std::move(set));
    absl::StatusOr<std::unique_ptr<engine::Engine>> e =
        engine::Engine::Load(model_dir, {.num_threads = 1});
    ASSERT_TRUE(e.ok()) << e.status();
    engine_ = e->release();
    testing::SystemOptions o{.model_dir = model_dir};
    o.encoder_args = o.prefill_args = o.decoder_args = {"--num_threads=1"};
    absl::StatusOr<std::unique_ptr<testing::BlockServeSystem>> sys =
        testing::BlockServeSystem::Start(o);
    ASSERT_TRUE(sys.ok()) << sys.status();
    system_ = sys->release();
    router_ = new client::RouterClient(system_->RouterChannel());
    const std::vector<v1::Passage> passages = PassagesOf(*examples_);
    absl::StatusOr<client::IngestProgress> ingested =
        router_->Ingest(passages, client::IngestOptions{}, nullptr);
    ASSERT_TRUE(ingested.ok()) << ingested.status();
    ASSERT_EQ(ingested->failed, 0u) << ingested->failures.front();
    ASSERT_EQ(ingested->done, passages.size());
  }

  static void TearDownTestSuite() {
    delete router_;
    router_ = nullptr;
    if (system_ != nullptr) {
      EXPECT_TRUE(system_->Shutdown().ok());
    }
    delete system_;
    system_ = nullptr;
  }

  void SetUp() override {
    ASSERT_NE(examples_, nullptr);
    ASSERT_NE(engine_, nullptr);
    ASSERT_NE(router_, nullptr);
  }

  static std::vector<RagExample>* examples_;
  static engine::Engine* engine_;
  static testing::BlockServeSystem* system_;
  static client::RouterClient* router_;
};

std::vector<RagExample>* ServicesAccuracyTest::examples_ = nullptr;
engine::Engine* ServicesAccuracyTest::engine_ = nullptr;
testing::BlockServeSystem* ServicesAccuracyTest::system_ = nullptr;
client::RouterClient* ServicesAccuracyTest::router_ = nullptr;

TEST_P(ServicesAccuracyTest, EveryAnswerEqualsTheInProcessEngines) {
  const v1::AttentionMode mode = GetParam();
  for (size_t i = 0; i < examples_->size(); ++i) {
    const RagExample& ex = (*examples_)[i];
    SCOPED_TRACE("example " + std::to_string(i) + ": " + ex.query);
    absl::StatusOr<ComparedExample> c = CompareExample(*router_, *engine_, ex, mode);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->services.tokens, c->engine.tokens)
        << "services '" << c->services.generated << "', in-process engine '"
        << c->engine.generated << "'";
    EXPECT_EQ(c->services.ended_at_eos, c->engine.ended_at_eos);
    EXPECT_EQ(c->services.correct, c->engine.correct);
    EXPECT_TRUE(c->agree);
    const v1::GenerateSummary& s = c->services.summary;
    EXPECT_EQ(s.prompt_tokens(), static_cast<uint32_t>(c->engine.prompt_tokens));
    if (mode == v1::ATTENTION_MODE_BLOCK) {
      // Every passage was ingested: only the system block may miss (on the first ask).
      EXPECT_LE(s.cache_misses(), 1u);
      EXPECT_GE(s.cache_hits(), ex.passages.size());
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, ServicesAccuracyTest,
                         ::testing::Values(v1::ATTENTION_MODE_BLOCK, v1::ATTENTION_MODE_FULL),
                         [](const auto& info) { return ModeName(info.param); });

}  // namespace
}  // namespace blockserve::eval
