#include "blocks/block_cache.h"

#include <unistd.h>

#include <memory>

#include "absl/strings/str_cat.h"
#include "blocks/testing/test_stores.h"
#include "engine/prompt.h"
#include "engine/tiny_model.h"
#include "gtest/gtest.h"
#include "kv_store/shm_store.h"

namespace blockserve::blocks {
namespace {

using testing::kCapital;
using testing::kRiver;

class BlockCacheTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    engine_ = testing::LoadTinyEngine("block_cache_test_model").release();
  }
  static void TearDownTestSuite() { delete engine_; }

  void SetUp() override {
    store_ = testing::OpenTestShmStore(*engine_);
    ASSERT_NE(store_, nullptr);
    cache_ = std::make_unique<BlockCache>(*engine_, *store_);
  }
  void TearDown() override {
    cache_.reset();
    store_.reset();
  }

  static std::vector<int32_t> Tokens(const char* text) {
    return engine::PassageBlockTokens(engine_->tokenizer(), text);
  }
  static v1::PassageRef ById(const std::string& id) {
    v1::PassageRef r;
    r.set_passage_id(id);
    return r;
  }
  static v1::PassageRef ByText(const std::string& text) {
    v1::PassageRef r;
    r.set_text(text);
    return r;
  }
  PromptBlock Resolved(const v1::PassageRef& ref, bool want_kv) {
    absl::StatusOr<PromptBlock> b = cache_->Resolve({}, ref);
    EXPECT_TRUE(b.ok()) << b.status();
    if (!b.ok()) return {};
    b->want_kv = want_kv;
    return *std::move(b);
  }

  static engine::Engine* engine_;
  testing::ScopedShmStore store_;
  std::unique_ptr<BlockCache> cache_;
};

engine::Engine* BlockCacheTest::engine_ = nullptr;

bool SameKv(const engine::KvCache& a, const engine::KvCache& b) {
  if (!(a.shape() == b.shape()) || a.tokens() != b.tokens()) return false;
  const int64_t n = a.num_tokens() * a.shape().row();
  for (int64_t l = 0; l < a.shape().num_layers; ++l) {
    for (int64_t i = 0; i < n; ++i) {
      if (a.k(l)[i] != b.k(l)[i] || a.v(l)[i] != b.v(l)[i]) return false;
    }
  }
  return true;
}

TEST_F(BlockCacheTest, IngestStoresTheEncodedBlockUnderItsKeyOnce) {
  const std::vector<int32_t> tokens = Tokens(kRiver);
  absl::StatusOr<Ingested> first = cache_->Ingest("", "", tokens, false);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->key, cache_->keys().BlockKeyOf("", tokens));
  EXPECT_FALSE(first->already_cached);
  absl::StatusOr<engine::KvCache> want = engine_->EncodeBlock(tokens);
  ASSERT_TRUE(want.ok());
  EXPECT_EQ(first->kv_bytes_written, store_->ValueBytes(*want));
  absl::StatusOr<engine::KvCache> stored = store_->Get(first->key);
  ASSERT_TRUE(stored.ok()) << stored.status();
  EXPECT_TRUE(SameKv(*stored, *want));

  absl::StatusOr<Ingested> second = cache_->Ingest("", "", tokens, false);
  ASSERT_TRUE(second.ok());
  EXPECT_TRUE(second->already_cached);
  EXPECT_EQ(second->kv_bytes_written, 0u);
  EXPECT_FALSE(store_->GetPassage("").has_value());
}

// Tenant isolation (issue 14): what one namespace stored, another can neither name,
// hit, overwrite nor probe; a read namespace (a shared corpus) is opt-in.
TEST_F(BlockCacheTest, NamespacesShareNoPassageIdNoKeyAndNoCachedBlock) {
  const security::TenantScope a{"team-a", {}};
  const security::TenantScope b{"team-b", {}};
  const std::vector<int32_t> tokens = Tokens(kRiver);
  absl::StatusOr<Ingested> by_a = cache_->Ingest(a.ns, "elbe", tokens, false);
  ASSERT_TRUE(by_a.ok()) << by_a.status();
  EXPECT_FALSE(by_a->already_cached);

  // B cannot name A's passage...
  EXPECT_TRUE(absl::IsNotFound(cache_->Resolve(b, ById("elbe")).status()));
  EXPECT_TRUE(absl::IsNotFound(cache_->Resolve({}, ById("elbe")).status()));
  EXPECT_TRUE(cache_->Resolve(a, ById("elbe")).ok());
  // ...nor hit A's block with the same text inline (no faster answer)...
  absl::StatusOr<PromptBlock> inline_b = cache_->Resolve(b, ByText(kRiver));
  ASSERT_TRUE(inline_b.ok());
  EXPECT_NE(inline_b->key, by_a->key);
  std::vector<PromptBlock> blocks = {*std::move(inline_b)};
  blocks[0].want_kv = true;
  CacheStats stats;
  ASSERT_TRUE(cache_->Fetch(absl::MakeSpan(blocks), stats).ok());
  EXPECT_FALSE(blocks[0].hit);
  // ...nor learn that A stored it (no already_cached), nor overwrite A's entry.
  absl::StatusOr<Ingested> by_b = cache_->Ingest(b.ns, "elbe", Tokens(kCapital), false);
  ASSERT_TRUE(by_b.ok()) << by_b.status();
  absl::StatusOr<Ingested> b_guess = cache_->Ingest(b.ns, "", tokens, false);
  ASSERT_TRUE(b_guess.ok());
  EXPECT_FALSE(b_guess->already_cached);
  absl::StatusOr<PromptBlock> a_again = cache_->Resolve(a, ById("elbe"));
  ASSERT_TRUE(a_again.ok());
  EXPECT_EQ(a_again->key, by_a->key);

  // A tenant that reads "public" finds its passages (and their shared block); its own
  // namespace comes first.
  ASSERT_TRUE(cache_->Ingest("public", "handbook", Tokens(kCapital), false).ok());
  const security::TenantScope reader{"team-c", {"public"}};
  absl::StatusOr<PromptBlock> shared = cache_->Resolve(reader, ById("handbook"));
  ASSERT_TRUE(shared.ok()) << shared.status();
  EXPECT_EQ(shared->ns, "public");
  EXPECT_EQ(shared->key, cache_->keys().BlockKeyOf("public", Tokens(kCapital)));
  EXPECT_TRUE(absl::IsNotFound(cache_->Resolve(a, ById("handbook")).status()));
  std::vector<PromptBlock> fetched = {*std::move(shared)};
  fetched[0].want_kv = true;
  ASSERT_TRUE(cache_->Fetch(absl::MakeSpan(fetched), stats).ok());
  EXPECT_TRUE(fetched[0].hit);
  EXPECT_EQ(fetched[0].tokens, Tokens(kCapital));
}

TEST_F(BlockCacheTest, NamedIngestStoresSourceAndCatalogEntry) {
  const std::vector<int32_t> tokens = Tokens(kRiver);
  absl::StatusOr<Ingested> r = cache_->Ingest("", "elbe", tokens, false);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(store_->GetPassage("elbe"), r->key);
  absl::StatusOr<std::vector<int32_t>> source = store_->GetSource(r->key);
  ASSERT_TRUE(source.ok());
  EXPECT_EQ(*source, tokens);
}

TEST_F(BlockCacheTest, ANamedPassageTakesItsTokensAndKvFromTheStore) {
  ASSERT_TRUE(cache_->Ingest("", "elbe", Tokens(kRiver), false).ok());
  std::vector<PromptBlock> blocks = {Resolved(ById("elbe"), /*want_kv=*/true)};
  EXPECT_TRUE(blocks[0].tokens.empty());
  CacheStats stats;
  ASSERT_TRUE(cache_->Fetch(absl::MakeSpan(blocks), stats).ok());
  EXPECT_EQ(blocks[0].tokens, Tokens(kRiver));
  ASSERT_TRUE(blocks[0].hit);
  ASSERT_TRUE(blocks[0].kv.has_value());
  EXPECT_EQ(stats.kv_bytes_fetched, store_->ValueBytes(*blocks[0].kv));
  EXPECT_EQ(stats.passages_reencoded, 0);
}

TEST_F(BlockCacheTest, ANamedPassageWhoseBlockIsGoneIsEncodedFromItsSource) {
  const std::vector<int32_t> tokens = Tokens(kRiver);
  // The catalog entry and the source, but no block (as after an eviction).
  const kv_store::BlockKey key = cache_->keys().BlockKeyOf("", tokens);
  ASSERT_TRUE(store_->PutSource(key, tokens).ok());
  ASSERT_TRUE(store_->PutPassage("elbe", key).ok());

  std::vector<PromptBlock> blocks = {Resolved(ById("elbe"), /*want_kv=*/true)};
  CacheStats stats;
  ASSERT_TRUE(cache_->Fetch(absl::MakeSpan(blocks), stats).ok());
  EXPECT_EQ(blocks[0].tokens, tokens);
  EXPECT_FALSE(blocks[0].hit);
  EXPECT_EQ(stats.passages_reencoded, 1);
  ASSERT_TRUE(cache_->EncodeMisses(absl::MakeSpan(blocks), /*write_back=*/true, stats).ok());
  ASSERT_TRUE(blocks[0].kv.has_value());
  EXPECT_GT(stats.encode_flops, 0);
  EXPECT_EQ(stats.kv_bytes_written, store_->ValueBytes(*blocks[0].kv));
  EXPECT_TRUE(store_->Contains(key));
}

TEST_F(BlockCacheTest, ANamedPassageWithNeitherBlockNorSourceIsNotFound) {
  ASSERT_TRUE(store_->PutPassage("gone", cache_->keys().BlockKeyOf("", Tokens(kRiver))).ok());
  std::vector<PromptBlock> blocks = {Resolved(ById("gone"), /*want_kv=*/true)};
  CacheStats stats;
  const absl::Status s = cache_->Fetch(absl::MakeSpan(blocks), stats);
  EXPECT_TRUE(absl::IsNotFound(s)) << s;
  EXPECT_NE(s.message().find("ingest the passage again"), std::string_view::npos) << s;
}

TEST_F(BlockCacheTest, AnUnknownPassageIdIsNotFound) {
  EXPECT_TRUE(absl::IsNotFound(cache_->Resolve({}, ById("nobody")).status()));
}

// A Redis that is down cannot say whether a passage id exists: the answer is
// UNAVAILABLE (retry), not NOT_FOUND (which tells the client to ingest again).
TEST_F(BlockCacheTest, APassageIdAskedOfAStoreThatIsDownIsUnavailable) {
  testing::TestRedis redis = testing::StartTestRedis(*engine_);
  ASSERT_NE(redis.store, nullptr);
  BlockCache cache(*engine_, *redis.store);
  ASSERT_TRUE(cache.Ingest("", "elbe", Tokens(kRiver), false).ok());
  EXPECT_TRUE(cache.Resolve({}, ById("elbe")).ok());
  EXPECT_TRUE(absl::IsNotFound(cache.Resolve({}, ById("nobody")).status()));

  redis.server->Stop();
  const absl::Status down = cache.Resolve({}, ById("elbe")).status();
  EXPECT_TRUE(absl::IsUnavailable(down)) << down;
}

// Another passage's block under a named passage's key (written behind the store's
// back): never served; the passage is encoded again from its source, the right block
// is written back, and the next request hits it.
TEST_F(BlockCacheTest, AForeignBlockUnderANamedPassagesKeyIsHealedFromItsSource) {
  ASSERT_TRUE(cache_->Ingest("", "elbe", Tokens(kRiver), false).ok());
  const kv_store::BlockKey river_key = cache_->keys().BlockKeyOf("", Tokens(kRiver));
  absl::StatusOr<engine::KvCache> capital = engine_->EncodeBlock(Tokens(kCapital));
  ASSERT_TRUE(capital.ok());
  ASSERT_TRUE(store_->Remove(river_key).ok());
  ASSERT_TRUE(store_->Put(river_key, *capital).ok());

  std::vector<PromptBlock> blocks = {Resolved(ById("elbe"), /*want_kv=*/true)};
  CacheStats stats;
  ASSERT_TRUE(cache_->Fetch(absl::MakeSpan(blocks), stats).ok());
  EXPECT_EQ(blocks[0].tokens, Tokens(kRiver));
  EXPECT_FALSE(blocks[0].hit);
  EXPECT_EQ(stats.corrupt_values, 1);
  EXPECT_EQ(stats.passages_reencoded, 1);
  ASSERT_TRUE(cache_->EncodeMisses(absl::MakeSpan(blocks), /*write_back=*/true, stats).ok());

  std::vector<PromptBlock> again = {Resolved(ById("elbe"), /*want_kv=*/true)};
  CacheStats healed;
  ASSERT_TRUE(cache_->Fetch(absl::MakeSpan(again), healed).ok());
  EXPECT_TRUE(again[0].hit);
  EXPECT_EQ(again[0].kv->tokens(), Tokens(kRiver));
  EXPECT_EQ(healed.corrupt_values, 0);
}

// kv_load_failure_policy: a block the store should have supplied and did not is
// encoded again by default (RECOMPUTE) and fails the request with FAIL; a block that
// was never cached is an ordinary miss under both.
TEST_F(BlockCacheTest, LoadFailuresAreRecomputedOrFailAsThePolicySays) {
  const std::vector<int32_t> tokens = Tokens(kRiver);
  const kv_store::BlockKey key = cache_->keys().BlockKeyOf("", tokens);
  ASSERT_TRUE(store_->PutSource(key, tokens).ok());
  ASSERT_TRUE(store_->PutPassage("elbe", key).ok());  // its block evicted
  for (LoadFailurePolicy policy : {LoadFailurePolicy::kRecompute, LoadFailurePolicy::kFail}) {
    std::vector<PromptBlock> blocks = {Resolved(ById("elbe"), /*want_kv=*/true),
                                       Resolved(ByText(kCapital), /*want_kv=*/true)};
    CacheStats stats;
    const absl::Status s = cache_->Fetch(absl::MakeSpan(blocks), stats, policy);
    EXPECT_EQ(stats.load_failures, 1);  // the evicted passage; the new text is a miss
    if (policy == LoadFailurePolicy::kRecompute) {
      EXPECT_TRUE(s.ok()) << s;
      EXPECT_EQ(blocks[0].tokens, tokens);
    } else {
      EXPECT_TRUE(absl::IsUnavailable(s)) << s;
      EXPECT_NE(s.message().find("\"elbe\""), std::string_view::npos) << s;
    }
  }
  // Not wanting the KV (full mode) is not a load failure: the tokens come from the source.
  std::vector<PromptBlock> full = {Resolved(ById("elbe"), /*want_kv=*/false)};
  CacheStats stats;
  EXPECT_TRUE(cache_->Fetch(absl::MakeSpan(full), stats, LoadFailurePolicy::kFail).ok());
  EXPECT_EQ(stats.load_failures, 0);

  // A foreign value under an inline block's key.
  absl::StatusOr<engine::KvCache> river = engine_->EncodeBlock(tokens);
  ASSERT_TRUE(river.ok());
  const kv_store::BlockKey capital_key = cache_->keys().BlockKeyOf("", Tokens(kCapital));
  ASSERT_TRUE(store_->Put(capital_key, *river).ok());
  std::vector<PromptBlock> inline_block = {Resolved(ByText(kCapital), /*want_kv=*/true)};
  const absl::Status foreign =
      cache_->Fetch(absl::MakeSpan(inline_block), stats, LoadFailurePolicy::kFail);
  EXPECT_TRUE(absl::IsUnavailable(foreign)) << foreign;
  EXPECT_NE(foreign.message().find("another block's"), std::string_view::npos) << foreign;
}

TEST_F(BlockCacheTest, AStoreThatFailsAGetIsALoadFailure) {
  testing::TestRedis redis = testing::StartTestRedis(*engine_);
  ASSERT_NE(redis.store, nullptr);
  BlockCache cache(*engine_, *redis.store);
  absl::StatusOr<PromptBlock> b = cache.Resolve({}, ByText(kRiver));
  ASSERT_TRUE(b.ok());
  b->want_kv = true;
  redis.server->Stop();
  for (LoadFailurePolicy policy : {LoadFailurePolicy::kRecompute, LoadFailurePolicy::kFail}) {
    std::vector<PromptBlock> blocks = {*b};
    CacheStats stats;
    const absl::Status s = cache.Fetch(absl::MakeSpan(blocks), stats, policy);
    EXPECT_EQ(stats.load_failures, 1);
    EXPECT_EQ(s.ok(), policy == LoadFailurePolicy::kRecompute) << s;
    if (!s.ok()) EXPECT_NE(s.message().find("KV store failed"), std::string_view::npos) << s;
  }
}

TEST_F(BlockCacheTest, ANamedPassageWhoseBlockAndSourceAreBothWrongIsNotFound) {
  const kv_store::BlockKey capital_key = cache_->keys().BlockKeyOf("", Tokens(kCapital));
  absl::StatusOr<engine::KvCache> river = engine_->EncodeBlock(Tokens(kRiver));
  ASSERT_TRUE(river.ok());
  ASSERT_TRUE(store_->Put(capital_key, *river).ok());
  ASSERT_TRUE(store_->PutSource(capital_key, Tokens(kRiver)).ok());
  ASSERT_TRUE(store_->PutPassage("capital", capital_key).ok());
  std::vector<PromptBlock> blocks = {Resolved(ById("capital"), /*want_kv=*/true)};
  CacheStats stats;
  EXPECT_TRUE(absl::IsNotFound(cache_->Fetch(absl::MakeSpan(blocks), stats)));
  EXPECT_EQ(stats.corrupt_values, 2);
}

TEST_F(BlockCacheTest, ReingestReplacesAForeignValueInsteadOfSayingAlreadyCached) {
  const kv_store::BlockKey river_key = cache_->keys().BlockKeyOf("", Tokens(kRiver));
  absl::StatusOr<engine::KvCache> capital = engine_->EncodeBlock(Tokens(kCapital));
  ASSERT_TRUE(capital.ok());
  ASSERT_TRUE(store_->Put(river_key, *capital).ok());

  absl::StatusOr<Ingested> r = cache_->Ingest("", "elbe", Tokens(kRiver), false);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->already_cached);
  EXPECT_TRUE(r->repaired);
  absl::StatusOr<engine::KvCache> stored = store_->Get(river_key);
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->tokens(), Tokens(kRiver));
  EXPECT_TRUE(cache_->Ingest("", "elbe", Tokens(kRiver), false)->already_cached);
}

TEST_F(BlockCacheTest, AForeignValueUnderAnInlineBlocksKeyIsAMissAndRecomputed) {
  const kv_store::BlockKey capital_key = cache_->keys().BlockKeyOf("", Tokens(kCapital));
  absl::StatusOr<engine::KvCache> river = engine_->EncodeBlock(Tokens(kRiver));
  ASSERT_TRUE(river.ok());
  ASSERT_TRUE(store_->Put(capital_key, *river).ok());

  std::vector<PromptBlock> blocks = {Resolved(ByText(kCapital), /*want_kv=*/true)};
  CacheStats stats;
  ASSERT_TRUE(cache_->Fetch(absl::MakeSpan(blocks), stats).ok());
  EXPECT_FALSE(blocks[0].hit);
  EXPECT_EQ(stats.corrupt_values, 1);
  EXPECT_FALSE(store_->Contains(capital_key)) << "the foreign value was not removed";
  ASSERT_TRUE(cache_->EncodeMisses(absl::MakeSpan(blocks), /*write_back=*/false, stats).ok());
  absl::StatusOr<engine::KvCache> want = engine_->EncodeBlock(Tokens(kCapital));
  ASSERT_TRUE(want.ok());
  ASSERT_TRUE(blocks[0].kv.has_value());
  EXPECT_TRUE(SameKv(*blocks[0].kv, *want));
}

TEST_F(BlockCacheTest, WithoutWriteBackAMissIsEncodedButNotStored) {
  std::vector<PromptBlock> blocks = {Resolved(ByText(kRiver), /*want_kv=*/true)};
  CacheStats stats;
  ASSERT_TRUE(cache_->Fetch(absl::MakeSpan(blocks), stats).ok());
  ASSERT_TRUE(cache_->EncodeMisses(absl::MakeSpan(blocks), /*write_back=*/false, stats).ok());
  EXPECT_TRUE(blocks[0].kv.has_value());
  EXPECT_EQ(stats.kv_bytes_written, 0u);
  EXPECT_FALSE(store_->Contains(blocks[0].key));
}

TEST_F(BlockCacheTest, ABlockThatDoesNotWantItsKvIsNeitherFetchedNorEncoded) {
  ASSERT_TRUE(cache_->Ingest("", "", Tokens(kRiver), false).ok());
  std::vector<PromptBlock> blocks = {Resolved(ByText(kRiver), /*want_kv=*/false)};
  CacheStats stats;
  ASSERT_TRUE(cache_->Fetch(absl::MakeSpan(blocks), stats).ok());
  ASSERT_TRUE(cache_->EncodeMisses(absl::MakeSpan(blocks), true, stats).ok());
  EXPECT_FALSE(blocks[0].kv.has_value());
  EXPECT_EQ(stats.kv_bytes_fetched, 0u);
  EXPECT_EQ(stats.encode_flops, 0);
}

TEST_F(BlockCacheTest, SystemPromptIsABlockAndAnEmptyOneIsNone) {
  std::optional<PromptBlock> system = cache_->SystemBlock({}, "You answer briefly.");
  ASSERT_TRUE(system.has_value());
  EXPECT_EQ(system->tokens, engine::SystemBlockTokens(engine_->tokenizer(), "You answer briefly."));
  EXPECT_EQ(system->key, cache_->keys().BlockKeyOf("", system->tokens));
  EXPECT_EQ(cache_->SystemBlock({}, "").has_value(),
            !engine::SystemBlockTokens(engine_->tokenizer(), "").empty());
}

}  // namespace
}  // namespace blockserve::blocks
