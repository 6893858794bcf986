// The KV store's one interface: a content-addressed map from BlockKey to a block's KV
// (engine::KvCache encoded at position 0), plus the catalog that maps a client's
// passage ids to content keys, plus the sources of named passages (the token ids a block
// was encoded from) so that an evicted block can be computed again. Implementations: shared memory (one node, the embedded
// default), Redis (across nodes) and a tiered store (local first, then Redis).
//
// A value that fails to decode (corrupt, truncated, written by another model or codec
// version) is a miss: it is counted in `corrupt`, logged, and never returned.
// Stores are safe to call from several threads.
#ifndef BLOCKSERVE_KV_STORE_BLOCK_STORE_H_
#define BLOCKSERVE_KV_STORE_BLOCK_STORE_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "engine/kv_cache.h"

namespace blockserve::kv_store {

// hash(model fingerprint, token ids): 128 bits, so the same passage ingested twice (for
// the same model) is stored once, and different models never share an entry.
struct BlockKey {
  std::array<uint8_t, 16> bytes{};
  std::string Hex() const;  // 32 lowercase hex digits
  static absl::StatusOr<BlockKey> FromHex(std::string_view hex);
  bool operator==(const BlockKey&) const = default;
};

BlockKey MakeBlockKey(uint64_t model_fingerprint, absl::Span<const int32_t> tokens);

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

  // NotFound on a miss (including corrupt values). Other errors only for misuse.
  virtual absl::StatusOr<engine::KvCache> Get(const BlockKey& key) = 0;
  // One result per key, in order; batched where the backend can (Redis: pipelined).
  virtual std::vector<absl::StatusOr<engine::KvCache>> GetMany(absl::Span<const BlockKey> keys) = 0;
  // Stores `kv` (its tokens and shape go in the value). A store that cannot write
  // (Redis down) drops the write, counts it, and returns UNAVAILABLE; callers go on.
  virtual absl::Status Put(const BlockKey& key, const engine::KvCache& kv) = 0;
  virtual bool Contains(const BlockKey& key) = 0;

  // Catalog: passage id (the client's name) -> content key. Last write wins.
  virtual absl::Status PutPassage(std::string_view passage_id, const BlockKey& key) = 0;
  virtual std::optional<BlockKey> GetPassage(std::string_view passage_id) = 0;

  // Sources: the token ids the block under `key` was encoded from (the encoder stores
  // them for every named passage). A source is small (4 bytes a token, against hundreds
  // of bytes to hundreds of KB a token for the block) and each store keeps it at least
  // as long as its block, so that a prefill that finds a named passage's block evicted
  // encodes it again from the source. Each store documents how long a source outlives
  // its block. PutSource of a present key refreshes it. GetSource: NotFound when absent
  // or corrupt; callers check that the tokens hash to `key`.
  virtual absl::Status PutSource(const BlockKey& key, absl::Span<const int32_t> tokens) = 0;
  virtual absl::StatusOr<std::vector<int32_t>> GetSource(const BlockKey& key) = 0;

  virtual StoreMetrics metrics() const = 0;
};

}  // namespace blockserve::kv_store

#endif  // BLOCKSERVE_KV_STORE_BLOCK_STORE_H_
