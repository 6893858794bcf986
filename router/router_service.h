// The blockserve.v1.Router gRPC service: authenticates the caller, then translates calls
// to RouterCore and statuses to gRPC codes (common/grpc_status.h).
//
// Authentication (security/tenants.h): every call carries "authorization: Bearer
// <token>"; the token's tenant decides the cache scope sent downstream, whether Ingest
// is allowed (else PERMISSION_DENIED) and how many of its Generate and Ingest calls may
// run at once (else RESOURCE_EXHAUSTED). Without a tenant directory (an --insecure local
// run without --tenants_file) every caller is the one anonymous tenant of the empty
// namespace.
#ifndef BLOCKSERVE_ROUTER_ROUTER_SERVICE_H_
#define BLOCKSERVE_ROUTER_ROUTER_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include "proto/blockserve.grpc.pb.h"
#include "router/router_core.h"
#include "security/tenants.h"

namespace blockserve::router {

// The client's deadline and cancellation as RouterCore sees them.
ClientCall ClientCallFrom(grpc::ServerContext* context);

class RouterService final : public v1::Router::Service {
 public:
  // `tenants` may be null (anonymous, see above); both must outlive the service.
  RouterService(RouterCore* core, security::TenantDirectory* tenants)
      : core_(core), tenants_(tenants) {}

  grpc::Status Generate(grpc::ServerContext* context, const v1::GenerateRequest* request,
                        grpc::ServerWriter<v1::GenerateEvent>* writer) override;
  grpc::Status Ingest(grpc::ServerContext* context, const v1::IngestRequest* request,
                      v1::IngestResponse* response) override;
  grpc::Status GetStats(grpc::ServerContext* context, const v1::StatsRequest* request,
                        v1::StatsResponse* response) override;

 private:
  // The caller's tenant, from its call metadata.
  absl::StatusOr<security::Tenant> Authenticate(const grpc::ServerContext& context);

  RouterCore* const core_;
  security::TenantDirectory* const tenants_;
  security::ConcurrencyLimiter limiter_;
};

}  // namespace blockserve::router

#endif  // BLOCKSERVE_ROUTER_ROUTER_SERVICE_H_
