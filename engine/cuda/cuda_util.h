// Small CUDA runtime helpers shared by the CUDA backend, the GPU block cache and the
// NCCL handoff: cudaError_t -> absl::Status, an owning device array, pinned host memory.
// STATUS: compiled in CI; never run on a GPU by the author.
#ifndef BLOCKSERVE_ENGINE_CUDA_CUDA_UTIL_H_
#define BLOCKSERVE_ENGINE_CUDA_CUDA_UTIL_H_

#include <cstddef>
#include <string_view>
#include <utility>

#include <cuda_runtime_api.h>

#include "absl/status/status.h"

namespace blockserve::engine::cuda {

// OK for cudaSuccess, else Internal("<what>: <CUDA's error string>").
absl::Status CudaStatus(cudaError_t error, std::string_view what);

// Number of usable CUDA devices; 0 where there is no driver or no GPU (never fails).
int CudaDeviceCount();

#define BLOCKSERVE_CUDA_RETURN_IF_ERROR(expr, what)                        \
  do {                                                                     \
    if (absl::Status _status = ::blockserve::engine::cuda::CudaStatus((expr), (what)); \
        !_status.ok())                                                     \
      return _status;                                                      \
  } while (0)

// An owning, move-only device allocation of `size()` elements of T (cudaMalloc/cudaFree).
// Reserve grows it (contents are not kept); it never shrinks.
template <typename T>
class DeviceArray {
 public:
  DeviceArray() = default;
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  DeviceArray(DeviceArray&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    if (this != &o) {
      Free();
      ptr_ = std::exchange(o.ptr_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  ~DeviceArray() { Free(); }

  absl::Status Reserve(size_t n) {
    if (n <= size_) return absl::OkStatus();
    Free();
    void* p = nullptr;
    BLOCKSERVE_CUDA_RETURN_IF_ERROR(cudaMalloc(&p, n * sizeof(T)), "cudaMalloc");
    ptr_ = static_cast<T*>(p);
    size_ = n;
    return absl::OkStatus();
  }
  // Allocates exactly n elements and copies them from host memory (synchronously).
  absl::Status Upload(const T* host, size_t n) {
    if (absl::Status s = Reserve(n); !s.ok()) return s;
    return CudaStatus(cudaMemcpy(ptr_, host, n * sizeof(T), cudaMemcpyHostToDevice), "upload");
  }

  T* get() const { return ptr_; }
  size_t size() const { return size_; }
  size_t bytes() const { return size_ * sizeof(T); }

 private:
  void Free() {
    if (ptr_ != nullptr) cudaFree(ptr_);
    ptr_ = nullptr;
    size_ = 0;
  }
  T* ptr_ = nullptr;
  size_t size_ = 0;
};

// Page-locked host memory (cudaMallocHost), the staging area that lets cudaMemcpyAsync
// overlap with other work. Move-only; grows with Reserve (contents not kept).
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  PinnedBuffer(PinnedBuffer&& o) noexcept : ptr_(std::exchange(o.ptr_, nullptr)), bytes_(std::exchange(o.bytes_, 0)) {}
  ~PinnedBuffer() {
    if (ptr_ != nullptr) cudaFreeHost(ptr_);
  }
  absl::Status Reserve(size_t bytes);
  void* get() const { return ptr_; }
  size_t bytes() const { return bytes_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace blockserve::engine::cuda

#endif  // BLOCKSERVE_ENGINE_CUDA_CUDA_UTIL_H_
