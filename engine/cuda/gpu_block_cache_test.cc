// The GPU block cache (gpu_block_cache.h) on a real device: uploads, hits, eviction.
// Tagged manual+gpu: run by scripts/gpu_test.sh only. NEVER RUN so far.
#include "engine/cuda/gpu_block_cache.h"

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <vector>

#include "engine/cuda/cuda_util.h"

namespace blockserve::engine::cuda {
namespace {

const KvShape kShape{2, 2, 8};

KvCache Block(int64_t tokens, float base) {
  KvCache kv(kShape);
  kv.Append(std::vector<int32_t>(tokens, 1));
  for (int64_t l = 0; l < kShape.num_layers; ++l) {
    for (int64_t i = 0; i < tokens * kShape.row(); ++i) {
      kv.k(l)[i] = base + l * 1000 + i;
      kv.v(l)[i] = -(base + l * 1000 + i);
    }
  }
  return kv;
}

class GpuBlockCacheTest : public testing::Test {
 protected:
  void SetUp() override { ASSERT_GT(CudaDeviceCount(), 0) << "this test needs a CUDA GPU"; }
};

TEST_F(GpuBlockCacheTest, AMissUploadsTheBlockInDeviceLayoutAndAHitReusesIt) {
  const KvCache kv = Block(5, 0.5f);
  absl::StatusOr<std::unique_ptr<GpuBlockCache>> cache =
      GpuBlockCache::Create({.capacity_bytes = 4 * kv.bytes()});
  ASSERT_TRUE(cache.ok()) << cache.status();
  absl::StatusOr<DeviceBlock> first = (*cache)->Acquire("a", kv);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ((*cache)->stats().misses, 1);
  const int64_t n = kv.num_tokens() * kShape.row();
  for (int64_t l = 0; l < kShape.num_layers; ++l) {
    std::vector<float> k(n), v(n);
    ASSERT_EQ(cudaMemcpy(k.data(), first->k(l), n * 4, cudaMemcpyDeviceToHost), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(v.data(), first->v(l), n * 4, cudaMemcpyDeviceToHost), cudaSuccess);
    EXPECT_EQ(k, std::vector<float>(kv.k(l), kv.k(l) + n));
    EXPECT_EQ(v, std::vector<float>(kv.v(l), kv.v(l) + n));
  }
  (*cache)->Release("a");
  absl::StatusOr<DeviceBlock> again = (*cache)->Acquire("a", kv);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->data, first->data);
  EXPECT_EQ((*cache)->stats().hits, 1);
  (*cache)->Release("a");
}

TEST_F(GpuBlockCacheTest, EvictsTheLeastRecentlyUsedUnpinnedBlock) {
  const KvCache kv = Block(4, 1.0f);
  absl::StatusOr<std::unique_ptr<GpuBlockCache>> cache =
      GpuBlockCache::Create({.capacity_bytes = 2 * kv.bytes()});
  ASSERT_TRUE(cache.ok()) << cache.status();
  ASSERT_TRUE((*cache)->Acquire("a", kv).ok());
  ASSERT_TRUE((*cache)->Acquire("b", kv).ok());
  // Both pinned: a third block cannot get in.
  EXPECT_EQ((*cache)->Acquire("c", kv).status().code(), absl::StatusCode::kResourceExhausted);
  (*cache)->Release("a");
  (*cache)->Release("b");
  ASSERT_TRUE((*cache)->Acquire("c", kv).ok());  // evicts a
  EXPECT_EQ((*cache)->stats().evictions, 1);
  EXPECT_LE((*cache)->stats().bytes, 2 * kv.bytes());
  (*cache)->Release("c");
  const int64_t misses = (*cache)->stats().misses;
  ASSERT_TRUE((*cache)->Acquire("b", kv).ok());  // still resident
  EXPECT_EQ((*cache)->stats().misses, misses);
  (*cache)->Release("b");
}

}  // namespace
}  // namespace blockserve::engine::cuda
