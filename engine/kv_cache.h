// Key/value states of a run of tokens, the unit Block-Attention caches and moves.
//
// Layout (fp32, one K and one V array per layer): [token][kv_head][head_dim], so that
// appending tokens appends rows and a head's keys are a strided matrix (ld = row size)
// that BLAS can read in place. Keys are stored already rotated by RoPE for the
// positions they were encoded at; `start_position` records where token 0 was encoded
// (0 for a freshly encoded block) so re-encoding is a rotation by the difference.
#ifndef BLOCKSERVE_ENGINE_KV_CACHE_H_
#define BLOCKSERVE_ENGINE_KV_CACHE_H_

#include <cstdint>
#include <vector>

#include "absl/types/span.h"

namespace blockserve::engine {

struct KvShape {
  int64_t num_layers = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t row() const { return num_kv_heads * head_dim; }  // floats per token per layer
  bool operator==(const KvShape&) const = default;
};

class KvCache {
 public:
  KvCache() = default;
  explicit KvCache(KvShape shape) : shape_(shape), k_(shape.num_layers), v_(shape.num_layers) {}

  const KvShape& shape() const { return shape_; }
  int64_t num_tokens() const { return static_cast<int64_t>(tokens_.size()); }
  const std::vector<int32_t>& tokens() const { return tokens_; }

  // RoPE position that token 0's key was encoded at.
  int64_t start_position() const { return start_position_; }
  void set_start_position(int64_t p) { start_position_ = p; }

  float* k(int64_t layer) { return k_[layer].data(); }
  float* v(int64_t layer) { return v_[layer].data(); }
  const float* k(int64_t layer) const { return k_[layer].data(); }
  const float* v(int64_t layer) const { return v_[layer].data(); }

  // Adds rows for `new_tokens` to every layer (zero-filled; the forward pass fills them)
  // and returns the index of the first new row.
  int64_t Append(absl::Span<const int32_t> new_tokens);

  // Makes room for `total_tokens` rows per layer without reallocating, so building a
  // sequence block by block copies each block once.
  void Reserve(int64_t total_tokens);

  // Appends all of `other`'s rows as they are (no rotation). Shapes must match.
  void AppendCopy(const KvCache& other);

  // Bytes of K and V held.
  int64_t bytes() const { return 2 * shape_.num_layers * num_tokens() * shape_.row() * 4; }

 private:
  KvShape shape_;
  int64_t start_position_ = 0;
  std::vector<int32_t> tokens_;
  std::vector<std::vector<float>> k_, v_;  // per layer, num_tokens * row floats
};

}  // namespace blockserve::engine

#endif  // BLOCKSERVE_ENGINE_KV_CACHE_H_
