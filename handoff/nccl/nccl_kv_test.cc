// The NCCL KV transfer between two ranks on two GPUs of one machine (one thread each).
// Needs >= 2 GPUs: skips with a message otherwise. NEVER RUN: written on machines with
// no GPU at all; the first run on a 2-GPU machine is its first test.
#include "handoff/nccl/nccl_kv.h"

#include <gtest/gtest.h>

#include <random>
#include <thread>

#include "engine/cuda/cuda_util.h"

namespace blockserve::handoff {
namespace {

engine::KvCache RandomKv(engine::KvShape shape, int64_t tokens, uint64_t seed) {
  engine::KvCache kv(shape);
  std::vector<int32_t> ids(tokens);
  for (int64_t t = 0; t < tokens; ++t) ids[t] = static_cast<int32_t>(t * 7 % 100);
  kv.Append(ids);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> n;
  for (int64_t l = 0; l < shape.num_layers; ++l) {
    for (int64_t i = 0; i < tokens * shape.row(); ++i) {
      kv.k(l)[i] = n(rng);
      kv.v(l)[i] = n(rng);
    }
  }
  return kv;
}

TEST(NcclKvTest, DecoderReceivesExactlyThePrefillsKv) {
  if (engine::cuda::CudaDeviceCount() < 2) {
    GTEST_SKIP() << "needs 2 GPUs (found " << engine::cuda::CudaDeviceCount()
                 << "): NCCL cannot pair two ranks on one device";
  }
  const engine::KvShape shape{3, 2, 16};
  const engine::KvCache sent = RandomKv(shape, 37, 5);
  absl::StatusOr<std::string> id = NewNcclUniqueId();
  ASSERT_TRUE(id.ok()) << id.status();

  absl::Status send_status, recv_status;
  engine::KvCache received(shape);
  std::thread prefill([&] {
    absl::StatusOr<std::unique_ptr<NcclKvChannel>> ch =
        NcclKvChannel::Join(*id, 2, 0, {.device = 0});
    send_status = ch.ok() ? (*ch)->SendKv(sent, 1) : ch.status();
  });
  std::thread decoder([&] {
    absl::StatusOr<std::unique_ptr<NcclKvChannel>> ch =
        NcclKvChannel::Join(*id, 2, 1, {.device = 1});
    recv_status = ch.ok() ? (*ch)->RecvKv(0, sent.tokens(), &received) : ch.status();
  });
  prefill.join();
  decoder.join();
  ASSERT_TRUE(send_status.ok()) << send_status;
  ASSERT_TRUE(recv_status.ok()) << recv_status;

  ASSERT_EQ(received.num_tokens(), sent.num_tokens());
  EXPECT_EQ(received.tokens(), sent.tokens());
  const int64_t n = sent.num_tokens() * shape.row();
  for (int64_t l = 0; l < shape.num_layers; ++l) {
    EXPECT_EQ(std::vector<float>(received.k(l), received.k(l) + n),
              std::vector<float>(sent.k(l), sent.k(l) + n)) << "K layer " << l;
    EXPECT_EQ(std::vector<float>(received.v(l), received.v(l) + n),
              std::vector<float>(sent.v(l), sent.v(l) + n)) << "V layer " << l;
  }
}

TEST(NcclKvTest, JoinRejectsAMalformedId) {
  absl::StatusOr<std::unique_ptr<NcclKvChannel>> ch = NcclKvChannel::Join("short", 2, 0);
  EXPECT_EQ(ch.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(NcclKvTest, LocalCapabilitiesReportTheGpus) {
  const GpuCapabilities caps = LocalGpuCapabilities();
  EXPECT_EQ(caps.gpu_count, engine::cuda::CudaDeviceCount());
  if (caps.gpu_count > 0) {
    EXPECT_TRUE(caps.nccl_available);
  }
}

}  // namespace
}  // namespace blockserve::handoff
