// router: the BlockServe front door (blockserve.v1.Router). See router/README.md.
#include <iostream>
#include <memory>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/server.h"
#include "common/server_flags.h"
#include "discovery/discovery.h"
#include "proto/blockserve.grpc.pb.h"
#include "router/backend_pool.h"
#include "router/router_core.h"
#include "router/router_service.h"
#include "security/tenants.h"
#include "security/tls.h"
#include "security/tls_flags.h"

ABSL_FLAG(int, port, 50050, "gRPC port; 0 picks a free one (logged as {\"event\":\"listening\"})");
ABSL_FLAG(std::string, prefill, "",
          "QueryPrefill backends: host:port[,host:port...] and/or dns:///name:port (every "
          "address of the name, re-resolved every --discovery_interval_ms, e.g. "
          "dns:///query-prefill.default.svc.cluster.local:50062) and/or file:///path (the "
          "host:port lines of a file, read again as often)");
ABSL_FLAG(std::string, decoder, "",
          "Decoder backends, written like --prefill (host:port list, dns:///name:port, "
          "file:///path)");
ABSL_FLAG(std::string, encoder, "",
          "PassageEncoder backends, written like --prefill (host:port list, "
          "dns:///name:port, file:///path)");
ABSL_FLAG(int, discovery_interval_ms, 5000,
          "how often the dns:/// names and file:/// files of --prefill, --decoder and --encoder are resolved "
          "again (pods that appear are added, pods that go removed; a failed resolution "
          "keeps the last answer)");
ABSL_FLAG(std::string, tenants_file, "",
          "JSON file of the tenants and the SHA-256 of their bearer tokens (docs/SECURITY.md); "
          "re-read when it changes. Required with TLS; without it (--insecure only) every "
          "caller is one anonymous tenant");
ABSL_FLAG(int, health_interval_ms, 1000, "how often every backend is health-checked");
ABSL_FLAG(int, health_timeout_ms, 800, "deadline of one health check");
ABSL_FLAG(int, affinity_slack, 2,
          "cache-aware placement: a prompt goes to the first prefill in the rendezvous order "
          "of its passages that has at most this many requests in flight above the "
          "least-loaded healthy prefill");
ABSL_FLAG(std::string, handoff, "grpc", "KV handoff transport asked of the prefill: grpc | nccl");
ABSL_FLAG(int, max_request_s, 600,
          "deadline of downstream calls when the client sets none (or a later one)");
ABSL_FLAG(int, prefill_retries, 1,
          "placements retried after UNAVAILABLE / RESOURCE_EXHAUSTED, before any token is sent");
ABSL_FLAG(int, max_passages, 64,
          "most passages one request may reference (more: INVALID_ARGUMENT); keep equal to "
          "the prefills'");
ABSL_FLAG(int64_t, max_new_tokens_limit, 4096,
          "largest sampling.max_new_tokens accepted (more: INVALID_ARGUMENT); keep equal to "
          "the prefills'");

namespace {

int Fail(const std::string& message) {
  std::cerr << "router: " << message << " (see --help)\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  blockserve::StartServerMain(
      argc, argv,
      {.service_name = "router",
       .usage =
           "The BlockServe router: the client-facing gRPC service blockserve.v1.Router.\n"
           "Places each request on a query_prefill (cache-aware) and a decoder (least loaded),\n"
           "streams the answer back, and forwards Ingest to a passage_encoder. Backends are\n"
           "host:port lists, dns:///name:port names or file:///path files, re-read while serving.\n\n"
           "Example:\n"
           "  router --port=50050 --prefill=prefill-0:50062 --decoder=decoder-0:50063 \\\n"
           "         --encoder=encoder-0:50061 --tenants_file=tenants.json \\\n"
           "         --tls_cert=router.pem --tls_key=router.key --tls_ca=ca.pem\n"
           "  router --prefill=dns:///query-prefill.default.svc.cluster.local:50062 \\\n"
           "         --decoder=dns:///decoder.default.svc.cluster.local:50063 ...",
       .flag_dirs = {"router/main.cc"}});
  namespace br = blockserve::router;
  namespace discovery = blockserve::discovery;
  namespace security = blockserve::security;

  absl::StatusOr<blockserve::ServerOptions> server = blockserve::ServerOptionsFromFlags(
      "router", absl::GetFlag(FLAGS_port), security::Role::kRouter);
  if (!server.ok()) return blockserve::FailToStart("flags", server.status());
  absl::StatusOr<security::TransportSecurity> transport = security::TransportSecurityFromFlags();
  if (!transport.ok()) return blockserve::FailToStart("flags", transport.status());
  std::unique_ptr<security::TenantDirectory> tenants;
  if (!absl::GetFlag(FLAGS_tenants_file).empty()) {
    absl::StatusOr<std::unique_ptr<security::TenantDirectory>> opened =
        security::TenantDirectory::Open(absl::GetFlag(FLAGS_tenants_file));
    if (!opened.ok()) return blockserve::FailToStart("--tenants_file", opened.status());
    tenants = *std::move(opened);
  } else if (!transport->insecure) {
    return blockserve::FailToStart(
        "flags", absl::InvalidArgumentError(
                     "--tenants_file is required with TLS: clients authenticate with bearer "
                     "tokens (anonymous callers only with --insecure on loopback)"));
  }

  // Each role's backends come from a discovery spec (discovery/discovery.h).
  struct RoleSource {
    const char* flag_name;
    const char* metric_prefix;
    blockserve::v1::BackendRole role;
    discovery::DiscoverySpec spec;
  };
  std::vector<RoleSource> sources = {
      {"--prefill", "blockserve_router_prefill_discovery", blockserve::v1::BACKEND_ROLE_PREFILL},
      {"--decoder", "blockserve_router_decoder_discovery", blockserve::v1::BACKEND_ROLE_DECODER},
      {"--encoder", "blockserve_router_encoder_discovery", blockserve::v1::BACKEND_ROLE_ENCODER}};
  for (auto [source, flag] : {std::pair{&sources[0], &FLAGS_prefill},
                              std::pair{&sources[1], &FLAGS_decoder},
                              std::pair{&sources[2], &FLAGS_encoder}}) {
    absl::StatusOr<discovery::DiscoverySpec> spec =
        discovery::ParseDiscoverySpec(absl::GetFlag(*flag));
    if (!spec.ok()) return Fail(absl::StrCat(source->flag_name, ": ", spec.status().message()));
    source->spec = *std::move(spec);
  }
  if (sources[0].spec.empty() || sources[1].spec.empty()) {
    return Fail("--prefill and --decoder need at least one address or dns:/// name each");
  }
  if (absl::GetFlag(FLAGS_discovery_interval_ms) <= 0) {
    return Fail("--discovery_interval_ms must be positive");
  }
  br::BackendPoolOptions pool_options;  // the backends come from the discoveries below
  pool_options.health_interval = absl::Milliseconds(absl::GetFlag(FLAGS_health_interval_ms));
  pool_options.health_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_health_timeout_ms));
  pool_options.affinity_slack = absl::GetFlag(FLAGS_affinity_slack);
  pool_options.transport = *transport;

  br::RouterOptions options;
  const std::string handoff = absl::GetFlag(FLAGS_handoff);
  if (handoff == "grpc") {
    options.handoff = blockserve::v1::HANDOFF_GRPC_STREAM;
  } else if (handoff == "nccl") {
    options.handoff = blockserve::v1::HANDOFF_NCCL;
  } else {
    return Fail(absl::StrCat("--handoff must be grpc or nccl, found \"", handoff, "\""));
  }
  options.max_request_time = absl::Seconds(absl::GetFlag(FLAGS_max_request_s));
  options.prefill_retries = absl::GetFlag(FLAGS_prefill_retries);
  options.limits = {.max_passages = absl::GetFlag(FLAGS_max_passages),
                    .max_new_tokens_limit = absl::GetFlag(FLAGS_max_new_tokens_limit)};

  blockserve::MetricsRegistry metrics;
  br::BackendPool pool(pool_options, &metrics);
  // Declared after the pool, so destroyed (their threads stopped) before it.
  std::vector<std::unique_ptr<discovery::Discovery>> discoveries;
  for (const RoleSource& source : sources) {
    auto d = std::make_unique<discovery::Discovery>(
        source.spec,
        discovery::DiscoveryOptions{
            .interval = absl::Milliseconds(absl::GetFlag(FLAGS_discovery_interval_ms)),
            .name = source.flag_name,
            .metrics = &metrics,
            .metric_prefix = source.metric_prefix});
    // A name that does not resolve yet (no pod ready) is logged and tried again on the
    // interval; the router serves NOT_SERVING until it has a prefill and a decoder.
    d->Refresh().IgnoreError();
    const blockserve::v1::BackendRole role = source.role;
    d->Start([&pool, role](const std::vector<std::string>& addresses) {
      pool.SetBackends(role, addresses);
    });
    discoveries.push_back(std::move(d));
  }
  pool.Start();
  br::RouterCore core(&pool, options, &metrics);
  br::RouterService service(&core, tenants.get());

  server->on_listening = [](int port) {
    blockserve::LogEvent("serving", {{"served_by", blockserve::AdvertisedAddress(port)},
                                     {"port", absl::StrCat(port)}});
  };
  server->readiness = [&core] { return core.Ready(); };
  const absl::Status status = blockserve::RunServer(
      *server, {{&service, blockserve::v1::Router::service_full_name()}}, &metrics);
  if (!status.ok()) {
    blockserve::LogEvent("failed", {{"error", status.ToString()}});
    return 1;
  }
  return 0;
}
