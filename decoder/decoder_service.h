// blockserve.v1.Decoder over gRPC: a thin translation between the wire and DecoderCore.
// AcceptSequence reassembles the KV stream (handoff::SequenceAssembler) and admits it;
// Stream drains a sequence's events; Cancel cancels. Status codes follow the proto
// through common/grpc_status.h.
//
// The handoff lease: an AcceptSequence call whose KV has not all arrived within
// `handoff_lease` of the call's start ends with DEADLINE_EXCEEDED, and the capacity it
// reserved is freed. So a sender that stalls after the header (or before it) holds a slot
// for the lease, not for ever. AcceptSequence runs on gRPC's callback API: a stalled
// sender holds no server thread, and the lease can end the call with its own status while
// a read is pending (a blocking handler could only cancel it, which the sender sees as
// CANCELLED).
#ifndef BLOCKSERVE_DECODER_DECODER_SERVICE_H_
#define BLOCKSERVE_DECODER_DECODER_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include "absl/time/time.h"
#include "common/metrics.h"
#include "decoder/decoder_core.h"
#include "engine/engine.h"
#include "handoff/kv_chunks.h"
#include "proto/blockserve.grpc.pb.h"

namespace blockserve::decoder {

struct DecoderServiceOptions {
  absl::Duration sequence_wait = absl::Seconds(30);  // Stream's wait for a sequence to arrive
  absl::Duration handoff_lease = absl::Seconds(5);   // AcceptSequence's start → all KV arrived
  handoff::MaxNewTokensPolicy max_new_tokens;
  MetricsRegistry* metrics = nullptr;  // optional
};

class DecoderService final
    : public blockserve::v1::Decoder::WithCallbackMethod_AcceptSequence<
          blockserve::v1::Decoder::Service> {
 public:
  // `engine` is read at construction only. `core` must outlive the service (and the server it is
  // registered in).
  DecoderService(engine::Engine& engine, DecoderCore& core, DecoderServiceOptions options);

  grpc::ServerReadReactor<blockserve::v1::KvChunk>* AcceptSequence(
      grpc::CallbackServerContext* context,
      blockserve::v1::AcceptSequenceResponse* response) override;
  // No NCCL path in this build: FAILED_PRECONDITION.
  grpc::Status PrepareNccl(grpc::ServerContext* context,
                           const blockserve::v1::NcclHandshake* request,
                           blockserve::v1::NcclHandshakeResponse* response) override;
  grpc::Status Stream(grpc::ServerContext* context, const blockserve::v1::StreamRequest* request,
                      grpc::ServerWriter<blockserve::v1::TokenEvent>* writer) override;
  grpc::Status Cancel(grpc::ServerContext* context, const blockserve::v1::CancelRequest* request,
                      blockserve::v1::CancelResponse* response) override;

 private:
  class Receiver;  // one AcceptSequence call

  DecoderCore& core_;
  const DecoderServiceOptions options_;
  const handoff::SequenceAssembler::Expect expect_;
  std::unique_ptr<MetricsRegistry> own_metrics_;  // when options.metrics is null
  Counter* kv_bytes_received_;
  Counter* handoffs_failed_;
  Counter* leases_expired_;
  Histogram* receive_ms_;
};

}  // namespace blockserve::decoder

#endif  // BLOCKSERVE_DECODER_DECODER_SERVICE_H_
