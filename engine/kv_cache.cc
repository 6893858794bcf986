#include "engine/kv_cache.h"

#include <algorithm>

namespace blockserve::engine {

int64_t KvCache::Append(absl::Span<const int32_t> new_tokens) {
  const int64_t first = num_tokens();
  tokens_.insert(tokens_.end(), new_tokens.begin(), new_tokens.end());
  const size_t floats = tokens_.size() * shape_.row();
  for (int64_t l = 0; l < shape_.num_layers; ++l) {
    k_[l].resize(floats);
    v_[l].resize(floats);
  }
  return first;
}

void KvCache::Reserve(int64_t total_tokens) {
  tokens_.reserve(total_tokens);
  for (int64_t l = 0; l < shape_.num_layers; ++l) {
    k_[l].reserve(total_tokens * shape_.row());
    v_[l].reserve(total_tokens * shape_.row());
  }
}

void KvCache::AppendCopy(const KvCache& other) {
  const int64_t first = Append(other.tokens());
  const int64_t n = other.num_tokens() * shape_.row();
  for (int64_t l = 0; l < shape_.num_layers; ++l) {
    std::copy(other.k(l), other.k(l) + n, k(l) + first * shape_.row());
    std::copy(other.v(l), other.v(l) + n, v(l) + first * shape_.row());
  }
}

}  // namespace blockserve::engine
