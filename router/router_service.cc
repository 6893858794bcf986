#include "router/router_service.h"

#include "absl/strings/str_cat.h"
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

absl::StatusOr<security::Tenant> RouterService::Authenticate(const grpc::ServerContext& context) {
  if (tenants_ == nullptr) return security::Tenant{.name = "anonymous"};
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  const std::string_view value =
      it == metadata.end() ? std::string_view() : std::string_view(it->second.data(), it->second.size());
  return tenants_->Authenticate(value);
}

grpc::Status RouterService::Generate(grpc::ServerContext* context,
                                     const v1::GenerateRequest* request,
                                     grpc::ServerWriter<v1::GenerateEvent>* writer) {
  absl::StatusOr<security::Tenant> tenant = Authenticate(*context);
  if (!tenant.ok()) return ToGrpcStatus(tenant.status());
  absl::StatusOr<security::ConcurrencyLimiter::Slot> slot = limiter_.Acquire(*tenant);
  if (!slot.ok()) return ToGrpcStatus(slot.status());
  ClientCall client = ClientCallFrom(context);
  client.scope = tenant->scope;
  return ToGrpcStatus(core_->Generate(
      *request, client, [writer](const v1::GenerateEvent& event) { return writer->Write(event); }));
}

grpc::Status RouterService::Ingest(grpc::ServerContext* context, const v1::IngestRequest* request,
                                   v1::IngestResponse* response) {
  absl::StatusOr<security::Tenant> tenant = Authenticate(*context);
  if (!tenant.ok()) return ToGrpcStatus(tenant.status());
  if (!tenant->may_ingest) {
    return ToGrpcStatus(absl::PermissionDeniedError(
        absl::StrCat("tenant \"", tenant->name, "\" may not ingest passages")));
  }
  absl::StatusOr<security::ConcurrencyLimiter::Slot> slot = limiter_.Acquire(*tenant);
  if (!slot.ok()) return ToGrpcStatus(slot.status());
  ClientCall client = ClientCallFrom(context);
  client.scope = tenant->scope;
  absl::StatusOr<v1::IngestResponse> result = core_->Ingest(*request, client);
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = *std::move(result);
  return grpc::Status::OK;
}

grpc::Status RouterService::GetStats(grpc::ServerContext* context,
                                     const v1::StatsRequest* request,
                                     v1::StatsResponse* response) {
  absl::StatusOr<security::Tenant> tenant = Authenticate(*context);
  if (!tenant.ok()) return ToGrpcStatus(tenant.status());
  *response = core_->GetStats(*request);
  return grpc::Status::OK;
}

}  // namespace blockserve::router
