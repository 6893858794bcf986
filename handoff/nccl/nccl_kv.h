// The GPU path of the prefill -> decoder KV handoff: an NCCL communicator of two ranks
// (prefill, decoder) and the transfer of a sequence's KV over it, as
// proto/blockserve.proto's Decoder.PrepareNccl describes: per layer 0..L-1, K then V,
// each one contiguous tensor [token][kv_head][head_dim] with one ncclSend/ncclRecv.
//
// Setup: the prefill calls NewNcclUniqueId(), sends the 128 bytes in NcclHandshake
// (transport.h: MakeNcclHandshake), and both sides call NcclKvChannel::Join with the
// same id: prefill rank 0, decoder rank 1. Join is collective, so the decoder must not
// wait for it inside the PrepareNccl handler (it answers first, then joins).
//
// Data: the engine's KvCache is host fp32 today, so SendKv uploads each layer to the
// device and RecvKv downloads into a KvCache (F32 on the wire, as the gRPC stream; the
// receiver gets exactly the sender's numbers). With a device-resident KV cache the
// staging copies go away; the wire format stays.
//
// Failures: every call is bounded by `timeout` (non-blocking NCCL communicator, polled);
// on a timeout or an asynchronous NCCL error the communicator is aborted and the call
// returns UNAVAILABLE. The caller then falls back to the gRPC stream (transport.h).
//
// STATUS: compiled and linked in CI; NEVER RUN: it needs two GPUs, and no machine this
// was written on has even one. Not wired into query_prefill/decoder yet.
#ifndef BLOCKSERVE_HANDOFF_NCCL_NCCL_KV_H_
#define BLOCKSERVE_HANDOFF_NCCL_NCCL_KV_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "engine/kv_cache.h"
#include "handoff/nccl/capabilities.h"

namespace blockserve::handoff {

// This process's GPU count and whether NCCL answers (never fails; zeros when absent).
GpuCapabilities LocalGpuCapabilities();

// A fresh ncclUniqueId, as its 128 raw bytes. Internal if NCCL fails.
absl::StatusOr<std::string> NewNcclUniqueId();

struct NcclKvOptions {
  int device = 0;                          // CUDA device this rank uses
  absl::Duration timeout = absl::Seconds(30);  // per Join / SendKv / RecvKv
};

class NcclKvChannel {
 public:
  // Joins the communicator `unique_id` (128 bytes) as `rank` of `nranks`. Blocks until
  // every rank has joined or the timeout passes (UNAVAILABLE). InvalidArgument for a bad
  // id or rank; FailedPrecondition where the device does not exist.
  static absl::StatusOr<std::unique_ptr<NcclKvChannel>> Join(const std::string& unique_id,
                                                             int nranks, int rank,
                                                             NcclKvOptions options = {});
  ~NcclKvChannel();

  // Sends all of `kv`'s rows to `peer`; returns when the sends completed.
  absl::Status SendKv(const engine::KvCache& kv, int peer);

  // Receives a sequence of `tokens.size()` rows from `peer` and appends it to `kv` (whose
  // shape must be the sender's; an empty cache is the usual target).
  absl::Status RecvKv(int peer, absl::Span<const int32_t> tokens, engine::KvCache* kv);

 private:
  struct Impl;
  explicit NcclKvChannel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace blockserve::handoff

#endif  // BLOCKSERVE_HANDOFF_NCCL_NCCL_KV_H_
