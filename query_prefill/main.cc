// query_prefill: the blockserve.v1.QueryPrefill gRPC server. Loads a model, opens the
// configured KV store, and serves prefills that hand their KV to decoders (README.md).

#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/server.h"
#include "common/server_flags.h"
#include "discovery/discovery.h"
#include "security/tls.h"
#include "security/tls_flags.h"
#include "proto/blockserve.grpc.pb.h"
#include "query_prefill/grpc_handoff.h"
#include "query_prefill/prefill_core.h"
#include "query_prefill/prefill_service.h"
#include "store_config/cache_stack.h"
#include "store_config/store_metrics.h"

ABSL_FLAG(int, port, 50062, "gRPC port; 0 picks a free one (logged in the \"listening\" line)");
ABSL_FLAG(int, max_passages, 64, "most passages one request may reference (more: INVALID_ARGUMENT)");
ABSL_FLAG(int64_t, default_max_new_tokens, 256,
          "max_new_tokens of a request that leaves it unset (keep equal to the decoder's)");
ABSL_FLAG(int64_t, max_new_tokens_limit, 4096,
          "largest max_new_tokens a request may ask for (keep equal to the decoder's)");
ABSL_FLAG(std::string, allowed_decoders, "",
          "the decoders a request may hand its KV to, written like the router's --decoder: "
          "host:port[,host:port...] and/or dns:///name:port (every address of the name) "
          "and/or file:///path (the host:port lines of a file), re-resolved every --discovery_interval_ms and on an unknown address, at most once "
          "a second). Another address is refused with UNAVAILABLE before any connection. "
          "Empty: any address (then only the decoders' TLS certificates can tell the "
          "deployment's decoders from others)");
ABSL_FLAG(int, discovery_interval_ms, 5000,
          "how often the dns:/// names and file:/// files of --allowed_decoders are read again");

namespace bs = blockserve;

int main(int argc, char** argv) {
  bs::StartServerMain(
      argc, argv,
      {.service_name = "query_prefill",
       .usage = "Serves blockserve.v1.QueryPrefill: fetches cached passage blocks, computes the "
                "query, samples the first token and hands the KV to a decoder.\n"
                "Usage: query_prefill --model_dir DIR [--port N] [--kv_store shm|redis|tiered] ...",
       .flag_dirs = {"query_prefill/", "store_config/", "common/model_flags"}});
  absl::StatusOr<bs::ServerOptions> server = bs::ServerOptionsFromFlags(
      "query_prefill", absl::GetFlag(FLAGS_port), bs::security::Role::kPrefill);
  if (!server.ok()) return bs::FailToStart("flags", server.status());
  bs::ServerOptions& options = *server;
  absl::StatusOr<bs::security::TransportSecurity> transport =
      bs::security::TransportSecurityFromFlags();
  if (!transport.ok()) return bs::FailToStart("flags", transport.status());
  absl::StatusOr<bs::discovery::DiscoverySpec> allowed =
      bs::discovery::ParseDiscoverySpec(absl::GetFlag(FLAGS_allowed_decoders));
  if (!allowed.ok()) return bs::FailToStart("--allowed_decoders", allowed.status());
  if (absl::GetFlag(FLAGS_discovery_interval_ms) <= 0) {
    return bs::FailToStart("--discovery_interval_ms", absl::InvalidArgumentError("must be positive"));
  }
  absl::StatusOr<bs::store_config::CacheStack> stack = bs::store_config::OpenCacheStackFromFlags();
  if (!stack.ok()) return bs::FailToStart("starting", stack.status());

  bs::MetricsRegistry metrics;
  bs::store_config::ExportStoreMetrics(*stack->store, metrics);
  // The KV goes only to a peer whose certificate says it is a decoder.
  bs::query_prefill::GrpcKvHandoff handoff(
      {.credentials = bs::security::ChannelCredentialsTo(*transport, bs::security::Role::kDecoder)});
  bs::query_prefill::PrefillCoreOptions core_options;
  core_options.max_passages = absl::GetFlag(FLAGS_max_passages);
  core_options.max_new_tokens = {absl::GetFlag(FLAGS_default_max_new_tokens),
                                 absl::GetFlag(FLAGS_max_new_tokens_limit)};
  if (!allowed->empty()) {
    core_options.allowed_decoders = std::make_shared<bs::discovery::Discovery>(
        *allowed,
        bs::discovery::DiscoveryOptions{
            .interval = absl::Milliseconds(absl::GetFlag(FLAGS_discovery_interval_ms)),
            .name = "--allowed_decoders",
            .metrics = &metrics,
            .metric_prefix = "blockserve_prefill_allowed_decoders_discovery"});
    // A name with no decoder yet is logged and resolved again later (and on a miss).
    core_options.allowed_decoders->Refresh().IgnoreError();
    core_options.allowed_decoders->Start(nullptr);
  }
  bs::query_prefill::PrefillCore core(*stack->cache, handoff, metrics, core_options);
  bs::query_prefill::PrefillService service(core);
  bs::LogEvent("ready",
               {{"model_fingerprint", core.fingerprint_hex()},
                {"kv_store", stack->store_description},
                {"allowed_decoders",
                 core_options.allowed_decoders == nullptr
                     ? "any"
                     : absl::StrCat(core_options.allowed_decoders->spec().ToString(), " = ",
                                    absl::StrJoin(core_options.allowed_decoders->Current(), ","))}});

  options.on_listening = [&core](int port) {
    const std::string advertise = bs::AdvertisedAddress(port);
    core.set_served_by(advertise);
    bs::LogEvent("serving", {{"served_by", advertise}, {"port", absl::StrCat(port)}});
  };
  const absl::Status served =
      bs::RunServer(options, {{&service, bs::v1::QueryPrefill::service_full_name()}}, &metrics);
  if (!served.ok()) {
    return bs::FailToStart("serving", served);
  }
  return 0;
}
