#include "store_config/store_metrics.h"

#include <string>

#include "kv_store/tiered/tiered_store.h"

namespace blockserve::store_config {
namespace {

void Copy(const kv_store::StoreMetrics& m, const std::string& prefix, const std::string& what,
          MetricsRegistry& metrics) {
  auto set = [&](const char* name, const std::string& help, double value) {
    metrics.GetCounter(prefix + name, help + " (" + what + ")")->SetTotal(value);
  };
  set("hits_total", "KV blocks found", static_cast<double>(m.hits));
  set("misses_total", "KV blocks absent, expired or corrupt", static_cast<double>(m.misses));
  set("corrupt_total", "KV values that failed validation", static_cast<double>(m.corrupt));
  set("puts_total", "KV writes taken", static_cast<double>(m.puts));
  set("dropped_puts_total", "KV writes lost to an unavailable store",
      static_cast<double>(m.dropped_puts));
  set("evictions_total", "KV blocks evicted", static_cast<double>(m.evictions));
  set("read_bytes_total", "encoded KV bytes returned by hits", static_cast<double>(m.bytes_read));
  set("written_bytes_total", "encoded KV bytes stored", static_cast<double>(m.bytes_written));
}

}  // namespace

void ExportStoreMetrics(const kv_store::KvStore& store, MetricsRegistry& metrics) {
  const auto* tiered = dynamic_cast<const kv_store::TieredStore*>(&store);
  metrics.AddCollector([&store, &metrics, tiered] {
    if (tiered != nullptr) {
      Copy(tiered->local_metrics(), "blockserve_kv_store_local_", "node-local tier", metrics);
      Copy(tiered->remote_metrics(), "blockserve_kv_store_remote_", "shared tier", metrics);
    } else {
      Copy(store.metrics(), "blockserve_kv_store_", "KV store", metrics);
    }
  });
}

}  // namespace blockserve::store_config
