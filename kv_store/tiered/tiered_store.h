// Two KvStores as one: a fast local tier (shared memory on this node) in front of a
// shared remote tier (Redis across nodes).
//
// Reads go to the local tier first; a local miss is looked up remotely, and a remote hit
// is promoted (written into the local tier) so the next read of that block stays on the
// node. GetMany sends all local misses to the remote tier in one batch. Writes go to
// both tiers (write-through). The catalog works the same way: written to both, read
// local then remote, and a remote entry is copied into the local catalog. Sources
// likewise: written to both, read local then remote and copied into the local tier; the
// remote tier's never-expiring copy is the durable one (see RedisStore), so a source
// the local LRU dropped is still found.
//
// A remote outage degrades reads to local-only service: remote misses show in
// remote_metrics(). Writes are OK only when the shared (remote) tier took them, since the
// other nodes read only that tier: during an outage Put still stores the block locally
// (this node keeps serving it) but returns the remote tier's UNAVAILABLE, so an ingest
// is never reported done when the rest of the cluster cannot see it. Promotion failures
// (a full local tier) are not errors: the block was served.
#ifndef BLOCKSERVE_KV_STORE_TIERED_TIERED_STORE_H_
#define BLOCKSERVE_KV_STORE_TIERED_TIERED_STORE_H_

#include <memory>
#include <optional>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "kv_store/kv_store.h"

namespace blockserve::kv_store {

class TieredStore : public KvStore {
 public:
  // Takes ownership of both tiers; neither may be null.
  TieredStore(std::unique_ptr<KvStore> local, std::unique_ptr<KvStore> remote);

  absl::StatusOr<engine::KvCache> Get(const BlockKey& key) override;
  std::vector<absl::StatusOr<engine::KvCache>> GetMany(absl::Span<const BlockKey> keys) override;
  // Writes both tiers and returns the bytes both wrote. INVALID_ARGUMENT if a tier
  // rejected the block; otherwise the remote tier's outcome (UNAVAILABLE, counted in
  // dropped_puts, when it is down, even though the local tier stored the block).
  // PutPassage behaves the same.
  absl::StatusOr<uint64_t> Put(const BlockKey& key, const engine::KvCache& kv) override;
  // The local tier's size of the value (a hit is read from the local tier).
  uint64_t ValueBytes(const engine::KvCache& kv) const override;
  bool Contains(const BlockKey& key) override;
  absl::Status Remove(const BlockKey& key) override;
  // The shared (remote) tier's: writes need it (see Put).
  absl::Status Ping() override;
  absl::Status PutPassage(std::string_view passage_id, const BlockKey& key) override;
  absl::StatusOr<BlockKey> LookupPassage(std::string_view passage_id) override;
  // PutSource: the remote tier's outcome, as Put.
  absl::Status PutSource(const BlockKey& key, absl::Span<const int32_t> tokens) override;
  absl::StatusOr<std::vector<int32_t>> GetSource(const BlockKey& key) override;

  // This store's view: hits/misses/puts/dropped_puts and times of its own calls (a
  // block found in either tier is one hit). corrupt, evictions and bytes are the sums
  // over the tiers, which are the only ones that see encoded values.
  StoreMetrics metrics() const override;
  StoreMetrics local_metrics() const { return local_->metrics(); }
  StoreMetrics remote_metrics() const { return remote_->metrics(); }

 private:
  void Promote(const BlockKey& key, const engine::KvCache& kv);

  const std::unique_ptr<KvStore> local_;
  const std::unique_ptr<KvStore> remote_;

  mutable absl::Mutex mu_;
  StoreMetrics metrics_ ABSL_GUARDED_BY(mu_);
};

}  // namespace blockserve::kv_store

#endif  // BLOCKSERVE_KV_STORE_TIERED_TIERED_STORE_H_
