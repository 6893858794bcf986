#include "engine/cuda/cuda_util.h"

#include "absl/strings/str_cat.h"

namespace blockserve::engine::cuda {

absl::Status CudaStatus(cudaError_t error, std::string_view what) {
  if (error == cudaSuccess) return absl::OkStatus();
  return absl::InternalError(absl::StrCat(std::string(what), ": ", cudaGetErrorName(error), " (",
                                          cudaGetErrorString(error), ")"));
}

int CudaDeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

absl::Status PinnedBuffer::Reserve(size_t bytes) {
  if (bytes <= bytes_) return absl::OkStatus();
  if (ptr_ != nullptr) cudaFreeHost(ptr_);
  ptr_ = nullptr;
  bytes_ = 0;
  BLOCKSERVE_CUDA_RETURN_IF_ERROR(cudaMallocHost(&ptr_, bytes), "cudaMallocHost");
  bytes_ = bytes;
  return absl::OkStatus();
}

}  // namespace blockserve::engine::cuda
