#include "kv_store/redis/redis_store.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "kv_store/catalog_value.h"
#include "kv_store/codec.h"
#include "kv_store/redis/testing/redis_server.h"
#include "kv_store/redis/testing/test_util.h"

namespace blockserve::kv_store {
namespace {

using ::blockserve::kv_store::testing::MakeBlock;
using ::blockserve::kv_store::testing::OpenStore;
using ::blockserve::kv_store::testing::RedisServer;
using ::testing::SizeIs;

constexpr uint64_t kFingerprint = 0x5eed'f00d'1234'5678ULL;
constexpr engine::KvShape kSmallShape{.num_layers = 2, .num_kv_heads = 2, .head_dim = 8};

BlockKey KeyFor(const engine::KvCache& kv) { return MakeBlockKey(kFingerprint, kv.tokens()); }

// Bit-exact equality of tokens, shape and every K/V float.
void ExpectSameBlock(const engine::KvCache& actual, const engine::KvCache& expected) {
  ASSERT_EQ(actual.shape(), expected.shape());
  ASSERT_EQ(actual.tokens(), expected.tokens());
  EXPECT_EQ(actual.start_position(), expected.start_position());
  const size_t bytes = expected.num_tokens() * expected.shape().row() * sizeof(float);
  for (int64_t l = 0; l < expected.shape().num_layers; ++l) {
    EXPECT_EQ(std::memcmp(actual.k(l), expected.k(l), bytes), 0) << "K of layer " << l;
    EXPECT_EQ(std::memcmp(actual.v(l), expected.v(l), bytes), 0) << "V of layer " << l;
  }
}

class RedisStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::unique_ptr<RedisServer>> server = RedisServer::Start();
    ASSERT_TRUE(server.ok()) << "these tests need a real redis-server: " << server.status();
    server_ = *std::move(server);
  }

  RedisStoreOptions Options(engine::KvShape shape = kSmallShape) const {
    RedisStoreOptions o;
    o.port = server_->port();
    o.op_timeout = absl::Seconds(2);
    o.retry_backoff = absl::Milliseconds(100);
    o.max_retry_backoff = absl::Milliseconds(800);
    o.codec = {.model_fingerprint = kFingerprint, .shape = shape, .dtype = engine::DType::kF32};
    return o;
  }

  std::unique_ptr<RedisServer> server_;
};

TEST_F(RedisStoreTest, PutThenGetReturnsTheBlockBitExactWithF32Codec) {
  auto store = OpenStore(Options());
  const engine::KvCache block = MakeBlock(kSmallShape, 13, 1);

  ASSERT_TRUE(store->Put(KeyFor(block), block).ok());
  absl::StatusOr<engine::KvCache> got = store->Get(KeyFor(block));

  ASSERT_TRUE(got.ok()) << got.status();
  ExpectSameBlock(*got, block);
  const StoreMetrics m = store->metrics();
  EXPECT_EQ(m.hits, 1);
  EXPECT_EQ(m.puts, 1);
  EXPECT_EQ(m.bytes_written,
            static_cast<int64_t>(EncodedValueBytes(kSmallShape, 13, engine::DType::kF32)));
  EXPECT_EQ(m.bytes_read, m.bytes_written);
}

TEST_F(RedisStoreTest, BlockValueIsTheCodecBytesUnderPrefixBlkHexKey) {
  RedisStoreOptions options = Options();
  options.key_prefix = "test:";
  auto store = OpenStore(options);
  const engine::KvCache block = MakeBlock(kSmallShape, 3, 2);

  ASSERT_TRUE(store->Put(KeyFor(block), block).ok());

  absl::StatusOr<std::string> raw = server_->Call({"GET", "test:blk:" + KeyFor(block).Hex()});
  ASSERT_TRUE(raw.ok()) << raw.status();
  EXPECT_EQ(*raw, EncodeBlockValue(block, options.codec));
}

TEST_F(RedisStoreTest, GetOfAnAbsentBlockIsNotFoundAndCountedAsAMiss) {
  auto store = OpenStore(Options());

  absl::StatusOr<engine::KvCache> got = store->Get(KeyFor(MakeBlock(kSmallShape, 2, 3)));

  EXPECT_TRUE(absl::IsNotFound(got.status())) << got.status();
  EXPECT_EQ(store->metrics().misses, 1);
  EXPECT_FALSE(store->Contains(KeyFor(MakeBlock(kSmallShape, 2, 3))));
}

TEST_F(RedisStoreTest, SourceNeverExpiresAndOutlivesItsBlock) {
  RedisStoreOptions options = Options();
  options.ttl = absl::Milliseconds(50);
  auto store = OpenStore(options);
  const engine::KvCache block = MakeBlock(kSmallShape, 7, 6);
  const BlockKey key = KeyFor(block);
  EXPECT_EQ(store->GetSource(key).status().code(), absl::StatusCode::kNotFound);
  ASSERT_TRUE(store->Put(key, block).ok());
  ASSERT_TRUE(store->PutSource(key, block.tokens()).ok());

  absl::SleepFor(absl::Milliseconds(200));  // the block's TTL passes

  EXPECT_FALSE(store->Contains(key));
  EXPECT_EQ(server_->Call({"PTTL", "bs:v1:src:" + key.Hex()}).value_or(""), "-1");
  absl::StatusOr<std::vector<int32_t>> tokens = store->GetSource(key);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(*tokens, block.tokens());
}

TEST_F(RedisStoreTest, CorruptSourceIsNotFound) {
  auto store = OpenStore(Options());
  const BlockKey key = KeyFor(MakeBlock(kSmallShape, 2, 7));
  ASSERT_TRUE(server_->Call({"SET", "bs:v1:src:" + key.Hex(), "garbage"}).ok());
  EXPECT_EQ(store->GetSource(key).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(RedisStoreTest, PingSaysWhetherRedisCanBeReached) {
  auto store = OpenStore(Options());
  EXPECT_TRUE(store->Ping().ok());
  server_->Stop();
  const absl::Status down = store->Ping();
  EXPECT_TRUE(absl::IsUnavailable(down)) << down;
  ASSERT_TRUE(server_->Restart().ok());
  absl::Status up = store->Ping();
  for (int i = 0; i < 50 && !up.ok(); ++i) {  // past the dial backoff
    absl::SleepFor(absl::Milliseconds(100));
    up = store->Ping();
  }
  EXPECT_TRUE(up.ok()) << up;
}

TEST_F(RedisStoreTest, CatalogMapsPassageIdsToKeysAndLastWriteWins) {
  auto store = OpenStore(Options());
  const BlockKey first = KeyFor(MakeBlock(kSmallShape, 2, 4));
  const BlockKey second = KeyFor(MakeBlock(kSmallShape, 2, 5));

  ASSERT_TRUE(store->PutPassage("doc-1", first).ok());
  EXPECT_EQ(store->GetPassage("doc-1"), first);
  ASSERT_TRUE(store->PutPassage("doc-1", second).ok());

  EXPECT_EQ(store->GetPassage("doc-1"), second);
  EXPECT_EQ(store->GetPassage("doc-2"), std::nullopt);
  EXPECT_EQ(DecodeCatalogValue(server_->Call({"GET", "bs:v1:pid:doc-1"}).value_or(""), "doc-1")
                .value_or(BlockKey{}),
            second);
}

// An entry copied or pointed elsewhere behind the store's back (redis-cli SET) is
// detected and read as absent, never followed to another passage's block.
TEST_F(RedisStoreTest, ASwappedOrForgedCatalogEntryIsAbsentAndCounted) {
  auto store = OpenStore(Options());
  const BlockKey a = KeyFor(MakeBlock(kSmallShape, 2, 4));
  const BlockKey b = KeyFor(MakeBlock(kSmallShape, 2, 5));
  ASSERT_TRUE(store->PutPassage("doc-a", a).ok());
  ASSERT_TRUE(store->PutPassage("doc-b", b).ok());
  const std::string b_entry = server_->Call({"GET", "bs:v1:pid:doc-b"}).value_or("");
  ASSERT_TRUE(server_->Call({"SET", "bs:v1:pid:doc-a", b_entry}).ok());
  EXPECT_TRUE(absl::IsNotFound(store->LookupPassage("doc-a").status()));
  ASSERT_TRUE(server_->Call({"SET", "bs:v1:pid:doc-a", b.Hex()}).ok());  // a bare key
  EXPECT_TRUE(absl::IsNotFound(store->LookupPassage("doc-a").status()));
  EXPECT_EQ(store->metrics().corrupt, 2);
  EXPECT_EQ(store->GetPassage("doc-b"), b);
}

TEST_F(RedisStoreTest, BlocksExpireAfterTheTtl) {
  RedisStoreOptions options = Options();
  options.ttl = absl::Milliseconds(150);
  auto store = OpenStore(options);
  const engine::KvCache block = MakeBlock(kSmallShape, 4, 6);
  ASSERT_TRUE(store->Put(KeyFor(block), block).ok());
  ASSERT_TRUE(store->Get(KeyFor(block)).ok());

  absl::SleepFor(absl::Milliseconds(400));

  EXPECT_TRUE(absl::IsNotFound(store->Get(KeyFor(block)).status()));
  EXPECT_EQ(store->metrics().hits, 1);
  EXPECT_EQ(store->metrics().misses, 1);
}

TEST_F(RedisStoreTest, GetManyOf64BlocksKeepsOrderAndReportsAbsentOnesAsMisses) {
  auto store = OpenStore(Options());
  std::vector<engine::KvCache> blocks;
  std::vector<BlockKey> keys;
  for (int i = 0; i < 64; ++i) {
    blocks.push_back(MakeBlock(kSmallShape, 1 + i % 9, 100 + i));
    keys.push_back(KeyFor(blocks.back()));
    const bool absent = i % 10 == 3;
    if (!absent) {
      ASSERT_TRUE(store->Put(keys.back(), blocks.back()).ok());
    }
  }

  std::vector<absl::StatusOr<engine::KvCache>> got = store->GetMany(keys);

  ASSERT_THAT(got, SizeIs(64));
  for (int i = 0; i < 64; ++i) {
    if (i % 10 == 3) {
      EXPECT_TRUE(absl::IsNotFound(got[i].status())) << "block " << i;
    } else {
      ASSERT_TRUE(got[i].ok()) << "block " << i << ": " << got[i].status();
      ExpectSameBlock(*got[i], blocks[i]);
    }
  }
  EXPECT_EQ(store->metrics().hits, 57);
  EXPECT_EQ(store->metrics().misses, 7);
}

TEST_F(RedisStoreTest, GetManyOfBlocksLargerThanTheReadBufferKeepsOrder) {
  // Values of 40 KB .. 330 KB: replies start, end and split their CRLFs at every offset
  // of the store's 64 KB read buffer.
  const engine::KvShape shape{.num_layers = 4, .num_kv_heads = 4, .head_dim = 32};
  auto store = OpenStore(Options(shape));
  std::vector<engine::KvCache> blocks;
  std::vector<BlockKey> keys;
  for (int i = 0; i < 24; ++i) {
    blocks.push_back(MakeBlock(shape, 10 + 17 * i, 300 + i));
    keys.push_back(KeyFor(blocks.back()));
    if (i % 5 != 2) {
      ASSERT_TRUE(store->Put(keys.back(), blocks.back()).ok());
    }
  }

  std::vector<absl::StatusOr<engine::KvCache>> got = store->GetMany(keys);

  ASSERT_THAT(got, SizeIs(24));
  for (int i = 0; i < 24; ++i) {
    if (i % 5 == 2) {
      EXPECT_TRUE(absl::IsNotFound(got[i].status())) << "block " << i;
    } else {
      ASSERT_TRUE(got[i].ok()) << "block " << i << ": " << got[i].status();
      ExpectSameBlock(*got[i], blocks[i]);
    }
  }
}

// Client connections Redis has open (INFO clients), -1 if the answer has none.
int64_t ConnectedClients(const RedisServer& server) {
  const std::string info = server.Call({"INFO", "clients"}).value_or("");
  const std::string field = "connected_clients:";
  const size_t at = info.find(field);
  if (at == std::string::npos) return -1;
  return std::strtoll(info.c_str() + at + field.size(), nullptr, 10);
}

TEST_F(RedisStoreTest, GetManyReadsANodesKeysOverParallelConnectionsInOrder) {
  // Blocks of ~600 KB: each share of the batch takes milliseconds to read and decode, so
  // the shares overlap and need connections of their own.
  const engine::KvShape shape{.num_layers = 4, .num_kv_heads = 4, .head_dim = 32};
  RedisStoreOptions o = Options(shape);
  o.get_connections = 3;
  auto store = OpenStore(o);
  std::vector<engine::KvCache> blocks;
  std::vector<BlockKey> keys;
  for (int i = 0; i < 12; ++i) {
    blocks.push_back(MakeBlock(shape, 290 + i, 500 + i));
    keys.push_back(KeyFor(blocks.back()));
    if (i != 7) ASSERT_TRUE(store->Put(keys.back(), blocks.back()).ok());
  }
  const int64_t before = ConnectedClients(*server_);
  ASSERT_GT(before, 0);

  std::vector<absl::StatusOr<engine::KvCache>> got = store->GetMany(keys);

  ASSERT_THAT(got, SizeIs(12));
  for (int i = 0; i < 12; ++i) {
    if (i == 7) {
      EXPECT_TRUE(absl::IsNotFound(got[i].status())) << got[i].status();
    } else {
      ASSERT_TRUE(got[i].ok()) << "block " << i << ": " << got[i].status();
      ExpectSameBlock(*got[i], blocks[i]);
    }
  }
  // The Puts needed one connection; the GetMany dialled more (at most get_connections).
  const int64_t added = ConnectedClients(*server_) - before;
  EXPECT_GE(added, 1);
  EXPECT_LE(added, 2);
  EXPECT_EQ(store->metrics().hits, 11);
  EXPECT_EQ(store->metrics().misses, 1);
}

TEST_F(RedisStoreTest, TwentyMegabyteBlockRoundTrips) {
  // Llama-3-8B's KV shape; 80 tokens in f32 are 21 MB.
  const engine::KvShape shape{.num_layers = 32, .num_kv_heads = 8, .head_dim = 128};
  auto store = OpenStore(Options(shape));
  const engine::KvCache block = MakeBlock(shape, 80, 7);
  ASSERT_GT(EncodedValueBytes(shape, 80, engine::DType::kF32), 20u << 20);

  ASSERT_TRUE(store->Put(KeyFor(block), block).ok());
  absl::StatusOr<engine::KvCache> got = store->Get(KeyFor(block));

  ASSERT_TRUE(got.ok()) << got.status();
  ExpectSameBlock(*got, block);
}

// Calls of `command` Redis has served (INFO commandstats), 0 before the first.
int64_t CommandCalls(const RedisServer& server, const std::string& command) {
  const std::string info = server.Call({"INFO", "commandstats"}).value_or("");
  const std::string field = absl::StrCat("cmdstat_", command, ":calls=");
  const size_t at = info.find(field);
  if (at == std::string::npos) return 0;
  return std::strtoll(info.c_str() + at + field.size(), nullptr, 10);
}

// Options whose Gets go in 4 KiB chunks over 3 connections.
RedisStoreOptions Chunked(RedisStoreOptions o) {
  o.get_chunk_bytes = 4096;
  o.get_connections = 3;
  return o;
}

TEST_F(RedisStoreTest, ValueOfManyChunksIsReadInPipelinedRangesAndAssembledExactly) {
  auto store = OpenStore(Chunked(Options()));
  // 200 tokens of f32: 51256 bytes, 13 chunks (the last one partial).
  const engine::KvCache block = MakeBlock(kSmallShape, 200, 21);
  const size_t bytes = EncodedValueBytes(kSmallShape, 200, engine::DType::kF32);
  ASSERT_GT(bytes, 12u * 4096);
  ASSERT_TRUE(store->Put(KeyFor(block), block).ok());
  const int64_t before = CommandCalls(*server_, "getrange");

  absl::StatusOr<engine::KvCache> got = store->Get(KeyFor(block));

  ASSERT_TRUE(got.ok()) << got.status();
  ExpectSameBlock(*got, block);
  EXPECT_EQ(CommandCalls(*server_, "getrange") - before, static_cast<int64_t>((bytes + 4095) / 4096));
  EXPECT_EQ(store->metrics().hits, 1);
  EXPECT_EQ(store->metrics().bytes_read, static_cast<int64_t>(bytes));
  // Values of one chunk and of exactly two (no partial chunk) too.
  for (int tokens : {1, 2}) {
    const engine::KvCache small = MakeBlock(kSmallShape, tokens, 22 + tokens);
    ASSERT_TRUE(store->Put(KeyFor(small), small).ok());
    absl::StatusOr<engine::KvCache> back = store->Get(KeyFor(small));
    ASSERT_TRUE(back.ok()) << back.status();
    ExpectSameBlock(*back, small);
  }
}

// Once the store has read a value of several chunks, a GetMany reads each of its keys
// in chunks (the faster way for multi-MB values); before that, pipelined GETs.
TEST_F(RedisStoreTest, GetManyOfBlocksOfSeveralChunksReadsEachInChunks) {
  auto store = OpenStore(Chunked(Options()));
  std::vector<engine::KvCache> blocks;
  std::vector<BlockKey> keys;
  for (int i = 0; i < 6; ++i) {  // 200 tokens of f32: 13 chunks of 4 KiB each
    blocks.push_back(MakeBlock(kSmallShape, 200, 60 + i));
    keys.push_back(KeyFor(blocks.back()));
    if (i != 3) {
      ASSERT_TRUE(store->Put(keys.back(), blocks.back()).ok());
    }
  }
  const int64_t chunks = (EncodedValueBytes(kSmallShape, 200, engine::DType::kF32) + 4095) / 4096;
  auto check = [&](const std::vector<absl::StatusOr<engine::KvCache>>& got) {
    ASSERT_THAT(got, SizeIs(6));
    for (int i = 0; i < 6; ++i) {
      if (i == 3) {
        EXPECT_TRUE(absl::IsNotFound(got[i].status())) << got[i].status();
      } else {
        ASSERT_TRUE(got[i].ok()) << "block " << i << ": " << got[i].status();
        ExpectSameBlock(*got[i], blocks[i]);
      }
    }
  };
  int64_t gets = CommandCalls(*server_, "get"), ranges = CommandCalls(*server_, "getrange");

  check(store->GetMany(keys));  // nothing read yet: pipelined GETs
  EXPECT_EQ(CommandCalls(*server_, "get") - gets, 6);
  EXPECT_EQ(CommandCalls(*server_, "getrange") - ranges, 0);
  gets = CommandCalls(*server_, "get");
  ranges = CommandCalls(*server_, "getrange");

  check(store->GetMany(keys));  // values of 13 chunks seen: each key in chunks
  EXPECT_EQ(CommandCalls(*server_, "get") - gets, 0);
  // Every chunk of the 5 values, and the first chunk asked for the absent key.
  EXPECT_EQ(CommandCalls(*server_, "getrange") - ranges, 5 * chunks + 1);
  EXPECT_EQ(store->metrics().hits, 10);
  EXPECT_EQ(store->metrics().misses, 2);
}

// A stuck Redis in the middle of a chunked GetMany: every key is UNAVAILABLE, counted as
// a miss, and the call costs about one op_timeout, not one per key.
TEST_F(RedisStoreTest, ChunkedGetManyOfAStuckRedisCostsOneOpTimeout) {
  RedisStoreOptions options = Chunked(Options());
  options.op_timeout = absl::Milliseconds(200);
  auto store = OpenStore(options);
  std::vector<BlockKey> keys;
  for (int i = 0; i < 6; ++i) {
    const engine::KvCache block = MakeBlock(kSmallShape, 200, 80 + i);
    keys.push_back(KeyFor(block));
    ASSERT_TRUE(store->Put(keys.back(), block).ok());
  }
  ASSERT_TRUE(store->Get(keys[0]).ok());  // a value of several chunks read
  const int64_t misses = store->metrics().misses;
  server_->Pause();
  const absl::Time start = absl::Now();
  const std::vector<absl::StatusOr<engine::KvCache>> got = store->GetMany(keys);
  const absl::Duration took = absl::Now() - start;
  server_->Resume();
  ASSERT_THAT(got, SizeIs(6));
  for (const absl::StatusOr<engine::KvCache>& g : got) {
    EXPECT_TRUE(absl::IsUnavailable(g.status())) << g.status();
  }
  EXPECT_EQ(store->metrics().misses - misses, 6);
  EXPECT_LT(took, absl::Milliseconds(700));
}

TEST_F(RedisStoreTest, ChunkedGetOfAnotherModelsValueStopsAfterTheFirstChunk) {
  RedisStoreOptions other = Chunked(Options());
  other.codec.model_fingerprint ^= 1;
  auto writer = OpenStore(other);
  const engine::KvCache block = MakeBlock(kSmallShape, 200, 31);  // 13 chunks
  ASSERT_TRUE(writer->Put(KeyFor(block), block).ok());
  auto store = OpenStore(Chunked(Options()));
  const int64_t before = CommandCalls(*server_, "getrange");

  absl::StatusOr<engine::KvCache> got = store->Get(KeyFor(block));

  EXPECT_TRUE(absl::IsNotFound(got.status())) << got.status();
  EXPECT_EQ(store->metrics().corrupt, 1);
  // The header in the first chunk decided it; the other 12 chunks were never asked for.
  EXPECT_EQ(CommandCalls(*server_, "getrange") - before, 1);
}

TEST_F(RedisStoreTest, ChunkedGetWhoseTokenIdsOutgrowTheFirstChunkIsDecodedWhole) {
  auto store = OpenStore(Chunked(Options()));
  // 1100 token ids are 4400 bytes: more than the first 4 KiB chunk holds after the header.
  const engine::KvCache block = MakeBlock(kSmallShape, 1100, 32);
  ASSERT_TRUE(store->Put(KeyFor(block), block).ok());

  absl::StatusOr<engine::KvCache> got = store->Get(KeyFor(block));

  ASSERT_TRUE(got.ok()) << got.status();
  ExpectSameBlock(*got, block);
}

TEST_F(RedisStoreTest, ValueReplacedDuringAChunkedGetIsReadAgainWhole) {
  RedisStoreOptions o = Chunked(Options());
  const engine::KvCache block = MakeBlock(kSmallShape, 200, 30);
  // Same length, other bytes (a checksum catches it), then another length (a short or
  // long chunk catches it).
  for (int replacement_tokens : {200, 150, 260}) {
    const engine::KvCache other = MakeBlock(kSmallShape, replacement_tokens, 31);
    const std::string other_value = EncodeBlockValue(other, o.codec);
    std::string redis_key;
    int replaced = 0;
    o.test_hook = [&](std::string_view point) {
      if (point == "after_first_chunk" && replaced++ == 0) {
        EXPECT_TRUE(server_->Call({"SET", redis_key, other_value}).ok());
      }
    };
    auto store = OpenStore(o);
    redis_key = store->BlockRedisKey(KeyFor(block));
    ASSERT_TRUE(store->Put(KeyFor(block), block).ok());

    absl::StatusOr<engine::KvCache> got = store->Get(KeyFor(block));

    ASSERT_TRUE(got.ok()) << replacement_tokens << ": " << got.status();
    ExpectSameBlock(*got, other);
    EXPECT_EQ(replaced, 2) << "read twice";
    EXPECT_EQ(store->metrics().corrupt, 0);
  }
}

TEST_F(RedisStoreTest, ValueReplacedOnEveryAttemptIsACorruptMissNeverAMix) {
  RedisStoreOptions o = Chunked(Options());
  const engine::KvCache a = MakeBlock(kSmallShape, 200, 40), b = MakeBlock(kSmallShape, 200, 41);
  const std::string values[2] = {EncodeBlockValue(a, o.codec), EncodeBlockValue(b, o.codec)};
  std::string redis_key;
  int calls = 0;
  o.test_hook = [&](std::string_view) {
    EXPECT_TRUE(server_->Call({"SET", redis_key, values[++calls % 2]}).ok());
  };
  auto store = OpenStore(o);
  redis_key = store->BlockRedisKey(KeyFor(a));
  ASSERT_TRUE(store->Put(KeyFor(a), a).ok());

  absl::StatusOr<engine::KvCache> got = store->Get(KeyFor(a));

  EXPECT_TRUE(absl::IsNotFound(got.status())) << got.status();
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(store->metrics().corrupt, 1);
  EXPECT_EQ(store->metrics().hits, 0);
}

TEST_F(RedisStoreTest, ValueDeletedDuringAChunkedGetIsNotFound) {
  RedisStoreOptions o = Chunked(Options());
  std::string redis_key;
  o.test_hook = [&](std::string_view) { EXPECT_TRUE(server_->Call({"DEL", redis_key}).ok()); };
  auto store = OpenStore(o);
  const engine::KvCache block = MakeBlock(kSmallShape, 200, 50);
  redis_key = store->BlockRedisKey(KeyFor(block));
  ASSERT_TRUE(store->Put(KeyFor(block), block).ok());

  absl::StatusOr<engine::KvCache> got = store->Get(KeyFor(block));

  EXPECT_TRUE(absl::IsNotFound(got.status())) << got.status();
  EXPECT_EQ(store->metrics().corrupt, 0);
  EXPECT_EQ(store->metrics().misses, 1);
}

TEST_F(RedisStoreTest, RedisKilledDuringAChunkedGetIsUnavailable) {
  RedisStoreOptions o = Chunked(Options());
  o.test_hook = [&](std::string_view) { server_->Stop(); };
  auto store = OpenStore(o);
  const engine::KvCache block = MakeBlock(kSmallShape, 200, 60);
  ASSERT_TRUE(store->Put(KeyFor(block), block).ok());

  absl::StatusOr<engine::KvCache> got = store->Get(KeyFor(block));

  EXPECT_TRUE(absl::IsUnavailable(got.status())) << got.status();
  EXPECT_EQ(store->metrics().misses, 1);
  EXPECT_EQ(store->metrics().hits, 0);
}

TEST_F(RedisStoreTest, GarbageUnderABlockKeyIsAMissCountedAsCorrupt) {
  auto store = OpenStore(Options());
  const BlockKey key = KeyFor(MakeBlock(kSmallShape, 5, 8));
  ASSERT_TRUE(server_->Call({"SET", store->BlockRedisKey(key), "not a block value"}).ok());

  absl::StatusOr<engine::KvCache> got = store->Get(key);

  EXPECT_TRUE(absl::IsNotFound(got.status())) << got.status();
  EXPECT_EQ(store->metrics().corrupt, 1);
  EXPECT_EQ(store->metrics().misses, 1);
  EXPECT_EQ(store->metrics().hits, 0);
}

TEST_F(RedisStoreTest, TruncatedValueIsAMissCountedAsCorrupt) {
  auto store = OpenStore(Options());
  const engine::KvCache block = MakeBlock(kSmallShape, 5, 9);
  ASSERT_TRUE(store->Put(KeyFor(block), block).ok());
  const std::string redis_key = store->BlockRedisKey(KeyFor(block));
  std::string value = server_->Call({"GET", redis_key}).value();
  value.resize(value.size() - 4);
  ASSERT_TRUE(server_->Call({"SET", redis_key, value}).ok());

  absl::StatusOr<engine::KvCache> got = store->Get(KeyFor(block));

  EXPECT_TRUE(absl::IsNotFound(got.status())) << got.status();
  EXPECT_EQ(store->metrics().corrupt, 1);
}

TEST_F(RedisStoreTest, BlockOfAnotherModelIsAMissCountedAsCorrupt) {
  RedisStoreOptions other_model = Options();
  other_model.codec.model_fingerprint = kFingerprint + 1;
  auto writer = OpenStore(other_model);
  auto reader = OpenStore(Options());
  const engine::KvCache block = MakeBlock(kSmallShape, 5, 10);
  ASSERT_TRUE(writer->Put(KeyFor(block), block).ok());

  EXPECT_TRUE(absl::IsNotFound(reader->Get(KeyFor(block)).status()));
  EXPECT_EQ(reader->metrics().corrupt, 1);
}

TEST_F(RedisStoreTest, PutOfABlockWithAnotherShapeIsInvalidArgument) {
  auto store = OpenStore(Options());
  const engine::KvCache block =
      MakeBlock({.num_layers = 1, .num_kv_heads = 2, .head_dim = 8}, 3, 11);

  EXPECT_TRUE(absl::IsInvalidArgument(store->Put(KeyFor(block), block).status()));
  EXPECT_EQ(store->metrics().puts, 0);
}

TEST_F(RedisStoreTest, OpenRejectsAnEmptyPool) {
  RedisStoreOptions options = Options();
  options.pool_size = 0;

  EXPECT_TRUE(absl::IsInvalidArgument(RedisStore::Open(options).status()));
}

TEST_F(RedisStoreTest, OutageTurnsGetsIntoMissesAndDropsPutsThenRecoversAfterRestart) {
  const engine::KvShape shape{.num_layers = 4, .num_kv_heads = 8, .head_dim = 128};
  auto store = OpenStore(Options(shape));  // 1 MB blocks: writes to a dead peer hit EPIPE
  const engine::KvCache before = MakeBlock(shape, 64, 20);
  ASSERT_TRUE(store->Put(KeyFor(before), before).ok());

  int failed_puts = 0, failed_gets = 0;
  absl::Duration slowest = absl::ZeroDuration();
  for (int i = 0; i < 12; ++i) {
    if (i == 4) server_->Stop();
    const engine::KvCache block = MakeBlock(shape, 64, 21 + i);
    const absl::Time start = absl::Now();
    const absl::Status put = store->Put(KeyFor(block), block).status();
    const absl::StatusOr<engine::KvCache> got = store->Get(KeyFor(block));
    slowest = std::max(slowest, absl::Now() - start);
    if (i < 4) {
      EXPECT_TRUE(put.ok()) << put;
      EXPECT_TRUE(got.ok()) << got.status();
    } else {
      EXPECT_TRUE(absl::IsUnavailable(put)) << put;
      EXPECT_TRUE(absl::IsUnavailable(got.status())) << got.status();
      failed_puts += put.ok() ? 0 : 1;
      failed_gets += got.ok() ? 0 : 1;
    }
  }
  EXPECT_EQ(failed_puts, 8);
  EXPECT_EQ(store->metrics().dropped_puts, 8);
  EXPECT_EQ(store->metrics().misses, 8);
  EXPECT_FALSE(store->GetPassage("anything").has_value());
  EXPECT_LT(slowest, absl::Seconds(2)) << "a call during the outage took " << slowest;

  ASSERT_TRUE(server_->Restart().ok());
  absl::SleepFor(absl::Milliseconds(900));  // past the back-off (at most max_retry_backoff)
  const engine::KvCache after = MakeBlock(shape, 64, 40);

  EXPECT_TRUE(store->Put(KeyFor(after), after).ok());
  absl::StatusOr<engine::KvCache> got = store->Get(KeyFor(after));
  ASSERT_TRUE(got.ok()) << got.status();
  ExpectSameBlock(*got, after);
  EXPECT_EQ(store->metrics().dropped_puts, 8);
}

TEST_F(RedisStoreTest, RedisKilledUnderConcurrentBatchesCostsOnlyBoundedMissesAndDrops) {
  const engine::KvShape shape{.num_layers = 8, .num_kv_heads = 8, .head_dim = 128};
  auto store = OpenStore(Options(shape));  // 4 MB blocks, so kills land mid-transfer
  std::vector<engine::KvCache> blocks;
  std::vector<BlockKey> keys;
  for (int i = 0; i < 4; ++i) {
    blocks.push_back(MakeBlock(shape, 128, 70 + i));
    keys.push_back(KeyFor(blocks.back()));
  }
  std::atomic<bool> done{false};
  std::atomic<int> failed_puts{0}, ok_puts{0};
  std::atomic<int64_t> slowest_ms{0};
  auto worker = [&](int offset) {
    while (!done) {
      for (int i = 0; i < 4; ++i) {
        const absl::Time start = absl::Now();
        const absl::Status put = store->Put(keys[(i + offset) % 4], blocks[(i + offset) % 4]).status();
        (put.ok() ? ok_puts : failed_puts)++;
        EXPECT_TRUE(put.ok() || absl::IsUnavailable(put)) << put;
        for (const auto& got : store->GetMany(keys)) {
          EXPECT_TRUE(got.ok() || absl::IsNotFound(got.status()) || absl::IsUnavailable(got.status()))
              << got.status();
        }
        const int64_t ms = absl::ToInt64Milliseconds(absl::Now() - start);
        int64_t seen = slowest_ms;
        while (ms > seen && !slowest_ms.compare_exchange_weak(seen, ms)) {
        }
      }
    }
  };
  std::thread a(worker, 0), b(worker, 2);

  absl::SleepFor(absl::Milliseconds(100));
  server_->Stop();
  absl::SleepFor(absl::Milliseconds(300));
  ASSERT_TRUE(server_->Restart().ok());
  absl::SleepFor(absl::Milliseconds(300));
  done = true;
  a.join();
  b.join();

  EXPECT_GT(failed_puts.load(), 0);
  EXPECT_EQ(store->metrics().dropped_puts, failed_puts.load());
  EXPECT_GT(store->metrics().misses, 0);
  EXPECT_LT(slowest_ms.load(), 2000);
  // Back once the back-off, grown during the outage (at most max_retry_backoff), ends.
  absl::Status put_after = store->Put(keys[0], blocks[0]).status();
  for (int i = 0; i < 20 && !put_after.ok(); ++i) {
    absl::SleepFor(absl::Milliseconds(100));
    put_after = store->Put(keys[0], blocks[0]).status();
  }
  EXPECT_TRUE(put_after.ok()) << put_after;
  EXPECT_TRUE(store->Get(keys[0]).ok());
}

TEST_F(RedisStoreTest, StuckRedisCostsAtMostAboutTheOpTimeoutPerCall) {
  RedisStoreOptions options = Options();
  options.op_timeout = absl::Milliseconds(200);
  auto store = OpenStore(options);
  const engine::KvCache block = MakeBlock(kSmallShape, 4, 45);
  ASSERT_TRUE(store->Put(KeyFor(block), block).ok());
  server_->Pause();

  absl::Time start = absl::Now();
  const absl::StatusOr<engine::KvCache> got = store->Get(KeyFor(block));
  const absl::Duration get_time = absl::Now() - start;
  start = absl::Now();
  const absl::Status put = store->Put(KeyFor(block), block).status();
  const absl::Duration put_time = absl::Now() - start;
  server_->Resume();

  EXPECT_TRUE(absl::IsUnavailable(got.status())) << got.status();
  EXPECT_TRUE(absl::IsUnavailable(put)) << put;
  // After the first timeout the next call does not wait for its own: it fails at once.
  EXPECT_NE(put.message().find("not answering"), std::string_view::npos) << put;
  EXPECT_LT(get_time, absl::Milliseconds(700));
  EXPECT_LT(put_time, absl::Milliseconds(700));
  // A thawed Redis serves again once the back-off (retry_backoff) has passed.
  absl::StatusOr<engine::KvCache> again = store->Get(KeyFor(block));
  for (int i = 0; i < 50 && !again.ok(); ++i) {
    absl::SleepFor(absl::Milliseconds(100));
    again = store->Get(KeyFor(block));
  }
  EXPECT_TRUE(again.ok()) << again.status();
}

// A Redis that stays stuck costs only the call that found it stuck its op_timeout: the
// calls after it fail at once while a background probe (a dial and a PING, on no
// caller's thread) waits for an answer. The probes come less and less often (the
// back-off doubles: 50 ms, 100 ms, ... up to 800 ms). Before the background probe, the
// first call after each back-off was the probe and paid the op_timeout: 7 or so callers
// over these 3 s instead of 1.
TEST_F(RedisStoreTest, AStuckRedisCostsOnlyTheCallThatFoundItStuckItsOpTimeout) {
  RedisStoreOptions options = Options();
  options.op_timeout = absl::Milliseconds(100);
  options.retry_backoff = absl::Milliseconds(50);
  auto store = OpenStore(options);
  const engine::KvCache block = MakeBlock(kSmallShape, 4, 46);
  ASSERT_TRUE(store->Put(KeyFor(block), block).ok());
  server_->Pause();
  int slow_calls = 0, calls = 0;
  for (const absl::Time end = absl::Now() + absl::Seconds(3); absl::Now() < end; ++calls) {
    const absl::Time start = absl::Now();
    EXPECT_FALSE(store->Get(KeyFor(block)).ok());
    if (absl::Now() - start >= absl::Milliseconds(80)) ++slow_calls;
    absl::SleepFor(absl::Milliseconds(5));
  }
  const int64_t probes = store->routing().probes;
  server_->Resume();
  EXPECT_EQ(slow_calls, 1) << "of " << calls << " calls";
  EXPECT_GE(probes, 3);
  EXPECT_LE(probes, 9);
  absl::StatusOr<engine::KvCache> again = store->Get(KeyFor(block));
  for (int i = 0; i < 30 && !again.ok(); ++i) {  // at most the longest back-off, 800 ms
    absl::SleepFor(absl::Milliseconds(50));
    again = store->Get(KeyFor(block));
  }
  ASSERT_TRUE(again.ok()) << again.status();
  // Reset by the call that got through: the next stall backs off from 50 ms again, not
  // from 800 ms.
  server_->Pause();
  EXPECT_FALSE(store->Get(KeyFor(block)).ok());
  server_->Resume();
  absl::SleepFor(absl::Milliseconds(120));
  EXPECT_TRUE(store->Get(KeyFor(block)).ok());
}

TEST_F(RedisStoreTest, PooledConnectionsBrokenByARestartAreRedialledWithoutAMiss) {
  RedisStoreOptions options = Options();
  options.pool_size = 2;
  auto store = OpenStore(options);
  const engine::KvCache block = MakeBlock(kSmallShape, 4, 50);

  ASSERT_TRUE(server_->Restart().ok());  // the store's pooled connection is now dead

  EXPECT_TRUE(store->Put(KeyFor(block), block).ok());
  EXPECT_TRUE(store->Get(KeyFor(block)).ok());
  EXPECT_EQ(store->metrics().dropped_puts, 0);
}

TEST_F(RedisStoreTest, OpenSucceedsWhileRedisIsDownAndTheStoreWorksOnceItIsUp) {
  server_->Stop();
  auto store = OpenStore(Options());
  ASSERT_NE(store, nullptr);
  const engine::KvCache block = MakeBlock(kSmallShape, 4, 60);
  EXPECT_TRUE(absl::IsUnavailable(store->Put(KeyFor(block), block).status()));

  ASSERT_TRUE(server_->Restart().ok());
  // Back once a background probe (every retry_backoff, then doubling) gets an answer.
  absl::Status put = store->Put(KeyFor(block), block).status();
  for (int i = 0; i < 20 && !put.ok(); ++i) {
    absl::SleepFor(absl::Milliseconds(50));
    put = store->Put(KeyFor(block), block).status();
  }
  EXPECT_TRUE(put.ok()) << put;
  EXPECT_TRUE(store->Get(KeyFor(block)).ok());
}

TEST_F(RedisStoreTest, ManyThreadsShareASmallPool) {
  RedisStoreOptions options = Options();
  options.pool_size = 2;
  auto store = OpenStore(options);
  constexpr int kThreads = 8, kBlocksPerThread = 20;

  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kBlocksPerThread; ++i) {
        const engine::KvCache block = MakeBlock(kSmallShape, 3, 1000 + t * kBlocksPerThread + i);
        EXPECT_TRUE(store->Put(KeyFor(block), block).ok());
        absl::StatusOr<engine::KvCache> got = store->Get(KeyFor(block));
        EXPECT_TRUE(got.ok() && got->tokens() == block.tokens());
      }
    });
  }
  for (std::thread& t : threads) t.join();

  EXPECT_EQ(store->metrics().hits, kThreads * kBlocksPerThread);
  EXPECT_EQ(store->metrics().puts, kThreads * kBlocksPerThread);
}

// Redis with a password (requirepass) and an ACL user. The passwords are strings that
// nothing else contains, so an error that shows one is caught.
constexpr char kPassword[] = "right-pw-7f3a9c";
constexpr char kWrongPassword[] = "wrong-pw-c0ffee";
constexpr char kUserPassword[] = "ingest-pw-91b2";

class RedisAuthTest : public RedisStoreTest {
 protected:
  void SetUp() override {
    testing::RedisServerOptions o;
    o.password = kPassword;
    // redis-server joins the words after an option into one config line.
    o.extra_args = {"--user", "ingest", "on", absl::StrCat(">", kUserPassword), "~*", "&*",
                    "+@all"};
    absl::StatusOr<std::unique_ptr<RedisServer>> server = RedisServer::Start(o);
    ASSERT_TRUE(server.ok()) << "these tests need a real redis-server: " << server.status();
    server_ = *std::move(server);
  }

  std::string Address() const { return absl::StrCat("127.0.0.1:", server_->port()); }

  // The error says which Redis refused and shows no password.
  void ExpectClearError(const absl::Status& status) const {
    EXPECT_TRUE(absl::StrContains(status.message(), Address())) << status;
    for (const char* secret : {kPassword, kWrongPassword, kUserPassword}) {
      EXPECT_FALSE(absl::StrContains(status.message(), secret)) << status;
    }
  }
};

TEST_F(RedisAuthTest, TheRightPasswordOpensTheStoreAndEveryNewConnectionAuthenticates) {
  RedisStoreOptions options = Options();
  options.password = kPassword;
  auto store = OpenStore(options);
  ASSERT_NE(store, nullptr);
  const engine::KvCache block = MakeBlock(kSmallShape, 4, 70);
  ASSERT_TRUE(store->Put(KeyFor(block), block).ok());
  EXPECT_TRUE(store->Get(KeyFor(block)).ok());

  // A restart breaks the pooled connections: the ones dialled again authenticate too.
  ASSERT_TRUE(server_->Restart().ok());
  EXPECT_TRUE(store->Put(KeyFor(block), block).ok());
  EXPECT_TRUE(store->Get(KeyFor(block)).ok());
  EXPECT_TRUE(store->Ping().ok());
  EXPECT_EQ(store->metrics().dropped_puts, 0);
}

TEST_F(RedisAuthTest, AnAclUserWithItsPasswordOpensTheStore) {
  RedisStoreOptions options = Options();
  options.user = "ingest";
  options.password = kUserPassword;
  auto store = OpenStore(options);
  ASSERT_NE(store, nullptr);
  const engine::KvCache block = MakeBlock(kSmallShape, 4, 71);
  EXPECT_TRUE(store->Put(KeyFor(block), block).ok());
  EXPECT_TRUE(store->Get(KeyFor(block)).ok());
}

TEST_F(RedisAuthTest, NoPasswordFailsTheOpeningWithUnauthenticated) {
  const absl::StatusOr<std::unique_ptr<RedisStore>> store = RedisStore::Open(Options());
  ASSERT_TRUE(absl::IsUnauthenticated(store.status())) << store.status();
  EXPECT_TRUE(absl::StrContains(store.status().message(), "requires a password"))
      << store.status();
  ExpectClearError(store.status());
}

TEST_F(RedisAuthTest, AWrongPasswordFailsTheOpeningWithUnauthenticated) {
  for (const auto& [user, password] : std::vector<std::pair<std::string, std::string>>{
           {"", kWrongPassword}, {"ingest", kPassword}, {"nobody", kUserPassword}}) {
    RedisStoreOptions options = Options();
    options.user = user;
    options.password = password;
    const absl::StatusOr<std::unique_ptr<RedisStore>> store = RedisStore::Open(options);
    ASSERT_TRUE(absl::IsUnauthenticated(store.status())) << user << ": " << store.status();
    EXPECT_TRUE(absl::StrContains(store.status().message(), "refused AUTH")) << store.status();
    ExpectClearError(store.status());
  }
}

TEST_F(RedisAuthTest, ARefusedPasswordAfterOpeningIsAnOutageNotAnAuthError) {
  RedisStoreOptions options = Options();
  options.password = kPassword;
  auto store = OpenStore(options);
  ASSERT_NE(store, nullptr);
  // The same port, now a Redis with another password.
  const int port = server_->port();
  server_->Stop();
  testing::RedisServerOptions other;
  other.port = port;
  other.password = kWrongPassword;
  absl::StatusOr<std::unique_ptr<RedisServer>> replaced = RedisServer::Start(other);
  ASSERT_TRUE(replaced.ok()) << replaced.status();

  const engine::KvCache block = MakeBlock(kSmallShape, 4, 72);
  const absl::Status put = store->Put(KeyFor(block), block).status();
  EXPECT_TRUE(absl::IsUnavailable(put)) << put;
  ExpectClearError(put);
  EXPECT_TRUE(absl::IsUnavailable(store->Get(KeyFor(block)).status()));
  EXPECT_TRUE(absl::IsUnavailable(store->Ping()));
}

TEST_F(RedisStoreTest, APasswordForARedisWithoutOneFailsTheOpening) {
  RedisStoreOptions options = Options();
  options.password = kPassword;
  const absl::StatusOr<std::unique_ptr<RedisStore>> store = RedisStore::Open(options);
  ASSERT_TRUE(absl::IsUnauthenticated(store.status())) << store.status();
  EXPECT_FALSE(absl::StrContains(store.status().message(), kPassword)) << store.status();
}

TEST_F(RedisStoreTest, AUserWithoutAPasswordIsInvalidArgument) {
  RedisStoreOptions options = Options();
  options.user = "ingest";
  EXPECT_TRUE(absl::IsInvalidArgument(RedisStore::Open(options).status()));
}

}  // namespace
}  // namespace blockserve::kv_store
