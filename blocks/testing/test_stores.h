// What the tests of the block cache and of the services over it share: a tiny model
// loaded from a test's temp dir, and a shared-memory KV store of its own that is
// removed when the test lets go of it.
#ifndef BLOCKSERVE_BLOCKS_TESTING_TEST_STORES_H_
#define BLOCKSERVE_BLOCKS_TESTING_TEST_STORES_H_

#include <memory>
#include <string>

#include "engine/dtype.h"
#include "engine/engine.h"
#include "engine/tiny_model.h"
#include "kv_store/redis/redis_store.h"
#include "kv_store/redis/testing/redis_server.h"
#include "kv_store/shm_store.h"

namespace blockserve::blocks::testing {

// Two short passages for tests that ingest and fetch blocks.
inline constexpr char kRiver[] =
    "The river Elbe flows through Dresden and Hamburg to the North Sea.";
inline constexpr char kCapital[] = "The capital of France is Paris.";

// engine::WriteTinyModel(options) into <TempDir>/<name>, loaded with one thread. On
// failure the test fails and the result is null.
std::unique_ptr<engine::Engine> LoadTinyEngine(const std::string& name,
                                               const engine::TinyModelOptions& options = {});

// Unlinks the segment when the store is destroyed.
struct RemoveShmSegment {
  std::string name;
  void operator()(kv_store::ShmStore* store) const;
};
using ScopedShmStore = std::unique_ptr<kv_store::ShmStore, RemoveShmSegment>;

// A fresh 8 MiB segment (256 entries, 256 catalog slots) under a name no other test or
// process uses, for `engine`'s model, storing `dtype`. On failure the test fails and the
// result is null.
ScopedShmStore OpenTestShmStore(const engine::Engine& engine,
                                engine::DType dtype = engine::DType::kF32);

// A real redis-server on a free loopback port (tests stop it to see a store go down) and
// a RedisStore on it for `engine`'s model, storing fp32.
struct TestRedis {
  std::unique_ptr<kv_store::testing::RedisServer> server;
  std::unique_ptr<kv_store::RedisStore> store;
};
// On failure the test fails and the members are null.
TestRedis StartTestRedis(const engine::Engine& engine);

}  // namespace blockserve::blocks::testing

#endif  // BLOCKSERVE_BLOCKS_TESTING_TEST_STORES_H_
