// KvStore: the three concerns of the KV store in one object, as each backend implements
// them (ShmStore, RedisStore, TieredStore): blocks (block_store.h), the passage catalog
// (passage_catalog.h) and passage sources (source_store.h). Code that needs one concern
// takes that interface; blocks/ takes all three from one KvStore.
#ifndef BLOCKSERVE_KV_STORE_KV_STORE_H_
#define BLOCKSERVE_KV_STORE_KV_STORE_H_

#include "kv_store/block_store.h"
#include "kv_store/passage_catalog.h"
#include "kv_store/source_store.h"

namespace blockserve::kv_store {

class KvStore : public BlockStore, public PassageCatalog, public SourceStore {};

}  // namespace blockserve::kv_store

#endif  // BLOCKSERVE_KV_STORE_KV_STORE_H_
