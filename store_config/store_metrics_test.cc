#include "store_config/store_metrics.h"

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "kv_store/shm_store.h"
#include "kv_store/tiered/tiered_store.h"

namespace blockserve::store_config {
namespace {

constexpr uint64_t kFingerprint = 0x5707'e000'0000'0018ULL;
constexpr engine::KvShape kShape{.num_layers = 1, .num_kv_heads = 1, .head_dim = 4};

// A fresh shared-memory store (removed when the test process ends).
std::unique_ptr<kv_store::ShmStore> OpenShm() {
  static std::atomic<int> counter{0};
  kv_store::ShmStoreOptions o;
  o.name = absl::StrCat("/bs-store-metrics-test-", getpid(), "-", counter++);
  o.capacity_bytes = 1 << 20;
  o.max_entries = 16;
  o.max_passages = 16;
  o.codec = {.model_fingerprint = kFingerprint, .shape = kShape, .dtype = engine::DType::kF32};
  absl::StatusOr<std::unique_ptr<kv_store::ShmStore>> store = kv_store::ShmStore::Open(o);
  EXPECT_TRUE(store.ok()) << store.status();
  if (store.ok()) shm_unlink(o.name.c_str());  // the open mappings stay valid
  return store.ok() ? *std::move(store) : nullptr;
}

engine::KvCache Block() {
  engine::KvCache kv(kShape);
  kv.Append({7, 8});
  for (int64_t i = 0; i < 2 * kShape.row(); ++i) kv.k(0)[i] = kv.v(0)[i] = 0.5f * i;
  return kv;
}

bool Has(const std::string& text, const std::string& line) {
  return text.find(line + "\n") != std::string::npos;
}

TEST(StoreMetricsTest, OneStoreIsReportedAsIs) {
  std::unique_ptr<kv_store::ShmStore> store = OpenShm();
  ASSERT_NE(store, nullptr);
  MetricsRegistry metrics;
  ExportStoreMetrics(*store, metrics);
  const engine::KvCache kv = Block();
  const kv_store::BlockKey key = kv_store::MakeBlockKey(kFingerprint, kv.tokens());
  EXPECT_FALSE(store->Get(key).ok());
  ASSERT_TRUE(store->Put(key, kv).ok());
  EXPECT_TRUE(store->Get(key).ok());
  EXPECT_TRUE(store->Get(key).ok());
  const std::string text = metrics.RenderText();
  EXPECT_TRUE(Has(text, "blockserve_kv_store_hits_total 2")) << text;
  EXPECT_TRUE(Has(text, "blockserve_kv_store_misses_total 1")) << text;
  EXPECT_TRUE(Has(text, "blockserve_kv_store_puts_total 1")) << text;
  EXPECT_TRUE(Has(text, "# TYPE blockserve_kv_store_hits_total counter")) << text;
  EXPECT_EQ(text.find("blockserve_kv_store_local_"), std::string::npos) << text;
}

TEST(StoreMetricsTest, ATieredStoreReportsEachTier) {
  std::unique_ptr<kv_store::ShmStore> remote = OpenShm();
  ASSERT_NE(remote, nullptr);
  const engine::KvCache kv = Block();
  const kv_store::BlockKey key = kv_store::MakeBlockKey(kFingerprint, kv.tokens());
  ASSERT_TRUE(remote->Put(key, kv).ok());  // another node encoded it: only the shared tier has it
  kv_store::TieredStore tiered(OpenShm(), std::move(remote));
  MetricsRegistry metrics;
  ExportStoreMetrics(tiered, metrics);

  EXPECT_TRUE(tiered.Get(key).ok());  // local miss, remote hit, copied to the local tier
  std::string text = metrics.RenderText();
  EXPECT_TRUE(Has(text, "blockserve_kv_store_local_hits_total 0")) << text;
  EXPECT_TRUE(Has(text, "blockserve_kv_store_local_misses_total 1")) << text;
  EXPECT_TRUE(Has(text, "blockserve_kv_store_remote_hits_total 1")) << text;

  EXPECT_TRUE(tiered.Get(key).ok());  // now the node's own tier answers
  text = metrics.RenderText();
  EXPECT_TRUE(Has(text, "blockserve_kv_store_local_hits_total 1")) << text;
  EXPECT_TRUE(Has(text, "blockserve_kv_store_remote_hits_total 1")) << text;
  EXPECT_EQ(text.find("blockserve_kv_store_hits_total"), std::string::npos) << text;
}

}  // namespace
}  // namespace blockserve::store_config
