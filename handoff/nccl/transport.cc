#include "handoff/nccl/transport.h"

#include "absl/strings/str_cat.h"

namespace blockserve::handoff {
namespace {

// Why `caps` cannot take part in an NCCL handoff; empty if it can.
std::string Missing(const GpuCapabilities& caps, const char* side) {
  if (caps.gpu_count <= 0) return absl::StrCat(side, " has no GPU");
  if (!caps.nccl_available) return absl::StrCat(side, " has no usable NCCL");
  return "";
}

}  // namespace

absl::StatusOr<TransportChoice> ChooseKvTransport(v1::HandoffTransport requested,
                                                  const GpuCapabilities& prefill,
                                                  const GpuCapabilities& decoder,
                                                  bool allow_fallback) {
  switch (requested) {
    case v1::HANDOFF_TRANSPORT_UNSPECIFIED:
    case v1::HANDOFF_GRPC_STREAM:
      return TransportChoice{KvTransport::kGrpcStream, "gRPC stream requested"};
    case v1::HANDOFF_NCCL:
      break;
    default:
      return absl::InvalidArgumentError(
          absl::StrCat("unknown handoff transport ", static_cast<int>(requested)));
  }
  std::string missing = Missing(prefill, "the prefill");
  if (missing.empty()) missing = Missing(decoder, "the decoder");
  if (missing.empty()) return TransportChoice{KvTransport::kNccl, "NCCL requested, both sides able"};
  if (!allow_fallback) {
    return absl::FailedPreconditionError(absl::StrCat("NCCL handoff impossible: ", missing));
  }
  return TransportChoice{KvTransport::kGrpcStream,
                         absl::StrCat("NCCL requested but ", missing, "; falling back to gRPC stream")};
}

absl::StatusOr<TransportChoice> FallbackAfterNcclFailure(const absl::Status& nccl_error,
                                                         bool allow_fallback) {
  if (!allow_fallback) {
    return absl::UnavailableError(absl::StrCat("NCCL handoff failed: ", nccl_error.message()));
  }
  return TransportChoice{KvTransport::kGrpcStream,
                         absl::StrCat("NCCL handoff failed (", nccl_error.message(),
                                      "); falling back to gRPC stream")};
}

v1::NcclHandshake MakeNcclHandshake(const v1::SequenceHeader& header, std::string unique_id,
                                    uint64_t comm_id) {
  v1::NcclHandshake h;
  *h.mutable_header() = header;
  h.mutable_header()->set_dtype(v1::DTYPE_F32);  // NcclKvChannel sends fp32, as the stream
  h.set_unique_id(std::move(unique_id));
  h.set_nranks(2);
  h.set_sender_rank(0);
  h.set_decoder_rank(1);
  h.set_comm_id(comm_id);
  return h;
}

absl::Status ValidateNcclHandshake(const v1::NcclHandshake& h) {
  const size_t id_bytes = h.unique_id().size();
  if (id_bytes != kNcclUniqueIdBytes && !(id_bytes == 0 && h.comm_id() != 0)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unique_id must be ", kNcclUniqueIdBytes, " bytes (or empty with a comm_id), got ",
        id_bytes));
  }
  if (h.nranks() != 2) {
    return absl::InvalidArgumentError(absl::StrCat("nranks must be 2, got ", h.nranks()));
  }
  auto in_range = [&](int32_t r) { return r >= 0 && r < h.nranks(); };
  if (!in_range(h.decoder_rank())) {
    return absl::InvalidArgumentError(
        absl::StrCat("decoder_rank ", h.decoder_rank(), " outside [0, ", h.nranks(), ")"));
  }
  if (!in_range(h.sender_rank())) {
    return absl::InvalidArgumentError(
        absl::StrCat("sender_rank ", h.sender_rank(), " outside [0, ", h.nranks(), ")"));
  }
  if (h.sender_rank() == h.decoder_rank()) {
    return absl::InvalidArgumentError("sender_rank and decoder_rank must differ");
  }
  return absl::OkStatus();
}

}  // namespace blockserve::handoff
