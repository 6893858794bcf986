// QueryPrefill over real gRPC on 127.0.0.1: the library's errors arrive as the
// proto's status codes, and a successful call carries the response fields.
#include "query_prefill/prefill_service.h"

#include <unistd.h>

#include <memory>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "blocks/testing/test_stores.h"
#include "engine/tiny_model.h"
#include "gtest/gtest.h"
#include "kv_store/shm_store.h"
#include "query_prefill/grpc_handoff.h"
#include "query_prefill/testing/fake_decoder.h"
#include "query_prefill/testing/not_a_decoder.h"

namespace blockserve::query_prefill {
namespace {

class PrefillServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    engine_ = blocks::testing::LoadTinyEngine("prefill_service_test_model");
    store_ = blocks::testing::OpenTestShmStore(*engine_, engine::DType::kBF16);
    ASSERT_NE(store_, nullptr);
    cache_ = std::make_unique<blocks::BlockCache>(*engine_, *store_);
    Start({});
  }
  // (Re)starts the server over a core with `options`.
  void Start(PrefillCoreOptions options) {
    if (server_ != nullptr) server_->Shutdown();
    server_.reset();
    service_.reset();
    core_ = std::make_unique<PrefillCore>(*cache_, handoff_, metrics_, std::move(options));
    core_->set_served_by("prefill-test:1");
    service_ = std::make_unique<PrefillService>(*core_);

    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::QueryPrefill::NewStub(grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                                          grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    server_->Shutdown();
    store_.reset();
  }

  static v1::PrefillRequest Request() {
    v1::PrefillRequest r;
    r.add_passages()->set_text("The river Elbe flows through Dresden.");
    r.set_query("Which river flows through Dresden?");
    r.mutable_sampling()->set_ignore_eos(true);
    return r;
  }
  grpc::Status Call(const v1::PrefillRequest& request, v1::PrefillResponse* response) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(20));
    return stub_->Prefill(&context, request, response);
  }

  std::unique_ptr<engine::Engine> engine_;
  MetricsRegistry metrics_;
  blocks::testing::ScopedShmStore store_;
  std::unique_ptr<blocks::BlockCache> cache_;
  GrpcKvHandoff handoff_;
  std::unique_ptr<PrefillCore> core_;
  std::unique_ptr<PrefillService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::QueryPrefill::Stub> stub_;
};

TEST_F(PrefillServiceTest, SuccessfulPrefillHandsOffAndNamesItsServer) {
  FakeDecoder decoder({.model_fingerprint_hex = handoff::FingerprintHex(engine_->model_fingerprint()),
                       .shape = engine_->kv_shape(),
                       .vocab_size = engine_->config().vocab_size,
                       .context_length = engine_->config().max_position_embeddings});
  v1::PrefillRequest request = Request();
  request.set_request_id("req-1");
  request.mutable_decoder()->set_address(decoder.address());
  request.mutable_decoder()->set_sequence_id(9);
  v1::PrefillResponse response;
  const grpc::Status s = Call(request, &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(response.request_id(), "req-1");
  EXPECT_EQ(response.sequence_id(), 9u);
  EXPECT_EQ(response.served_by(), "prefill-test:1");
  EXPECT_EQ(response.model_fingerprint(), handoff::FingerprintHex(engine_->model_fingerprint()));
  EXPECT_GT(response.stats().total_ms(), 0);
  ASSERT_EQ(decoder.received().size(), 1u);
  EXPECT_EQ(decoder.received()[0].header.request_id(), "req-1");
}

TEST_F(PrefillServiceTest, UnknownPassageIdIsNotFound) {
  v1::PrefillRequest request = Request();
  request.add_passages()->set_passage_id("nope");
  v1::PrefillResponse response;
  EXPECT_EQ(Call(request, &response).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(PrefillServiceTest, EmptyQueryIsInvalidArgument) {
  v1::PrefillRequest request = Request();
  request.clear_query();
  v1::PrefillResponse response;
  EXPECT_EQ(Call(request, &response).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(PrefillServiceTest, NcclHandoffIsFailedPrecondition) {
  v1::PrefillRequest request = Request();
  request.mutable_decoder()->set_address("127.0.0.1:1");
  request.mutable_decoder()->set_transport(v1::HANDOFF_NCCL);
  v1::PrefillResponse response;
  EXPECT_EQ(Call(request, &response).error_code(), grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(PrefillServiceTest, ClosedPortHttpServerAndUnlistedAddressGetOneAnswer) {
  const std::string closed = ClosedLoopbackAddress();
  HttpServer http;
  HttpServer unlisted;
  PrefillCoreOptions options;
  options.allowed_decoders = discovery::Discovery::Fixed({closed, http.address()});
  Start(options);
  for (const std::string& address : {closed, http.address(), unlisted.address()}) {
    v1::PrefillRequest request = Request();
    request.mutable_decoder()->set_address(address);
    v1::PrefillResponse response;
    const grpc::Status s = Call(request, &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << address;
    EXPECT_EQ(s.error_message(), "decoder unavailable") << address;
  }
  EXPECT_GT(http.connections(), 0);      // it was dialled, and answered
  EXPECT_EQ(unlisted.connections(), 0);  // refused before any connection
}

}  // namespace
}  // namespace blockserve::query_prefill
