// The one place where library errors (absl::Status) become gRPC statuses and back.
// absl and gRPC share the canonical code numbering, so the mapping keeps the code and
// the message; services rely on libraries choosing the right code (bad input ->
// INVALID_ARGUMENT, unknown passage -> NOT_FOUND, over capacity -> RESOURCE_EXHAUSTED,
// dependency down -> UNAVAILABLE).
#ifndef BLOCKSERVE_COMMON_GRPC_STATUS_H_
#define BLOCKSERVE_COMMON_GRPC_STATUS_H_

#include <grpcpp/support/status.h>

#include "absl/status/status.h"

namespace blockserve {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace blockserve

#endif  // BLOCKSERVE_COMMON_GRPC_STATUS_H_
