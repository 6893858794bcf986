// The RAG examples of rag_eval.h asked end to end through the services (router ->
// query_prefill -> decoder, passages ingested through the router's passage encoder),
// scored exactly as rag_eval scores the in-process engine, and compared with the
// in-process engine's answer to the same example in the same attention mode.
//
// A request carries the example's "system" as the system prompt, its passages by id
// (ingested beforehand under PassageId), its query, greedy sampling (temperature 0) and
// at most max_new_tokens tokens, stopping at EOS: the layout of engine/prompt.h that
// AnswerExample builds in process.
#ifndef BLOCKSERVE_EVAL_RAG_SERVICES_H_
#define BLOCKSERVE_EVAL_RAG_SERVICES_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "client/router_client.h"
#include "engine/engine.h"
#include "eval/rag_eval.h"
#include "proto/blockserve.pb.h"

namespace blockserve::eval {

// The id a passage is ingested under: "p-" and 16 hex digits of the 64-bit FNV-1a hash of
// its text, so equal texts share one id across examples and runs.
std::string PassageId(std::string_view text);

// The distinct passages of `examples` (by PassageId), in order of first appearance.
std::vector<v1::Passage> PassagesOf(const std::vector<RagExample>& examples);

// "block" (Block-Attention: cached passage blocks, positions re-encoded) or "full"
// (causal prefill of the whole prompt).
std::string ModeName(v1::AttentionMode mode);

// The in-process engine's options for `mode`, as rag_eval uses them.
engine::PrefillOptions EngineOptions(v1::AttentionMode mode);

// The router request for one example (see the header comment).
v1::GenerateRequest MakeRequest(const RagExample& example, v1::AttentionMode mode,
                                int64_t max_new_tokens = 16);

struct ServicesOutcome {
  std::string generated;        // the streamed text (EOS is never streamed)
  std::vector<int32_t> tokens;  // the streamed ids
  bool ended_at_eos = false;    // summary.finish_reason == EOS
  bool correct = false;         // IsCorrect, as for the in-process engine
  v1::GenerateSummary summary;
};

// Asks one example through the router; the call's error when it fails.
absl::StatusOr<ServicesOutcome> AskExample(client::RouterClient& router,
                                           const RagExample& example, v1::AttentionMode mode,
                                           int64_t max_new_tokens = 16,
                                           absl::Duration timeout = absl::Minutes(5));

// One example answered both ways.
struct ComparedExample {
  ServicesOutcome services;
  ExampleOutcome engine;
  // Same generated ids, and generation ended the same way (EOS vs max_new_tokens).
  bool agree = false;
};

// Asks `example` through the router, then answers it with `engine` (AnswerExample).
absl::StatusOr<ComparedExample> CompareExample(client::RouterClient& router,
                                               engine::Engine& engine, const RagExample& example,
                                               v1::AttentionMode mode,
                                               int64_t max_new_tokens = 16);

// The outcomes of one attention mode over a set.
struct ModeResult {
  std::string mode;
  Accuracy accuracy;        // of the services' answers
  int64_t agreements = 0;   // answers equal to the in-process engine's
  std::vector<double> ttft_ms;  // as the router reports it, one per request
  uint64_t cache_hits = 0;
  uint64_t cache_misses = 0;

  void Add(const ComparedExample& c);
  double MedianTtftMs() const;  // 0 without requests
};

// | mode | exact match | same answer as in-process engine | median TTFT ms | cache hits / misses |
std::string RenderServicesTable(const std::vector<ModeResult>& results);

}  // namespace blockserve::eval

#endif  // BLOCKSERVE_EVAL_RAG_SERVICES_H_
