#include "passage_encoder/encoder_service.h"

#include "common/grpc_status.h"
#include "security/tenant_scope.h"

namespace blockserve::passage_encoder {

grpc::Status EncoderService::EncodePassages(grpc::ServerContext* context,
                                            const v1::EncodePassagesRequest* request,
                                            v1::EncodePassagesResponse* response) {
  // The tenant's namespace, set by the router (only routers may call the encoder).
  absl::StatusOr<security::TenantScope> scope = security::ScopeOf(*context);
  if (!scope.ok()) return ToGrpcStatus(scope.status());
  absl::StatusOr<v1::EncodePassagesResponse> r = core_.EncodeBatch(*request, scope->ns);
  if (!r.ok()) return ToGrpcStatus(r.status());
  *response = *std::move(r);
  return grpc::Status::OK;
}

grpc::Status EncoderService::EncodePassageStream(
    grpc::ServerContext* context, grpc::ServerReaderWriter<v1::EncodeResult, v1::Passage>* stream) {
  absl::StatusOr<security::TenantScope> scope = security::ScopeOf(*context);
  if (!scope.ok()) return ToGrpcStatus(scope.status());
  v1::Passage passage;
  for (uint32_t index = 0; stream->Read(&passage); ++index) {
    if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    const v1::EncodeResult result = core_.Encode(passage, index, /*force_reencode=*/false, scope->ns);
    if (absl::Status s = EncoderCore::StoreFailure(result); !s.ok()) return ToGrpcStatus(s);
    if (!stream->Write(result)) break;
  }
  return grpc::Status::OK;
}

}  // namespace blockserve::passage_encoder
