// How a prefill hands a prefilled sequence (header + prompt KV) to a decoder.
//
// KvHandoff is the transport-neutral interface PrefillCore calls. GrpcKvHandoff is the
// CPU path: the Decoder.AcceptSequence client stream of KvChunk (handoff/kv_chunks.h),
// with KV sent as F32 so the decoder continues from exactly the prefill's numbers. The
// NCCL implementation (Decoder.PrepareNccl, then ncclSend of each layer's K and V) comes
// in a later issue; until then a request for HANDOFF_NCCL is FAILED_PRECONDITION.
#ifndef BLOCKSERVE_QUERY_PREFILL_GRPC_HANDOFF_H_
#define BLOCKSERVE_QUERY_PREFILL_GRPC_HANDOFF_H_

#include <cstddef>
#include <memory>
#include <string>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "engine/kv_cache.h"
#include "handoff/kv_chunks.h"
#include "proto/blockserve.grpc.pb.h"

namespace blockserve::query_prefill {

class KvHandoff {
 public:
  virtual ~KvHandoff() = default;

  // Hands `kv` (the whole prompt's KV, keys at their final positions) to the decoder at
  // `decoder_address` ("host:port"). `header` carries sequence_id, model_fingerprint,
  // first_token_id, sampling and request_id; the shape, dtype and token fields are
  // filled from `kv` by the transport. Returns once the decoder has accepted the whole
  // sequence; otherwise an error whose code and message say what went wrong, for the
  // prefill's log (the prefill's caller learns only "decoder unavailable",
  // prefill_core.h).
  virtual absl::Status Send(const std::string& decoder_address,
                            const v1::SequenceHeader& header, const engine::KvCache& kv,
                            absl::Time deadline) = 0;
};

struct GrpcKvHandoffOptions {
  // How the prefill dials decoders (security/tls.h ChannelCredentialsTo(…, kDecoder));
  // null: plaintext.
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  size_t max_chunk_bytes = handoff::kDefaultMaxChunkBytes;
  // Cap on gRPC's reconnect backoff, so a decoder that restarts is reachable again soon.
  absl::Duration max_reconnect_backoff = absl::Seconds(1);
};

class GrpcKvHandoff final : public KvHandoff {
 public:
  explicit GrpcKvHandoff(GrpcKvHandoffOptions options = {}) : options_(options) {}

  // Streams the header chunk, then every layer's K and V in slices of at most
  // max_chunk_bytes (F32). Stops sending as soon as the decoder ends the call early.
  absl::Status Send(const std::string& decoder_address, const v1::SequenceHeader& header,
                    const engine::KvCache& kv, absl::Time deadline) override;

 private:
  // One channel per decoder address, created on first use and kept.
  std::shared_ptr<grpc::Channel> Channel(const std::string& address);

  const GrpcKvHandoffOptions options_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::shared_ptr<grpc::Channel>> channels_ ABSL_GUARDED_BY(mu_);
};

}  // namespace blockserve::query_prefill

#endif  // BLOCKSERVE_QUERY_PREFILL_GRPC_HANDOFF_H_
