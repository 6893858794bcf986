#include "store_config/store_flags.h"

#include <unistd.h>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "kv_store/shm_store.h"

ABSL_DECLARE_FLAG(std::string, kv_store);
ABSL_DECLARE_FLAG(std::string, kv_dtype);
ABSL_DECLARE_FLAG(int, redis_port);

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
    (void)kv_store::ShmStore::Remove(shm_name_);
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

}  // namespace
}  // namespace blockserve::store_config
