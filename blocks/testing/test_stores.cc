#include "blocks/testing/test_stores.h"

#include <unistd.h>

#include <atomic>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace blockserve::blocks::testing {

std::unique_ptr<engine::Engine> LoadTinyEngine(const std::string& name,
                                               const engine::TinyModelOptions& options) {
  const std::string dir = ::testing::TempDir() + "/" + name;
  if (absl::Status s = engine::WriteTinyModel(dir, options); !s.ok()) {
    ADD_FAILURE() << "writing the tiny model: " << s;
    return nullptr;
  }
  absl::StatusOr<std::unique_ptr<engine::Engine>> e = engine::Engine::Load(dir, {1});
  if (!e.ok()) {
    ADD_FAILURE() << "loading the tiny model: " << e.status();
    return nullptr;
  }
  return *std::move(e);
}

void RemoveShmSegment::operator()(kv_store::ShmStore* store) const {
  delete store;
  EXPECT_TRUE(kv_store::ShmStore::Remove(name).ok()) << name;
}

ScopedShmStore OpenTestShmStore(const engine::Engine& engine, engine::DType dtype) {
  static std::atomic<int> counter{0};
  kv_store::ShmStoreOptions o;
  o.name = absl::StrCat("/bs-test-", getpid(), "-", counter++);
  o.capacity_bytes = 8 << 20;
  o.max_entries = 256;
  o.max_passages = 256;
  o.codec = {engine.model_fingerprint(), engine.kv_shape(), dtype};
  absl::StatusOr<std::unique_ptr<kv_store::ShmStore>> s = kv_store::ShmStore::Open(o);
  if (!s.ok()) {
    ADD_FAILURE() << "opening " << o.name << ": " << s.status();
    return ScopedShmStore(nullptr, RemoveShmSegment{o.name});
  }
  return ScopedShmStore(s->release(), RemoveShmSegment{o.name});
}

TestRedis StartTestRedis(const engine::Engine& engine) {
  TestRedis redis;
  absl::StatusOr<std::unique_ptr<kv_store::testing::RedisServer>> server =
      kv_store::testing::RedisServer::Start();
  if (!server.ok()) {
    ADD_FAILURE() << "starting redis-server: " << server.status();
    return redis;
  }
  kv_store::RedisStoreOptions o;
  o.port = (*server)->port();
  o.codec = {engine.model_fingerprint(), engine.kv_shape(), engine::DType::kF32};
  absl::StatusOr<std::unique_ptr<kv_store::RedisStore>> store = kv_store::RedisStore::Open(o);
  if (!store.ok()) {
    ADD_FAILURE() << "opening the Redis store: " << store.status();
    return redis;
  }
  redis.server = *std::move(server);
  redis.store = *std::move(store);
  return redis;
}

}  // namespace blockserve::blocks::testing
