// A backend that gets SIGTERM with work in flight drains without losing it: its health
// answers NOT_SERVING at once (for the whole drain delay), the router stops sending it
// new requests, the request it is serving completes normally, and it exits cleanly.
// A second SIGTERM cuts the drain delay short.
#include <signal.h>

#include <gtest/gtest.h>

#include "router/backend_pool.h"
#include "tests/blockserve_system.h"

namespace blockserve::testing {
namespace {

// Large enough that a few hundred tokens take a noticeable time to decode.
engine::TinyModelOptions SlowModel() {
  engine::TinyModelOptions o;
  o.seed = 3;
  o.hidden_size = 256;
  o.intermediate_size = 512;
  o.num_layers = 4;
  o.num_heads = 8;
  o.num_kv_heads = 2;
  o.max_position_embeddings = 8192;
  return o;
}

// The index of the decoder with one request in flight, -1 if none.
int ServingDecoder(BlockServeSystem& sys) {
  absl::StatusOr<v1::StatsResponse> stats = sys.Stats();
  if (!stats.ok()) return -1;
  for (int i = 0; i < 2; ++i) {
    for (const v1::BackendStatus& b : stats->backends()) {
      if (b.address() == sys.decoder(i).address() && b.in_flight() == 1) return i;
    }
  }
  return -1;
}

bool RouterSeesHealthy(BlockServeSystem& sys, const std::string& address) {
  absl::StatusOr<v1::StatsResponse> stats = sys.Stats();
  if (!stats.ok()) return true;
  for (const v1::BackendStatus& b : stats->backends()) {
    if (b.address() == address) return b.healthy();
  }
  return true;
}

// A long answer (kLongAnswer tokens, EOS ignored) streaming from the router, started and
// read until its first tokens have arrived, so that a decoder has it in flight.
constexpr int kLongAnswer = 200;
class LongAnswer {
 public:
  explicit LongAnswer(BlockServeSystem& sys) {
    v1::GenerateRequest request;
    request.set_query("Tell me everything about the island of Oristane.");
    request.mutable_sampling()->set_max_new_tokens(kLongAnswer);
    request.mutable_sampling()->set_ignore_eos(true);
    context_.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(120)));
    reader_ = sys.router().Generate(&context_, request);
    while (tokens_ < 3 && reader_->Read(&event_)) tokens_ += event_.tokens().token_ids_size();
  }
  bool started() const { return tokens_ >= 3; }

  // Reads the rest of the stream.
  struct End {
    grpc::Status status;
    std::optional<v1::GenerateSummary> summary;
    int tokens = 0;  // all streamed, the first ones included
  };
  End Finish() {
    End end;
    while (reader_->Read(&event_)) {
      tokens_ += event_.tokens().token_ids_size();
      if (event_.has_summary()) end.summary = event_.summary();
    }
    end.status = reader_->Finish();
    end.tokens = tokens_;
    return end;
  }

 private:
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReader<v1::GenerateEvent>> reader_;
  v1::GenerateEvent event_;
  int tokens_ = 0;
};

TEST(DrainTest, DrainingDecoderIsNotServingFinishesItsRequestAndGetsNoNewOnes) {
  absl::StatusOr<std::string> dir = TinyModelDir(SlowModel());
  ASSERT_TRUE(dir.ok()) << dir.status();
  absl::StatusOr<std::unique_ptr<BlockServeSystem>> started =
      BlockServeSystem::Start({.model_dir = *dir,
                               .decoders = 2,
                               .decoder_args = {"--drain_delay_ms=20000"},
                               .router_args = {"--health_interval_ms=200"}});
  ASSERT_TRUE(started.ok()) << started.status();
  BlockServeSystem& sys = **started;

  LongAnswer long_answer(sys);
  ASSERT_TRUE(long_answer.started()) << "the stream ended early";
  const int draining = ServingDecoder(sys);
  ASSERT_GE(draining, 0) << "no decoder has the request in flight";
  const int other = 1 - draining;
  ServerProcess& decoder = sys.decoder(draining);
  ASSERT_EQ(kill(decoder.pid(), SIGTERM), 0);

  // The draining decoder still answers health checks, with NOT_SERVING.
  const std::shared_ptr<grpc::Channel> channel =
      sys.InternalChannel(security::Role::kRouter, security::Role::kDecoder, decoder.address());
  absl::StatusOr<bool> serving = true;
  const absl::Time give_up = absl::Now() + absl::Seconds(5);
  while (serving.ok() && *serving && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(20));
    serving = router::ProbeHealth(channel, absl::Seconds(1));
  }
  ASSERT_TRUE(serving.ok()) << "health check failed during the drain: " << serving.status();
  EXPECT_FALSE(*serving) << "still SERVING after SIGTERM";
  while (RouterSeesHealthy(sys, decoder.address()) && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_FALSE(RouterSeesHealthy(sys, decoder.address())) << "the router did not notice";

  // New requests go to the other decoder while the draining one is still up.
  v1::GenerateRequest next;
  next.set_query("Where is Vellmark?");
  next.mutable_sampling()->set_max_new_tokens(4);
  for (int i = 0; i < 3; ++i) {
    const GenerateResult r = Generate(sys.router(), next);
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    ASSERT_TRUE(r.summary.has_value());
    EXPECT_EQ(r.summary->decoder_server(), sys.decoder(other).address());
  }
  EXPECT_TRUE(decoder.Running()) << "the decoder did not wait for its drain delay";

  // The in-flight request completes as if nothing happened.
  const LongAnswer::End end = long_answer.Finish();
  ASSERT_TRUE(end.status.ok()) << end.status.error_message();
  ASSERT_TRUE(end.summary.has_value());
  EXPECT_EQ(end.summary->finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(end.summary->completion_tokens(), static_cast<uint32_t>(kLongAnswer));
  EXPECT_EQ(end.tokens, kLongAnswer);

  EXPECT_EQ(decoder.Terminate(absl::Seconds(40)), 0) << decoder.LogTail();
  // A second SIGTERM ends a drain delay early: the other decoder need not wait it out.
  ServerProcess& survivor = sys.decoder(other);
  ASSERT_EQ(kill(survivor.pid(), SIGTERM), 0);
  const absl::Time stop_by = absl::Now() + absl::Seconds(10);
  while (!survivor.LogContains("shutting_down") && absl::Now() < stop_by) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(survivor.Terminate(absl::Seconds(10)), 0) << survivor.LogTail();
  EXPECT_TRUE(survivor.LogContains("drain_delay_cut_short"));
  const absl::Status shutdown = sys.Shutdown();
  EXPECT_TRUE(shutdown.ok()) << shutdown;
}

// Without a drain delay, a decoder that gets SIGTERM still finishes the generation it is
// running (within --shutdown_grace_ms) instead of cancelling it, then exits cleanly.
TEST(DrainTest, DecoderFinishesItsGenerationWithinTheGracePeriod) {
  absl::StatusOr<std::string> dir = TinyModelDir(SlowModel());
  ASSERT_TRUE(dir.ok()) << dir.status();
  absl::StatusOr<std::unique_ptr<BlockServeSystem>> started = BlockServeSystem::Start(
      {.model_dir = *dir, .decoders = 1, .decoder_args = {"--shutdown_grace_ms=60000"}});
  ASSERT_TRUE(started.ok()) << started.status();
  BlockServeSystem& sys = **started;

  LongAnswer long_answer(sys);
  ASSERT_TRUE(long_answer.started()) << "the stream ended early";
  ServerProcess& decoder = sys.decoder(0);
  ASSERT_EQ(kill(decoder.pid(), SIGTERM), 0);

  const LongAnswer::End end = long_answer.Finish();
  ASSERT_TRUE(end.status.ok()) << end.status.error_message() << "\n" << decoder.LogTail();
  ASSERT_TRUE(end.summary.has_value());
  EXPECT_EQ(end.summary->finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(end.tokens, kLongAnswer);
  EXPECT_EQ(decoder.Terminate(absl::Seconds(60)), 0) << decoder.LogTail();
  const absl::Status shutdown = sys.Shutdown();
  EXPECT_TRUE(shutdown.ok()) << shutdown;
}

}  // namespace
}  // namespace blockserve::testing
