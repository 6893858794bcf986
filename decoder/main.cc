// The decoder process: loads a model, serves blockserve.v1.Decoder (continuous batching
// over handed-off sequences) with health checks, /metrics and graceful SIGTERM shutdown.

#include <cstdio>
#include <iostream>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/model_flags.h"
#include "common/server.h"
#include "common/server_flags.h"
#include "security/tls.h"
#include "decoder/decoder_core.h"
#include "decoder/decoder_service.h"
#include "engine/engine.h"
#include "handoff/kv_chunks.h"
#include "proto/blockserve.grpc.pb.h"

ABSL_FLAG(int, port, 0, "gRPC port; 0 picks a free one (logged and printed).");
ABSL_FLAG(int64_t, max_active_sequences, 64,
          "Sequences receiving KV or decoding at once; more → RESOURCE_EXHAUSTED.");
ABSL_FLAG(int64_t, max_kv_bytes, int64_t{4} << 30,
          "Bound on the KV memory the active sequences can reach (prompt + max_new_tokens, fp32); "
          "more → RESOURCE_EXHAUSTED.");
ABSL_FLAG(int64_t, sequence_wait_ms, 30000,
          "How long Stream waits for a sequence that has not arrived yet (then NOT_FOUND).");
ABSL_FLAG(int64_t, claim_timeout_ms, 5000,
          "How long an arrived sequence waits for its Stream. It is not decoded until a Stream "
          "claims it; unclaimed after this, it is dropped and its slot and KV freed.");
ABSL_FLAG(int64_t, handoff_lease_ms, 5000,
          "How long an AcceptSequence call may take, from its start until all of its KV has "
          "arrived; then the sequence is dropped, its slot and KV freed, and the call ends "
          "DEADLINE_EXCEEDED. Must cover the transfer of the largest KV a prefill hands off.");
ABSL_FLAG(int64_t, default_max_new_tokens, 256,
          "max_new_tokens of requests that leave it unset (must match the prefill's).");
ABSL_FLAG(int64_t, max_new_tokens_limit, 4096,
          "Largest max_new_tokens accepted; more → INVALID_ARGUMENT.");

int main(int argc, char** argv) {
  using namespace blockserve;
  StartServerMain(
      argc, argv,
      {.service_name = "decoder",
       .usage = "BlockServe decoder: receives prefilled sequences (KV + first token) over "
                "Decoder.AcceptSequence, decodes them with continuous batching and streams "
                "tokens over Decoder.Stream.\n"
                "Usage: decoder --model_dir DIR [--port N] [--metrics_port N]",
       .flag_dirs = {"decoder/", "common/model_flags"}});
  absl::StatusOr<ServerOptions> server =
      ServerOptionsFromFlags("decoder", absl::GetFlag(FLAGS_port), security::Role::kDecoder);
  if (!server.ok()) return FailToStart("flags", server.status());
  ServerOptions& options = *server;
  const absl::Duration claim_timeout = absl::Milliseconds(absl::GetFlag(FLAGS_claim_timeout_ms));
  const absl::Duration lease = absl::Milliseconds(absl::GetFlag(FLAGS_handoff_lease_ms));
  if (claim_timeout <= absl::ZeroDuration() || lease <= absl::ZeroDuration()) {
    return FailToStart(
        "checking flags",
        absl::InvalidArgumentError("--claim_timeout_ms and --handoff_lease_ms must be positive"));
  }
  absl::StatusOr<std::unique_ptr<engine::Engine>> engine = LoadEngineFromFlags();
  if (!engine.ok()) return FailToStart("loading the model", engine.status());
  LogEvent("model_loaded",
           {{"fingerprint", handoff::FingerprintHex((*engine)->model_fingerprint())},
            {"layers", absl::StrCat((*engine)->config().num_hidden_layers)}});

  MetricsRegistry metrics;
  const absl::Duration wait = absl::Milliseconds(absl::GetFlag(FLAGS_sequence_wait_ms));
  const handoff::MaxNewTokensPolicy policy{absl::GetFlag(FLAGS_default_max_new_tokens),
                                           absl::GetFlag(FLAGS_max_new_tokens_limit)};
  decoder::DecoderCore core(**engine,
                            {.max_active_sequences = absl::GetFlag(FLAGS_max_active_sequences),
                             .max_kv_bytes = absl::GetFlag(FLAGS_max_kv_bytes),
                             .claim_timeout = claim_timeout,
                             .metrics = &metrics});
  decoder::DecoderService service(**engine, core,
                                  {.sequence_wait = wait,
                                   .handoff_lease = lease,
                                   .max_new_tokens = policy,
                                   .metrics = &metrics});

  options.on_listening = [&core](int port) {
    core.set_served_by(AdvertisedAddress(port));
    std::printf("decoder listening on port %d\n", port);
    std::fflush(stdout);
  };
  // Drain: generations in flight may finish within the grace period (new ones no longer
  // arrive: health is NOT_SERVING and the drain delay has passed); what is left then is
  // cancelled with a status that says why.
  options.on_shutdown = [&core, grace = options.shutdown_grace] {
    const absl::Time give_up = absl::Now() + grace;
    while (core.active_sequences() > 0 && absl::Now() < give_up) {
      absl::SleepFor(absl::Milliseconds(50));
    }
    core.CancelAll("decoder shut down: the generation did not finish within --shutdown_grace_ms");
  };
  const absl::Status served =
      RunServer(options, {{&service, v1::Decoder::service_full_name()}}, &metrics);
  if (!served.ok()) {
    return FailToStart("serving", served);
  }
  return 0;
}
