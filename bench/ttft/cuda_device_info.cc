#include "bench/ttft/cuda_device_info.h"

#include <cuda_runtime_api.h>

#include <cstdio>

namespace blockserve::bench {

int CudaDeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();  // clear the "no device" / "no driver" error
    return 0;
  }
  return n;
}

namespace {
std::string Version(int v) { return std::to_string(v / 1000) + "." + std::to_string(v % 1000 / 10); }
}  // namespace

std::string CudaDeviceDescription(int device) {
  cudaDeviceProp p{};
  if (cudaError_t e = cudaGetDeviceProperties(&p, device); e != cudaSuccess) {
    cudaGetLastError();
    return "CUDA device " + std::to_string(device) + " (properties unavailable: " +
           cudaGetErrorString(e) + ")";
  }
  int driver = 0, runtime = 0;
  cudaDriverGetVersion(&driver);
  cudaRuntimeGetVersion(&runtime);
  char gib[32];
  std::snprintf(gib, sizeof(gib), "%.1f", p.totalGlobalMem / double(1ull << 30));
  return std::string(p.name) + " (CUDA device " + std::to_string(device) +
         ", compute capability " + std::to_string(p.major) + "." + std::to_string(p.minor) +
         ", " + gib + " GiB, driver " + Version(driver) + ", runtime " + Version(runtime) + ")";
}

}  // namespace blockserve::bench
