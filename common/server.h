// Runs a gRPC server the way every BlockServe service runs: the standard
// grpc.health.v1 health service, a Prometheus /metrics endpoint over plain HTTP,
// structured start/stop logs, and a graceful shutdown on SIGTERM or SIGINT (stop
// accepting, let in-flight calls finish within a grace period, then return).
#ifndef BLOCKSERVE_COMMON_SERVER_H_
#define BLOCKSERVE_COMMON_SERVER_H_

#include <functional>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "common/metrics.h"

namespace blockserve {

struct ServerOptions {
  std::string service_name;               // for logs
  std::string listen_address;             // e.g. "127.0.0.1:50051"; port 0 picks a free one
  int metrics_port = 0;                   // 0: no /metrics endpoint
  absl::Duration shutdown_grace = absl::Seconds(5);
  // Called once the server listens, with the bound port (tests and scripts read it
  // from the "listening" log line too).
  std::function<void(int port)> on_listening;
  // Called after SIGTERM/SIGINT, before the gRPC server drains (e.g. to cancel streams).
  std::function<void()> on_shutdown;
};

// "<hostname>:<port>": an instance's identity when its --advertise flag is empty.
std::string DefaultAdvertiseAddress(int port);

// Makes --help list the flags defined in source files whose path contains one of
// `dirs` (e.g. "decoder/", "store_config/"). absl's default lists only flags from a
// file named after the binary, which for a main.cc is none.
void ShowFlagsFromDirectories(std::vector<std::string> dirs);

// Blocks SIGTERM/SIGINT in the calling thread; call it at the top of main(), before
// any thread starts, so that RunServer's signal thread is the one that receives them.
void BlockShutdownSignals();

// Serves `services` until SIGTERM/SIGINT. `metrics` may be null. Returns an error if
// the address cannot be bound.
absl::Status RunServer(const ServerOptions& options, const std::vector<grpc::Service*>& services,
                       MetricsRegistry* metrics);

}  // namespace blockserve

#endif  // BLOCKSERVE_COMMON_SERVER_H_
