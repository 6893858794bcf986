// The lifecycle of a stream when one end goes away. A decoder killed (SIGKILL) in the
// middle of a stream: the client gets UNAVAILABLE promptly (no hang), the router stops
// using that decoder, and the next requests are served by the surviving one. A client
// that cancels: the router cancels the sequence on the decoder.
#include <gtest/gtest.h>

#include "tests/blockserve_system.h"

namespace blockserve::testing {
namespace {

// Large enough that a long answer takes seconds to decode.
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

// Starts a long answer, kills the decoder streaming it after a few chunks, and reads
// the stream to its end. Returns the killed decoder's index (-1 on failure).
int KillTheServingDecoderMidStream(BlockServeSystem& sys) {
  v1::GenerateRequest long_answer;
  long_answer.set_query("Tell me everything about the island of Oristane.");
  long_answer.mutable_sampling()->set_max_new_tokens(4000);
  long_answer.mutable_sampling()->set_ignore_eos(true);
  const absl::Time start = absl::Now();
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(start + absl::Seconds(120)));
  auto reader = sys.router().Generate(&context, long_answer);
  v1::GenerateEvent event;
  int chunks = 0;
  while (chunks < 3 && reader->Read(&event)) chunks += event.has_tokens();
  EXPECT_EQ(chunks, 3) << "the stream ended early";

  // The decoder with the request in flight is the one serving it.
  absl::StatusOr<v1::StatsResponse> stats = sys.Stats();
  EXPECT_TRUE(stats.ok()) << stats.status();
  int serving = -1;
  for (int i = 0; stats.ok() && i < 2; ++i) {
    for (const v1::BackendStatus& b : stats->backends()) {
      if (b.address() == sys.decoder(i).address() && b.in_flight() == 1) serving = i;
    }
  }
  if (serving < 0) {
    ADD_FAILURE() << "no decoder has the request in flight";
    context.TryCancel();
    return -1;
  }
  sys.decoder(serving).Kill();

  bool summary = false;
  while (reader->Read(&event)) summary |= event.has_summary();
  const grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE) << status.error_message();
  EXPECT_FALSE(summary);
  EXPECT_LT(absl::Now() - start, absl::Seconds(60)) << "the client waited instead of failing";
  return serving;
}

TEST(DecoderFailoverTest, KilledDecoderEndsTheStreamAndTheSurvivorTakesOver) {
  absl::StatusOr<std::string> dir = TinyModelDir(SlowModel());
  ASSERT_TRUE(dir.ok()) << dir.status();
  absl::StatusOr<std::unique_ptr<BlockServeSystem>> started =
      BlockServeSystem::Start({.model_dir = *dir, .decoders = 2});
  ASSERT_TRUE(started.ok()) << started.status();
  BlockServeSystem& sys = **started;

  const int killed = KillTheServingDecoderMidStream(sys);
  ASSERT_GE(killed, 0);
  const int survivor = 1 - killed;

  // The dead decoder is out of rotation; the next requests go to the survivor.
  v1::GenerateRequest next;
  next.set_query("Where is Vellmark?");
  next.mutable_sampling()->set_max_new_tokens(8);
  for (int i = 0; i < 3; ++i) {
    const GenerateResult r = Generate(sys.router(), next);
    ASSERT_TRUE(r.status.ok()) << r.status.error_message();
    ASSERT_TRUE(r.summary.has_value());
    EXPECT_EQ(r.summary->decoder_server(), sys.decoder(survivor).address());
  }
  absl::StatusOr<v1::StatsResponse> stats = sys.Stats();
  ASSERT_TRUE(stats.ok());
  for (const v1::BackendStatus& b : stats->backends()) {
    if (b.address() == sys.decoder(killed).address()) {
      EXPECT_FALSE(b.healthy());
      EXPECT_GE(b.requests_failed(), 1u);
    }
  }
  EXPECT_TRUE(sys.Shutdown().ok());
}

TEST(DecoderFailoverTest, ClientCancelStopsTheSequenceOnTheDecoder) {
  absl::StatusOr<std::string> dir = TinyModelDir(SlowModel());
  ASSERT_TRUE(dir.ok()) << dir.status();
  absl::StatusOr<std::unique_ptr<BlockServeSystem>> started =
      BlockServeSystem::Start({.model_dir = *dir});
  ASSERT_TRUE(started.ok()) << started.status();
  BlockServeSystem& sys = **started;
  {
    v1::GenerateRequest long_answer;
    long_answer.set_request_id("cancel-me");
    long_answer.set_query("Tell me everything about the Sable Sea.");
    long_answer.mutable_sampling()->set_max_new_tokens(4000);
    long_answer.mutable_sampling()->set_ignore_eos(true);
    grpc::ClientContext context;
    auto reader = sys.router().Generate(&context, long_answer);
    v1::GenerateEvent event;
    int chunks = 0;
    while (chunks < 3 && reader->Read(&event)) chunks += event.has_tokens();
    ASSERT_EQ(chunks, 3);
    context.TryCancel();
    while (reader->Read(&event)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  const absl::Time give_up = absl::Now() + absl::Seconds(20);
  while (!sys.decoder(0).LogContains("FINISH_REASON_CANCELLED") && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_TRUE(sys.decoder(0).LogContains("FINISH_REASON_CANCELLED")) << sys.decoder(0).LogTail();
  // The client sees CANCELLED as soon as it cancels; the router's handler may still be
  // unwinding (cancelling on the decoder, releasing its leases) for a moment after the
  // decoder logged the cancel. Within 5 s it must hold nothing.
  absl::StatusOr<v1::StatsResponse> stats = sys.Stats();
  auto holds_something = [](const v1::StatsResponse& s) {
    if (s.requests_active() != 0) return true;
    for (const v1::BackendStatus& b : s.backends()) {
      if (b.in_flight() != 0) return true;
    }
    return false;
  };
  for (const absl::Time settle = absl::Now() + absl::Seconds(5);
       stats.ok() && holds_something(*stats) && absl::Now() < settle;) {
    absl::SleepFor(absl::Milliseconds(20));
    stats = sys.Stats();
  }
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->requests_active(), 0u);
  for (const v1::BackendStatus& b : stats->backends()) EXPECT_EQ(b.in_flight(), 0u) << b.address();
  EXPECT_TRUE(sys.Shutdown().ok());
}

}  // namespace
}  // namespace blockserve::testing
