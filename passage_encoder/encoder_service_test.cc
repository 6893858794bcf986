// PassageEncoder over real gRPC on 127.0.0.1: results and status codes as the proto says.
#include "passage_encoder/encoder_service.h"

#include <unistd.h>

#include <memory>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "blocks/testing/test_stores.h"
#include "engine/tiny_model.h"
#include "gtest/gtest.h"
#include "kv_store/shm_store.h"

namespace blockserve::passage_encoder {
namespace {

class EncoderServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    engine_ = blocks::testing::LoadTinyEngine("encoder_service_test_model");
    store_ = blocks::testing::OpenTestShmStore(*engine_, engine::DType::kBF16);
    ASSERT_NE(store_, nullptr);
    cache_ = std::make_unique<blocks::BlockCache>(*engine_, *store_);
    core_ = std::make_unique<EncoderCore>(*cache_, metrics_, EncoderOptions{.max_batch_passages = 4});
    service_ = std::make_unique<EncoderService>(*core_);

    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
    builder.RegisterService(service_.get());
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    stub_ = v1::PassageEncoder::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  }
  void TearDown() override {
    server_->Shutdown();
    store_.reset();
  }

  static v1::Passage Text(const std::string& id, const std::string& text) {
    v1::Passage p;
    p.set_id(id);
    p.set_text(text);
    return p;
  }

  std::unique_ptr<engine::Engine> engine_;
  MetricsRegistry metrics_;
  blocks::testing::ScopedShmStore store_;
  std::unique_ptr<blocks::BlockCache> cache_;
  std::unique_ptr<EncoderCore> core_;
  std::unique_ptr<EncoderService> service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::PassageEncoder::Stub> stub_;
};

TEST_F(EncoderServiceTest, BatchWithABadPassageIsOkWithPerItemStatus) {
  v1::EncodePassagesRequest request;
  *request.add_passages() = Text("elbe", "The river Elbe flows to the North Sea.");
  *request.add_passages() = Text("empty", "");
  v1::EncodePassagesResponse response;
  grpc::ClientContext context;
  const grpc::Status s = stub_->EncodePassages(&context, request, &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(response.results_size(), 2);
  EXPECT_EQ(response.results(0).status().code(), grpc::StatusCode::OK);
  EXPECT_EQ(response.results(1).status().code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(store_->GetPassage("elbe").has_value());
}

TEST_F(EncoderServiceTest, BatchOverTheLimitIsInvalidArgument) {
  v1::EncodePassagesRequest request;
  for (int i = 0; i < 5; ++i) *request.add_passages() = Text("", "Some passage.");
  v1::EncodePassagesResponse response;
  grpc::ClientContext context;
  EXPECT_EQ(stub_->EncodePassages(&context, request, &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(EncoderServiceTest, StreamAnswersEveryPassageAndSkipsCachedOnes) {
  grpc::ClientContext context;
  auto stream = stub_->EncodePassageStream(&context);
  const std::vector<v1::Passage> passages = {Text("a", "The capital of France is Paris."),
                                             Text("b", ""),
                                             Text("c", "The capital of France is Paris.")};
  std::vector<v1::EncodeResult> results;
  for (const v1::Passage& p : passages) {
    ASSERT_TRUE(stream->Write(p));
    v1::EncodeResult r;
    ASSERT_TRUE(stream->Read(&r));
    results.push_back(r);
  }
  stream->WritesDone();
  ASSERT_TRUE(stream->Finish().ok());
  ASSERT_EQ(results.size(), 3u);
  for (uint32_t i = 0; i < 3; ++i) EXPECT_EQ(results[i].index(), i);
  EXPECT_EQ(results[0].status().code(), grpc::StatusCode::OK);
  EXPECT_FALSE(results[0].already_cached());
  EXPECT_EQ(results[1].status().code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(results[2].status().code(), grpc::StatusCode::OK);
  EXPECT_TRUE(results[2].already_cached());
  EXPECT_EQ(results[2].content_key(), results[0].content_key());
}

}  // namespace
}  // namespace blockserve::passage_encoder
