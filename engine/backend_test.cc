// Backend::Forward's checks: a bad batch is rejected before the implementation runs and
// before any cache changes, whatever the implementation does.
#include "engine/backend.h"

#include <string>

#include <gtest/gtest.h>

namespace blockserve::engine {
namespace {

ModelConfig SmallConfig() {
  ModelConfig c;
  c.vocab_size = 10;
  c.num_hidden_layers = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 4;
  return c;
}

// Checks nothing itself: it counts its runs and appends every item's tokens to its cache,
// so a batch that reached it shows in the caches.
class RecordingBackend : public Backend {
 public:
  explicit RecordingBackend(ModelConfig config) : config_(std::move(config)) {}
  std::string_view name() const override { return "recording"; }
  const ModelConfig& config() const override { return config_; }
  void ShiftKeys(KvCache&, int64_t, int64_t, int64_t) override {}
  int runs() const { return runs_; }

 private:
  absl::Status DoForward(absl::Span<const ForwardItem> batch,
                         std::vector<std::vector<float>>* logits) override {
    ++runs_;
    logits->assign(batch.size(), {});
    for (size_t b = 0; b < batch.size(); ++b) {
      batch[b].cache->Append(batch[b].tokens);
      if (batch[b].want_logits) (*logits)[b].assign(config_.vocab_size, 0.5f);
    }
    return absl::OkStatus();
  }

  ModelConfig config_;
  int runs_ = 0;
};

class BackendForwardTest : public testing::Test {
 protected:
  KvShape Shape() const {
    const ModelConfig& c = backend_.config();
    return KvShape{c.num_hidden_layers, c.num_key_value_heads, c.head_dim};
  }
  RecordingBackend backend_{SmallConfig()};
};

TEST_F(BackendForwardTest, AValidBatchRunsOnce) {
  KvCache a(Shape()), b(Shape());
  const std::vector<int32_t> ta = {0, 9}, tb = {3};
  std::vector<std::vector<float>> logits;
  ASSERT_TRUE(backend_.Forward({{ta, 0, &a, false}, {tb, 5, &b, true}}, &logits).ok());
  EXPECT_EQ(backend_.runs(), 1);
  EXPECT_EQ(a.num_tokens(), 2);
  EXPECT_EQ(b.num_tokens(), 1);
  ASSERT_EQ(logits.size(), 2u);
  EXPECT_TRUE(logits[0].empty());
  EXPECT_EQ(logits[1].size(), 10u);
}

TEST_F(BackendForwardTest, AnEmptyBatchGivesNoLogitsWithoutRunning) {
  std::vector<std::vector<float>> logits = {{1.0f}};
  ASSERT_TRUE(backend_.Forward({}, &logits).ok());
  EXPECT_TRUE(logits.empty());
  EXPECT_EQ(backend_.runs(), 0);
}

// Each bad item comes second, after a valid one, so that "before any cache changes"
// covers the items checked before the bad one too.
TEST_F(BackendForwardTest, BadItemsAreInvalidArgumentBeforeAnyRunOrCacheChange) {
  KvCache good(Shape()), other(Shape()), wrong_shape(KvShape{1, 1, 4});
  const std::vector<int32_t> ok = {1, 2}, none, too_big = {1, 10}, negative = {-1};
  struct Case {
    std::string what;
    ForwardItem bad;
    std::string message;
  };
  const Case cases[] = {
      {"no tokens", {none, 0, &other, true}, "no tokens"},
      {"no cache", {ok, 0, nullptr, true}, "no cache"},
      {"shared cache", {ok, 0, &good, true}, "share one KV cache"},
      {"wrong shape", {ok, 0, &wrong_shape, true}, "shape does not match"},
      {"token == vocab_size", {too_big, 0, &other, true}, "token id 10 is outside"},
      {"negative token", {negative, 0, &other, true}, "token id -1 is outside"},
  };
  for (const Case& c : cases) {
    std::vector<std::vector<float>> logits;
    absl::Status s = backend_.Forward({{ok, 0, &good, true}, c.bad}, &logits);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.what << ": " << s;
    EXPECT_NE(s.message().find(c.message), std::string::npos) << c.what << ": " << s;
  }
  EXPECT_EQ(backend_.runs(), 0);
  EXPECT_EQ(good.num_tokens(), 0);
  EXPECT_EQ(other.num_tokens(), 0);
  EXPECT_EQ(wrong_shape.num_tokens(), 0);
}

}  // namespace
}  // namespace blockserve::engine
