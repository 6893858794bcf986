#include "store_config/store_flags.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kv_store/redis/redis_store.h"
#include "kv_store/redis/testing/redis_server.h"
#include "kv_store/shm_store.h"

ABSL_DECLARE_FLAG(std::string, kv_store);
ABSL_DECLARE_FLAG(std::string, kv_dtype);
ABSL_DECLARE_FLAG(int, redis_port);
ABSL_DECLARE_FLAG(std::string, redis_host);
ABSL_DECLARE_FLAG(std::string, redis_cluster);
ABSL_DECLARE_FLAG(std::string, redis_password_file);
ABSL_DECLARE_FLAG(std::string, redis_user);
ABSL_DECLARE_FLAG(int64_t, redis_block_ttl_s);

namespace blockserve::store_config {
namespace {

const engine::KvShape kShape{2, 2, 4};

engine::KvCache SomeBlock() {
  engine::KvCache kv(kShape);
  const std::vector<int32_t> tokens = {3, 1, 4};
  kv.Append(tokens);
  for (int64_t l = 0; l < kShape.num_layers; ++l) {
    for (int64_t i = 0; i < kv.num_tokens() * kShape.row(); ++i) {
      kv.k(l)[i] = 0.1f * i + l + 1e-6f;  // not representable in bf16
      kv.v(l)[i] = -0.3f * i;
    }
  }
  return kv;
}

class StoreFlagsTest : public ::testing::Test {
 protected:
  void TearDown() override {
    absl::SetFlag(&FLAGS_kv_store, "shm");
    absl::SetFlag(&FLAGS_kv_dtype, "bf16");
    absl::SetFlag(&FLAGS_redis_port, 6379);
    absl::SetFlag(&FLAGS_redis_host, "127.0.0.1");
    absl::SetFlag(&FLAGS_redis_cluster, "");
    absl::SetFlag(&FLAGS_redis_password_file, "");
    absl::SetFlag(&FLAGS_redis_user, "");
    absl::SetFlag(&FLAGS_redis_block_ttl_s, 0);
    (void)kv_store::ShmStore::Remove(shm_name_);
  }

  // A file under the test's temporary directory holding `content`; its path.
  std::string WriteFile(const std::string& name, const std::string& content) {
    const char* dir = getenv("TEST_TMPDIR");
    const std::string path = absl::StrCat(dir != nullptr ? dir : "/tmp", "/", getpid(), name);
    std::ofstream(path, std::ios::binary) << content;
    return path;
  }
  const std::string shm_name_ = absl::StrCat("/bs-store-flags-test-", getpid());
};

TEST_F(StoreFlagsTest, DefaultFlagsSelectSharedMemoryWithBf16) {
  absl::StatusOr<StoreConfig> c = StoreConfigFromFlags();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->kind, StoreKind::kShm);
  EXPECT_EQ(c->dtype, engine::DType::kBF16);
}

TEST_F(StoreFlagsTest, FlagValuesAreParsed) {
  absl::SetFlag(&FLAGS_kv_store, "tiered");
  absl::SetFlag(&FLAGS_kv_dtype, "f32");
  absl::StatusOr<StoreConfig> c = StoreConfigFromFlags();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->kind, StoreKind::kTiered);
  EXPECT_EQ(c->dtype, engine::DType::kF32);
}

TEST_F(StoreFlagsTest, UnknownStoreKindIsInvalidArgument) {
  absl::SetFlag(&FLAGS_kv_store, "memcached");
  EXPECT_EQ(StoreConfigFromFlags().status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(StoreFlagsTest, UnknownDtypeIsInvalidArgument) {
  absl::SetFlag(&FLAGS_kv_dtype, "int8");
  EXPECT_EQ(StoreConfigFromFlags().status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(StoreFlagsTest, OutOfRangeRedisPortIsInvalidArgument) {
  absl::SetFlag(&FLAGS_redis_port, 70000);
  EXPECT_EQ(StoreConfigFromFlags().status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(StoreFlagsTest, TwoOpenersOfOneShmConfigShareBlocksAndCatalog) {
  StoreConfig c;
  c.shm_name = shm_name_;
  c.shm_capacity_bytes = 1 << 20;
  c.dtype = engine::DType::kF32;
  absl::StatusOr<std::unique_ptr<kv_store::KvStore>> writer = OpenStore(c, 42, kShape);
  absl::StatusOr<std::unique_ptr<kv_store::KvStore>> reader = OpenStore(c, 42, kShape);
  ASSERT_TRUE(writer.ok()) << writer.status();
  ASSERT_TRUE(reader.ok()) << reader.status();
  const engine::KvCache kv = SomeBlock();
  const kv_store::BlockKey key = kv_store::MakeBlockKey(42, kv.tokens());
  ASSERT_TRUE((*writer)->Put(key, kv).ok());
  ASSERT_TRUE((*writer)->PutPassage("doc-1", key).ok());

  absl::StatusOr<engine::KvCache> got = (*reader)->Get(key);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->tokens(), kv.tokens());
  // f32 is exact: every element comes back bit for bit.
  for (int64_t l = 0; l < kShape.num_layers; ++l) {
    for (int64_t i = 0; i < kv.num_tokens() * kShape.row(); ++i) {
      ASSERT_EQ(got->k(l)[i], kv.k(l)[i]);
      ASSERT_EQ(got->v(l)[i], kv.v(l)[i]);
    }
  }
  EXPECT_EQ((*reader)->GetPassage("doc-1"), key);
}

TEST_F(StoreFlagsTest, StoreOfAnotherModelDoesNotServeTheBlock) {
  StoreConfig c;
  c.shm_name = shm_name_;
  c.shm_capacity_bytes = 1 << 20;
  absl::StatusOr<std::unique_ptr<kv_store::KvStore>> model_a = OpenStore(c, 1, kShape);
  absl::StatusOr<std::unique_ptr<kv_store::KvStore>> model_b = OpenStore(c, 2, kShape);
  ASSERT_TRUE(model_a.ok() && model_b.ok());
  const engine::KvCache kv = SomeBlock();
  const kv_store::BlockKey key = kv_store::MakeBlockKey(1, kv.tokens());
  ASSERT_TRUE((*model_a)->Put(key, kv).ok());
  EXPECT_EQ((*model_b)->Get(key).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(StoreFlagsTest, DescriptionNamesBackendAndDtype) {
  StoreConfig c;
  c.kind = StoreKind::kTiered;
  const std::string d = DescribeStore(c);
  EXPECT_NE(d.find("shm /blockserve-kv"), std::string::npos) << d;
  EXPECT_NE(d.find("redis 127.0.0.1:6379"), std::string::npos) << d;
  EXPECT_NE(d.find("bf16"), std::string::npos) << d;
}

TEST_F(StoreFlagsTest, ThePasswordFileIsReadWithoutItsLineEnd) {
  absl::SetFlag(&FLAGS_redis_password_file, WriteFile("pw", "s3cret pw\n"));
  absl::SetFlag(&FLAGS_redis_user, "ingest");
  absl::StatusOr<StoreConfig> c = StoreConfigFromFlags();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->redis_password, "s3cret pw");
  EXPECT_EQ(c->redis_user, "ingest");

  absl::SetFlag(&FLAGS_redis_password_file, WriteFile("pw-crlf", "s3cret\r\n"));
  c = StoreConfigFromFlags();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->redis_password, "s3cret");
}

TEST_F(StoreFlagsTest, NoPasswordFileMeansNoAuth) {
  absl::StatusOr<StoreConfig> c = StoreConfigFromFlags();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->redis_password, "");
  EXPECT_EQ(c->redis_user, "");
}

TEST_F(StoreFlagsTest, AnUnusablePasswordFileIsInvalidArgumentNamingTheFile) {
  for (const std::string& path :
       {WriteFile("empty", ""), WriteFile("newline", "\n"), std::string("/no/such/file")}) {
    absl::SetFlag(&FLAGS_redis_password_file, path);
    const absl::Status status = StoreConfigFromFlags().status();
    EXPECT_TRUE(absl::IsInvalidArgument(status)) << path << ": " << status;
    EXPECT_TRUE(absl::StrContains(status.message(), path)) << status;
  }
}

TEST_F(StoreFlagsTest, AUserWithoutAPasswordFileIsInvalidArgument) {
  absl::SetFlag(&FLAGS_redis_user, "ingest");
  EXPECT_TRUE(absl::IsInvalidArgument(StoreConfigFromFlags().status()));
}

TEST_F(StoreFlagsTest, TheDescriptionSaysAuthButNeverThePassword) {
  StoreConfig c;
  c.kind = StoreKind::kRedis;
  c.redis_password = "s3cret-pw";
  std::string d = DescribeStore(c);
  EXPECT_TRUE(absl::StrContains(d, "AUTH as the default user")) << d;
  EXPECT_FALSE(absl::StrContains(d, "s3cret")) << d;
  c.redis_user = "ingest";
  d = DescribeStore(c);
  EXPECT_TRUE(absl::StrContains(d, "AUTH as ingest")) << d;
  EXPECT_FALSE(absl::StrContains(d, "s3cret")) << d;
}

// The redis and the tiered store (which opens the same Redis behind shared memory)
// both open with the right password and refuse to open with a wrong or missing one,
// naming the Redis and the flags, never the password.
TEST_F(StoreFlagsTest, RedisAndTieredStoresOpenOnlyWithTheRightPassword) {
  kv_store::testing::RedisServerOptions o;
  o.password = "right-pw-5e1f";
  absl::StatusOr<std::unique_ptr<kv_store::testing::RedisServer>> redis =
      kv_store::testing::RedisServer::Start(o);
  ASSERT_TRUE(redis.ok()) << "this test needs a real redis-server: " << redis.status();
  const std::string address = absl::StrCat("127.0.0.1:", (*redis)->port());

  for (const StoreKind kind : {StoreKind::kRedis, StoreKind::kTiered}) {
    StoreConfig c;
    c.kind = kind;
    c.shm_name = shm_name_;
    c.shm_capacity_bytes = 1 << 20;
    c.redis_port = (*redis)->port();
    c.redis_password = "right-pw-5e1f";
    absl::StatusOr<std::unique_ptr<kv_store::KvStore>> store = OpenStore(c, 42, kShape);
    ASSERT_TRUE(store.ok()) << store.status();
    const engine::KvCache kv = SomeBlock();
    EXPECT_TRUE((*store)->Put(kv_store::MakeBlockKey(42, kv.tokens()), kv).ok());
    EXPECT_TRUE((*store)->Ping().ok());
    store->reset();

    for (const std::string& password : {std::string(), std::string("wrong-pw-77aa")}) {
      c.redis_password = password;
      const absl::Status status = OpenStore(c, 42, kShape).status();
      EXPECT_TRUE(absl::IsUnauthenticated(status)) << status;
      EXPECT_TRUE(absl::StrContains(status.message(), address)) << status;
      EXPECT_TRUE(absl::StrContains(status.message(), "--redis_password_file")) << status;
      EXPECT_FALSE(absl::StrContains(status.message(), "pw-")) << status;
    }
  }
}

// --redis_block_ttl_s: blocks get the TTL (so a volatile-* Redis can evict them), sources
// and catalog entries none (so it never evicts what recomputation needs).
TEST_F(StoreFlagsTest, BlockTtlAppliesToBlocksOnly) {
  absl::SetFlag(&FLAGS_kv_store, "redis");
  absl::SetFlag(&FLAGS_redis_block_ttl_s, -1);
  EXPECT_EQ(StoreConfigFromFlags().status().code(), absl::StatusCode::kInvalidArgument);
  absl::SetFlag(&FLAGS_redis_block_ttl_s, 0);
  ASSERT_TRUE(StoreConfigFromFlags().ok());
  EXPECT_FALSE(StoreConfigFromFlags()->redis_block_ttl.has_value());

  absl::StatusOr<std::unique_ptr<kv_store::testing::RedisServer>> redis =
      kv_store::testing::RedisServer::Start();
  ASSERT_TRUE(redis.ok()) << "this test needs a real redis-server: " << redis.status();
  absl::SetFlag(&FLAGS_redis_block_ttl_s, 3600);
  absl::SetFlag(&FLAGS_redis_port, (*redis)->port());
  absl::StatusOr<StoreConfig> c = StoreConfigFromFlags();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->redis_block_ttl, absl::Hours(1));
  EXPECT_TRUE(absl::StrContains(DescribeStore(*c), "block TTL 1h")) << DescribeStore(*c);
  absl::StatusOr<std::unique_ptr<kv_store::KvStore>> store = OpenStore(*c, 42, kShape);
  ASSERT_TRUE(store.ok()) << store.status();
  const engine::KvCache kv = SomeBlock();
  const kv_store::BlockKey key = kv_store::MakeBlockKey(42, kv.tokens());
  ASSERT_TRUE((*store)->Put(key, kv).ok());
  ASSERT_TRUE((*store)->PutSource(key, kv.tokens()).ok());
  ASSERT_TRUE((*store)->PutPassage("doc-ttl", key).ok());
  auto* redis_store = dynamic_cast<kv_store::RedisStore*>(store->get());
  ASSERT_NE(redis_store, nullptr);
  auto pttl = [&](const std::string& k) {
    absl::StatusOr<std::string> r = (*redis)->Call({"PTTL", k});
    int64_t ms = -3;
    return r.ok() && absl::SimpleAtoi(*r, &ms) ? ms : -3;
  };
  const int64_t block_ttl = pttl(redis_store->BlockRedisKey(key));
  EXPECT_GT(block_ttl, 3590 * 1000);
  EXPECT_LE(block_ttl, 3600 * 1000);
  EXPECT_EQ(pttl(redis_store->SourceRedisKey(key)), -1);  // exists, no TTL
  EXPECT_EQ(pttl(redis_store->PassageRedisKey("doc-ttl")), -1);
}

TEST_F(StoreFlagsTest, RedisClusterSeedsAreParsedAndDescribed) {
  absl::SetFlag(&FLAGS_kv_store, "redis");
  absl::SetFlag(&FLAGS_redis_cluster, "redis-0.redis:6379, 10.0.0.7:7000,[::1]:7001");
  absl::StatusOr<StoreConfig> c = StoreConfigFromFlags();
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->redis_cluster_seeds,
            (std::vector<std::string>{"redis-0.redis:6379", "10.0.0.7:7000", "[::1]:7001"}));
  const std::string d = DescribeStore(*c);
  EXPECT_TRUE(absl::StrContains(d, "redis cluster (seeds redis-0.redis:6379,10.0.0.7:7000"))
      << d;
  absl::SetFlag(&FLAGS_kv_store, "tiered");
  EXPECT_TRUE(StoreConfigFromFlags().ok());
}

TEST_F(StoreFlagsTest, BadRedisClusterFlagsAreInvalidArgumentSayingWhy) {
  absl::SetFlag(&FLAGS_kv_store, "redis");
  for (const char* bad : {"redis-0", "a:1,,b:2", "a:0", ":6379", "a:1,b"}) {
    absl::SetFlag(&FLAGS_redis_cluster, bad);
    const absl::Status status = StoreConfigFromFlags().status();
    EXPECT_TRUE(absl::IsInvalidArgument(status)) << bad << ": " << status;
    EXPECT_TRUE(absl::StrContains(status.message(), "--redis_cluster")) << status;
  }
  absl::SetFlag(&FLAGS_redis_cluster, "a:1");
  absl::SetFlag(&FLAGS_redis_host, "redis");
  absl::Status status = StoreConfigFromFlags().status();
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "exclusive")) << status;
  absl::SetFlag(&FLAGS_redis_host, "127.0.0.1");
  absl::SetFlag(&FLAGS_redis_port, 7000);
  EXPECT_TRUE(absl::IsInvalidArgument(StoreConfigFromFlags().status()));
  absl::SetFlag(&FLAGS_redis_port, 6379);
  absl::SetFlag(&FLAGS_kv_store, "shm");
  status = StoreConfigFromFlags().status();
  EXPECT_TRUE(absl::IsInvalidArgument(status)) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "--kv_store")) << status;
}

// --redis_cluster reaches the store: the redis and the tiered store open on a real
// cluster (with a password, which every node requires) and spread blocks over it.
TEST_F(StoreFlagsTest, RedisAndTieredStoresOpenOnARedisCluster) {
  absl::StatusOr<std::unique_ptr<kv_store::testing::RedisCluster>> cluster =
      kv_store::testing::RedisCluster::Start({.password = "cluster-pw-9d1c"});
  ASSERT_TRUE(cluster.ok()) << "this test needs redis-server and redis-cli: " << cluster.status();
  absl::SetFlag(&FLAGS_redis_cluster, (*cluster)->SeedAddresses()[0]);
  absl::SetFlag(&FLAGS_redis_password_file, WriteFile("cluster-pw", "cluster-pw-9d1c\n"));
  for (const char* kind : {"redis", "tiered"}) {
    absl::SetFlag(&FLAGS_kv_store, kind);
    absl::StatusOr<StoreConfig> c = StoreConfigFromFlags();
    ASSERT_TRUE(c.ok()) << c.status();
    c->shm_name = shm_name_;
    c->shm_capacity_bytes = 1 << 20;
    absl::StatusOr<std::unique_ptr<kv_store::KvStore>> store = OpenStore(*c, 42, kShape);
    ASSERT_TRUE(store.ok()) << kind << ": " << store.status();
    const engine::KvCache kv = SomeBlock();
    const kv_store::BlockKey key = kv_store::MakeBlockKey(42, kv.tokens());
    EXPECT_TRUE((*store)->Put(key, kv).ok());
    EXPECT_TRUE((*store)->Get(key).ok());
    EXPECT_TRUE((*store)->PutPassage("doc", key).ok());
    EXPECT_EQ((*store)->GetPassage("doc"), key);
    EXPECT_TRUE((*store)->Ping().ok());
    store->reset();
    (void)kv_store::ShmStore::Remove(shm_name_);
  }
  // A cluster node given as the single Redis fails the opening, saying so.
  absl::SetFlag(&FLAGS_redis_cluster, "");
  absl::SetFlag(&FLAGS_redis_port, (*cluster)->node(0).port());
  absl::SetFlag(&FLAGS_kv_store, "redis");
  absl::StatusOr<StoreConfig> c = StoreConfigFromFlags();
  ASSERT_TRUE(c.ok()) << c.status();
  const absl::Status status = OpenStore(*c, 42, kShape).status();
  EXPECT_TRUE(absl::IsFailedPrecondition(status)) << status;
  EXPECT_TRUE(absl::StrContains(status.message(), "--redis_cluster")) << status;
}

}  // namespace
}  // namespace blockserve::store_config
