// Transport choice and handshake rules (transport.h). CPU only: runs in CI.
#include "handoff/nccl/transport.h"

#include <gtest/gtest.h>

namespace blockserve::handoff {
namespace {

const GpuCapabilities kGpu{.gpu_count = 1, .nccl_available = true};
const GpuCapabilities kNoGpu{};
const GpuCapabilities kGpuWithoutNccl{.gpu_count = 2, .nccl_available = false};

TEST(ChooseKvTransportTest, GrpcOrUnsetIsAlwaysTheStream) {
  for (v1::HandoffTransport t : {v1::HANDOFF_TRANSPORT_UNSPECIFIED, v1::HANDOFF_GRPC_STREAM}) {
    absl::StatusOr<TransportChoice> c = ChooseKvTransport(t, kGpu, kGpu);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->transport, KvTransport::kGrpcStream);
  }
}

TEST(ChooseKvTransportTest, NcclWhenBothSidesHaveAGpuAndNccl) {
  absl::StatusOr<TransportChoice> c = ChooseKvTransport(v1::HANDOFF_NCCL, kGpu, kGpu);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->transport, KvTransport::kNccl);
}

TEST(ChooseKvTransportTest, NcclFallsBackToTheStreamAndSaysWhichSideLacksWhat) {
  struct Case {
    GpuCapabilities prefill, decoder;
    std::string reason_part;
  };
  for (const Case& k : {Case{kNoGpu, kGpu, "the prefill has no GPU"},
                        Case{kGpu, kNoGpu, "the decoder has no GPU"},
                        Case{kGpuWithoutNccl, kGpu, "the prefill has no usable NCCL"},
                        Case{kGpu, kGpuWithoutNccl, "the decoder has no usable NCCL"}}) {
    absl::StatusOr<TransportChoice> c = ChooseKvTransport(v1::HANDOFF_NCCL, k.prefill, k.decoder);
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(c->transport, KvTransport::kGrpcStream) << k.reason_part;
    EXPECT_NE(c->reason.find(k.reason_part), std::string::npos) << c->reason;
  }
}

TEST(ChooseKvTransportTest, StrictNcclWithoutMeansIsFailedPrecondition) {
  absl::StatusOr<TransportChoice> c =
      ChooseKvTransport(v1::HANDOFF_NCCL, kGpu, kNoGpu, /*allow_fallback=*/false);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kFailedPrecondition);
}

TEST(ChooseKvTransportTest, UnknownTransportIsInvalidArgument) {
  absl::StatusOr<TransportChoice> c =
      ChooseKvTransport(static_cast<v1::HandoffTransport>(77), kGpu, kGpu);
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(FallbackAfterNcclFailureTest, FallsBackOrReportsUnavailable) {
  const absl::Status err = absl::InternalError("ncclCommInitRank: unhandled system error");
  absl::StatusOr<TransportChoice> c = FallbackAfterNcclFailure(err);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->transport, KvTransport::kGrpcStream);
  EXPECT_NE(c->reason.find("unhandled system error"), std::string::npos);
  EXPECT_EQ(FallbackAfterNcclFailure(err, false).status().code(), absl::StatusCode::kUnavailable);
}

TEST(NcclHandshakeTest, MadeHandshakeIsValid) {
  v1::SequenceHeader header;
  header.set_sequence_id(9);
  v1::NcclHandshake h = MakeNcclHandshake(header, std::string(kNcclUniqueIdBytes, 'x'));
  EXPECT_TRUE(ValidateNcclHandshake(h).ok());
  EXPECT_EQ(h.header().sequence_id(), 9u);
  EXPECT_EQ(h.header().dtype(), v1::DTYPE_F32);
  EXPECT_EQ(h.nranks(), 2);
  EXPECT_NE(h.sender_rank(), h.decoder_rank());
}

TEST(NcclHandshakeTest, RejectsBadIdsAndRanks) {
  const v1::NcclHandshake good = MakeNcclHandshake({}, std::string(kNcclUniqueIdBytes, 'x'));
  auto code = [](const v1::NcclHandshake& h) { return ValidateNcclHandshake(h).code(); };
  v1::NcclHandshake h = good;
  h.set_unique_id(std::string(127, 'x'));
  EXPECT_EQ(code(h), absl::StatusCode::kInvalidArgument);
  h.set_unique_id("");  // empty is fine only when reusing a cached communicator
  EXPECT_EQ(code(h), absl::StatusCode::kInvalidArgument);
  h.set_comm_id(42);
  EXPECT_TRUE(ValidateNcclHandshake(h).ok());
  h = good;
  h.set_nranks(3);
  EXPECT_EQ(code(h), absl::StatusCode::kInvalidArgument);
  h = good;
  h.set_decoder_rank(2);
  EXPECT_EQ(code(h), absl::StatusCode::kInvalidArgument);
  h = good;
  h.set_sender_rank(-1);
  EXPECT_EQ(code(h), absl::StatusCode::kInvalidArgument);
  h = good;
  h.set_sender_rank(1);
  EXPECT_EQ(code(h), absl::StatusCode::kInvalidArgument);  // same as decoder_rank
}

}  // namespace
}  // namespace blockserve::handoff
