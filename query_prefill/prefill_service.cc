#include "query_prefill/prefill_service.h"

#include "absl/time/clock.h"
#include "common/grpc_status.h"
#include "security/tenant_scope.h"

namespace blockserve::query_prefill {

grpc::Status PrefillService::Prefill(grpc::ServerContext* context,
                                     const v1::PrefillRequest* request,
                                     v1::PrefillResponse* response) {
  // gRPC reports "no deadline" as the largest time point.
  const auto grpc_deadline = context->deadline();
  const absl::Time deadline = grpc_deadline == std::chrono::system_clock::time_point::max()
                                  ? absl::InfiniteFuture()
                                  : absl::FromChrono(grpc_deadline);
  // The tenant's namespaces, set by the router (only routers may call Prefill).
  absl::StatusOr<security::TenantScope> scope = security::ScopeOf(*context);
  if (!scope.ok()) return ToGrpcStatus(scope.status());
  absl::StatusOr<v1::PrefillResponse> r = core_.Prefill(*request, deadline, *scope);
  if (!r.ok()) return ToGrpcStatus(r.status());
  *response = *std::move(r);
  return grpc::Status::OK;
}

}  // namespace blockserve::query_prefill
