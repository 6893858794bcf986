// The CUDA backend: engine::Backend on one GPU, cuBLAS GEMMs + the kernels of kernels.h.
//
// Precision: weights are stored on the GPU as bf16; GEMMs take bf16 operands and
// accumulate in fp32 (cublasGemmEx, CUBLAS_COMPUTE_32F); the residual stream, RoPE,
// attention, softmax and the KV cache are fp32. Results therefore differ from the fp32
// CPU backend by bf16 rounding (see cuda_backend_test.cc for the tolerances).
//
// KV placement (the trade-off, chosen for being finishable and exactly Forward's
// contract): engine::KvCache is host-side fp32, so each Forward uploads every item's
// past rows into a device workspace, runs all layers there, and downloads only the new
// rows into the host cache. Simple and correct, but a decode step moves the whole
// sequence's KV host->device each time (O(context) PCIe traffic per token). The better
// design keeps a device-resident cache per sequence (and the GPU block cache of
// gpu_block_cache.h for shared passages); that needs a device-side KvCache in the
// Backend interface, left for a later issue.
//
// Sampling: Forward returns logits to the host, as the interface requires, and the engine
// samples there with engine::Sampler; LaunchArgmax (kernels.h) is the device-side greedy
// pick for when logits stay on the GPU.
//
// Not thread-safe (the engine serializes calls). One backend per device.
//
// STATUS: compiled and linked in CI; never run on a GPU by the author (none was available).
#ifndef BLOCKSERVE_ENGINE_CUDA_CUDA_BACKEND_H_
#define BLOCKSERVE_ENGINE_CUDA_CUDA_BACKEND_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "engine/backend.h"
#include "engine/engine.h"
#include "engine/weights.h"

namespace blockserve::engine {

struct CudaBackendOptions {
  int device = 0;  // CUDA device ordinal
};

// Uploads the weights (as bf16) to `options.device` and takes ownership of them (the host
// copies are released). Sliding-window models are served with the window (per layer, as
// ModelConfig::LayerWindow says). FailedPrecondition where there is no such GPU; Internal
// for any other CUDA or cuBLAS failure (e.g. out of device memory).
absl::StatusOr<std::unique_ptr<Backend>> CreateCudaBackend(ModelWeights weights,
                                                           CudaBackendOptions options = {});

// Engine::Load with the CUDA backend instead of the CPU one.
absl::StatusOr<std::unique_ptr<Engine>> LoadCudaEngine(const std::string& model_dir,
                                                       CudaBackendOptions options = {});

}  // namespace blockserve::engine

#endif  // BLOCKSERVE_ENGINE_CUDA_CUDA_BACKEND_H_
