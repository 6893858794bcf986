// blockserve.v1.PassageEncoder over gRPC: translates calls to EncoderCore and its
// errors to gRPC status codes (common/grpc_status.h). No logic of its own.
#ifndef BLOCKSERVE_PASSAGE_ENCODER_ENCODER_SERVICE_H_
#define BLOCKSERVE_PASSAGE_ENCODER_ENCODER_SERVICE_H_

#include "passage_encoder/encoder_core.h"
#include "proto/blockserve.grpc.pb.h"

namespace blockserve::passage_encoder {

class EncoderService final : public v1::PassageEncoder::Service {
 public:
  // `core` must outlive the service.
  explicit EncoderService(EncoderCore& core) : core_(core) {}

  grpc::Status EncodePassages(grpc::ServerContext* context,
                              const v1::EncodePassagesRequest* request,
                              v1::EncodePassagesResponse* response) override;

  // Passages are read one at a time and each result is written before the next read:
  // that is the flow control (a client cannot queue unbounded work on the server).
  grpc::Status EncodePassageStream(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<v1::EncodeResult, v1::Passage>* stream) override;

 private:
  EncoderCore& core_;
};

}  // namespace blockserve::passage_encoder

#endif  // BLOCKSERVE_PASSAGE_ENCODER_ENCODER_SERVICE_H_
