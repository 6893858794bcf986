// BlockStore: a content-addressed map from BlockKey to a block's KV (engine::KvCache
// encoded at position 0). One of the KV store's three concerns; the passage catalog
// (passage_catalog.h) and the passage sources (source_store.h) are the others, and
// kv_store.h puts the three together as every backend implements them: shared memory
// (one node, the embedded default), Redis (across nodes) and tiered (local, then Redis).
//
// A value that fails to decode (corrupt, truncated, written by another model or codec
// version) is a miss: it is counted in `corrupt`, logged, and never returned.
// Stores are safe to call from several threads.
#ifndef BLOCKSERVE_KV_STORE_BLOCK_STORE_H_
#define BLOCKSERVE_KV_STORE_BLOCK_STORE_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/kv_cache.h"
#include "kv_store/block_key.h"

namespace blockserve::kv_store {

struct StoreMetrics {
  int64_t hits = 0;
  int64_t misses = 0;         // absent, expired, or corrupt
  int64_t corrupt = 0;        // values that failed validation (also counted as misses)
  int64_t puts = 0;
  int64_t dropped_puts = 0;   // writes lost to an unavailable backend
  int64_t evictions = 0;
  int64_t bytes_read = 0;     // encoded bytes returned by hits
  int64_t bytes_written = 0;  // encoded bytes stored
  double get_seconds = 0;     // total wall time spent in Get/GetMany
  double put_seconds = 0;
};

class BlockStore {
 public:
  virtual ~BlockStore() = default;

  // NotFound on a miss (absent, or a corrupt value); Unavailable when the store could
  // not be asked (down, timed out: counted as a miss too, so a caller may treat it as
  // one, but it can tell the two apart: blocks/ LoadFailurePolicy). Other errors only
  // for misuse.
  virtual absl::StatusOr<engine::KvCache> Get(const BlockKey& key) = 0;
  // One result per key, in order; batched where the backend can (Redis: pipelined).
  virtual std::vector<absl::StatusOr<engine::KvCache>> GetMany(absl::Span<const BlockKey> keys) = 0;
  // Stores `kv` (its tokens and shape go in the value) and returns the bytes it wrote:
  // the encoded value once per copy written, 0 when the store already held the key and
  // wrote nothing. A store that cannot write (Redis down) drops the write, counts it,
  // and returns UNAVAILABLE; callers go on.
  virtual absl::StatusOr<uint64_t> Put(const BlockKey& key, const engine::KvCache& kv) = 0;
  virtual bool Contains(const BlockKey& key) = 0;
  // Removes the value under `key` (OK when there is none; its source, if any, stays).
  // For a value that is not `key`'s block (another block's, written behind the store's
  // back): content addressing makes Put of a present key a no-op, so the wrong value
  // must go before the right one can be written. UNAVAILABLE when the store is down.
  virtual absl::Status Remove(const BlockKey& key) = 0;

  // OK when the store can be read and written now, UNAVAILABLE (saying why) otherwise.
  // Cheap: health checks call it every half second.
  virtual absl::Status Ping() = 0;

  // The size of `kv`'s value in this store (its dtype and header): what a hit on it
  // reads.
  virtual uint64_t ValueBytes(const engine::KvCache& kv) const = 0;

  virtual StoreMetrics metrics() const = 0;
};

}  // namespace blockserve::kv_store

#endif  // BLOCKSERVE_KV_STORE_BLOCK_STORE_H_
