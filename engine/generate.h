// Single-request generation: prefill, then decode until SequenceEnd ends the sequence.
// The decoder service batches many sequences itself with Engine::DecodeStep; this is the
// one-process path used by the demo, the CLI tools and as the reference in tests.
#ifndef BLOCKSERVE_ENGINE_GENERATE_H_
#define BLOCKSERVE_ENGINE_GENERATE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "engine/sampling.h"
#include "engine/sequence_end.h"

namespace blockserve::engine {

struct Generation {
  std::vector<int32_t> tokens;  // generated ids SequenceEnd keeps (EOS excluded)
  std::string text;             // SequenceEnd::text(): raw bytes, cut before a stop string
  FinishReason finish = FinishReason::kLength;
  RequestStats stats;           // of the prefill
  double ttft_ms = 0;           // prefill + first sample
  double total_ms = 0;
};

// Validates sampling and stop rules (InvalidArgument), then generates.
absl::StatusOr<Generation> Generate(Engine& engine, absl::Span<const BlockInput> blocks,
                                    absl::Span<const int32_t> last, const PrefillOptions& options,
                                    const SamplingParams& sampling, const StopRules& stop);

}  // namespace blockserve::engine

#endif  // BLOCKSERVE_ENGINE_GENERATE_H_
