#include "router/router_service.h"

#include "common/grpc_status.h"

namespace blockserve::router {

ClientCall ClientCallFrom(grpc::ServerContext* context) {
  ClientCall call;
  // gRPC reports "no deadline" as a time point far in the future.
  const absl::Time deadline = absl::FromChrono(context->deadline());
  if (deadline < absl::Now() + absl::Hours(24 * 365)) call.deadline = deadline;
  call.cancelled = [context] { return context->IsCancelled(); };
  return call;
}

grpc::Status RouterService::Generate(grpc::ServerContext* context,
                                     const v1::GenerateRequest* request,
                                     grpc::ServerWriter<v1::GenerateEvent>* writer) {
  const ClientCall client = ClientCallFrom(context);
  return ToGrpcStatus(core_->Generate(
      *request, client, [writer](const v1::GenerateEvent& event) { return writer->Write(event); }));
}

grpc::Status RouterService::Ingest(grpc::ServerContext* context, const v1::IngestRequest* request,
                                   v1::IngestResponse* response) {
  absl::StatusOr<v1::IngestResponse> result = core_->Ingest(*request, ClientCallFrom(context));
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = *std::move(result);
  return grpc::Status::OK;
}

grpc::Status RouterService::GetStats(grpc::ServerContext*, const v1::StatsRequest* request,
                                     v1::StatsResponse* response) {
  *response = core_->GetStats(*request);
  return grpc::Status::OK;
}

}  // namespace blockserve::router
