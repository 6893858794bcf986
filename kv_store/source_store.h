// SourceStore: the token ids a stored block was encoded from, kept for every named
// passage so that a block the store evicted can be computed again. One of the KV
// store's three concerns (kv_store.h).
//
// A source is small (4 bytes a token, against hundreds of bytes to hundreds of KB a
// token for the block) and each store keeps it at least as long as its block; each
// store documents how long a source outlives its block. Safe to call from several
// threads.
#ifndef BLOCKSERVE_KV_STORE_SOURCE_STORE_H_
#define BLOCKSERVE_KV_STORE_SOURCE_STORE_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "kv_store/block_key.h"

namespace blockserve::kv_store {

class SourceStore {
 public:
  virtual ~SourceStore() = default;

  // Stores (or refreshes) the source of the block under `key`.
  virtual absl::Status PutSource(const BlockKey& key, absl::Span<const int32_t> tokens) = 0;
  // NotFound when absent or corrupt. Callers check that the tokens hash to `key`.
  virtual absl::StatusOr<std::vector<int32_t>> GetSource(const BlockKey& key) = 0;
};

}  // namespace blockserve::kv_store

#endif  // BLOCKSERVE_KV_STORE_SOURCE_STORE_H_
