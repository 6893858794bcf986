// blockserve.v1.QueryPrefill over gRPC: passes each call (and its deadline) to
// PrefillCore and maps its errors to gRPC status codes (common/grpc_status.h).
#ifndef BLOCKSERVE_QUERY_PREFILL_PREFILL_SERVICE_H_
#define BLOCKSERVE_QUERY_PREFILL_PREFILL_SERVICE_H_

#include "proto/blockserve.grpc.pb.h"
#include "query_prefill/prefill_core.h"

namespace blockserve::query_prefill {

class PrefillService final : public v1::QueryPrefill::Service {
 public:
  // `core` must outlive the service.
  explicit PrefillService(PrefillCore& core) : core_(core) {}

  grpc::Status Prefill(grpc::ServerContext* context, const v1::PrefillRequest* request,
                       v1::PrefillResponse* response) override;

 private:
  PrefillCore& core_;
};

}  // namespace blockserve::query_prefill

#endif  // BLOCKSERVE_QUERY_PREFILL_PREFILL_SERVICE_H_
