#include "decoder/decoder_service.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <functional>
#include <thread>

#include "engine/generate.h"
#include "engine/tiny_model.h"
#include "engine/utf8.h"
#include "proto/blockserve.grpc.pb.h"

namespace blockserve::decoder {
namespace {

namespace v1 = ::blockserve::v1;

constexpr absl::Duration kWait = absl::Milliseconds(300);
// The lease of the tests that wait for it; the others get one that never runs out.
constexpr absl::Duration kShortLease = absl::Milliseconds(300);

// Polls `done` until it holds or 5 s pass.
bool PollUntil(const std::function<bool()>& done) {
  const absl::Time give_up = absl::Now() + absl::Seconds(5);
  while (!done()) {
    if (absl::Now() >= give_up) return false;
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

// A decoder served in-process on 127.0.0.1 (port 0), and a client stub.
class DecoderServiceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string dir = testing::TempDir() + "/decoder_service_test_model";
    ASSERT_TRUE(engine::WriteTinyModel(dir, {.seed = 5}).ok());
    engine_ = engine::Engine::Load(dir, {.num_threads = 1})->release();
  }
  static void TearDownTestSuite() {
    delete engine_;
    engine_ = nullptr;
  }

  void SetUp() override { Start({}); }

  void Start(DecoderOptions options, absl::Duration lease = absl::Seconds(60)) {
    server_.reset();
    service_.reset();
    metrics_ = std::make_unique<MetricsRegistry>();
    options.claim_timeout = kWait;
    options.metrics = metrics_.get();
    core_ = std::make_unique<DecoderCore>(*engine_, options);
    service_ = std::make_unique<DecoderService>(
        *engine_, *core_,
        DecoderServiceOptions{
            .sequence_wait = kWait, .handoff_lease = lease, .metrics = metrics_.get()});
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(port, 0);
    stub_ = v1::Decoder::NewStub(
        grpc::CreateChannel(absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  }

  void TearDown() override {
    server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
    server_.reset();
    service_.reset();
    core_.reset();
    metrics_.reset();
  }

  // What the prefill sends: the AcceptSequence chunks of a prompt and its first token.
  struct Handoff {
    std::vector<v1::KvChunk> chunks;
    int32_t first_token = 0;
    std::string first_text;
  };
  static Handoff Prefill(uint64_t id, const v1::SamplingParams& sampling,
                         v1::DType dtype = v1::DTYPE_BF16,
                         std::string_view prompt = "Once upon a time") {
    const std::vector<int32_t> tokens = engine_->tokenizer().Encode(prompt);
    absl::StatusOr<engine::PrefillResult> p = engine_->PrefillLast({}, tokens);
    EXPECT_TRUE(p.ok());
    engine::Sampler sampler(*handoff::FromProto(sampling));
    Handoff h;
    h.first_token = sampler.Sample(p->logits_last);
    engine::SequenceEnd end(
        engine_->tokenizer(), engine_->eos_ids(),
        *handoff::DecodeLimitsFromProto(sampling, engine_->config().vocab_size, {}),
        static_cast<int64_t>(tokens.size()), engine_->config().max_position_embeddings);
    h.first_text = end.Next(h.first_token).text_delta;
    v1::SequenceHeader header;
    header.set_sequence_id(id);
    header.set_model_fingerprint(handoff::FingerprintHex(engine_->model_fingerprint()));
    header.set_first_token_id(h.first_token);
    *header.mutable_sampling() = sampling;
    header.set_request_id("r");
    h.chunks = handoff::SequenceToChunks(header, p->cache, dtype, 4096);
    return h;
  }

  static v1::SamplingParams Greedy(uint32_t max_new_tokens) {
    v1::SamplingParams s;
    s.set_seed(1);
    s.set_max_new_tokens(max_new_tokens);
    return s;
  }

  grpc::Status Send(const std::vector<v1::KvChunk>& chunks,
                    v1::AcceptSequenceResponse* response = nullptr) {
    grpc::ClientContext ctx;
    v1::AcceptSequenceResponse unused;
    std::unique_ptr<grpc::ClientWriter<v1::KvChunk>> writer =
        stub_->AcceptSequence(&ctx, response ? response : &unused);
    for (const v1::KvChunk& c : chunks) {
      if (!writer->Write(c)) break;  // the decoder ended the call early
    }
    writer->WritesDone();
    return writer->Finish();
  }

  struct Streamed {
    grpc::Status status;
    std::vector<int32_t> tokens;
    std::string text;
    v1::FinishReason finish = v1::FINISH_REASON_UNSPECIFIED;
    uint32_t tokens_generated = 0;
  };
  Streamed StreamAll(uint64_t id) {
    grpc::ClientContext ctx;
    v1::StreamRequest request;
    request.set_sequence_id(id);
    std::unique_ptr<grpc::ClientReader<v1::TokenEvent>> reader = stub_->Stream(&ctx, request);
    Streamed out;
    v1::TokenEvent event;
    while (reader->Read(&event)) {
      out.tokens.insert(out.tokens.end(), event.token_ids().begin(), event.token_ids().end());
      out.text += event.text();
      out.finish = event.finish_reason();
      out.tokens_generated = event.stats().tokens_generated();
    }
    out.status = reader->Finish();
    return out;
  }

  double Counter(const std::string& name) { return metrics_->GetCounter(name, "")->value(); }

  static engine::Engine* engine_;
  std::unique_ptr<MetricsRegistry> metrics_;
  std::unique_ptr<DecoderCore> core_;
  std::unique_ptr<DecoderService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Decoder::Stub> stub_;
};

engine::Engine* DecoderServiceTest::engine_ = nullptr;

TEST_F(DecoderServiceTest, AcceptSequenceThenStreamGetsEveryToken) {
  const Handoff h = Prefill(21, Greedy(20));
  v1::AcceptSequenceResponse response;
  ASSERT_TRUE(Send(h.chunks, &response).ok());
  EXPECT_EQ(response.sequence_id(), 21u);
  EXPECT_EQ(response.token_count(), h.chunks[0].header().token_count());
  EXPECT_GT(response.bytes_received(), 0u);

  const Streamed s = StreamAll(21);
  ASSERT_TRUE(s.status.ok()) << s.status.error_message();
  EXPECT_EQ(s.finish, v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(s.tokens.size(), 19u);
  EXPECT_EQ(s.tokens_generated, 19u);
  // The KV went over the wire as bf16, so compare with Generate only loosely: same length.
  std::vector<int32_t> all = {h.first_token};
  all.insert(all.end(), s.tokens.begin(), s.tokens.end());
  EXPECT_EQ(all.size(), 20u);
  EXPECT_TRUE(engine::IsValidUtf8(h.first_text + s.text));
  // Collected: a second Stream finds nothing.
  EXPECT_EQ(StreamAll(21).status.error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(DecoderServiceTest, F32HandoffEqualsGenerate) {
  // F32 on the wire is exact, so the decoded tokens equal a single-process Generate.
  const Handoff h = Prefill(22, Greedy(24), v1::DTYPE_F32);
  const std::vector<int32_t> tokens = engine_->tokenizer().Encode("Once upon a time");
  // Stream first: it waits for the sequence to arrive.
  Streamed s;
  std::thread consumer([&] { s = StreamAll(22); });
  absl::SleepFor(absl::Milliseconds(50));
  ASSERT_TRUE(Send(h.chunks).ok());
  consumer.join();
  ASSERT_TRUE(s.status.ok()) << s.status.error_message();
  absl::StatusOr<engine::Generation> g =
      engine::Generate(*engine_, {}, tokens, {}, {}, {.max_new_tokens = 24});
  ASSERT_TRUE(g.ok());
  std::vector<int32_t> all = {h.first_token};
  all.insert(all.end(), s.tokens.begin(), s.tokens.end());
  EXPECT_EQ(all, g->tokens);
  EXPECT_EQ(h.first_text + s.text, engine::SanitizeUtf8(g->text));
}

TEST_F(DecoderServiceTest, BadHandoffsGetTheProtoCodes) {
  const Handoff good = Prefill(30, Greedy(8));
  const auto with_header = [&](void (*mutate)(v1::SequenceHeader&)) {
    std::vector<v1::KvChunk> chunks = good.chunks;
    mutate(*chunks[0].mutable_header());
    return Send(chunks).error_code();
  };
  EXPECT_EQ(with_header([](v1::SequenceHeader& h) { h.set_model_fingerprint("0000000000000000"); }),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(with_header([](v1::SequenceHeader& h) { h.set_num_layers(h.num_layers() + 1); }),
            grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(with_header([](v1::SequenceHeader& h) { h.set_sequence_id(0); }),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(with_header([](v1::SequenceHeader& h) { h.mutable_sampling()->set_top_p(2); }),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Send({}).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Send({good.chunks.begin() + 1, good.chunks.end()}).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);  // no header
  EXPECT_EQ(Send({good.chunks.begin(), good.chunks.end() - 1}).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);  // a slice missing
  EXPECT_EQ(core_->active_sequences(), 0);
  ASSERT_TRUE(Send(good.chunks).ok());
  EXPECT_EQ(Send(good.chunks).error_code(), grpc::StatusCode::ALREADY_EXISTS);
}

TEST_F(DecoderServiceTest, FullDecoderIsResourceExhausted) {
  Start({.max_active_sequences = 1});
  v1::SamplingParams long_run = Greedy(1000);
  long_run.set_ignore_eos(true);
  ASSERT_TRUE(Send(Prefill(40, long_run).chunks).ok());
  EXPECT_EQ(Send(Prefill(41, long_run).chunks).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST_F(DecoderServiceTest, StalledHandoffsLoseTheirSlotsWhenTheLeaseRunsOut) {
  Start({.max_active_sequences = 2}, kShortLease);
  v1::SamplingParams long_run = Greedy(1000);
  long_run.set_ignore_eos(true);
  // Two senders take every slot with a header and then send nothing more.
  struct Stalled {
    grpc::ClientContext ctx;
    v1::AcceptSequenceResponse response;
    std::unique_ptr<grpc::ClientWriter<v1::KvChunk>> writer;
  };
  std::vector<std::unique_ptr<Stalled>> stalled;
  const absl::Time start = absl::Now();
  for (uint64_t id : {71, 72}) {
    auto s = std::make_unique<Stalled>();
    // Only a bound for the test, should the decoder hold the stream for ever.
    s->ctx.set_deadline(absl::ToChronoTime(start + absl::Seconds(20)));
    s->writer = stub_->AcceptSequence(&s->ctx, &s->response);
    ASSERT_TRUE(s->writer->Write(Prefill(id, long_run).chunks[0]));
    stalled.push_back(std::move(s));
  }
  ASSERT_TRUE(PollUntil([&] { return core_->active_sequences() == 2; }));
  const Handoff fresh = Prefill(73, Greedy(8));
  EXPECT_EQ(Send(fresh.chunks).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);

  for (const auto& s : stalled) {
    const grpc::Status status = s->writer->Finish();
    EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
    EXPECT_NE(status.error_message().find("did not arrive within the handoff lease"),
              std::string::npos)
        << status.error_message();
  }
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_EQ(core_->active_sequences(), 0);
  EXPECT_EQ(core_->reserved_kv_bytes(), 0);
  EXPECT_EQ(Counter("blockserve_decoder_handoff_lease_expired_total"), 2);

  // The freed slots take a fresh handoff, which is decoded to its end.
  ASSERT_TRUE(Send(fresh.chunks).ok());
  const Streamed decoded = StreamAll(73);
  ASSERT_TRUE(decoded.status.ok()) << decoded.status.error_message();
  EXPECT_EQ(decoded.finish, v1::FINISH_REASON_LENGTH);
  EXPECT_EQ(decoded.tokens.size(), 7u);
}

TEST_F(DecoderServiceTest, HandoffWithoutAHeaderEndsWhenTheLeaseRunsOut) {
  Start({}, kShortLease);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
  v1::AcceptSequenceResponse response;
  std::unique_ptr<grpc::ClientWriter<v1::KvChunk>> writer = stub_->AcceptSequence(&ctx, &response);
  const grpc::Status status = writer->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED);
  EXPECT_NE(status.error_message().find("handoff lease"), std::string::npos)
      << status.error_message();
}

TEST_F(DecoderServiceTest, StreamOnUnknownIdIsNotFoundAfterTheWait) {
  const absl::Time t0 = absl::Now();
  EXPECT_EQ(StreamAll(999).status.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_GE(absl::Now() - t0, kWait);
  EXPECT_EQ(StreamAll(0).status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(DecoderServiceTest, CancelIsIdempotentAndEndsTheStream) {
  v1::SamplingParams long_run = Greedy(4000);
  long_run.set_ignore_eos(true);
  ASSERT_TRUE(Send(Prefill(50, long_run).chunks).ok());
  v1::CancelRequest request;
  request.set_sequence_id(50);
  request.set_reason(std::string(1000, 'x'));
  v1::CancelResponse response;
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->Cancel(&ctx, request, &response).ok());
    EXPECT_TRUE(response.was_active());
  }
  {
    grpc::ClientContext ctx;
    ASSERT_TRUE(stub_->Cancel(&ctx, request, &response).ok());
    EXPECT_FALSE(response.was_active());
  }
  const Streamed s = StreamAll(50);
  ASSERT_TRUE(s.status.ok());
  EXPECT_EQ(s.finish, v1::FINISH_REASON_CANCELLED);
  {
    grpc::ClientContext ctx;
    request.set_sequence_id(12345);
    ASSERT_TRUE(stub_->Cancel(&ctx, request, &response).ok());
    EXPECT_FALSE(response.was_active());
  }
  {
    grpc::ClientContext ctx;
    request.set_sequence_id(0);
    EXPECT_EQ(stub_->Cancel(&ctx, request, &response).error_code(),
              grpc::StatusCode::INVALID_ARGUMENT);
  }
}

TEST_F(DecoderServiceTest, CancellingTheStreamCallCancelsTheSequence) {
  v1::SamplingParams long_run = Greedy(4000);
  long_run.set_ignore_eos(true);
  ASSERT_TRUE(Send(Prefill(60, long_run).chunks).ok());
  EXPECT_EQ(core_->active_sequences(), 1);
  grpc::ClientContext ctx;
  v1::StreamRequest request;
  request.set_sequence_id(60);
  std::unique_ptr<grpc::ClientReader<v1::TokenEvent>> reader = stub_->Stream(&ctx, request);
  v1::TokenEvent event;
  ASSERT_TRUE(reader->Read(&event));
  ctx.TryCancel();
  while (reader->Read(&event)) {
  }
  EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  for (int i = 0; i < 100 && core_->active_sequences() > 0; ++i)
    absl::SleepFor(absl::Milliseconds(20));
  EXPECT_EQ(core_->active_sequences(), 0);
}

TEST_F(DecoderServiceTest, PrepareNcclIsFailedPrecondition) {
  grpc::ClientContext ctx;
  v1::NcclHandshake request;
  v1::NcclHandshakeResponse response;
  EXPECT_EQ(stub_->PrepareNccl(&ctx, request, &response).error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

}  // namespace
}  // namespace blockserve::decoder
