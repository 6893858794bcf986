// Without a GPU the CUDA pieces refuse cleanly (FailedPrecondition), so callers can fall
// back to the CPU. Runs in CI, which has the CUDA libraries but no GPU; on a machine
// with a GPU it skips (the GPU tests cover that case).
#include <gtest/gtest.h>

#include "engine/cuda/cuda_backend.h"
#include "engine/cuda/gpu_block_cache.h"

namespace blockserve::engine {
namespace {

TEST(NoGpuTest, CudaBackendAndBlockCacheRefuseWithFailedPrecondition) {
  absl::StatusOr<std::unique_ptr<cuda::GpuBlockCache>> cache = cuda::GpuBlockCache::Create({});
  if (cache.ok()) GTEST_SKIP() << "this machine has a GPU; the no-GPU path is not reachable here";
  EXPECT_EQ(cache.status().code(), absl::StatusCode::kFailedPrecondition) << cache.status();
  absl::StatusOr<std::unique_ptr<Backend>> backend = CreateCudaBackend(ModelWeights{});
  EXPECT_EQ(backend.status().code(), absl::StatusCode::kFailedPrecondition) << backend.status();
  EXPECT_NE(backend.status().message().find("0 CUDA device(s) found"), std::string::npos)
      << backend.status();
}

// Sliding-window models are served with their window (they used to be refused as
// Unimplemented), so without a GPU they fail only for the missing device, like any other.
TEST(NoGpuTest, SlidingWindowModelsFailOnlyForTheMissingDevice) {
  if (cuda::GpuBlockCache::Create({}).ok()) {
    GTEST_SKIP() << "this machine has a GPU; the no-GPU path is not reachable here";
  }
  ModelWeights mistral;
  mistral.config.model_type = "mistral";
  mistral.config.sliding_window = 4096;
  ModelWeights qwen2;
  qwen2.config.model_type = "qwen2";
  qwen2.config.num_hidden_layers = 2;
  qwen2.config.sliding_window = 1024;
  qwen2.config.windowed_layers = {true, false};
  for (ModelWeights* w : {&mistral, &qwen2}) {
    absl::StatusOr<std::unique_ptr<Backend>> backend = CreateCudaBackend(std::move(*w));
    EXPECT_EQ(backend.status().code(), absl::StatusCode::kFailedPrecondition) << backend.status();
    EXPECT_NE(backend.status().message().find("0 CUDA device(s) found"), std::string::npos)
        << backend.status();
  }
}

}  // namespace
}  // namespace blockserve::engine
