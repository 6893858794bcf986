#include "passage_encoder/encoder_core.h"

#include <unistd.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "blocks/testing/test_stores.h"
#include "engine/prompt.h"
#include "engine/tiny_model.h"
#include "gtest/gtest.h"
#include "kv_store/codec.h"
#include "kv_store/shm_store.h"

namespace blockserve::passage_encoder {
namespace {

using blocks::testing::kCapital;
using blocks::testing::kRiver;

class EncoderCoreTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    engine_ = blocks::testing::LoadTinyEngine("encoder_core_test_model").release();
  }
  static void TearDownTestSuite() { delete engine_; }

  void SetUp() override {
    store_ = blocks::testing::OpenTestShmStore(*engine_);
    ASSERT_NE(store_, nullptr);
    cache_ = std::make_unique<blocks::BlockCache>(*engine_, *store_);
    core_ = std::make_unique<EncoderCore>(*cache_, metrics_,
                                          EncoderOptions{.max_batch_passages = 8});
  }
  void TearDown() override {
    core_.reset();
    cache_.reset();
    store_.reset();
  }

  static v1::Passage Text(const std::string& id, const std::string& text) {
    v1::Passage p;
    p.set_id(id);
    p.set_text(text);
    return p;
  }
  static v1::Passage Ids(const std::string& id, const std::vector<int32_t>& ids) {
    v1::Passage p;
    p.set_id(id);
    for (int32_t t : ids) p.mutable_token_ids()->add_ids(t);
    return p;
  }
  kv_store::BlockKey KeyOf(const v1::EncodeResult& r) {
    absl::StatusOr<kv_store::BlockKey> key = kv_store::BlockKey::FromHex(r.content_key());
    EXPECT_TRUE(key.ok()) << r.DebugString();
    return key.ok() ? *key : kv_store::BlockKey{};
  }
  double CounterValue(const std::string& name) {
    return metrics_.GetCounter(name, "")->value();
  }

  static engine::Engine* engine_;
  MetricsRegistry metrics_;
  blocks::testing::ScopedShmStore store_;
  std::unique_ptr<blocks::BlockCache> cache_;
  std::unique_ptr<EncoderCore> core_;
};

engine::Engine* EncoderCoreTest::engine_ = nullptr;

void ExpectSameKv(const engine::KvCache& got, const engine::KvCache& want) {
  ASSERT_EQ(got.shape(), want.shape());
  ASSERT_EQ(got.tokens(), want.tokens());
  EXPECT_EQ(got.start_position(), 0);
  const int64_t n = want.num_tokens() * want.shape().row();
  for (int64_t l = 0; l < want.shape().num_layers; ++l) {
    for (int64_t i = 0; i < n; ++i) {
      ASSERT_EQ(got.k(l)[i], want.k(l)[i]) << "layer " << l << " K element " << i;
      ASSERT_EQ(got.v(l)[i], want.v(l)[i]) << "layer " << l << " V element " << i;
    }
  }
}

TEST_F(EncoderCoreTest, IngestedPassageIsStoredExactlyAsEncodeBlockComputesIt) {
  const v1::EncodeResult r = core_->Encode(Text("elbe", kRiver), 0, false);
  ASSERT_EQ(r.status().code(), 0) << r.status().message();

  const std::vector<int32_t> tokens = engine::PassageBlockTokens(engine_->tokenizer(), kRiver);
  absl::StatusOr<engine::KvCache> want = engine_->EncodeBlock(tokens);
  ASSERT_TRUE(want.ok());
  const kv_store::BlockKey key = kv_store::MakeBlockKey(engine_->model_fingerprint(), tokens);
  EXPECT_EQ(r.content_key(), key.Hex());
  EXPECT_EQ(r.token_count(), tokens.size());
  EXPECT_FALSE(r.already_cached());
  EXPECT_EQ(r.kv_bytes_written(),
            kv_store::EncodedValueBytes(engine_->kv_shape(), tokens.size(), engine::DType::kF32));
  absl::StatusOr<engine::KvCache> stored = store_->Get(key);
  ASSERT_TRUE(stored.ok()) << stored.status();
  ExpectSameKv(*stored, *want);
}

TEST_F(EncoderCoreTest, ReingestingTheSameTextSkipsTheEncode) {
  const v1::EncodeResult first = core_->Encode(Text("a", kRiver), 0, false);
  const v1::EncodeResult second = core_->Encode(Text("b", kRiver), 1, false);
  ASSERT_EQ(second.status().code(), 0);
  EXPECT_TRUE(second.already_cached());
  EXPECT_EQ(second.content_key(), first.content_key());
  EXPECT_EQ(second.token_count(), first.token_count());
  EXPECT_EQ(second.encode_ms(), 0);
  EXPECT_EQ(second.kv_bytes_written(), 0u);
  EXPECT_EQ(CounterValue("blockserve_encoder_cache_hit_skips_total"), 1);
  EXPECT_EQ(CounterValue("blockserve_encoder_tokens_encoded_total"), first.token_count());
}

TEST_F(EncoderCoreTest, ReingestOverAnotherBlocksValueRepairsAndCountsIt) {
  const std::vector<int32_t> river = engine::PassageBlockTokens(engine_->tokenizer(), kRiver);
  const kv_store::BlockKey key = kv_store::MakeBlockKey(engine_->model_fingerprint(), river);
  absl::StatusOr<engine::KvCache> capital =
      engine_->EncodeBlock(engine::PassageBlockTokens(engine_->tokenizer(), kCapital));
  ASSERT_TRUE(capital.ok());
  ASSERT_TRUE(store_->Put(key, *capital).ok());
  const v1::EncodeResult r = core_->Encode(Text("elbe", kRiver), 0, false);
  ASSERT_EQ(r.status().code(), 0) << r.status().message();
  EXPECT_FALSE(r.already_cached());
  EXPECT_EQ(CounterValue("blockserve_encoder_corrupt_blocks_total"), 1);
  EXPECT_EQ(store_->Get(key)->tokens(), river);
}

// The proto: a store that does not take the write fails the whole call (UNAVAILABLE),
// never OK with per-item errors that a batch client may not read.
TEST_F(EncoderCoreTest, AStoreThatIsDownFailsTheWholeBatch) {
  blocks::testing::TestRedis redis = blocks::testing::StartTestRedis(*engine_);
  ASSERT_NE(redis.store, nullptr);
  blocks::BlockCache cache(*engine_, *redis.store);
  EncoderCore core(cache, metrics_, {});
  v1::EncodePassagesRequest request;
  *request.add_passages() = Text("elbe", kRiver);
  *request.add_passages() = Text("paris", kCapital);
  ASSERT_TRUE(core.EncodeBatch(request).ok());

  redis.server->Stop();
  request.set_force_reencode(true);
  const absl::Status down = core.EncodeBatch(request).status();
  EXPECT_TRUE(absl::IsUnavailable(down)) << down;
  EXPECT_NE(down.message().find("elbe"), std::string_view::npos) << down;
}

TEST_F(EncoderCoreTest, ForceReencodeComputesACachedPassageAgain) {
  core_->Encode(Text("a", kRiver), 0, false);
  const v1::EncodeResult again = core_->Encode(Text("a", kRiver), 0, /*force_reencode=*/true);
  ASSERT_EQ(again.status().code(), 0);
  EXPECT_FALSE(again.already_cached());
  EXPECT_EQ(CounterValue("blockserve_encoder_tokens_encoded_total"), 2 * again.token_count());
}

TEST_F(EncoderCoreTest, PassageIdMapsToTheContentKeyAndLastWriteWins) {
  const v1::EncodeResult river = core_->Encode(Text("doc", kRiver), 0, false);
  EXPECT_EQ(store_->GetPassage("doc"), KeyOf(river));
  const v1::EncodeResult capital = core_->Encode(Text("doc", kCapital), 1, false);
  EXPECT_EQ(store_->GetPassage("doc"), KeyOf(capital));
  EXPECT_NE(river.content_key(), capital.content_key());
}

TEST_F(EncoderCoreTest, AnonymousPassageIsCachedWithoutACatalogEntry) {
  const v1::EncodeResult r = core_->Encode(Text("", kRiver), 0, false);
  ASSERT_EQ(r.status().code(), 0);
  EXPECT_TRUE(store_->Contains(KeyOf(r)));
  EXPECT_FALSE(store_->GetPassage("").has_value());
}

TEST_F(EncoderCoreTest, TokenIdsAreEncodedAsGiven) {
  const std::vector<int32_t> ids = {5, 6, 7, 8};
  const v1::EncodeResult r = core_->Encode(Ids("ids", ids), 0, false);
  ASSERT_EQ(r.status().code(), 0) << r.status().message();
  EXPECT_EQ(r.content_key(), kv_store::MakeBlockKey(engine_->model_fingerprint(), ids).Hex());
  absl::StatusOr<engine::KvCache> stored = store_->Get(KeyOf(r));
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->tokens(), ids);
}

TEST_F(EncoderCoreTest, BadPassagesFailAloneWhileGoodOnesInTheBatchSucceed) {
  const int32_t vocab = engine_->config().vocab_size;
  v1::EncodePassagesRequest request;
  *request.add_passages() = Text("good-text", kRiver);
  *request.add_passages() = Text("empty", "");
  *request.add_passages() = Ids("out-of-vocab", {1, vocab});
  request.add_passages()->set_id("no-content");
  *request.add_passages() = Text("bad\nid", kCapital);
  *request.add_passages() = Text("bad-utf8", "caf\xC3");
  *request.add_passages() = Ids("good-ids", {1, 2, 3});

  absl::StatusOr<v1::EncodePassagesResponse> response = core_->EncodeBatch(request);
  ASSERT_TRUE(response.ok()) << response.status();
  ASSERT_EQ(response->results_size(), 7);
  const int kInvalid = static_cast<int>(absl::StatusCode::kInvalidArgument);
  const std::vector<int> want_codes = {0, kInvalid, kInvalid, kInvalid, kInvalid, kInvalid, 0};
  for (int i = 0; i < 7; ++i) {
    const v1::EncodeResult& r = response->results(i);
    EXPECT_EQ(r.index(), static_cast<uint32_t>(i));
    EXPECT_EQ(r.id(), request.passages(i).id());
    EXPECT_EQ(r.status().code(), want_codes[i]) << i << ": " << r.status().message();
    if (want_codes[i] != 0) {
      EXPECT_FALSE(r.status().message().empty());
      EXPECT_TRUE(r.content_key().empty());
      EXPECT_EQ(r.token_count(), 0u);
    }
  }
  EXPECT_TRUE(store_->GetPassage("good-text").has_value());
  EXPECT_TRUE(store_->GetPassage("good-ids").has_value());
  EXPECT_FALSE(store_->GetPassage("out-of-vocab").has_value());
  EXPECT_EQ(response->stats().passages_ok(), 2u);
  EXPECT_EQ(response->stats().passages_failed(), 5u);
  EXPECT_EQ(response->stats().tokens_encoded(),
            response->results(0).token_count() + response->results(6).token_count());
  EXPECT_EQ(response->model_fingerprint(), core_->fingerprint_hex());
}

TEST_F(EncoderCoreTest, PassageOfContextLengthTokensIsInvalidArgument) {
  const std::vector<int32_t> ids(engine_->config().max_position_embeddings, 1);
  const v1::EncodeResult r = core_->Encode(Ids("long", ids), 0, false);
  EXPECT_EQ(r.status().code(), static_cast<int>(absl::StatusCode::kInvalidArgument));
}

TEST_F(EncoderCoreTest, BatchOverTheLimitIsInvalidArgumentAsAWhole) {
  v1::EncodePassagesRequest request;
  for (int i = 0; i < 9; ++i) *request.add_passages() = Text("", kRiver);
  EXPECT_EQ(core_->EncodeBatch(request).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(CounterValue("blockserve_encoder_passages_total"), 0);
}

TEST_F(EncoderCoreTest, EmptyBatchIsOk) {
  absl::StatusOr<v1::EncodePassagesResponse> r = core_->EncodeBatch({});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->results_size(), 0);
}

}  // namespace
}  // namespace blockserve::passage_encoder
