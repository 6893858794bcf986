// STATUS: compiled and linked in CI; never run on a GPU by the author.
#include "engine/cuda/gpu_block_cache.h"

#include <cuda_runtime_api.h>

#include <cstring>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "engine/cuda/cuda_util.h"

namespace blockserve::engine::cuda {

struct GpuBlockCache::Impl {
  cudaStream_t stream = nullptr;
  PinnedBuffer staging;  // one block's bytes, reused by every miss
  absl::flat_hash_map<std::string, std::pair<DeviceArray<float>, DeviceBlock>> blocks;
};

GpuBlockCache::GpuBlockCache(GpuBlockCacheOptions options)
    : options_(options), lru_(options.capacity_bytes), impl_(std::make_unique<Impl>()) {}

GpuBlockCache::~GpuBlockCache() {
  cudaSetDevice(options_.device);
  impl_->blocks.clear();  // frees device memory before the stream goes
  if (impl_->stream != nullptr) cudaStreamDestroy(impl_->stream);
}

absl::StatusOr<std::unique_ptr<GpuBlockCache>> GpuBlockCache::Create(
    GpuBlockCacheOptions options) {
  const int devices = CudaDeviceCount();
  if (options.device < 0 || options.device >= devices) {
    return absl::FailedPreconditionError(absl::StrCat(
        "CUDA device ", options.device, " requested but ", devices, " CUDA device(s) found"));
  }
  std::unique_ptr<GpuBlockCache> cache(new GpuBlockCache(options));
  BLOCKSERVE_CUDA_RETURN_IF_ERROR(cudaSetDevice(options.device), "cudaSetDevice");
  BLOCKSERVE_CUDA_RETURN_IF_ERROR(
      cudaStreamCreateWithFlags(&cache->impl_->stream, cudaStreamNonBlocking),
      "cudaStreamCreate");
  return cache;
}

absl::StatusOr<DeviceBlock> GpuBlockCache::Acquire(const std::string& key, const KvCache& kv) {
  if (lru_.Lookup(key)) {
    lru_.Pin(key);
    return impl_->blocks.at(key).second;
  }
  BLOCKSERVE_CUDA_RETURN_IF_ERROR(cudaSetDevice(options_.device), "cudaSetDevice");
  const int64_t bytes = kv.bytes();
  absl::StatusOr<std::vector<std::string>> evicted = lru_.Insert(key, bytes);
  if (!evicted.ok()) return evicted.status();
  for (const std::string& old : *evicted) impl_->blocks.erase(old);  // cudaFree

  // Host KvCache -> pinned staging (one memcpy per layer array) -> device, async on the
  // cache's stream; then wait, since the staging buffer is reused by the next miss.
  auto fail = [&](absl::Status s) {
    lru_.Erase(key);
    impl_->blocks.erase(key);
    return s;
  };
  const KvShape& shape = kv.shape();
  const size_t layer_bytes = kv.num_tokens() * shape.row() * sizeof(float);
  if (absl::Status s = impl_->staging.Reserve(bytes); !s.ok()) return fail(s);
  auto* staging = static_cast<char*>(impl_->staging.get());
  for (int64_t l = 0; l < shape.num_layers; ++l) {
    std::memcpy(staging + (2 * l) * layer_bytes, kv.k(l), layer_bytes);
    std::memcpy(staging + (2 * l + 1) * layer_bytes, kv.v(l), layer_bytes);
  }
  DeviceArray<float> memory;
  if (absl::Status s = memory.Reserve(bytes / sizeof(float)); !s.ok()) return fail(s);
  absl::Status copied = CudaStatus(
      cudaMemcpyAsync(memory.get(), staging, bytes, cudaMemcpyHostToDevice, impl_->stream),
      "block upload");
  if (copied.ok()) copied = CudaStatus(cudaStreamSynchronize(impl_->stream), "block upload");
  if (!copied.ok()) return fail(copied);
  DeviceBlock block{memory.get(), shape, kv.num_tokens()};
  impl_->blocks.emplace(key, std::make_pair(std::move(memory), block));
  lru_.Pin(key);
  return block;
}

void GpuBlockCache::Release(const std::string& key) { lru_.Unpin(key); }

}  // namespace blockserve::engine::cuda
