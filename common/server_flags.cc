#include "common/server_flags.h"

#include <malloc.h>

#include <cstdlib>
#include <iostream>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "contract/request_contract.h"
#include "security/tls_flags.h"

ABSL_FLAG(std::string, host, "",
          "address to listen on; empty: 0.0.0.0 (all) with TLS, 127.0.0.1 with --insecure, "
          "which refuses any other");
ABSL_FLAG(int, metrics_port, 0,
          "HTTP port of /metrics (Prometheus) and /healthz (200 SERVING / 503 NOT_SERVING); "
          "0: none");
ABSL_FLAG(std::string, metrics_host, "",
          "address the --metrics_port endpoint binds (IPv4/IPv6 literal or a name); empty: "
          "the --host address");
ABSL_FLAG(std::string, advertise, "",
          "this instance's \"host:port\" identity (logs, served_by); empty: "
          "<hostname>:<bound port>");
ABSL_FLAG(int, drain_delay_ms, 0,
          "on SIGTERM, how long to keep serving while health answers NOT_SERVING "
          "(routers stop picking this instance) before draining; 0: drain at once");
ABSL_FLAG(int, shutdown_grace_ms, 5000,
          "on SIGTERM, after the drain delay, how long in-flight calls may finish before "
          "they are cancelled");

namespace blockserve {

void StartServerMain(int argc, char** argv, const ServerMainInfo& info) {
  BlockShutdownSignals();
  // glibc gives every thread that allocates an arena of its own, up to 8 per core; with
  // gRPC's many threads, freed memory stays scattered over them and resident memory
  // keeps creeping up (bench/soak: the decoder's anonymous RSS went 19.6 -> 35.3 MB over
  // 40,000 requests and was still rising; with two arenas it stayed at 16 MB). An
  // operator's MALLOC_ARENA_MAX still wins.
  if (std::getenv("MALLOC_ARENA_MAX") == nullptr) mallopt(M_ARENA_MAX, 2);
  absl::SetProgramUsageMessage(info.usage);
  std::vector<std::string> dirs = info.flag_dirs;
  dirs.push_back("common/server_flags");
  dirs.push_back("security/tls_flags");
  ShowFlagsFromDirectories(std::move(dirs));
  absl::ParseCommandLine(argc, argv);
  SetLogServiceName(info.service_name);
}

absl::StatusOr<ServerOptions> ServerOptionsFromFlags(std::string service_name, int port,
                                                     security::Role role) {
  absl::StatusOr<security::TransportSecurity> transport = security::TransportSecurityFromFlags();
  if (!transport.ok()) return transport.status();
  std::string host = absl::GetFlag(FLAGS_host);
  if (host.empty()) host = transport->insecure ? "127.0.0.1" : "0.0.0.0";
  if (absl::Status s = security::CheckListenHost(*transport, host); !s.ok()) return s;
  absl::StatusOr<security::ServerSecurity> server = security::ServerSecurityFor(*transport, role);
  if (!server.ok()) return server.status();
  ServerOptions options;
  options.service_name = std::move(service_name);
  options.credentials = server->credentials;
  options.listen_address = absl::StrCat(host, ":", port);
  options.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  options.metrics_host = absl::GetFlag(FLAGS_metrics_host);
  if (options.metrics_host.empty()) options.metrics_host = host;
  options.drain_delay = absl::Milliseconds(absl::GetFlag(FLAGS_drain_delay_ms));
  options.shutdown_grace = absl::Milliseconds(absl::GetFlag(FLAGS_shutdown_grace_ms));
  options.max_message_bytes = contract::kMaxMessageBytes;
  return options;
}

std::string AdvertisedAddress(int bound_port) {
  std::string advertise = absl::GetFlag(FLAGS_advertise);
  return advertise.empty() ? DefaultAdvertiseAddress(bound_port) : advertise;
}

int FailToStart(std::string_view what, const absl::Status& status) {
  LogEvent("fatal", {{"what", std::string(what)}, {"error", status.ToString()}});
  std::cerr << LogServiceName() << ": " << what << ": " << status << " (see --help)\n";
  return absl::IsInvalidArgument(status) ? 2 : 1;
}

}  // namespace blockserve
