#include "engine/kv_cache.h"

#include <algorithm>
#include <cassert>

#include "absl/strings/str_cat.h"

namespace blockserve::engine {

absl::Status CheckKvDType(DType dtype) {
  if (dtype == DType::kF32 || dtype == DType::kBF16) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat("KV can be held as F32 or BF16, not ",
                                                 std::string(DTypeName(dtype))));
}

KvCache::KvCache(KvShape shape, DType dtype)
    : shape_(shape), dtype_(dtype), k_(shape.num_layers), v_(shape.num_layers) {
  assert(CheckKvDType(dtype).ok());
}

int64_t KvCache::AppendUninitialized(absl::Span<const int32_t> new_tokens) {
  const int64_t first = num_tokens();
  tokens_.insert(tokens_.end(), new_tokens.begin(), new_tokens.end());
  const size_t bytes = tokens_.size() * shape_.row() * DTypeSize(dtype_);
  for (int64_t l = 0; l < shape_.num_layers; ++l) {
    k_[l].resize(bytes);
    v_[l].resize(bytes);
  }
  return first;
}

int64_t KvCache::Append(absl::Span<const int32_t> new_tokens) {
  const int64_t first = AppendUninitialized(new_tokens);
  const size_t from = first * shape_.row() * DTypeSize(dtype_);
  for (int64_t l = 0; l < shape_.num_layers; ++l) {
    std::fill(k_[l].begin() + from, k_[l].end(), std::byte{0});
    std::fill(v_[l].begin() + from, v_[l].end(), std::byte{0});
  }
  return first;
}

void KvCache::Reserve(int64_t total_tokens) {
  tokens_.reserve(total_tokens);
  const size_t bytes = total_tokens * shape_.row() * DTypeSize(dtype_);
  for (int64_t l = 0; l < shape_.num_layers; ++l) {
    k_[l].reserve(bytes);
    v_[l].reserve(bytes);
  }
}

void KvCache::AppendCopy(const KvCache& other) {
  const int64_t first = AppendUninitialized(other.tokens());
  const size_t n = other.num_tokens() * shape_.row();
  const size_t at = first * shape_.row() * DTypeSize(dtype_);
  for (int64_t l = 0; l < shape_.num_layers; ++l) {
    ConvertDType(other.dtype(), other.k_data(l), n, dtype_, k_[l].data() + at);
    ConvertDType(other.dtype(), other.v_data(l), n, dtype_, v_[l].data() + at);
  }
}

}  // namespace blockserve::engine
