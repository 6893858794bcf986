#include "store_config/cache_stack.h"

#include "absl/strings/str_cat.h"
#include "common/model_flags.h"
#include "store_config/store_flags.h"

namespace blockserve::store_config {

absl::StatusOr<CacheStack> OpenCacheStackFromFlags() {
  CacheStack stack;
  absl::StatusOr<std::unique_ptr<engine::Engine>> engine = LoadEngineFromFlags();
  if (!engine.ok()) return engine.status();
  stack.engine = *std::move(engine);
  absl::StatusOr<FlagStore> store =
      OpenStoreFromFlags(stack.engine->model_fingerprint(), stack.engine->kv_shape(),
                         stack.engine->kv_dtype());
  if (!store.ok()) {
    return absl::Status(store.status().code(),
                        absl::StrCat("opening the KV store: ", store.status().message()));
  }
  stack.store = std::move(store->store);
  stack.store_description = std::move(store->description);
  stack.cache = std::make_unique<blocks::BlockCache>(*stack.engine, *stack.store);
  return stack;
}

}  // namespace blockserve::store_config
