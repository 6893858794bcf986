// What the Redis store's tests share: blocks distinguishable by seed, compared bit for
// bit, and opening a store.
#ifndef BLOCKSERVE_KV_STORE_REDIS_TESTING_TEST_UTIL_H_
#define BLOCKSERVE_KV_STORE_REDIS_TESTING_TEST_UTIL_H_

#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "engine/kv_cache.h"
#include "gtest/gtest.h"
#include "kv_store/redis/redis_store.h"

namespace blockserve::kv_store::testing {

// A block whose every float and token depends on `seed`, so blocks are distinguishable.
inline engine::KvCache MakeBlock(const engine::KvShape& shape, int64_t num_tokens, int seed) {
  engine::KvCache kv(shape);
  std::vector<int32_t> tokens(num_tokens);
  for (int64_t t = 0; t < num_tokens; ++t) tokens[t] = static_cast<int32_t>(seed * 1000 + t);
  kv.Append(tokens);
  const int64_t n = num_tokens * shape.row();
  for (int64_t l = 0; l < shape.num_layers; ++l) {
    for (int64_t i = 0; i < n; ++i) {
      kv.k(l)[i] = 0.001f * static_cast<float>((seed * 7919 + l * 31 + i) % 2003) - 1.0f;
      kv.v(l)[i] = 0.37f * static_cast<float>(seed) + 1e-3f * static_cast<float>(i % 977) + l;
    }
  }
  return kv;
}

// Bit-exact equality of shape, tokens, start position and every K/V float.
inline bool SameBlock(const engine::KvCache& a, const engine::KvCache& b) {
  if (!(a.shape() == b.shape()) || a.tokens() != b.tokens() ||
      a.start_position() != b.start_position()) {
    return false;
  }
  const size_t bytes = b.num_tokens() * b.shape().row() * sizeof(float);
  for (int64_t l = 0; l < b.shape().num_layers; ++l) {
    if (std::memcmp(a.k(l), b.k(l), bytes) != 0 || std::memcmp(a.v(l), b.v(l), bytes) != 0) {
      return false;
    }
  }
  return true;
}

// RedisStore::Open, failing the test (and returning null) when it fails.
inline std::unique_ptr<RedisStore> OpenStore(const RedisStoreOptions& options) {
  absl::StatusOr<std::unique_ptr<RedisStore>> store = RedisStore::Open(options);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? *std::move(store) : nullptr;
}

}  // namespace blockserve::kv_store::testing

#endif  // BLOCKSERVE_KV_STORE_REDIS_TESTING_TEST_UTIL_H_
