// The bookkeeping of the GPU block cache (gpu_block_cache.h), without any CUDA: which
// blocks are resident, how many bytes they hold, which one to evict next. Keys are the
// KV store's content keys (kv_store::BlockKey::Hex() or its raw bytes: any string).
//
// Policy: least recently used first, bounded by bytes. A pinned entry (one whose device
// memory a computation is reading) is never evicted; Insert fails rather than evict it.
// Not thread-safe: the owner serializes calls.
#ifndef BLOCKSERVE_ENGINE_CUDA_BLOCK_LRU_H_
#define BLOCKSERVE_ENGINE_CUDA_BLOCK_LRU_H_

#include <cstdint>
#include <list>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"

namespace blockserve::engine::cuda {

struct BlockLruStats {
  int64_t hits = 0;       // Lookup found the key
  int64_t misses = 0;     // Lookup did not
  int64_t evictions = 0;  // entries removed to make room
  int64_t bytes = 0;      // bytes held now
  int64_t entries = 0;    // entries held now
};

class BlockLru {
 public:
  explicit BlockLru(int64_t capacity_bytes) : capacity_(capacity_bytes) {}

  int64_t capacity_bytes() const { return capacity_; }
  const BlockLruStats& stats() const { return stats_; }

  // A hit makes `key` the most recently used and counts a hit; else counts a miss.
  bool Lookup(const std::string& key);

  // Whether `key` is resident; changes neither recency nor counters.
  bool Contains(const std::string& key) const { return index_.contains(key); }

  // Adds `key` holding `bytes` as the most recently used, first evicting least recently
  // used unpinned entries until it fits. Returns the evicted keys, oldest first (the
  // caller frees their memory). InvalidArgument if bytes < 0 or bytes > capacity;
  // AlreadyExists if `key` is resident; ResourceExhausted if only pinned entries stand
  // in the way (nothing is evicted then).
  absl::StatusOr<std::vector<std::string>> Insert(const std::string& key, int64_t bytes);

  // Removes `key` (pinned or not); false if absent.
  bool Erase(const std::string& key);

  // Pin counts: a pinned entry is skipped by eviction. Unpin of an unpinned or absent
  // key is a no-op returning false.
  bool Pin(const std::string& key);
  bool Unpin(const std::string& key);

  // Resident keys, most recently used first (for tests and debugging).
  std::vector<std::string> KeysByRecency() const;

 private:
  struct Entry {
    std::string key;
    int64_t bytes = 0;
    int pins = 0;
  };
  using List = std::list<Entry>;  // front: most recently used

  int64_t capacity_;
  List order_;
  absl::flat_hash_map<std::string, List::iterator> index_;
  BlockLruStats stats_;
};

}  // namespace blockserve::engine::cuda

#endif  // BLOCKSERVE_ENGINE_CUDA_BLOCK_LRU_H_
