// Bad requests get the status code proto/blockserve.proto promises, from the router or
// the backend that detects them, and every server keeps serving afterwards.

#include <gtest/gtest.h>

#include "client/router_client.h"
#include "contract/request_contract.h"
#include "tests/blockserve_system.h"

namespace blockserve::testing {
namespace {

class BadInputsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    engine::TinyModelOptions o;
    o.seed = 5;
    o.max_position_embeddings = 512;  // a prompt over the context is cheap to build
    absl::StatusOr<std::string> dir = TinyModelDir(o);
    ASSERT_TRUE(dir.ok()) << dir.status();
    absl::StatusOr<std::unique_ptr<BlockServeSystem>> sys =
        BlockServeSystem::Start({.model_dir = *dir});
    ASSERT_TRUE(sys.ok()) << sys.status();
    system_ = sys->release();
    absl::StatusOr<std::vector<v1::Passage>> passages = TestPassages();
    ASSERT_TRUE(passages.ok()) << passages.status();
    absl::StatusOr<v1::IngestResponse> ingested = system_->Ingest(*passages);
    ASSERT_TRUE(ingested.ok()) << ingested.status();
  }
  static void TearDownTestSuite() {
    if (system_ == nullptr) return;
    EXPECT_TRUE(system_->Shutdown().ok());
    delete system_;
    system_ = nullptr;
  }

  void SetUp() override { ASSERT_NE(system_, nullptr); }

  // After every test: a good request still works and every backend is healthy.
  void TearDown() override {
    if (system_ == nullptr) return;
    const GenerateResult r = Generate(system_->router(), Good());
    EXPECT_TRUE(r.status.ok()) << r.status.error_message();
    EXPECT_TRUE(system_->WaitHealthy(absl::Seconds(5)).ok());
  }

  static v1::GenerateRequest Good() {
    v1::GenerateRequest r;
    r.add_passages()->set_passage_id("tall-ember");
    r.set_query("Who built the Tall Ember?");
    r.mutable_sampling()->set_max_new_tokens(4);
    return r;
  }

  static grpc::StatusCode Code(const v1::GenerateRequest& r) {
    const GenerateResult result = Generate(system_->router(), r);
    EXPECT_TRUE(result.tokens.empty()) << "tokens were sent before the error";
    return result.status.error_code();
  }

  static BlockServeSystem* system_;
};

BlockServeSystem* BadInputsTest::system_ = nullptr;

TEST_F(BadInputsTest, EmptyQueryIsInvalidArgument) {
  v1::GenerateRequest r = Good();
  r.clear_query();
  EXPECT_EQ(Code(r), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(BadInputsTest, UnknownPassageIdIsNotFound) {
  v1::GenerateRequest r = Good();
  r.add_passages()->set_passage_id("no-such-passage");
  EXPECT_EQ(Code(r), grpc::StatusCode::NOT_FOUND);
}

TEST_F(BadInputsTest, PromptOverTheContextIsInvalidArgument) {
  v1::GenerateRequest r = Good();
  std::string query;
  while (query.size() < 8000) query += "how many lanterns burn in Vellmark tonight? ";
  r.set_query(query);
  EXPECT_EQ(Code(r), grpc::StatusCode::INVALID_ARGUMENT);
  // Passages alone past the context: every sample passage, repeated.
  v1::GenerateRequest many = Good();
  absl::StatusOr<std::vector<v1::Passage>> passages = TestPassages();
  ASSERT_TRUE(passages.ok());
  for (const v1::Passage& p : *passages) many.add_passages()->set_passage_id(p.id());
  EXPECT_EQ(Code(many), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(BadInputsTest, InvalidSamplingValuesAreInvalidArgument) {
  auto with = [](auto mutate) {
    v1::GenerateRequest r = Good();
    mutate(*r.mutable_sampling());
    return r;
  };
  // Caught by the router.
  EXPECT_EQ(Code(with([](auto& s) { s.set_temperature(-1); })), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Code(with([](auto& s) { s.set_top_p(1.5); })), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Code(with([](auto& s) { s.set_top_k(-3); })), grpc::StatusCode::INVALID_ARGUMENT);
  // Caught by the router (contract/; limits are flags the router and the prefill share),
  // then one the prefill catches (the vocabulary is the model's).
  EXPECT_EQ(Code(with([](auto& s) { s.set_max_new_tokens(1000000); })),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Code(with([](auto& s) { s.add_stop_token_ids(1 << 30); })),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(BadInputsTest, UnknownEnumValueIsInvalidArgument) {
  v1::GenerateRequest r = Good();
  r.mutable_block_options()->set_mode(static_cast<v1::AttentionMode>(7));
  EXPECT_EQ(Code(r), grpc::StatusCode::INVALID_ARGUMENT);
}

// Text the servers tokenize travels as `bytes` (see the proto's "Text fields"), so
// invalid UTF-8 reaches the prefill's own check instead of the protobuf parser.
TEST_F(BadInputsTest, InvalidUtf8IsInvalidArgument) {
  v1::GenerateRequest query = Good();
  query.set_query(std::string("what is \xff\xfe?", 12));
  EXPECT_EQ(Code(query), grpc::StatusCode::INVALID_ARGUMENT);
  v1::GenerateRequest system = Good();
  system.set_system_prompt("\xc3\x28");
  EXPECT_EQ(Code(system), grpc::StatusCode::INVALID_ARGUMENT);
  v1::GenerateRequest stop = Good();
  stop.mutable_sampling()->add_stop("\xed\xa0\x80");
  EXPECT_EQ(Code(stop), grpc::StatusCode::INVALID_ARGUMENT);
  // The client library refuses to send it at all.
  EXPECT_FALSE(client::IsValidUtf8("\xff\xfe"));
}

// Oversized text is refused before anything tokenizes it: a field over its byte limit
// by the request contract, a message over the servers' limit by gRPC itself.
TEST_F(BadInputsTest, OversizedRequestsAreRefusedBeforeTokenizing) {
  v1::GenerateRequest long_query = Good();
  long_query.set_query(std::string(contract::kMaxQueryBytes + 1, 'q'));
  EXPECT_EQ(Code(long_query), grpc::StatusCode::INVALID_ARGUMENT);
  v1::GenerateRequest huge = Good();
  huge.set_query(std::string(contract::kMaxMessageBytes + 1, 'q'));
  EXPECT_EQ(Code(huge), grpc::StatusCode::RESOURCE_EXHAUSTED);
}

TEST_F(BadInputsTest, BadPassagesAreRejectedOneByOne) {
  v1::Passage empty;
  empty.set_id("empty");
  empty.set_text("");
  v1::Passage ok;
  ok.set_id("fine");
  ok.set_text("The Heron is the larger ferry.");
  v1::Passage bad_id;
  bad_id.set_id("tab\tid");
  bad_id.set_text("Control characters are not allowed in ids.");
  absl::StatusOr<v1::IngestResponse> r = system_->Ingest({empty, ok, bad_id});
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->results_size(), 3);
  EXPECT_EQ(r->results(0).status().code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(r->results(1).status().code(), 0);
  EXPECT_EQ(r->results(2).status().code(), grpc::StatusCode::INVALID_ARGUMENT);
}

}  // namespace
}  // namespace blockserve::testing
