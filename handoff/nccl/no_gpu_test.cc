// Without a GPU an NCCL handoff request falls back to the gRPC stream, from this
// process's real capabilities (the CUDA runtime and NCCL are loaded and asked). Runs in
// CI, which has the libraries but no GPU; on a machine with a GPU it skips.
#include <gtest/gtest.h>

#include "handoff/nccl/nccl_kv.h"
#include "handoff/nccl/transport.h"

namespace blockserve::handoff {
namespace {

TEST(NoGpuTest, NcclRequestFallsBackToTheStreamFromLocalCapabilities) {
  const GpuCapabilities local = LocalGpuCapabilities();
  if (local.gpu_count > 0) GTEST_SKIP() << "this machine has a GPU; the no-GPU path is not reachable here";
  EXPECT_FALSE(local.nccl_available);
  const GpuCapabilities decoder{.gpu_count = 1, .nccl_available = true};
  absl::StatusOr<TransportChoice> c = ChooseKvTransport(v1::HANDOFF_NCCL, local, decoder);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->transport, KvTransport::kGrpcStream);
  EXPECT_NE(c->reason.find("the prefill has no GPU"), std::string::npos) << c->reason;
}

TEST(NoGpuTest, JoiningACommunicatorIsFailedPrecondition) {
  if (LocalGpuCapabilities().gpu_count > 0) GTEST_SKIP() << "this machine has a GPU";
  absl::StatusOr<std::unique_ptr<NcclKvChannel>> ch =
      NcclKvChannel::Join(std::string(kNcclUniqueIdBytes, '\0'), 2, 0);
  EXPECT_EQ(ch.status().code(), absl::StatusCode::kFailedPrecondition) << ch.status();
}

}  // namespace
}  // namespace blockserve::handoff
