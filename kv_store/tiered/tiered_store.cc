#include "kv_store/tiered/tiered_store.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace blockserve::kv_store {
namespace {

// The outcome of asking both tiers to store one thing: the shared (remote) tier's, since
// the other nodes read only that one; a write only the local tier took is still served
// on this node but reported, so an ingest is never OK for this node alone. A local
// failure matters only when it is a bad argument (a bug, not an outage).
absl::Status CombineWrites(const absl::Status& local, const absl::Status& remote) {
  if (absl::IsInvalidArgument(local)) return local;
  if (remote.ok()) return remote;
  return absl::Status(remote.code(),
                      absl::StrCat("tiered store: the shared tier did not take the write",
                                   local.ok() ? " (this node's tier did)" : "", ": ",
                                   remote.message()));
}

}  // namespace

TieredStore::TieredStore(std::unique_ptr<KvStore> local, std::unique_ptr<KvStore> remote)
    : local_(std::move(local)), remote_(std::move(remote)) {}

void TieredStore::Promote(const BlockKey& key, const engine::KvCache& kv) {
  // A failed promotion (local tier full or misconfigured) only costs a future remote
  // read, and the local tier's own metrics record it.
  local_->Put(key, kv).IgnoreError();
}

absl::StatusOr<engine::KvCache> TieredStore::Get(const BlockKey& key) {
  std::vector<absl::StatusOr<engine::KvCache>> results = GetMany(absl::MakeConstSpan(&key, 1));
  return std::move(results.front());
}

std::vector<absl::StatusOr<engine::KvCache>> TieredStore::GetMany(absl::Span<const BlockKey> keys) {
  const absl::Time start = absl::Now();
  std::vector<absl::StatusOr<engine::KvCache>> results = local_->GetMany(keys);
  std::vector<size_t> missing;
  std::vector<BlockKey> missing_keys;
  for (size_t i = 0; i < results.size(); ++i) {
    if (!results[i].ok()) {
      missing.push_back(i);
      missing_keys.push_back(keys[i]);
    }
  }
  if (!missing.empty()) {
    std::vector<absl::StatusOr<engine::KvCache>> remote = remote_->GetMany(missing_keys);
    for (size_t j = 0; j < missing.size(); ++j) {
      if (remote[j].ok()) Promote(missing_keys[j], *remote[j]);
      results[missing[j]] = std::move(remote[j]);
    }
  }
  int64_t hits = 0;
  for (const auto& r : results) hits += r.ok() ? 1 : 0;
  absl::MutexLock lock(&mu_);
  metrics_.hits += hits;
  metrics_.misses += static_cast<int64_t>(results.size()) - hits;
  metrics_.get_seconds += absl::ToDoubleSeconds(absl::Now() - start);
  return results;
}

absl::StatusOr<uint64_t> TieredStore::Put(const BlockKey& key, const engine::KvCache& kv) {
  const absl::Time start = absl::Now();
  const absl::StatusOr<uint64_t> local = local_->Put(key, kv);
  const absl::StatusOr<uint64_t> remote = remote_->Put(key, kv);
  const absl::Status status = CombineWrites(local.status(), remote.status());
  absl::MutexLock lock(&mu_);
  if (status.ok()) {
    ++metrics_.puts;
  } else if (absl::IsUnavailable(status)) {
    ++metrics_.dropped_puts;
  }
  metrics_.put_seconds += absl::ToDoubleSeconds(absl::Now() - start);
  if (!status.ok()) return status;
  return local.value_or(0) + remote.value_or(0);
}

uint64_t TieredStore::ValueBytes(const engine::KvCache& kv) const {
  return local_->ValueBytes(kv);
}

absl::Status TieredStore::Ping() { return remote_->Ping(); }

absl::Status TieredStore::Remove(const BlockKey& key) {
  // Both tiers must lose the value, or the next read would find it again.
  const absl::Status local = local_->Remove(key);
  const absl::Status remote = remote_->Remove(key);
  return local.ok() ? remote : local;
}

bool TieredStore::Contains(const BlockKey& key) {
  return local_->Contains(key) || remote_->Contains(key);
}

absl::Status TieredStore::PutPassage(std::string_view passage_id, const BlockKey& key) {
  const absl::Status status =
      CombineWrites(local_->PutPassage(passage_id, key), remote_->PutPassage(passage_id, key));
  absl::MutexLock lock(&mu_);
  if (status.ok()) {
    ++metrics_.puts;
  } else if (absl::IsUnavailable(status)) {
    ++metrics_.dropped_puts;
  }
  return status;
}

absl::StatusOr<BlockKey> TieredStore::LookupPassage(std::string_view passage_id) {
  absl::StatusOr<BlockKey> local = local_->LookupPassage(passage_id);
  if (local.ok()) return local;
  absl::StatusOr<BlockKey> remote = remote_->LookupPassage(passage_id);
  if (remote.ok()) local_->PutPassage(passage_id, *remote).IgnoreError();
  return remote;  // Unavailable when the remote tier, the one all nodes share, is down
}

absl::Status TieredStore::PutSource(const BlockKey& key, absl::Span<const int32_t> tokens) {
  return CombineWrites(local_->PutSource(key, tokens), remote_->PutSource(key, tokens));
}

absl::StatusOr<std::vector<int32_t>> TieredStore::GetSource(const BlockKey& key) {
  if (absl::StatusOr<std::vector<int32_t>> tokens = local_->GetSource(key); tokens.ok()) {
    return tokens;
  }
  absl::StatusOr<std::vector<int32_t>> tokens = remote_->GetSource(key);
  if (tokens.ok()) local_->PutSource(key, *tokens).IgnoreError();
  return tokens;
}

StoreMetrics TieredStore::metrics() const {
  const StoreMetrics local = local_->metrics();
  const StoreMetrics remote = remote_->metrics();
  absl::MutexLock lock(&mu_);
  StoreMetrics m = metrics_;
  m.corrupt = local.corrupt + remote.corrupt;
  m.evictions = local.evictions + remote.evictions;
  m.bytes_read = local.bytes_read + remote.bytes_read;
  m.bytes_written = local.bytes_written + remote.bytes_written;
  return m;
}

}  // namespace blockserve::kv_store
