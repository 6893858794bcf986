// A GPU-resident cache of passage blocks' KV, bounded in bytes, least recently used out,
// keyed by the KV store's content key (kv_store::BlockKey, as a string). A miss uploads
// the block through pinned host memory with cudaMemcpyAsync on the cache's own stream.
// The eviction bookkeeping is BlockLru (block_lru.h, tested on the CPU in CI).
//
// Device layout of a block: fp32 [layer][K then V][token][kv_head][head_dim], i.e. the
// host KvCache's arrays one after another; K rows are as the store holds them
// (position 0), to be shifted on the device (kernels.h: LaunchRopeShift) when used.
//
// Header free of CUDA types, so g++-compiled code can hold a cache.
// STATUS: compiled and linked in CI; never run on a GPU by the author.
#ifndef BLOCKSERVE_ENGINE_CUDA_GPU_BLOCK_CACHE_H_
#define BLOCKSERVE_ENGINE_CUDA_GPU_BLOCK_CACHE_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/cuda/block_lru.h"
#include "engine/kv_cache.h"

namespace blockserve::engine::cuda {

struct GpuBlockCacheOptions {
  int device = 0;
  int64_t capacity_bytes = int64_t{1} << 30;
};

// A resident block. `data` is device memory owned by the cache, valid while the block is
// pinned (between Acquire and Release).
struct DeviceBlock {
  const float* data = nullptr;
  KvShape shape;
  int64_t num_tokens = 0;
  int64_t bytes() const { return 2 * shape.num_layers * num_tokens * shape.row() * 4; }
  // Start of layer l's K (V follows num_tokens * row floats later).
  const float* k(int64_t l) const { return data + 2 * l * num_tokens * shape.row(); }
  const float* v(int64_t l) const { return k(l) + num_tokens * shape.row(); }
};

class GpuBlockCache {
 public:
  // FailedPrecondition where the device does not exist; Internal for other CUDA errors.
  static absl::StatusOr<std::unique_ptr<GpuBlockCache>> Create(GpuBlockCacheOptions options);
  ~GpuBlockCache();

  // Returns the resident copy of `key` (a hit), or uploads `kv` under `key` (a miss,
  // evicting least recently used unpinned blocks to make room), and pins it. When this
  // returns, the block's data is on the device. InvalidArgument if `kv` is larger than
  // the cache; ResourceExhausted if pinned blocks leave no room; Internal on CUDA errors.
  absl::StatusOr<DeviceBlock> Acquire(const std::string& key, const KvCache& kv);

  // Unpins a block returned by Acquire (each Acquire needs one Release).
  void Release(const std::string& key);

  const BlockLruStats& stats() const { return lru_.stats(); }

 private:
  struct Impl;
  explicit GpuBlockCache(GpuBlockCacheOptions options);

  GpuBlockCacheOptions options_;
  BlockLru lru_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace blockserve::engine::cuda

#endif  // BLOCKSERVE_ENGINE_CUDA_GPU_BLOCK_CACHE_H_
