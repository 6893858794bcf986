// What one side of a KV handoff can do on the GPU path. Plain data, no CUDA.
#ifndef BLOCKSERVE_HANDOFF_NCCL_CAPABILITIES_H_
#define BLOCKSERVE_HANDOFF_NCCL_CAPABILITIES_H_

namespace blockserve::handoff {

struct GpuCapabilities {
  int gpu_count = 0;            // usable CUDA devices (0: none, or no driver)
  bool nccl_available = false;  // libnccl loads and answers ncclGetVersion
};

}  // namespace blockserve::handoff

#endif  // BLOCKSERVE_HANDOFF_NCCL_CAPABILITIES_H_
