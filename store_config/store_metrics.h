// The KV store's own counters (kv_store::StoreMetrics: hits, misses, corrupt values,
// writes, dropped writes, evictions, bytes) on a service's /metrics, copied from the
// store at every scrape. A tiered store reports each tier on its own, so an operator
// (and the loopback cluster test) can see how often the node-local tier answers:
//
//   blockserve_kv_store_hits_total, ..._misses_total, ...   shm or redis alone
//   blockserve_kv_store_local_hits_total, ...               tiered: the node's shm tier
//   blockserve_kv_store_remote_hits_total, ...              tiered: the shared Redis tier
#ifndef BLOCKSERVE_STORE_CONFIG_STORE_METRICS_H_
#define BLOCKSERVE_STORE_CONFIG_STORE_METRICS_H_

#include "common/metrics.h"
#include "kv_store/kv_store.h"

namespace blockserve::store_config {

// Registers a collector on `metrics` that reads `store` at every render. `store` must
// outlive `metrics`' last render.
void ExportStoreMetrics(const kv_store::KvStore& store, MetricsRegistry& metrics);

}  // namespace blockserve::store_config

#endif  // BLOCKSERVE_STORE_CONFIG_STORE_METRICS_H_
