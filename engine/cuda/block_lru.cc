#include "engine/cuda/block_lru.h"

#include "absl/strings/str_cat.h"

namespace blockserve::engine::cuda {

bool BlockLru::Lookup(const std::string& key) {
  auto it = index_.find(key);
  if (it == index_.end()) {
    ++stats_.misses;
    return false;
  }
  order_.splice(order_.begin(), order_, it->second);
  ++stats_.hits;
  return true;
}

absl::StatusOr<std::vector<std::string>> BlockLru::Insert(const std::string& key, int64_t bytes) {
  if (bytes < 0 || bytes > capacity_) {
    return absl::InvalidArgumentError(absl::StrCat("block of ", bytes,
                                                   " bytes cannot fit a cache of ", capacity_));
  }
  if (index_.contains(key)) return absl::AlreadyExistsError("block already resident");
  // Choose victims from the least recently used end, skipping pinned entries, before
  // evicting anything, so a failed insert leaves the cache as it was.
  int64_t freed = 0;
  std::vector<List::iterator> victims;
  for (auto it = order_.rbegin(); it != order_.rend() && stats_.bytes - freed + bytes > capacity_;
       ++it) {
    if (it->pins > 0) continue;
    freed += it->bytes;
    victims.push_back(std::prev(it.base()));
  }
  if (stats_.bytes - freed + bytes > capacity_) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "GPU block cache: ", bytes, " bytes needed but pinned blocks hold ", stats_.bytes - freed,
        " of ", capacity_));
  }
  std::vector<std::string> evicted;
  for (List::iterator v : victims) {
    evicted.push_back(v->key);
    stats_.bytes -= v->bytes;
    index_.erase(v->key);
    order_.erase(v);
  }
  stats_.evictions += evicted.size();
  order_.push_front(Entry{key, bytes, 0});
  index_[key] = order_.begin();
  stats_.bytes += bytes;
  stats_.entries = order_.size();
  return evicted;
}

bool BlockLru::Erase(const std::string& key) {
  auto it = index_.find(key);
  if (it == index_.end()) return false;
  stats_.bytes -= it->second->bytes;
  order_.erase(it->second);
  index_.erase(it);
  stats_.entries = order_.size();
  return true;
}

bool BlockLru::Pin(const std::string& key) {
  auto it = index_.find(key);
  if (it == index_.end()) return false;
  ++it->second->pins;
  return true;
}

bool BlockLru::Unpin(const std::string& key) {
  auto it = index_.find(key);
  if (it == index_.end() || it->second->pins == 0) return false;
  --it->second->pins;
  return true;
}

std::vector<std::string> BlockLru::KeysByRecency() const {
  std::vector<std::string> keys;
  for (const Entry& e : order_) keys.push_back(e.key);
  return keys;
}

}  // namespace blockserve::engine::cuda
