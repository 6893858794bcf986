// blockserve.v1.Decoder over gRPC: a thin translation between the wire and DecoderCore.
// AcceptSequence reassembles the KV stream (handoff::SequenceAssembler) and admits it;
// Stream drains a sequence's events; Cancel cancels. Status codes follow the proto
// through common/grpc_status.h.
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
  absl::Duration sequence_wait = absl::Seconds(30);  // Stream's attach wait
  handoff::MaxNewTokensPolicy max_new_tokens;
  MetricsRegistry* metrics = nullptr;  // optional
};

class DecoderService final : public blockserve::v1::Decoder::Service {
 public:
  // `engine` is read at construction only. `core` must outlive the service (and the server it is
  // registered in).
  DecoderService(engine::Engine& engine, DecoderCore& core, DecoderServiceOptions options);

  grpc::Status AcceptSequence(grpc::ServerContext* context,
                              grpc::ServerReader<blockserve::v1::KvChunk>* reader,
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
  DecoderCore& core_;
  const DecoderServiceOptions options_;
  const handoff::SequenceAssembler::Expect expect_;
  std::unique_ptr<MetricsRegistry> own_metrics_;  // when options.metrics is null
  Counter* kv_bytes_received_;
  Counter* handoffs_failed_;
  Histogram* receive_ms_;
};

}  // namespace blockserve::decoder

#endif  // BLOCKSERVE_DECODER_DECODER_SERVICE_H_
