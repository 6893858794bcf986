#include "router/router_core.h"

#include <thread>

#include <gtest/gtest.h>

#include "absl/strings/match.h"
#include "absl/strings/str_split.h"
#include "contract/request_contract.h"
#include "contract/testing/bad_requests.h"
#include "router/fake_backends.h"
#include "router/router_service.h"

namespace blockserve::router {
namespace {

using testing::FakeDecoder;
using testing::FakeEncoder;
using testing::FakePrefill;
using testing::FakeServer;

struct Collected {
  absl::Status status;
  std::vector<v1::TokenChunk> chunks;
  std::optional<v1::GenerateSummary> summary;
  std::vector<int32_t> tokens() const {
    std::vector<int32_t> out;
    for (const v1::TokenChunk& c : chunks) out.insert(out.end(), c.token_ids().begin(), c.token_ids().end());
    return out;
  }
};

v1::GenerateRequest Request(std::vector<std::string> passage_ids, uint32_t max_new_tokens = 4) {
  v1::GenerateRequest r;
  for (const std::string& id : passage_ids) r.add_passages()->set_passage_id(id);
  r.set_query("Who wrote it?");
  r.mutable_sampling()->set_max_new_tokens(max_new_tokens);
  return r;
}

// Two prefills, two decoders and an encoder, all fakes on loopback.
class RouterCoreTest : public ::testing::Test {
 protected:
  RouterCoreTest()
      : p0_server_({&p0_}), p1_server_({&p1_}), d0_server_({&d0_}), d1_server_({&d1_}),
        e_server_({&encoder_}) {
    p0_.set_address(p0_server_.address());
    p1_.set_address(p1_server_.address());
    d0_.set_address(d0_server_.address());
    d1_.set_address(d1_server_.address());
    BackendPoolOptions o;
    o.prefill = {p0_server_.address(), p1_server_.address()};
    o.decoder = {d0_server_.address(), d1_server_.address()};
    o.encoder = {e_server_.address()};
    pool_ = std::make_unique<BackendPool>(o);
    pool_->CheckAllNow();
    core_ = std::make_unique<RouterCore>(pool_.get(), RouterOptions{}, &metrics_);
  }

  Collected Generate(const v1::GenerateRequest& request, ClientCall client = {},
                     int stop_after_chunks = -1) {
    Collected out;
    out.status = core_->Generate(request, client, [&](const v1::GenerateEvent& e) {
      if (e.has_summary()) {
        out.summary = e.summary();
        return true;
      }
      out.chunks.push_back(e.tokens());
      return stop_after_chunks < 0 || static_cast<int>(out.chunks.size()) < stop_after_chunks;
    });
    return out;
  }

  // The router's readiness once every backend was probed again.
  absl::Status ReadyAfterProbe() {
    pool_->CheckAllNow();
    return core_->Ready();
  }

  FakePrefill p0_, p1_;
  FakeDecoder d0_, d1_;
  FakeEncoder encoder_;
  FakeServer p0_server_, p1_server_, d0_server_, d1_server_, e_server_;
  MetricsRegistry metrics_;
  std::unique_ptr<BackendPool> pool_;
  std::unique_ptr<RouterCore> core_;
};

TEST(ValidateGenerateRequestTest, RejectsWhatIsWrongOnItsFace) {
  v1::GenerateRequest ok = Request({"a"});
  EXPECT_TRUE(contract::ValidateGenerateRequest(ok, contract::Limits()).ok());
  auto expect_invalid = [&](auto mutate) {
    v1::GenerateRequest r = ok;
    mutate(r);
    EXPECT_EQ(contract::ValidateGenerateRequest(r, contract::Limits()).code(),
              absl::StatusCode::kInvalidArgument)
        << r.DebugString();
  };
  expect_invalid([](auto& r) { r.clear_query(); });
  expect_invalid([](auto& r) { r.add_passages(); });
  expect_invalid([](auto& r) { r.mutable_sampling()->set_temperature(-1); });
  expect_invalid([](auto& r) { r.mutable_sampling()->set_temperature(NAN); });
  expect_invalid([](auto& r) { r.mutable_sampling()->set_top_p(1.5); });
  expect_invalid([](auto& r) { r.mutable_sampling()->set_top_k(-2); });
  expect_invalid([](auto& r) { r.mutable_sampling()->add_stop(""); });
  expect_invalid([](auto& r) { r.mutable_block_options()->set_mode(static_cast<v1::AttentionMode>(9)); });
  expect_invalid([](auto& r) { r.mutable_block_options()->set_global_blocks(2); });
  expect_invalid([](auto& r) { r.set_request_id("tab\there"); });
}

TEST(PassageAffinityKeyTest, SameSetSameKeyInAnyOrder) {
  EXPECT_EQ(PassageAffinityKey(Request({"a", "b"})), PassageAffinityKey(Request({"b", "a"})));
  EXPECT_NE(PassageAffinityKey(Request({"a", "b"})), PassageAffinityKey(Request({"a", "c"})));
  EXPECT_EQ(PassageAffinityKey(Request({})), 0u);
}

TEST_F(RouterCoreTest, StreamsFirstTokenThenDecoderTokensThenSummary) {
  Collected c = Generate(Request({"a", "b"}, /*max_new_tokens=*/5));
  ASSERT_TRUE(c.status.ok()) << c.status;
  EXPECT_EQ(c.tokens(), (std::vector<int32_t>{100, 101, 102, 103, 104}));
  for (size_t i = 0; i < c.chunks.size(); ++i) EXPECT_EQ(c.chunks[i].index(), i);
  EXPECT_EQ(c.chunks[0].text(), "<100>");
  ASSERT_TRUE(c.summary.has_value());
  const v1::GenerateSummary& s = *c.summary;
  EXPECT_EQ(s.finish_reason(), v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(s.completion_tokens(), 5u);
  EXPECT_EQ(s.cache_hits(), 2u);
  EXPECT_EQ(s.tokens_reused(), 10u);
  EXPECT_GT(s.ttft_ms(), 0);
  EXPECT_GE(s.total_ms(), s.ttft_ms());
  EXPECT_FALSE(s.prefill_server().empty());
  EXPECT_FALSE(s.decoder_server().empty());
  EXPECT_FALSE(s.request_id().empty());
  EXPECT_EQ(s.handoff(), v1::HANDOFF_GRPC_STREAM);
}

TEST_F(RouterCoreTest, PrefillGetsTheDecoderAndASequenceId) {
  Collected c = Generate(Request({"a"}));
  ASSERT_TRUE(c.status.ok()) << c.status;
  const v1::PrefillRequest sent =
      (p0_.calls() > 0 ? p0_ : p1_).last_request();
  EXPECT_EQ(sent.decoder().address(), c.summary->decoder_server());
  EXPECT_NE(sent.decoder().sequence_id(), 0u);
  EXPECT_EQ(sent.query(), "Who wrote it?");
  ASSERT_EQ(sent.passages_size(), 1);
  EXPECT_EQ(sent.passages(0).passage_id(), "a");
}

TEST_F(RouterCoreTest, OneTokenAnswerNeedsNoDecoder) {
  Collected c = Generate(Request({"a"}, /*max_new_tokens=*/1));
  ASSERT_TRUE(c.status.ok()) << c.status;
  EXPECT_EQ(c.tokens(), std::vector<int32_t>{100});
  EXPECT_TRUE(c.summary->decoder_server().empty());
  EXPECT_EQ(c.summary->completion_tokens(), 1u);
}

TEST_F(RouterCoreTest, InvalidRequestNeverReachesABackend) {
  v1::GenerateRequest r = Request({"a"});
  r.clear_query();
  EXPECT_EQ(Generate(r).status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(p0_.calls() + p1_.calls(), 0);
}

// The router answers the contract's table as the contract does, before any placement.
TEST_F(RouterCoreTest, ContractViolationsNeverReachABackend) {
  for (const contract::testing::BadRequestCase& c :
       contract::testing::BadRequestCases(contract::Limits())) {
    const std::optional<v1::GenerateRequest> r = c.Generate();
    if (!r || c.code == absl::StatusCode::kOk) continue;
    EXPECT_EQ(Generate(*r).status.code(), c.code) << c.name;
  }
  EXPECT_EQ(p0_.calls() + p1_.calls(), 0);
}

TEST_F(RouterCoreTest, ConfiguredLimitsApply) {
  core_ = std::make_unique<RouterCore>(
      pool_.get(), RouterOptions{.limits = {.max_passages = 1, .max_new_tokens_limit = 10}},
      &metrics_);
  EXPECT_EQ(Generate(Request({"a"}, /*max_new_tokens=*/11)).status.code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Generate(Request({"a", "b"})).status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(p0_.calls() + p1_.calls(), 0);
  EXPECT_TRUE(Generate(Request({"a"}, /*max_new_tokens=*/10)).status.ok());
}

TEST_F(RouterCoreTest, PrefillErrorsArePassedThroughWithoutRetry) {
  p0_.FailNext(grpc::StatusCode::NOT_FOUND);
  p1_.FailNext(grpc::StatusCode::NOT_FOUND);
  Collected c = Generate(Request({"unknown"}));
  EXPECT_EQ(c.status.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(p0_.calls() + p1_.calls(), 1);
  EXPECT_TRUE(c.chunks.empty());
}

TEST_F(RouterCoreTest, UnavailablePrefillIsRetriedOnTheOtherOne) {
  const v1::GenerateRequest request = Request({"a"});
  // The first choice of the passages' rendezvous order fails; the other one answers.
  const bool p0_first =
      pool_->PrefillOrder(PassageAffinityKey(request))[0] == p0_server_.address();
  FakePrefill& first = p0_first ? p0_ : p1_;
  FakePrefill& second = p0_first ? p1_ : p0_;
  first.FailNext(grpc::StatusCode::UNAVAILABLE);
  Collected c = Generate(request);
  ASSERT_TRUE(c.status.ok()) << c.status;
  EXPECT_EQ(first.calls(), 1);
  EXPECT_EQ(second.calls(), 1);
  EXPECT_EQ(c.summary->prefill_server(),
            p0_first ? p1_server_.address() : p0_server_.address());
  EXPECT_EQ(c.tokens().size(), 4u);
}

TEST_F(RouterCoreTest, RetriesOnlyOnceThenReportsTheCode) {
  for (int i = 0; i < 2; ++i) {
    p0_.FailNext(grpc::StatusCode::RESOURCE_EXHAUSTED);
    p1_.FailNext(grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  Collected c = Generate(Request({"a"}));
  EXPECT_EQ(c.status.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(p0_.calls() + p1_.calls(), 2);
}

TEST_F(RouterCoreTest, DecoderLostMidStreamIsUnavailableAndAvoidedNext) {
  d0_.fail_after_events = 1;
  d1_.fail_after_events = 1;
  Collected c = Generate(Request({"a"}, /*max_new_tokens=*/6));
  EXPECT_EQ(c.status.code(), absl::StatusCode::kUnavailable) << c.status;
  EXPECT_EQ(c.tokens().size(), 2u);  // the first token and one decoder event
  EXPECT_FALSE(c.summary.has_value());
  EXPECT_EQ(pool_->HealthyCount(v1::BACKEND_ROLE_DECODER), 1);

  d0_.fail_after_events = -1;
  d1_.fail_after_events = -1;
  const int streams_before = d0_.streams() + d1_.streams();
  std::string survivor;
  for (const v1::BackendStatus& b : pool_->Snapshot()) {
    if (b.role() == v1::BACKEND_ROLE_DECODER && b.healthy()) survivor = b.address();
  }
  Collected next = Generate(Request({"a"}));
  ASSERT_TRUE(next.status.ok()) << next.status;
  EXPECT_EQ(next.summary->decoder_server(), survivor);
  EXPECT_EQ(d0_.streams() + d1_.streams(), streams_before + 1);
}

TEST_F(RouterCoreTest, ClientGoingAwayCancelsTheSequence) {
  d0_.token_delay_ms = 50;
  d1_.token_delay_ms = 50;
  Collected c = Generate(Request({"a"}, /*max_new_tokens=*/50), {}, /*stop_after_chunks=*/2);
  EXPECT_EQ(c.status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(d0_.cancel_calls() + d1_.cancel_calls(), 1);
  const absl::Time give_up = absl::Now() + absl::Seconds(5);
  while (d0_.cancelled_streams() + d1_.cancelled_streams() == 0 && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(d0_.cancelled_streams() + d1_.cancelled_streams(), 1);
}

TEST_F(RouterCoreTest, CancelledWhileWaitingForThePrefill) {
  p0_.delay_ms = 5000;
  p1_.delay_ms = 5000;
  ClientCall client;
  const absl::Time cancel_at = absl::Now() + absl::Milliseconds(100);
  client.cancelled = [cancel_at] { return absl::Now() > cancel_at; };
  const absl::Time start = absl::Now();
  Collected c = Generate(Request({"a"}), client);
  EXPECT_EQ(c.status.code(), absl::StatusCode::kCancelled);
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
}

TEST_F(RouterCoreTest, ClientDeadlineBoundsTheDownstreamCalls) {
  d0_.token_delay_ms = 200;
  d1_.token_delay_ms = 200;
  ClientCall client;
  client.deadline = absl::Now() + absl::Milliseconds(300);
  Collected c = Generate(Request({"a"}, /*max_new_tokens=*/50), client);
  EXPECT_EQ(c.status.code(), absl::StatusCode::kDeadlineExceeded) << c.status;
}

TEST_F(RouterCoreTest, SamePassagesStayOnTheSamePrefill) {
  Collected first = Generate(Request({"x", "y"}));
  ASSERT_TRUE(first.status.ok());
  for (int i = 0; i < 4; ++i) {
    Collected again = Generate(Request({"y", "x"}));
    ASSERT_TRUE(again.status.ok());
    EXPECT_EQ(again.summary->prefill_server(), first.summary->prefill_server());
  }
}

TEST_F(RouterCoreTest, ConcurrentRequestsAllComplete) {
  d0_.token_delay_ms = 2;
  d1_.token_delay_ms = 2;
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 4; ++i) {
        Collected c = Generate(Request({absl::StrCat("p", t % 3)}, 8));
        if (c.status.ok() && c.tokens().size() == 8 && c.summary.has_value()) ++ok;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok.load(), 64);
  v1::StatsRequest req;
  EXPECT_EQ(core_->GetStats(req).requests_total(), 64u);
  EXPECT_EQ(core_->GetStats(req).requests_active(), 0u);
}

TEST_F(RouterCoreTest, NoDecoderIsUnavailable) {
  d0_server_.Kill();
  d1_server_.Kill();
  pool_->CheckAllNow();
  EXPECT_EQ(Generate(Request({"a"})).status.code(), absl::StatusCode::kUnavailable);
}

TEST_F(RouterCoreTest, ReadyOnlyWhileAPrefillAndADecoderAreHealthy) {
  EXPECT_TRUE(ReadyAfterProbe().ok()) << core_->Ready();
  d1_server_.SetServing(false);
  EXPECT_TRUE(ReadyAfterProbe().ok()) << "d0 is still there: " << core_->Ready();
  d0_server_.Kill();  // the only healthy decoder
  EXPECT_EQ(ReadyAfterProbe(), absl::UnavailableError("no healthy decoder"));
  d1_server_.SetServing(true);
  EXPECT_TRUE(ReadyAfterProbe().ok()) << core_->Ready();
}

TEST_F(RouterCoreTest, NotReadyWithoutAHealthyPrefill) {
  p0_server_.SetServing(false);
  p1_server_.Kill();
  EXPECT_EQ(ReadyAfterProbe(), absl::UnavailableError("no healthy prefill"));
  p0_server_.SetServing(true);
  EXPECT_TRUE(ReadyAfterProbe().ok()) << core_->Ready();
}

TEST_F(RouterCoreTest, ReadyWithoutAnEncoderSinceGenerateNeedsNone) {
  e_server_.Kill();
  EXPECT_TRUE(ReadyAfterProbe().ok()) << core_->Ready();
  EXPECT_TRUE(Generate(Request({"a"})).status.ok());
}

TEST_F(RouterCoreTest, IngestForwardsToAnEncoderAndCounts) {
  v1::IngestRequest request;
  request.add_passages()->set_id("a");
  request.mutable_passages(0)->set_text("Alpha.");
  request.add_passages()->set_id("b");
  absl::StatusOr<v1::IngestResponse> r = core_->Ingest(request, {});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->results_size(), 2);
  EXPECT_EQ(r->results(0).status().code(), 0);
  EXPECT_EQ(r->results(1).status().code(), static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
  EXPECT_EQ(r->encoder_server(), e_server_.address());
  absl::StatusOr<v1::IngestResponse> again = core_->Ingest(request, {});
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->results(0).already_cached());
  EXPECT_EQ(core_->GetStats({}).passages_ingested_total(), 2u);
}

TEST_F(RouterCoreTest, StatsCountRequestsFailuresCacheAndBackends) {
  ASSERT_TRUE(Generate(Request({"a", "b", "c"})).status.ok());
  v1::GenerateRequest bad = Request({"a"});
  bad.clear_query();
  Generate(bad);
  v1::StatsRequest req;
  req.set_include_backends(true);
  v1::StatsResponse s = core_->GetStats(req);
  EXPECT_EQ(s.requests_total(), 2u);
  EXPECT_EQ(s.requests_failed(), 1u);
  EXPECT_EQ(s.cache_hits_total(), 3u);
  EXPECT_DOUBLE_EQ(s.cache_hit_ratio(), 1.0);
  EXPECT_EQ(s.tokens_generated_total(), 4u);
  EXPECT_GT(s.ttft_p50_ms(), 0);
  EXPECT_EQ(s.backends_size(), 5);
  const std::string text = metrics_.RenderText();
  EXPECT_NE(text.find("blockserve_router_generate_invalid_argument_total 1"), std::string::npos) << text;
  EXPECT_NE(text.find("blockserve_router_generate_ok_total 1"), std::string::npos) << text;
  EXPECT_NE(text.find("blockserve_router_ttft_ms_count 1"), std::string::npos) << text;
  for (absl::string_view line : absl::StrSplit(text, '\n', absl::SkipEmpty())) {
    if (line[0] == '#') continue;  // HELP / TYPE
    EXPECT_TRUE(absl::StartsWith(line, "blockserve_router_")) << line;
  }
}

// Through the gRPC layer: status codes and the client's deadline survive the trip.
TEST_F(RouterCoreTest, ServiceMapsStatusesAndStreamsOverGrpc) {
  RouterService service(core_.get(), /*tenants=*/nullptr);
  FakeServer router({&service});
  auto stub = v1::Router::NewStub(
      grpc::CreateChannel(router.address(), grpc::InsecureChannelCredentials()));
  {
    grpc::ClientContext context;
    auto reader = stub->Generate(&context, Request({"a"}));
    v1::GenerateEvent event;
    int events = 0;
    while (reader->Read(&event)) ++events;
    EXPECT_TRUE(reader->Finish().ok());
    EXPECT_EQ(events, 5);  // 4 token chunks and the summary
  }
  {
    v1::GenerateRequest bad = Request({"a"});
    bad.clear_query();
    grpc::ClientContext context;
    auto reader = stub->Generate(&context, bad);
    v1::GenerateEvent event;
    while (reader->Read(&event)) {
    }
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  }
  {
    grpc::ClientContext context;
    v1::StatsResponse stats;
    ASSERT_TRUE(stub->GetStats(&context, v1::StatsRequest(), &stats).ok());
    EXPECT_EQ(stats.requests_total(), 2u);
  }
}

}  // namespace
}  // namespace blockserve::router
