#include "kv_store/tiered/tiered_store.h"

#include <unistd.h>

#include <atomic>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kv_store/redis/redis_store.h"
#include "kv_store/redis/testing/redis_server.h"
#include "kv_store/shm_store.h"

namespace blockserve::kv_store {
namespace {

using ::blockserve::kv_store::testing::RedisServer;

constexpr uint64_t kFingerprint = 0x7133'2ed0'0000'0001ULL;
constexpr engine::KvShape kShape{.num_layers = 2, .num_kv_heads = 2, .head_dim = 8};
const CodecOptions kCodec{
    .model_fingerprint = kFingerprint, .shape = kShape, .dtype = engine::DType::kF32};

engine::KvCache MakeBlock(int seed) {
  engine::KvCache kv(kShape);
  kv.Append({seed, seed + 1, seed + 2});
  for (int64_t l = 0; l < kShape.num_layers; ++l) {
    for (int64_t i = 0; i < 3 * kShape.row(); ++i) {
      kv.k(l)[i] = static_cast<float>(seed) + 0.25f * static_cast<float>(i);
      kv.v(l)[i] = -static_cast<float>(seed) - 0.5f * static_cast<float>(i + l);
    }
  }
  return kv;
}

BlockKey KeyFor(const engine::KvCache& kv) { return MakeBlockKey(kFingerprint, kv.tokens()); }

void ExpectSameBlock(const engine::KvCache& actual, const engine::KvCache& expected) {
  ASSERT_EQ(actual.tokens(), expected.tokens());
  for (int64_t l = 0; l < kShape.num_layers; ++l) {
    for (int64_t i = 0; i < expected.num_tokens() * kShape.row(); ++i) {
      ASSERT_EQ(actual.k(l)[i], expected.k(l)[i]);
      ASSERT_EQ(actual.v(l)[i], expected.v(l)[i]);
    }
  }
}

// A tiered store over a fresh shared-memory segment and a real redis-server, plus a
// second Redis client (`peer_`, another node) and a second handle on the segment
// (`local_view_`) to look at each tier from outside.
class TieredStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<RedisServer>> server = RedisServer::Start();
    ASSERT_TRUE(server.ok()) << "these tests need a real redis-server: " << server.status();
    server_ = *std::move(server);

    static std::atomic<int> counter{0};
    shm_name_ = absl::StrCat("/bs-tiered-test-", getpid(), "-", counter++);
    ShmStoreOptions shm;
    shm.name = shm_name_;
    shm.capacity_bytes = 4 << 20;
    shm.max_entries = 256;
    shm.max_passages = 256;
    shm.codec = kCodec;
    absl::StatusOr<std::unique_ptr<ShmStore>> local = ShmStore::Open(shm);
    ASSERT_TRUE(local.ok()) << local.status();
    absl::StatusOr<std::unique_ptr<ShmStore>> local_view = ShmStore::Open(shm);
    ASSERT_TRUE(local_view.ok()) << local_view.status();
    local_view_ = *std::move(local_view);

    RedisStoreOptions redis;
    redis.port = server_->port();
    redis.retry_backoff = absl::Milliseconds(100);
    redis.codec = kCodec;
    absl::StatusOr<std::unique_ptr<RedisStore>> remote = RedisStore::Open(redis);
    ASSERT_TRUE(remote.ok()) << remote.status();
    absl::StatusOr<std::unique_ptr<RedisStore>> peer = RedisStore::Open(redis);
    ASSERT_TRUE(peer.ok()) << peer.status();
    peer_ = *std::move(peer);

    store_ = std::make_unique<TieredStore>(*std::move(local), *std::move(remote));
  }

  void TearDown() override { ShmStore::Remove(shm_name_).IgnoreError(); }

  std::unique_ptr<RedisServer> server_;
  std::string shm_name_;
  std::unique_ptr<ShmStore> local_view_;
  std::unique_ptr<RedisStore> peer_;
  std::unique_ptr<TieredStore> store_;
};

TEST_F(TieredStoreTest, RemoteHitIsPromotedSoTheNextGetIsALocalHit) {
  const engine::KvCache block = MakeBlock(10);
  ASSERT_TRUE(peer_->Put(KeyFor(block), block).ok());

  absl::StatusOr<engine::KvCache> first = store_->Get(KeyFor(block));
  absl::StatusOr<engine::KvCache> second = store_->Get(KeyFor(block));

  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE(second.ok()) << second.status();
  ExpectSameBlock(*first, block);
  ExpectSameBlock(*second, block);
  EXPECT_EQ(store_->local_metrics().misses, 1);
  EXPECT_EQ(store_->local_metrics().hits, 1);
  EXPECT_EQ(store_->remote_metrics().hits, 1);
  EXPECT_EQ(store_->metrics().hits, 2);
  EXPECT_TRUE(local_view_->Contains(KeyFor(block)));
}

TEST_F(TieredStoreTest, SourceIsWrittenToBothTiersAndFoundRemotelyWhenLocalLostIt) {
  const engine::KvCache block = MakeBlock(10);
  ASSERT_TRUE(store_->PutSource(KeyFor(block), block.tokens()).ok());
  EXPECT_TRUE(local_view_->GetSource(KeyFor(block)).ok());
  EXPECT_TRUE(peer_->GetSource(KeyFor(block)).ok());

  const engine::KvCache remote_only = MakeBlock(11);
  ASSERT_TRUE(peer_->PutSource(KeyFor(remote_only), remote_only.tokens()).ok());
  absl::StatusOr<std::vector<int32_t>> tokens = store_->GetSource(KeyFor(remote_only));
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(*tokens, remote_only.tokens());
  EXPECT_TRUE(local_view_->GetSource(KeyFor(remote_only)).ok()) << "not copied to the local tier";
}

TEST_F(TieredStoreTest, PutWritesBothTiers) {
  const engine::KvCache block = MakeBlock(20);

  ASSERT_TRUE(store_->Put(KeyFor(block), block).ok());

  EXPECT_TRUE(local_view_->Contains(KeyFor(block)));
  absl::StatusOr<engine::KvCache> remote = peer_->Get(KeyFor(block));
  ASSERT_TRUE(remote.ok()) << remote.status();
  ExpectSameBlock(*remote, block);
  EXPECT_EQ(store_->local_metrics().puts, 1);
  EXPECT_EQ(store_->remote_metrics().puts, 1);
  EXPECT_EQ(store_->metrics().puts, 1);
}

// Reads keep working on this node; a write is stored locally but reported UNAVAILABLE,
// since the other nodes (which read only Redis) will not see it.
TEST_F(TieredStoreTest, WithRedisDownBlocksAreStillServedAndStoredLocallyButWritesFail) {
  const engine::KvCache cached = MakeBlock(30);
  const engine::KvCache written_during_outage = MakeBlock(40);
  ASSERT_TRUE(store_->Put(KeyFor(cached), cached).ok());
  server_->Stop();

  absl::StatusOr<engine::KvCache> got = store_->Get(KeyFor(cached));
  const absl::Status put = store_->Put(KeyFor(written_during_outage), written_during_outage).status();
  absl::StatusOr<engine::KvCache> got_new = store_->Get(KeyFor(written_during_outage));
  absl::StatusOr<engine::KvCache> absent = store_->Get(KeyFor(MakeBlock(50)));

  ASSERT_TRUE(got.ok()) << got.status();
  ExpectSameBlock(*got, cached);
  EXPECT_TRUE(absl::IsUnavailable(put)) << put;
  EXPECT_TRUE(got_new.ok()) << got_new.status();
  // Absent here, and Redis cannot say: unavailable (a miss a caller can tell apart).
  EXPECT_TRUE(absl::IsUnavailable(absent.status())) << absent.status();
  EXPECT_EQ(store_->remote_metrics().dropped_puts, 1);
  EXPECT_EQ(store_->metrics().dropped_puts, 1);
  EXPECT_EQ(store_->metrics().hits, 2);
  EXPECT_EQ(store_->metrics().misses, 1);
}

TEST_F(TieredStoreTest, GetManyAsksRedisOnlyForLocalMissesInOneBatchAndKeepsOrder) {
  std::vector<engine::KvCache> blocks;
  std::vector<BlockKey> keys;
  for (int i = 0; i < 10; ++i) {
    blocks.push_back(MakeBlock(100 + 10 * i));
    keys.push_back(KeyFor(blocks.back()));
  }
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(store_->Put(keys[i], blocks[i]).ok());  // both tiers
  for (int i = 4; i < 8; ++i) ASSERT_TRUE(peer_->Put(keys[i], blocks[i]).ok());   // remote only
  // Blocks 8 and 9 are nowhere.

  std::vector<absl::StatusOr<engine::KvCache>> got = store_->GetMany(keys);

  ASSERT_EQ(got.size(), 10u);
  for (int i = 0; i < 8; ++i) {
    ASSERT_TRUE(got[i].ok()) << "block " << i << ": " << got[i].status();
    ExpectSameBlock(*got[i], blocks[i]);
  }
  EXPECT_TRUE(absl::IsNotFound(got[8].status()));
  EXPECT_TRUE(absl::IsNotFound(got[9].status()));
  EXPECT_EQ(store_->local_metrics().hits, 4);
  EXPECT_EQ(store_->remote_metrics().hits, 4);
  EXPECT_EQ(store_->remote_metrics().misses, 2);  // the local hits never reached Redis
  EXPECT_EQ(store_->local_metrics().puts, 8);     // 4 written + 4 promoted
}

TEST_F(TieredStoreTest, CatalogEntryFromRedisIsCopiedLocallyAndOutlivesAnOutage) {
  const BlockKey key = KeyFor(MakeBlock(60));
  ASSERT_TRUE(peer_->PutPassage("doc-7", key).ok());

  EXPECT_EQ(store_->GetPassage("doc-7"), key);
  server_->Stop();

  EXPECT_EQ(store_->GetPassage("doc-7"), key);
  EXPECT_EQ(local_view_->GetPassage("doc-7"), key);
  EXPECT_EQ(store_->GetPassage("doc-8"), std::nullopt);
}

TEST_F(TieredStoreTest, PutPassageWritesBothCatalogs) {
  const BlockKey key = KeyFor(MakeBlock(70));

  ASSERT_TRUE(store_->PutPassage("doc-9", key).ok());

  EXPECT_EQ(local_view_->GetPassage("doc-9"), key);
  EXPECT_EQ(peer_->GetPassage("doc-9"), key);
}

TEST_F(TieredStoreTest, CorruptRemoteValueIsAMissAndIsNotPromoted) {
  const engine::KvCache block = MakeBlock(80);
  ASSERT_TRUE(server_->Call({"SET", peer_->BlockRedisKey(KeyFor(block)), "garbage"}).ok());

  absl::StatusOr<engine::KvCache> got = store_->Get(KeyFor(block));

  EXPECT_TRUE(absl::IsNotFound(got.status())) << got.status();
  EXPECT_EQ(store_->metrics().corrupt, 1);
  EXPECT_FALSE(local_view_->Contains(KeyFor(block)));
}

}  // namespace
}  // namespace blockserve::kv_store
