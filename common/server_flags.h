// The command-line flags every BlockServe server shares, defined once:
//   --host             address to listen on
//   --metrics_port     HTTP port of /metrics and /healthz (0: none)
//   --metrics_host     address that port binds (empty: --host's)
//   --advertise        the instance's "host:port" identity (empty: <hostname>:<port>)
//   --drain_delay_ms   on SIGTERM, how long to keep serving while health says NOT_SERVING
//   --shutdown_grace_ms  then how long in-flight calls may finish
// the transport-security flags of security/tls_flags.h, and, for the servers that run the
// model, common/model_flags.h. --port stays with each
// binary, whose default port is its own. A binary that links this library has the flags;
// list "common/server_flags" in its ShowFlagsFromDirectories so --help shows them.
#ifndef BLOCKSERVE_COMMON_SERVER_FLAGS_H_
#define BLOCKSERVE_COMMON_SERVER_FLAGS_H_

#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "common/server.h"
#include "security/tls.h"

namespace blockserve {

// What StartServerMain needs to know of a server.
struct ServerMainInfo {
  std::string service_name;            // names the log lines
  std::string usage;                   // the first lines of --help
  std::vector<std::string> flag_dirs;  // --help lists these sources' flags and the shared ones
};

// The start of every server's main(), in the order it must happen: blocks the shutdown
// signals (before any thread starts, so RunServer's signal thread gets them), caps
// glibc's malloc arenas at two (unless MALLOC_ARENA_MAX is set; see the .cc), sets the
// usage message and the --help filter, parses the command line, names the log lines.
void StartServerMain(int argc, char** argv, const ServerMainInfo& info);

// ServerOptions from the flags: service_name, listen_address (--host:`port`), the
// credentials of a server of `role` (security/tls.h: TLS from --tls_*, or --insecure on
// loopback), metrics_port, metrics_host (--metrics_host, else the listening host),
// drain_delay and shutdown_grace, and max_message_bytes = contract::kMaxMessageBytes; the
// caller sets the rest. InvalidArgument for flags that do not go together or TLS files
// that are missing, unreadable, mismatched or expired.
absl::StatusOr<ServerOptions> ServerOptionsFromFlags(std::string service_name, int port,
                                                     security::Role role);

// --advertise, or DefaultAdvertiseAddress(bound_port) when it is empty.
std::string AdvertisedAddress(int bound_port);

// For main() when start-up fails: logs a "fatal" event and prints "<service>: <what>:
// <status> (see --help)" to stderr; returns the exit code, 2 for bad flags
// (InvalidArgument), else 1.
int FailToStart(std::string_view what, const absl::Status& status);

}  // namespace blockserve

#endif  // BLOCKSERVE_COMMON_SERVER_FLAGS_H_
