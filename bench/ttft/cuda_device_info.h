// What ttft_bench needs to know about the GPU before it builds a CUDA engine: how many
// devices there are (so --backend=cuda fails at once, before writing a multi-GB random
// model, on a machine without one) and a one-line description for the results header.
// Compiled by nvcc (build_defs/cuda.bzl); this header includes no CUDA header, so the
// g++-compiled ttft_bench can include it.
// STATUS: CudaDeviceCount's no-GPU path has run (it returns 0); the description has never
// run on a GPU.
#ifndef BLOCKSERVE_BENCH_TTFT_CUDA_DEVICE_INFO_H_
#define BLOCKSERVE_BENCH_TTFT_CUDA_DEVICE_INFO_H_

#include <string>

namespace blockserve::bench {

// Usable CUDA devices; 0 where there is no driver or no GPU (never fails).
int CudaDeviceCount();

// "NVIDIA H100 80GB HBM3 (CUDA device 0, compute capability 9.0, 79.1 GiB, driver 12.4,
// runtime 12.4)", or a message saying why the properties could not be read.
std::string CudaDeviceDescription(int device);

}  // namespace blockserve::bench

#endif  // BLOCKSERVE_BENCH_TTFT_CUDA_DEVICE_INFO_H_
