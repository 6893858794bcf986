// The decoder process: loads a model, serves blockserve.v1.Decoder (continuous batching
// over handed-off sequences) with health checks, /metrics and graceful SIGTERM shutdown.

#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/server.h"
#include "decoder/decoder_core.h"
#include "decoder/decoder_service.h"
#include "engine/memory.h"
#include "engine/engine.h"
#include "handoff/kv_chunks.h"

ABSL_FLAG(std::string, host, "0.0.0.0", "Address to listen on.");
ABSL_FLAG(int, port, 0, "gRPC port; 0 picks a free one (logged and printed).");
ABSL_FLAG(std::string, model_dir, "",
          "Required. Hugging Face model folder (config.json, *.safetensors, tokenizer.json); "
          "must be the prefill's model (fingerprints are compared).");
ABSL_FLAG(int, metrics_port, 0, "Port of the Prometheus /metrics endpoint; 0 = none.");
ABSL_FLAG(int64_t, max_active_sequences, 64,
          "Sequences receiving KV or decoding at once; more → RESOURCE_EXHAUSTED.");
ABSL_FLAG(int64_t, max_kv_bytes, int64_t{4} << 30,
          "Bound on the KV memory the active sequences can reach (prompt + max_new_tokens, fp32); "
          "more → RESOURCE_EXHAUSTED.");
ABSL_FLAG(int64_t, sequence_wait_ms, 30000,
          "How long Stream waits for a sequence that has not arrived (then NOT_FOUND), and how "
          "long a sequence waits for its Stream before it is dropped.");
ABSL_FLAG(int64_t, default_max_new_tokens, 256,
          "max_new_tokens of requests that leave it unset (must match the prefill's).");
ABSL_FLAG(int64_t, max_new_tokens_limit, 4096,
          "Largest max_new_tokens accepted; more → INVALID_ARGUMENT.");
ABSL_FLAG(std::string, advertise, "",
          "Identity reported in DecodeStats.served_by (\"host:port\"); default: "
          "<hostname>:<bound port>.");
ABSL_FLAG(int, num_threads, 0, "Engine compute threads; 0 = all cores.");
ABSL_FLAG(int, drain_delay_ms, 0,
          "on SIGTERM, how long to keep serving while health answers NOT_SERVING "
          "(routers stop picking this instance) before draining; 0: drain at once");

int main(int argc, char** argv) {
  using namespace blockserve;
  BlockShutdownSignals();
  absl::SetProgramUsageMessage(
      "BlockServe decoder: receives prefilled sequences (KV + first token) over "
      "Decoder.AcceptSequence, decodes them with continuous batching and streams tokens "
      "over Decoder.Stream.\nUsage: decoder --model_dir DIR [--port N] [--metrics_port N]");
  ShowFlagsFromDirectories({"decoder/"});
  absl::ParseCommandLine(argc, argv);
  blockserve::KeepFreedMemoryForReuse();
  SetLogServiceName("decoder");
  const std::string model_dir = absl::GetFlag(FLAGS_model_dir);
  if (model_dir.empty()) {
    std::cerr << "--model_dir is required (see --help)\n";
    return 2;
  }
  absl::StatusOr<std::unique_ptr<engine::Engine>> engine =
      engine::Engine::Load(model_dir, {.num_threads = absl::GetFlag(FLAGS_num_threads)});
  if (!engine.ok()) {
    LogEvent("model_load_failed",
             {{"model_dir", model_dir}, {"error", engine.status().ToString()}});
    return 1;
  }
  LogEvent("model_loaded",
           {{"model_dir", model_dir},
            {"fingerprint", handoff::FingerprintHex((*engine)->model_fingerprint())},
            {"layers", absl::StrCat((*engine)->config().num_hidden_layers)}});

  MetricsRegistry metrics;
  const absl::Duration wait = absl::Milliseconds(absl::GetFlag(FLAGS_sequence_wait_ms));
  const handoff::MaxNewTokensPolicy policy{absl::GetFlag(FLAGS_default_max_new_tokens),
                                           absl::GetFlag(FLAGS_max_new_tokens_limit)};
  decoder::DecoderCore core(**engine,
                            {.max_active_sequences = absl::GetFlag(FLAGS_max_active_sequences),
                             .max_kv_bytes = absl::GetFlag(FLAGS_max_kv_bytes),
                             .sequence_wait = wait,
                             .served_by = absl::GetFlag(FLAGS_advertise),
                             .metrics = &metrics});
  decoder::DecoderService service(
      **engine, core, {.sequence_wait = wait, .max_new_tokens = policy, .metrics = &metrics});

  ServerOptions options;
  options.service_name = "decoder";
  options.listen_address = absl::StrCat(absl::GetFlag(FLAGS_host), ":", absl::GetFlag(FLAGS_port));
  options.metrics_port = absl::GetFlag(FLAGS_metrics_port);
  options.drain_delay = absl::Milliseconds(absl::GetFlag(FLAGS_drain_delay_ms));
  options.on_listening = [&core](int port) {
    if (absl::GetFlag(FLAGS_advertise).empty())
      core.set_served_by(DefaultAdvertiseAddress(port));
    std::printf("decoder listening on port %d\n", port);
    std::fflush(stdout);
  };
  options.on_shutdown = [&core] { core.CancelAll("decoder draining on SIGTERM"); };
  if (absl::Status s = RunServer(options, {&service}, &metrics); !s.ok()) {
    LogEvent("server_failed", {{"error", s.ToString()}});
    return 1;
  }
  return 0;
}
