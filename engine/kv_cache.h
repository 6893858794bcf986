// Key/value states of a run of tokens, the unit Block-Attention caches and moves.
//
// Layout (one K and one V array per layer): [token][kv_head][head_dim], so that
// appending tokens appends rows and a head's keys are a strided matrix (ld = row size)
// that BLAS and the attention kernels read in place. Keys are stored already rotated by
// RoPE for the positions they were encoded at; `start_position` records where token 0
// was encoded (0 for a freshly encoded block) so re-encoding is a rotation by the
// difference.
//
// Element type: fp32 (the default, and what the exactness tests use) or bf16, the
// model's own dtype for most checkpoints: half the bytes to store, move and read in
// attention. A bf16 cache holds the fp32 values rounded to nearest (ties to even).
#ifndef BLOCKSERVE_ENGINE_KV_CACHE_H_
#define BLOCKSERVE_ENGINE_KV_CACHE_H_

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "engine/dtype.h"

namespace blockserve::engine {

struct KvShape {
  int64_t num_layers = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t row() const { return num_kv_heads * head_dim; }  // elements per token per layer
  bool operator==(const KvShape&) const = default;
};

// OK for the element types a KvCache can hold (kF32, kBF16); InvalidArgument naming
// the type otherwise.
absl::Status CheckKvDType(DType dtype);

class KvCache {
 public:
  KvCache() = default;
  // `dtype` must pass CheckKvDType (checked with an assert: callers validate flags).
  explicit KvCache(KvShape shape, DType dtype = DType::kF32);

  const KvShape& shape() const { return shape_; }
  DType dtype() const { return dtype_; }
  int64_t num_tokens() const { return static_cast<int64_t>(tokens_.size()); }
  const std::vector<int32_t>& tokens() const { return tokens_; }

  // RoPE position that token 0's key was encoded at.
  int64_t start_position() const { return start_position_; }
  void set_start_position(int64_t p) { start_position_ = p; }

  // A layer's K or V rows in the cache's dtype (num_tokens * row elements).
  void* k_data(int64_t layer) { return k_[layer].data(); }
  void* v_data(int64_t layer) { return v_[layer].data(); }
  const void* k_data(int64_t layer) const { return k_[layer].data(); }
  const void* v_data(int64_t layer) const { return v_[layer].data(); }

  // Typed views: k()/v() for an fp32 cache, k_bf16()/v_bf16() (bit patterns) for a
  // bf16 one; asking for the other type is a programming error (assert).
  float* k(int64_t layer) { return Typed<float>(k_[layer], DType::kF32); }
  float* v(int64_t layer) { return Typed<float>(v_[layer], DType::kF32); }
  const float* k(int64_t layer) const { return Typed<const float>(k_[layer], DType::kF32); }
  const float* v(int64_t layer) const { return Typed<const float>(v_[layer], DType::kF32); }
  uint16_t* k_bf16(int64_t layer) { return Typed<uint16_t>(k_[layer], DType::kBF16); }
  uint16_t* v_bf16(int64_t layer) { return Typed<uint16_t>(v_[layer], DType::kBF16); }
  const uint16_t* k_bf16(int64_t layer) const {
    return Typed<const uint16_t>(k_[layer], DType::kBF16);
  }
  const uint16_t* v_bf16(int64_t layer) const {
    return Typed<const uint16_t>(v_[layer], DType::kBF16);
  }

  // Adds rows for `new_tokens` to every layer (zero-filled; the forward pass fills them)
  // and returns the index of the first new row.
  int64_t Append(absl::Span<const int32_t> new_tokens);
  // The same with the new rows left uninitialized, for a caller that writes every element
  // of them at once (AppendCopy, Backend::AppendShifted): no zeroing pass over KV that is
  // overwritten anyway.
  int64_t AppendUninitialized(absl::Span<const int32_t> new_tokens);

  // Makes room for `total_tokens` rows per layer without reallocating, so building a
  // sequence block by block copies each block once.
  void Reserve(int64_t total_tokens);

  // Appends all of `other`'s rows as they are (no rotation), converted to this cache's
  // dtype if `other`'s differs. Shapes must match.
  void AppendCopy(const KvCache& other);

  // Bytes of K and V held.
  int64_t bytes() const {
    return 2 * shape_.num_layers * num_tokens() * shape_.row() *
           static_cast<int64_t>(DTypeSize(dtype_));
  }

 private:
  template <typename T, typename Bytes>
  T* Typed(Bytes& bytes, DType want) const {
    assert(dtype_ == want);
    (void)want;
    return reinterpret_cast<T*>(bytes.data());
  }

  KvShape shape_;
  DType dtype_ = DType::kF32;
  int64_t start_position_ = 0;
  std::vector<int32_t> tokens_;
  // std::allocator, except that resize() leaves new bytes uninitialized: Append zeroes
  // them itself, AppendUninitialized does not.
  template <typename T>
  struct NoInitAllocator : std::allocator<T> {
    template <typename U>
    struct rebind {
      using other = NoInitAllocator<U>;
    };
    template <typename U>
    void construct(U* p) noexcept {
      ::new (static_cast<void*>(p)) U;
    }
    template <typename U, typename... Args>
    void construct(U* p, Args&&... args) {
      ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
    }
  };
  using Bytes = std::vector<std::byte, NoInitAllocator<std::byte>>;

  // Per layer, num_tokens * row elements of dtype_. operator new's alignment (16 bytes)
  // is enough for every element type and for unaligned vector loads.
  std::vector<Bytes> k_, v_;
};

}  // namespace blockserve::engine

#endif  // BLOCKSERVE_ENGINE_KV_CACHE_H_
