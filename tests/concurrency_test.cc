// 32 clients at once, several requests each: every request completes with its full
// answer and a summary; none is lost or failed, and both decoders share the work.
#include <atomic>
#include <thread>

#include <gtest/gtest.h>

#include "tests/blockserve_system.h"

namespace blockserve::testing {
namespace {

constexpr int kClients = 32;
constexpr int kRequestsPerClient = 4;
constexpr int kNewTokens = 8;

TEST(ConcurrencyTest, ThirtyTwoClientsAllComplete) {
  engine::TinyModelOptions o;
  o.seed = 9;
  o.max_position_embeddings = 2048;
  absl::StatusOr<std::string> dir = TinyModelDir(o);
  ASSERT_TRUE(dir.ok()) << dir.status();
  absl::StatusOr<std::unique_ptr<BlockServeSystem>> started =
      BlockServeSystem::Start({.model_dir = *dir, .decoders = 2});
  ASSERT_TRUE(started.ok()) << started.status();
  BlockServeSystem& sys = **started;
  absl::StatusOr<std::vector<v1::Passage>> passages = TestPassages();
  ASSERT_TRUE(passages.ok());
  ASSERT_TRUE(sys.Ingest(*passages).ok());

  std::atomic<int> completed{0};
  std::vector<std::string> failures(kClients);
  std::vector<std::thread> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&, c] {
      for (int i = 0; i < kRequestsPerClient; ++i) {
        v1::GenerateRequest r;
        for (int k = 0; k < 3; ++k) {
          r.add_passages()->set_passage_id((*passages)[(c + i + 7 * k) % passages->size()].id());
        }
        r.set_query("What is this passage about? Client " + std::to_string(c));
        r.mutable_sampling()->set_max_new_tokens(kNewTokens);
        r.mutable_sampling()->set_ignore_eos(true);
        const GenerateResult g = Generate(sys.router(), r, absl::Seconds(240));
        if (!g.status.ok()) {
          failures[c] += g.status.error_message() + "; ";
        } else if (!g.summary.has_value() || g.tokens.size() != kNewTokens ||
                   g.summary->completion_tokens() != kNewTokens) {
          failures[c] += "incomplete answer; ";
        } else {
          ++completed;
        }
      }
    });
  }
  for (std::thread& t : clients) t.join();
  for (int c = 0; c < kClients; ++c) EXPECT_EQ(failures[c], "") << "client " << c;
  EXPECT_EQ(completed.load(), kClients * kRequestsPerClient);

  absl::StatusOr<v1::StatsResponse> stats = sys.Stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->requests_total(), static_cast<uint64_t>(kClients * kRequestsPerClient));
  EXPECT_EQ(stats->requests_failed(), 0u);
  EXPECT_EQ(stats->requests_active(), 0u);
  EXPECT_EQ(stats->tokens_generated_total(),
            static_cast<uint64_t>(kClients * kRequestsPerClient * kNewTokens));
  for (const v1::BackendStatus& b : stats->backends()) {
    if (b.role() == v1::BACKEND_ROLE_DECODER) {
      EXPECT_GT(b.requests_total(), 0u) << b.address();
    }
  }
  EXPECT_TRUE(sys.Shutdown().ok());
}

}  // namespace
}  // namespace blockserve::testing
