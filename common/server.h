// Runs a gRPC server the way every BlockServe service runs: the standard
// grpc.health.v1 health service, plain HTTP on `metrics_host:metrics_port` (GET /metrics:
// Prometheus text; GET /healthz: 200 SERVING or 503 NOT_SERVING, the health below, for
// probes that cannot present a TLS client certificate; anything else 404), structured
// start/stop logs, and a graceful shutdown on SIGTERM or SIGINT. The server listens on
// exactly the ports it logs: {"event":"listening","port":...} for gRPC and
// {"event":"metrics_listening","address":...} for HTTP.
//
// Health answers for the whole server ("") and for the fully-qualified name of every
// service served (e.g. "blockserve.v1.Decoder"), all alike: SERVING while the server's
// readiness (ServerOptions::readiness) says so, NOT_SERVING otherwise and from SIGTERM
// on. Each change is logged once: {"event":"health","status":...,"why":...}.
//
// Shutdown, in order: (1) the health service answers NOT_SERVING for every service
// name ("" included), so health-checking routers and load balancers stop sending new
// work; (2) the server keeps serving for `drain_delay`, long enough for those checkers
// to notice (a router probing every second needs a little over a second); (3)
// on_shutdown; (4) the server stops accepting calls and lets in-flight ones finish
// within `shutdown_grace`, then RunServer returns. A second signal during the drain
// delay ends the delay (an impatient operator); signals after that are ignored.
#ifndef BLOCKSERVE_COMMON_SERVER_H_
#define BLOCKSERVE_COMMON_SERVER_H_

#include <functional>
#include <memory>
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
  // How the server listens (security/tls.h ServerSecurityFor); null: plaintext.
  std::shared_ptr<grpc::ServerCredentials> credentials;
  int metrics_port = 0;                   // 0: no HTTP endpoint (/metrics, /healthz)
  // Address the HTTP endpoint binds: an IPv4 or IPv6 literal, or a name (its first
  // address). Empty: the host of listen_address, so a loopback server keeps its metrics
  // on loopback too.
  std::string metrics_host;
  // Largest message received or sent; a larger one is refused by gRPC before it is
  // parsed (RESOURCE_EXHAUSTED). ServerOptionsFromFlags sets contract::kMaxMessageBytes.
  int max_message_bytes = 4 << 20;
  absl::Duration shutdown_grace = absl::Seconds(5);
  // After SIGTERM/SIGINT: how long the server keeps accepting calls while its health
  // already answers NOT_SERVING. Zero: it stops accepting at once (new calls are then
  // refused with UNAVAILABLE, which routers retry elsewhere).
  absl::Duration drain_delay = absl::ZeroDuration();
  // Called once the server listens, with the bound port (tests and scripts read it
  // from the "listening" log line too).
  std::function<void(int port)> on_listening;
  // Called after SIGTERM/SIGINT and the drain delay, before the gRPC server stops
  // accepting and drains (e.g. to cancel streams).
  std::function<void()> on_shutdown;
  // Whether the server can do its work now: OK for SERVING, an error (its text logged
  // as "why") for NOT_SERVING. Called once before on_listening, then every
  // `readiness_interval` until SIGTERM, never twice at once; it should return quickly.
  // Empty: always ready.
  std::function<absl::Status()> readiness;
  absl::Duration readiness_interval = absl::Milliseconds(500);
};

// A service for RunServer with the name its health answers to. grpc::Service has no
// name accessor: take it from the generated code, e.g. v1::Decoder::service_full_name().
struct ServedService {
  grpc::Service* service;
  std::string full_name;
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

// Serves `services` until SIGTERM/SIGINT. `metrics` may be null (/metrics is then
// empty). Returns an error, before serving anything, when listen_address or the
// metrics address cannot be bound (a port in use, an address not on this host, a name
// that does not resolve), so that main() exits non-zero.
absl::Status RunServer(const ServerOptions& options, const std::vector<ServedService>& services,
                       MetricsRegistry* metrics);

}  // namespace blockserve

#endif  // BLOCKSERVE_COMMON_SERVER_H_
