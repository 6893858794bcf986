// One answer per input: every request of the contract's table (contract/testing/
// bad_requests.h), and a few whose fault needs the model or the catalog, sent over gRPC
// to a real router (in front of a real prefill) and to the same prefill directly, get
// the same status code from both, and the code the table names.
//
// In process: the router, the prefill (tiny model, shared-memory store) and a fake
// decoder serve on loopback ports; the other end-to-end tests run the real binaries.
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "blocks/block_cache.h"
#include "blocks/testing/test_stores.h"
#include "common/metrics.h"
#include "contract/request_contract.h"
#include "contract/testing/bad_requests.h"
#include "engine/engine.h"
#include "proto/blockserve.grpc.pb.h"
#include "query_prefill/grpc_handoff.h"
#include "query_prefill/prefill_core.h"
#include "query_prefill/prefill_service.h"
#include "router/backend_pool.h"
#include "router/fake_backends.h"
#include "router/router_core.h"
#include "router/router_service.h"

namespace blockserve {
namespace {

using router::testing::FakeDecoder;
using router::testing::FakeServer;

// Limits both services are given, as a deployment gives them equal flags.
constexpr contract::Limits kLimits{.max_passages = 8, .max_new_tokens_limit = 64};

class OneAnswerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { shared_ = new Services(); }
  static void TearDownTestSuite() { delete shared_; }

  struct Services {
    Services() {
      engine = blocks::testing::LoadTinyEngine("one_answer_test_model",
                                               {.max_position_embeddings = 512});
      store = blocks::testing::OpenTestShmStore(*engine, engine::DType::kBF16);
      cache = std::make_unique<blocks::BlockCache>(*engine, *store);
      query_prefill::PrefillCoreOptions po;
      po.max_passages = kLimits.max_passages;
      po.max_new_tokens = {.default_max_new_tokens = 4,
                           .max_new_tokens_limit = kLimits.max_new_tokens_limit};
      prefill = std::make_unique<query_prefill::PrefillCore>(*cache, handoff, metrics, po);
      prefill_service = std::make_unique<query_prefill::PrefillService>(*prefill);
      prefill_server = std::make_unique<FakeServer>(std::vector<grpc::Service*>{prefill_service.get()});
      decoder_server = std::make_unique<FakeServer>(std::vector<grpc::Service*>{&decoder});
      decoder.set_address(decoder_server->address());

      router::BackendPoolOptions bo;
      bo.prefill = {prefill_server->address()};
      bo.decoder = {decoder_server->address()};
      pool = std::make_unique<router::BackendPool>(bo);
      pool->CheckAllNow();
      router = std::make_unique<router::RouterCore>(
          pool.get(), router::RouterOptions{.limits = kLimits}, &metrics);
      router_service = std::make_unique<router::RouterService>(router.get(), /*tenants=*/nullptr);
      router_server = std::make_unique<FakeServer>(std::vector<grpc::Service*>{router_service.get()});

      router_stub = v1::Router::NewStub(
          grpc::CreateChannel(router_server->address(), grpc::InsecureChannelCredentials()));
      prefill_stub = v1::QueryPrefill::NewStub(
          grpc::CreateChannel(prefill_server->address(), grpc::InsecureChannelCredentials()));
    }
    ~Services() {
      router_server.reset();
      router.reset();
      prefill_server.reset();
    }

    std::unique_ptr<engine::Engine> engine;
    blocks::testing::ScopedShmStore store;
    std::unique_ptr<blocks::BlockCache> cache;
    MetricsRegistry metrics;
    query_prefill::GrpcKvHandoff handoff;
    std::unique_ptr<query_prefill::PrefillCore> prefill;
    std::unique_ptr<query_prefill::PrefillService> prefill_service;
    std::unique_ptr<FakeServer> prefill_server;
    FakeDecoder decoder;
    std::unique_ptr<FakeServer> decoder_server;
    std::unique_ptr<router::BackendPool> pool;
    std::unique_ptr<router::RouterCore> router;
    std::unique_ptr<router::RouterService> router_service;
    std::unique_ptr<FakeServer> router_server;
    std::unique_ptr<v1::Router::Stub> router_stub;
    std::unique_ptr<v1::QueryPrefill::Stub> prefill_stub;
  };

  static grpc::StatusCode ViaRouter(const v1::GenerateRequest& request) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    auto reader = shared_->router_stub->Generate(&context, request);
    v1::GenerateEvent event;
    while (reader->Read(&event)) {
    }
    return reader->Finish().error_code();
  }
  static grpc::StatusCode ViaPrefill(const v1::PrefillRequest& request) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::PrefillResponse response;
    return shared_->prefill_stub->Prefill(&context, request, &response).error_code();
  }
  // Sends `request` to both; expects `code` from each.
  static void ExpectOneAnswer(const std::string& name, const v1::GenerateRequest& request,
                              absl::StatusCode code) {
    const grpc::StatusCode want = static_cast<grpc::StatusCode>(code);
    EXPECT_EQ(ViaRouter(request), want) << name << " via the router";
    EXPECT_EQ(ViaPrefill(contract::ToPrefillRequest(request)), want) << name << " at the prefill";
  }

  static Services* shared_;
};

OneAnswerTest::Services* OneAnswerTest::shared_ = nullptr;

TEST_F(OneAnswerTest, EveryCaseOfTheContractGetsTheSameCodeFromRouterAndPrefill) {
  int compared = 0;
  for (const contract::testing::BadRequestCase& c : contract::testing::BadRequestCases(kLimits)) {
    const std::optional<v1::GenerateRequest> generate = c.Generate();
    if (generate) {
      ExpectOneAnswer(c.name, *generate, c.code);
      ++compared;
    } else {
      // A PrefillRequest-only field (decoder.transport): the prefill alone answers.
      EXPECT_EQ(ViaPrefill(c.Prefill()), static_cast<grpc::StatusCode>(c.code)) << c.name;
    }
  }
  EXPECT_GT(compared, 30);
}

TEST_F(OneAnswerTest, FaultsThatNeedTheModelOrTheCatalogGetTheSameCode) {
  const v1::GenerateRequest valid = contract::testing::ValidGenerateRequest();
  const int64_t vocab = shared_->engine->config().vocab_size;

  v1::GenerateRequest r = valid;
  r.mutable_sampling()->add_stop_token_ids(static_cast<int32_t>(vocab));
  ExpectOneAnswer("stop token id = vocab_size", r, absl::StatusCode::kInvalidArgument);

  r = valid;
  r.mutable_passages(0)->mutable_token_ids()->add_ids(static_cast<int32_t>(vocab));
  ExpectOneAnswer("passage token id = vocab_size", r, absl::StatusCode::kInvalidArgument);

  r = valid;
  r.mutable_passages(1)->set_text(std::string(2000, 'x'));
  ExpectOneAnswer("passage over the context length", r, absl::StatusCode::kInvalidArgument);

  r = valid;
  r.mutable_passages(2)->set_passage_id("never-ingested");
  ExpectOneAnswer("unknown passage id", r, absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace blockserve
