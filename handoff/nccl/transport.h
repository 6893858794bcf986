// Which transport a prefill uses to hand a sequence's KV to a decoder, and the NCCL
// handshake message's rules. Pure logic (no CUDA, no network): tested in CI.
//
// Policy. The request names a transport (DecoderTarget.transport). gRPC stream (or
// unset) is always possible. NCCL needs a GPU and a working NCCL on BOTH sides; where
// either lacks one, or where joining the communicator fails at run time, the prefill
// falls back to the gRPC stream (the requirement) unless the caller asked for
// strict behaviour, in which case it is FAILED_PRECONDITION as proto/blockserve.proto
// documents for HANDOFF_NCCL.
//
// STATUS: this decision logic is tested; the NCCL transport itself (nccl_kv.h) is a
// self-contained library NOT yet wired into query_prefill/decoder (no PrepareNccl
// handler exists yet), and has never run on a GPU.
#ifndef BLOCKSERVE_HANDOFF_NCCL_TRANSPORT_H_
#define BLOCKSERVE_HANDOFF_NCCL_TRANSPORT_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "handoff/nccl/capabilities.h"
#include "proto/blockserve.pb.h"

namespace blockserve::handoff {

enum class KvTransport { kGrpcStream, kNccl };

struct TransportChoice {
  KvTransport transport = KvTransport::kGrpcStream;
  std::string reason;  // for logs: why this transport
};

// `prefill` is this process's capabilities, `decoder` the peer's (as it reports them).
// InvalidArgument for a transport value the proto does not define; FailedPrecondition for
// NCCL without the means when `allow_fallback` is false.
absl::StatusOr<TransportChoice> ChooseKvTransport(v1::HandoffTransport requested,
                                                  const GpuCapabilities& prefill,
                                                  const GpuCapabilities& decoder,
                                                  bool allow_fallback = true);

// After the NCCL path failed at run time (communicator init, send, timeout): the gRPC
// stream with the error as the reason, or, when `allow_fallback` is false, the error as
// UNAVAILABLE (the proto's code for a broken handoff). A fallback must register the
// sequence anew (a fresh sequence id), since the decoder may still hold the NCCL one
// until its NCCL timeout drops it.
absl::StatusOr<TransportChoice> FallbackAfterNcclFailure(const absl::Status& nccl_error,
                                                         bool allow_fallback = true);

// NCCL_UNIQUE_ID_BYTES, restated so that this file needs no NCCL header.
inline constexpr size_t kNcclUniqueIdBytes = 128;

// The handshake the prefill sends (Decoder.PrepareNccl), prefill at rank 0 and decoder
// at rank 1 of a two-rank communicator; the header's dtype is set to F32, the element
// type NcclKvChannel sends.
v1::NcclHandshake MakeNcclHandshake(const v1::SequenceHeader& header, std::string unique_id,
                                    uint64_t comm_id = 0);

// The handshake rules of proto/blockserve.proto (NcclHandshake) except the header's own,
// which are AcceptSequence's: unique_id exactly kNcclUniqueIdBytes (or empty with a
// non-zero comm_id), nranks == 2, both ranks in [0, nranks) and distinct.
// InvalidArgument naming the field otherwise.
absl::Status ValidateNcclHandshake(const v1::NcclHandshake& handshake);

}  // namespace blockserve::handoff

#endif  // BLOCKSERVE_HANDOFF_NCCL_TRANSPORT_H_
