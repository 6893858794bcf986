#include "passage_encoder/encoder_service.h"

#include "common/grpc_status.h"

namespace blockserve::passage_encoder {

grpc::Status EncoderService::EncodePassages(grpc::ServerContext* /*context*/,
                                            const v1::EncodePassagesRequest* request,
                                            v1::EncodePassagesResponse* response) {
  absl::StatusOr<v1::EncodePassagesResponse> r = core_.EncodeBatch(*request);
  if (!r.ok()) return ToGrpcStatus(r.status());
  *response = *std::move(r);
  return grpc::Status::OK;
}

grpc::Status EncoderService::EncodePassageStream(
    grpc::ServerContext* context, grpc::ServerReaderWriter<v1::EncodeResult, v1::Passage>* stream) {
  v1::Passage passage;
  for (uint32_t index = 0; stream->Read(&passage); ++index) {
    if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    const v1::EncodeResult result = core_.Encode(passage, index, /*force_reencode=*/false);
    if (absl::Status s = EncoderCore::StoreFailure(result); !s.ok()) return ToGrpcStatus(s);
    if (!stream->Write(result)) break;
  }
  return grpc::Status::OK;
}

}  // namespace blockserve::passage_encoder
