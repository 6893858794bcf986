// What a service over the block cache (passage_encoder, query_prefill) opens at
// start-up, from its flags: the model (common/model_flags.h), the KV store
// (store_flags.h) and the blocks::BlockCache over both.
#ifndef BLOCKSERVE_STORE_CONFIG_CACHE_STACK_H_
#define BLOCKSERVE_STORE_CONFIG_CACHE_STACK_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "blocks/block_cache.h"
#include "engine/engine.h"
#include "kv_store/kv_store.h"

namespace blockserve::store_config {

struct CacheStack {
  std::unique_ptr<engine::Engine> engine;
  std::unique_ptr<kv_store::KvStore> store;
  std::string store_description;  // DescribeStore, for the start-up log
  std::unique_ptr<blocks::BlockCache> cache;
};

// Loads the model, then opens the store for it. Errors say which step failed: the
// flags' (InvalidArgument), the model's, the store's.
absl::StatusOr<CacheStack> OpenCacheStackFromFlags();

}  // namespace blockserve::store_config

#endif  // BLOCKSERVE_STORE_CONFIG_CACHE_STACK_H_
