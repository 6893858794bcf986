// RedisStore on a real Redis Cluster (RedisCluster: redis-server processes on loopback).
#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kv_store/codec.h"
#include "kv_store/redis/cluster_protocol.h"
#include "kv_store/redis/redis_store.h"
#include "kv_store/redis/testing/redis_server.h"
#include "kv_store/redis/testing/test_util.h"

namespace blockserve::kv_store {
namespace {

using ::blockserve::kv_store::testing::MakeBlock;
using ::blockserve::kv_store::testing::OpenStore;
using ::blockserve::kv_store::testing::RedisCluster;
using ::blockserve::kv_store::testing::RedisClusterOptions;
using ::blockserve::kv_store::testing::RedisServer;
using ::blockserve::kv_store::testing::SameBlock;
using ::testing::SizeIs;

constexpr uint64_t kFingerprint = 0xc1a5'7e12'0000'0001ULL;
constexpr engine::KvShape kShape{.num_layers = 2, .num_kv_heads = 2, .head_dim = 8};

BlockKey KeyFor(const engine::KvCache& kv) { return MakeBlockKey(kFingerprint, kv.tokens()); }

class RedisClusterTest : public ::testing::Test {
 protected:
  void StartCluster(RedisClusterOptions options = {}) {
    absl::StatusOr<std::unique_ptr<RedisCluster>> cluster = RedisCluster::Start(options);
    ASSERT_TRUE(cluster.ok()) << "these tests need redis-server and redis-cli: "
                              << cluster.status();
    cluster_ = *std::move(cluster);
  }

  RedisStoreOptions Options(engine::KvShape shape = kShape) const {
    RedisStoreOptions o;
    o.cluster_seeds = cluster_->SeedAddresses();
    o.connect_timeout = absl::Milliseconds(200);
    o.op_timeout = absl::Seconds(1);
    o.retry_backoff = absl::Milliseconds(100);
    o.max_retry_backoff = absl::Milliseconds(800);
    o.codec = {.model_fingerprint = kFingerprint, .shape = shape, .dtype = engine::DType::kF32};
    return o;
  }

  // The cluster node serving a Redis key, by the cluster's own CLUSTER KEYSLOT.
  int MasterOf(const std::string& redis_key) const {
    absl::StatusOr<int> master = cluster_->MasterOfKey(redis_key);
    EXPECT_TRUE(master.ok()) << master.status();
    return master.value_or(-1);
  }

  std::unique_ptr<RedisCluster> cluster_;
};

TEST_F(RedisClusterTest, KeysSpreadOverEveryMasterAndReadBackThroughOneSeed) {
  StartCluster();
  RedisStoreOptions options = Options();
  options.cluster_seeds = {cluster_->SeedAddresses()[4]};  // a replica: it knows the map too
  auto store = OpenStore(options);
  ASSERT_NE(store, nullptr);
  std::map<int, int> blocks_per_master;
  std::vector<engine::KvCache> blocks;
  for (int i = 0; i < 30; ++i) {
    blocks.push_back(MakeBlock(kShape, 3 + i % 5, 10 + i));
    const BlockKey key = KeyFor(blocks.back());
    ASSERT_TRUE(store->Put(key, blocks.back()).ok()) << i;
    ASSERT_TRUE(store->PutSource(key, blocks.back().tokens()).ok()) << i;
    ASSERT_TRUE(store->PutPassage(absl::StrCat("doc-", i), key).ok()) << i;
    const int master = MasterOf(store->BlockRedisKey(key));
    ++blocks_per_master[master];
    // The value is on the master of its slot, where the cluster itself looks for it.
    EXPECT_EQ(cluster_->Call(master, {"GET", store->BlockRedisKey(key)}).value_or(""),
              EncodeBlockValue(blocks.back(), options.codec));
  }
  EXPECT_THAT(blocks_per_master, SizeIs(3));
  for (const auto& [master, count] : blocks_per_master) EXPECT_GE(count, 3) << master;

  for (int i = 0; i < 30; ++i) {
    const BlockKey key = KeyFor(blocks[i]);
    absl::StatusOr<engine::KvCache> got = store->Get(key);
    ASSERT_TRUE(got.ok()) << i << ": " << got.status();
    EXPECT_TRUE(SameBlock(*got, blocks[i])) << i;
    EXPECT_TRUE(store->Contains(key));
    EXPECT_EQ(store->GetPassage(absl::StrCat("doc-", i)), key);
    EXPECT_EQ(store->GetSource(key).value_or(std::vector<int32_t>{}), blocks[i].tokens());
  }
  ASSERT_TRUE(store->Remove(KeyFor(blocks[0])).ok());
  EXPECT_FALSE(store->Contains(KeyFor(blocks[0])));
  EXPECT_TRUE(absl::IsNotFound(store->LookupPassage("never-ingested").status()));
  EXPECT_TRUE(store->Ping().ok());
  EXPECT_EQ(store->routing().moved, 0);  // the map was right from the start
  EXPECT_EQ(store->metrics().hits, 30);
}

TEST_F(RedisClusterTest, GetManyAcrossNodesReturnsTheValuesInKeyOrder) {
  StartCluster();
  // Values of 3 KB .. 270 KB: replies larger than the read buffer, streamed per node.
  const engine::KvShape shape{.num_layers = 4, .num_kv_heads = 4, .head_dim = 32};
  auto store = OpenStore(Options(shape));
  ASSERT_NE(store, nullptr);
  std::vector<engine::KvCache> blocks;
  std::vector<BlockKey> keys;
  std::set<int> masters;
  for (int i = 0; i < 40; ++i) {
    blocks.push_back(MakeBlock(shape, 1 + 13 * i % 257, 200 + i));
    keys.push_back(KeyFor(blocks.back()));
    masters.insert(MasterOf(store->BlockRedisKey(keys.back())));
    if (i % 7 != 3) {
      ASSERT_TRUE(store->Put(keys.back(), blocks.back()).ok());
    }
  }
  ASSERT_THAT(masters, SizeIs(3));
  keys.push_back(keys[5]);  // a key twice
  blocks.push_back(blocks[5]);

  std::vector<absl::StatusOr<engine::KvCache>> got = store->GetMany(keys);

  ASSERT_THAT(got, SizeIs(41));
  for (int i = 0; i < 41; ++i) {
    if (i % 7 == 3 && i < 40) {
      EXPECT_TRUE(absl::IsNotFound(got[i].status())) << "block " << i << ": " << got[i].status();
    } else {
      ASSERT_TRUE(got[i].ok()) << "block " << i << ": " << got[i].status();
      EXPECT_TRUE(SameBlock(*got[i], blocks[i])) << "block " << i;
    }
  }
  EXPECT_EQ(store->metrics().hits, 35);  // 41 keys, 6 of them absent
  EXPECT_EQ(store->metrics().misses, 6);
  EXPECT_EQ(store->metrics().corrupt, 0);
}

TEST_F(RedisClusterTest, AMovedSlotIsFollowedAndTheMapUpdated) {
  StartCluster();
  auto store = OpenStore(Options());
  ASSERT_NE(store, nullptr);
  const engine::KvCache block = MakeBlock(kShape, 5, 300);
  const BlockKey key = KeyFor(block);
  ASSERT_TRUE(store->Put(key, block).ok());
  ASSERT_TRUE(store->PutPassage("moved-doc", key).ok());
  const std::string redis_key = store->BlockRedisKey(key);
  const int slot = redis::KeySlot(redis_key);
  const int from = MasterOf(redis_key);
  absl::StatusOr<std::vector<int>> masters = cluster_->Masters();
  ASSERT_TRUE(masters.ok()) << masters.status();
  const int to = (*masters)[0] == from ? (*masters)[1] : (*masters)[0];
  const int64_t maps_before = store->routing().slot_maps;

  ASSERT_TRUE(cluster_->MoveSlot(slot, to).ok());
  ASSERT_EQ(MasterOf(redis_key), to);

  absl::StatusOr<engine::KvCache> got = store->Get(key);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_TRUE(SameBlock(*got, block));
  EXPECT_EQ(store->routing().moved, 1);
  // The map says so now: the next calls for the slot go straight to the new owner.
  ASSERT_TRUE(store->Put(key, block).ok());
  ASSERT_TRUE(store->Get(key).ok());
  EXPECT_TRUE(store->Contains(key));
  EXPECT_EQ(store->routing().moved, 1);
  // ... and the whole map is fetched again soon after a MOVED.
  for (int i = 0; i < 40 && store->routing().slot_maps == maps_before; ++i) {
    absl::SleepFor(absl::Milliseconds(25));
  }
  EXPECT_GT(store->routing().slot_maps, maps_before);
  EXPECT_EQ(store->GetPassage("moved-doc"), key);  // another slot, untouched
}

// Two block keys of one slot (found by trying blocks until two collide).
std::pair<engine::KvCache, engine::KvCache> TwoBlocksOfOneSlot(const RedisStore& store) {
  std::map<int, engine::KvCache> by_slot;
  for (int seed = 1000;; ++seed) {
    engine::KvCache block = MakeBlock(kShape, 2, seed);
    const int slot = redis::KeySlot(store.BlockRedisKey(KeyFor(block)));
    auto [it, inserted] = by_slot.emplace(slot, block);
    if (!inserted) return {it->second, std::move(block)};
  }
}

TEST_F(RedisClusterTest, AnAskDuringAMigrationIsFollowedOnceWithoutChangingTheMap) {
  StartCluster();
  auto store = OpenStore(Options());
  ASSERT_NE(store, nullptr);
  // Blocks: two in one slot, and one elsewhere.
  const auto [moving, staying] = TwoBlocksOfOneSlot(*store);
  const engine::KvCache other = MakeBlock(kShape, 3, 77);
  for (const engine::KvCache* b : {&moving, &staying, &other}) {
    ASSERT_TRUE(store->Put(KeyFor(*b), *b).ok());
  }
  // Catalog entries: a hash tag in the passage id puts them into one slot.
  ASSERT_TRUE(store->PutPassage("a{tag}", KeyFor(moving)).ok());
  ASSERT_TRUE(store->PutPassage("b{tag}", KeyFor(staying)).ok());
  const std::string block_key = store->BlockRedisKey(KeyFor(moving));
  const std::string entry_key = store->PassageRedisKey("a{tag}");
  const int block_slot = redis::KeySlot(block_key), entry_slot = redis::KeySlot(entry_key);
  ASSERT_EQ(redis::KeySlot(store->PassageRedisKey("b{tag}")), entry_slot);
  const int from_block = MasterOf(block_key), from_entry = MasterOf(entry_key);
  absl::StatusOr<std::vector<int>> masters = cluster_->Masters();
  ASSERT_TRUE(masters.ok());
  auto another = [&](int m) { return (*masters)[0] == m ? (*masters)[1] : (*masters)[0]; };
  const int to_block = another(from_block), to_entry = another(from_entry);

  // Half-way: one key of each slot has moved, the other not yet.
  ASSERT_TRUE(cluster_->BeginMigration(block_slot, to_block).ok());
  ASSERT_TRUE(cluster_->MigrateKeys(block_slot, to_block, {block_key}).ok());
  if (entry_slot != block_slot) {
    ASSERT_TRUE(cluster_->BeginMigration(entry_slot, to_entry).ok());
  }
  ASSERT_TRUE(cluster_->MigrateKeys(entry_slot, to_entry, {entry_key}).ok());

  // GetMany: the migrated block through ASK, the others where they were.
  std::vector<absl::StatusOr<engine::KvCache>> got =
      store->GetMany({KeyFor(moving), KeyFor(other), KeyFor(staying)});
  ASSERT_THAT(got, SizeIs(3));
  ASSERT_TRUE(got[0].ok()) << got[0].status();
  ASSERT_TRUE(got[1].ok()) << got[1].status();
  ASSERT_TRUE(got[2].ok()) << got[2].status();
  EXPECT_TRUE(SameBlock(*got[0], moving));
  EXPECT_TRUE(SameBlock(*got[1], other));
  EXPECT_TRUE(SameBlock(*got[2], staying));
  EXPECT_EQ(store->routing().ask, 1);
  // A single-key command the same way.
  EXPECT_EQ(store->GetPassage("a{tag}"), KeyFor(moving));
  EXPECT_EQ(store->GetPassage("b{tag}"), KeyFor(staying));
  EXPECT_EQ(store->routing().ask, 2);
  // A new key of a migrating slot goes to the importing node (the old owner answers ASK
  // for keys it does not have).
  ASSERT_TRUE(store->PutPassage("c{tag}", KeyFor(other)).ok());
  EXPECT_EQ(store->routing().ask, 3);
  // The map did not change: the migrated key is asked of the old owner again.
  EXPECT_TRUE(store->Get(KeyFor(moving)).ok());
  EXPECT_EQ(store->routing().ask, 4);
  EXPECT_EQ(store->routing().moved, 0);

  // Migration done: MOVED, then straight there.
  for (const auto& [slot, to] :
       {std::pair{block_slot, to_block}, std::pair{entry_slot, to_entry}}) {
    ASSERT_TRUE(cluster_->MigrateKeys(slot, to).ok());
    ASSERT_TRUE(cluster_->FinishMigration(slot, to).ok());
    if (entry_slot == block_slot) break;
  }
  EXPECT_TRUE(store->Get(KeyFor(moving)).ok());
  EXPECT_TRUE(store->Get(KeyFor(staying)).ok());
  EXPECT_EQ(store->GetPassage("a{tag}"), KeyFor(moving));
  EXPECT_EQ(store->GetPassage("c{tag}"), KeyFor(other));
  EXPECT_GE(store->routing().moved, 1);
  EXPECT_EQ(store->routing().ask, 4);
}

// The fault the cluster is for: a master SIGKILLed under concurrent traffic. Reads of its
// slots become misses (UNAVAILABLE) and catalog lookups UNAVAILABLE, each call bounded
// by the timeouts; the other masters' keys keep hitting; no read ever returns a wrong
// value; once its replica is promoted (cluster-node-timeout 1 s) the same store reads
// and writes those slots again.
TEST_F(RedisClusterTest, AMasterKilledMidTrafficCostsOnlyItsSlotsUntilItsReplicaTakesOver) {
  StartCluster({.node_timeout = absl::Milliseconds(1000)});
  auto store = OpenStore(Options());
  ASSERT_NE(store, nullptr);
  constexpr int kBlocks = 30;
  std::vector<engine::KvCache> blocks;
  std::vector<BlockKey> keys;
  std::vector<int> master_of;
  for (int i = 0; i < kBlocks; ++i) {
    blocks.push_back(MakeBlock(kShape, 4, 400 + i));
    keys.push_back(KeyFor(blocks.back()));
    master_of.push_back(MasterOf(store->BlockRedisKey(keys.back())));
    ASSERT_TRUE(store->Put(keys.back(), blocks.back()).ok());
    ASSERT_TRUE(store->PutPassage(absl::StrCat("doc-", i), keys.back()).ok());
  }
  const int victim = master_of[0];
  std::vector<int> entry_master(kBlocks);
  for (int i = 0; i < kBlocks; ++i) {
    entry_master[i] = MasterOf(store->PassageRedisKey(absl::StrCat("doc-", i)));
  }
  absl::SleepFor(absl::Milliseconds(200));  // let the replicas copy every write

  std::atomic<bool> done{false};
  std::atomic<int> wrong{0}, bad_status{0}, survivor_misses{0}, victim_misses{0};
  std::atomic<int> lookups_unavailable{0};
  std::atomic<int64_t> slowest_ms{0};
  std::mutex first_bad_mu;
  std::string first_bad;  // the first unexpected status, for the failure message
  auto note_bad = [&](const absl::Status& status, const char* call) {
    ++bad_status;
    std::lock_guard<std::mutex> lock(first_bad_mu);
    if (first_bad.empty()) first_bad = absl::StrCat(call, ": ", status.ToString());
  };
  auto note_time = [&](absl::Time start) {
    const int64_t ms = absl::ToInt64Milliseconds(absl::Now() - start);
    int64_t seen = slowest_ms;
    while (ms > seen && !slowest_ms.compare_exchange_weak(seen, ms)) {
    }
  };
  auto reader = [&] {
    while (!done) {
      absl::Time start = absl::Now();
      std::vector<absl::StatusOr<engine::KvCache>> got = store->GetMany(keys);
      note_time(start);
      for (int i = 0; i < kBlocks; ++i) {
        if (got[i].ok()) {
          if (!SameBlock(*got[i], blocks[i])) ++wrong;
        } else if (!absl::IsUnavailable(got[i].status()) && !absl::IsNotFound(got[i].status())) {
          note_bad(got[i].status(), "GetMany");
        } else {
          ++(master_of[i] == victim ? victim_misses : survivor_misses);
        }
      }
      for (int i = 0; i < kBlocks; i += 3) {
        start = absl::Now();
        absl::StatusOr<BlockKey> entry = store->LookupPassage(absl::StrCat("doc-", i));
        note_time(start);
        if (entry.ok()) {
          if (!(*entry == keys[i])) ++wrong;
        } else if (absl::IsUnavailable(entry.status()) && entry_master[i] == victim) {
          ++lookups_unavailable;
        } else {
          note_bad(entry.status(), "LookupPassage");  // NOT_FOUND would mean ingest again
        }
      }
    }
  };
  auto writer = [&] {
    for (int i = 0; !done; ++i) {
      const engine::KvCache block = MakeBlock(kShape, 3, 5000 + i);
      const absl::Time start = absl::Now();
      const absl::Status put = store->Put(KeyFor(block), block).status();
      note_time(start);
      if (!put.ok() && !absl::IsUnavailable(put)) note_bad(put, "Put");
      absl::SleepFor(absl::Milliseconds(2));
    }
  };
  std::thread r1(reader), r2(reader), w(writer);
  absl::SleepFor(absl::Milliseconds(300));
  cluster_->Kill(victim);
  const absl::Time killed = absl::Now();
  absl::SleepFor(absl::Milliseconds(200));
  const absl::Status ping_during = store->Ping();
  const absl::Status healthy = cluster_->WaitForFailover(absl::Seconds(15));
  const absl::Duration failover = absl::Now() - killed;
  // Serving again without reopening: the refreshed map has found the promoted replica.
  bool back = false;
  absl::Duration recovered;
  for (const absl::Time end = absl::Now() + absl::Seconds(5); absl::Now() < end;) {
    std::vector<absl::StatusOr<engine::KvCache>> got = store->GetMany(keys);
    back = std::all_of(got.begin(), got.end(), [](const auto& g) { return g.ok(); });
    if (back) {
      recovered = absl::Now() - killed;
      break;
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  done = true;
  r1.join();
  r2.join();
  w.join();

  ASSERT_TRUE(healthy.ok()) << healthy;
  EXPECT_TRUE(absl::IsUnavailable(ping_during)) << ping_during;
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(bad_status.load(), 0) << "the first: " << first_bad;
  EXPECT_GT(victim_misses.load(), 0);
  EXPECT_GT(lookups_unavailable.load(), 0);
  EXPECT_EQ(survivor_misses.load(), 0) << "the other masters' keys must keep hitting";
  EXPECT_LT(slowest_ms.load(), 1200) << "no call may take longer than the timeouts";
  ASSERT_TRUE(back) << "not serving the lost master's slots " << failover << " after the failover";
  std::cerr << "failover took " << failover << ", the store served every key again after "
            << recovered << ", slowest call " << slowest_ms.load() << " ms, "
            << victim_misses.load() << " misses\n";
  // Writes and catalog lookups of the taken-over slots work too, and were kept.
  const engine::KvCache after = MakeBlock(kShape, 4, 9999);
  EXPECT_TRUE(store->Put(KeyFor(after), after).ok());
  EXPECT_TRUE(store->Get(KeyFor(after)).ok());
  for (int i = 0; i < kBlocks; ++i) {
    EXPECT_EQ(store->GetPassage(absl::StrCat("doc-", i)), keys[i]) << i;
  }
  EXPECT_TRUE(store->Ping().ok());
}

TEST_F(RedisClusterTest, ThePasswordGoesToEveryNode) {
  constexpr char kPassword[] = "cluster-pw-5e1f";
  StartCluster({.password = kPassword});
  RedisStoreOptions options = Options();
  options.password = kPassword;
  auto store = OpenStore(options);
  ASSERT_NE(store, nullptr);
  std::set<int> masters;
  for (int i = 0; i < 12; ++i) {
    const engine::KvCache block = MakeBlock(kShape, 2, 600 + i);
    ASSERT_TRUE(store->Put(KeyFor(block), block).ok());
    ASSERT_TRUE(store->Get(KeyFor(block)).ok());
    masters.insert(MasterOf(store->BlockRedisKey(KeyFor(block))));
  }
  EXPECT_THAT(masters, SizeIs(3));

  const absl::StatusOr<std::unique_ptr<RedisStore>> without = RedisStore::Open(Options());
  ASSERT_TRUE(absl::IsUnauthenticated(without.status())) << without.status();
  options.password = "wrong";
  const absl::StatusOr<std::unique_ptr<RedisStore>> wrong = RedisStore::Open(options);
  ASSERT_TRUE(absl::IsUnauthenticated(wrong.status())) << wrong.status();
  EXPECT_FALSE(absl::StrContains(wrong.status().message(), kPassword));
}

TEST_F(RedisClusterTest, SeedsAreTriedInTurnAndModesAreNotMixedUp) {
  StartCluster();
  absl::StatusOr<std::unique_ptr<RedisServer>> single = RedisServer::Start();
  ASSERT_TRUE(single.ok()) << single.status();
  const int dead_port = (*single)->port();
  (*single)->Stop();

  // A dead seed first: the next one gives the map.
  RedisStoreOptions options = Options();
  options.cluster_seeds = {absl::StrCat("127.0.0.1:", dead_port), cluster_->SeedAddresses()[1]};
  auto store = OpenStore(options);
  ASSERT_NE(store, nullptr);
  const engine::KvCache block = MakeBlock(kShape, 2, 700);
  EXPECT_TRUE(store->Put(KeyFor(block), block).ok());
  EXPECT_TRUE(store->Get(KeyFor(block)).ok());

  // A cluster node taken for a single Redis, and a single Redis taken for a seed.
  RedisStoreOptions as_single = Options();
  as_single.cluster_seeds.clear();
  as_single.port = cluster_->node(0).port();
  const absl::StatusOr<std::unique_ptr<RedisStore>> s = RedisStore::Open(as_single);
  EXPECT_TRUE(absl::IsFailedPrecondition(s.status())) << s.status();
  EXPECT_TRUE(absl::StrContains(s.status().message(), "cluster")) << s.status();
  ASSERT_TRUE((*single)->Restart().ok());
  options.cluster_seeds = {absl::StrCat("127.0.0.1:", dead_port)};
  const absl::StatusOr<std::unique_ptr<RedisStore>> c = RedisStore::Open(options);
  EXPECT_TRUE(absl::IsFailedPrecondition(c.status())) << c.status();

  // Bad options.
  options.cluster_seeds = {"127.0.0.1"};
  EXPECT_TRUE(absl::IsInvalidArgument(RedisStore::Open(options).status()));
  options.cluster_seeds = cluster_->SeedAddresses();
  options.key_prefix = "{bs}:";
  EXPECT_TRUE(absl::IsInvalidArgument(RedisStore::Open(options).status()));
}

TEST_F(RedisClusterTest, OpenSucceedsWithNoSeedUpAndTheStoreWorksOnceOneIs) {
  StartCluster();
  const int seed = 4;  // a replica: no failover to wait for
  RedisStoreOptions options = Options();
  options.cluster_seeds = {cluster_->SeedAddresses()[seed]};
  cluster_->Kill(seed);
  auto store = OpenStore(options);
  ASSERT_NE(store, nullptr);
  const engine::KvCache block = MakeBlock(kShape, 2, 800);
  EXPECT_TRUE(absl::IsUnavailable(store->Put(KeyFor(block), block).status()));
  EXPECT_TRUE(absl::IsUnavailable(store->Get(KeyFor(block)).status()));
  EXPECT_TRUE(absl::IsUnavailable(store->LookupPassage("doc").status()));
  EXPECT_TRUE(absl::IsUnavailable(store->Ping()));

  ASSERT_TRUE(cluster_->RestartNode(seed).ok());
  absl::Status put = store->Put(KeyFor(block), block).status();
  for (int i = 0; i < 60 && !put.ok(); ++i) {  // a probe, then a slot map
    absl::SleepFor(absl::Milliseconds(50));
    put = store->Put(KeyFor(block), block).status();
  }
  EXPECT_TRUE(put.ok()) << put;
  EXPECT_TRUE(store->Get(KeyFor(block)).ok());
}

}  // namespace
}  // namespace blockserve::kv_store
