// passage_encoder: the blockserve.v1.PassageEncoder gRPC server. Loads a model, opens
// the configured KV store and encodes passages into it (see README.md).

#include <iostream>
#include <memory>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "blocks/block_cache.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/server.h"
#include "engine/memory.h"
#include "engine/engine.h"
#include "passage_encoder/encoder_core.h"
#include "passage_encoder/encoder_service.h"
#include "store_config/store_flags.h"

ABSL_FLAG(std::string, model_dir, "",
          "Hugging Face model folder (config.json, *.safetensors, tokenizer.json); required");
ABSL_FLAG(std::string, host, "0.0.0.0", "address to listen on");
ABSL_FLAG(int, port, 50061, "gRPC port; 0 picks a free one (logged in the \"listening\" line)");
ABSL_FLAG(int, metrics_port, 0, "port of the Prometheus /metrics endpoint; 0: none");
ABSL_FLAG(std::string, advertise, "",
          "this instance's \"host:port\" identity for logs; empty: <hostname>:<bound port>");
ABSL_FLAG(int, max_batch_passages, 1024,
          "most passages one EncodePassages call may carry (more: INVALID_ARGUMENT)");
ABSL_FLAG(int, num_threads, 0, "compute threads of the CPU engine; 0: all cores");
ABSL_FLAG(int, drain_delay_ms, 0,
          "on SIGTERM, how long to keep serving while health answers NOT_SERVING "
          "(routers stop picking this instance) before draining; 0: drain at once");

namespace bs = blockserve;

namespace {

int Fail(const std::string& what, const absl::Status& s) {
  bs::LogEvent("fatal", {{"what", what}, {"error", s.ToString()}});
  std::cerr << "passage_encoder: " << what << ": " << s << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  bs::BlockShutdownSignals();
  absl::SetProgramUsageMessage(
      "Serves blockserve.v1.PassageEncoder: encodes passages as position-0 KV blocks and "
      "writes them to the KV store.\n"
      "Usage: passage_encoder --model_dir DIR [--port N] [--kv_store shm|redis|tiered] ...");
  bs::ShowFlagsFromDirectories({"passage_encoder/", "store_config/"});
  absl::ParseCommandLine(argc, argv);
  blockserve::KeepFreedMemoryForReuse();
  bs::SetLogServiceName("passage_encoder");
  const std::string model_dir = absl::GetFlag(FLAGS_model_dir);
  if (model_dir.empty()) {
    return Fail("flags", absl::InvalidArgumentError("--model_dir is required"));
  }
  absl::StatusOr<bs::store_config::StoreConfig> store_config =
      bs::store_config::StoreConfigFromFlags();
  if (!store_config.ok()) return Fail("flags", store_config.status());

  absl::StatusOr<std::unique_ptr<bs::engine::Engine>> engine =
      bs::engine::Engine::Load(model_dir, {absl::GetFlag(FLAGS_num_threads)});
  if (!engine.ok()) return Fail("loading the model", engine.status());
  absl::StatusOr<std::unique_ptr<bs::kv_store::KvStore>> store = bs::store_config::OpenStore(
      *store_config, (*engine)->model_fingerprint(), (*engine)->kv_shape());
  if (!store.ok()) return Fail("opening the KV store", store.status());

  bs::MetricsRegistry metrics;
  bs::blocks::BlockCache cache(**engine, **store);
  bs::passage_encoder::EncoderCore core(
      cache, metrics, {.max_batch_passages = absl::GetFlag(FLAGS_max_batch_passages)});
  bs::passage_encoder::EncoderService service(core);
  bs::LogEvent("ready", {{"model_dir", model_dir},
                         {"model_fingerprint", core.fingerprint_hex()},
                         {"kv_store", bs::store_config::DescribeStore(*store_config)}});

  bs::ServerOptions options;
  options.service_name = "passage_encoder";
  options.listen_address = absl::StrCat(absl::GetFlag(FLAGS_host), ":", absl::GetFlag(FLAGS_port));
  options.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  options.drain_delay = absl::Milliseconds(absl::GetFlag(FLAGS_drain_delay_ms));
  options.on_listening = [](int port) {
    std::string advertise = absl::GetFlag(FLAGS_advertise);
    if (advertise.empty()) advertise = bs::DefaultAdvertiseAddress(port);
    bs::LogEvent("serving", {{"served_by", advertise}, {"port", absl::StrCat(port)}});
  };
  if (absl::Status s = bs::RunServer(options, {&service}, &metrics); !s.ok()) {
    return Fail("serving", s);
  }
  return 0;
}
