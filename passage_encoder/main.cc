// passage_encoder: the blockserve.v1.PassageEncoder gRPC server. Loads a model, opens
// the configured KV store and encodes passages into it (see README.md).

#include <memory>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/server.h"
#include "common/server_flags.h"
#include "security/tls.h"
#include "passage_encoder/encoder_core.h"
#include "passage_encoder/encoder_service.h"
#include "proto/blockserve.grpc.pb.h"
#include "store_config/cache_stack.h"
#include "store_config/store_metrics.h"

ABSL_FLAG(int, port, 50061, "gRPC port; 0 picks a free one (logged in the \"listening\" line)");
ABSL_FLAG(int, max_batch_passages, 1024,
          "most passages one EncodePassages call may carry (more: INVALID_ARGUMENT)");

namespace bs = blockserve;

int main(int argc, char** argv) {
  bs::StartServerMain(
      argc, argv,
      {.service_name = "passage_encoder",
       .usage = "Serves blockserve.v1.PassageEncoder: encodes passages as position-0 KV blocks "
                "and writes them to the KV store.\n"
                "Usage: passage_encoder --model_dir DIR [--port N] [--kv_store shm|redis|tiered] ...",
       .flag_dirs = {"passage_encoder/", "store_config/", "common/model_flags"}});
  absl::StatusOr<bs::ServerOptions> server = bs::ServerOptionsFromFlags(
      "passage_encoder", absl::GetFlag(FLAGS_port), bs::security::Role::kEncoder);
  if (!server.ok()) return bs::FailToStart("flags", server.status());
  bs::ServerOptions& options = *server;
  absl::StatusOr<bs::store_config::CacheStack> stack = bs::store_config::OpenCacheStackFromFlags();
  if (!stack.ok()) return bs::FailToStart("starting", stack.status());

  bs::MetricsRegistry metrics;
  bs::store_config::ExportStoreMetrics(*stack->store, metrics);
  bs::passage_encoder::EncoderCore core(
      *stack->cache, metrics, {.max_batch_passages = absl::GetFlag(FLAGS_max_batch_passages)});
  bs::passage_encoder::EncoderService service(core);
  bs::LogEvent("ready", {{"model_fingerprint", core.fingerprint_hex()},
                         {"kv_store", stack->store_description}});

  // Ingest is all an encoder does, and it needs the store: without it, NOT_SERVING.
  options.readiness = [&stack] { return stack->store->Ping(); };
  options.on_listening = [](int port) {
    bs::LogEvent("serving", {{"served_by", bs::AdvertisedAddress(port)},
                             {"port", absl::StrCat(port)}});
  };
  const absl::Status served =
      bs::RunServer(options, {{&service, bs::v1::PassageEncoder::service_full_name()}}, &metrics);
  if (!served.ok()) {
    return bs::FailToStart("serving", served);
  }
  return 0;
}
