// The blockserve.v1.Router gRPC service: translates calls to RouterCore and statuses
// to gRPC codes (common/grpc_status.h). No logic lives here.
#ifndef BLOCKSERVE_ROUTER_ROUTER_SERVICE_H_
#define BLOCKSERVE_ROUTER_ROUTER_SERVICE_H_

#include <grpcpp/grpcpp.h>

#include "proto/blockserve.grpc.pb.h"
#include "router/router_core.h"

namespace blockserve::router {

// The client's deadline and cancellation as RouterCore sees them.
ClientCall ClientCallFrom(grpc::ServerContext* context);

class RouterService final : public v1::Router::Service {
 public:
  explicit RouterService(RouterCore* core) : core_(core) {}

  grpc::Status Generate(grpc::ServerContext* context, const v1::GenerateRequest* request,
                        grpc::ServerWriter<v1::GenerateEvent>* writer) override;
  grpc::Status Ingest(grpc::ServerContext* context, const v1::IngestRequest* request,
                      v1::IngestResponse* response) override;
  grpc::Status GetStats(grpc::ServerContext* context, const v1::StatsRequest* request,
                        v1::StatsResponse* response) override;

 private:
  RouterCore* const core_;
};

}  // namespace blockserve::router

#endif  // BLOCKSERVE_ROUTER_ROUTER_SERVICE_H_
