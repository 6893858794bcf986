// Single-request generation: prefill, then decode until a stop condition. The decoder
// service batches many sequences itself with Engine::DecodeStep; this is the
// one-process path used by the demo, the CLI tools and as the reference in tests.
#ifndef BLOCKSERVE_ENGINE_GENERATE_H_
#define BLOCKSERVE_ENGINE_GENERATE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/engine.h"
#include "engine/sampling.h"

namespace blockserve::engine {

struct StopCriteria {
  int64_t max_new_tokens = 32;           // >= 1
  bool stop_on_eos = true;               // stop at any of Engine::eos_ids()
  std::vector<std::string> stop_strings;  // stop when the text contains one (it is cut off)
};

enum class FinishReason { kEos, kStopString, kLength };
std::string_view FinishReasonName(FinishReason r);

struct Generation {
  std::vector<int32_t> tokens;  // generated ids, EOS excluded
  std::string text;             // their decoded text, cut before a stop string
  FinishReason finish = FinishReason::kLength;
  RequestStats stats;           // of the prefill
  double ttft_ms = 0;           // prefill + first sample
  double total_ms = 0;
};

// Validates sampling and stop criteria (InvalidArgument), then generates.
absl::StatusOr<Generation> Generate(Engine& engine, absl::Span<const BlockInput> blocks,
                                    absl::Span<const int32_t> last, const PrefillOptions& options,
                                    const SamplingParams& sampling, const StopCriteria& stop);

}  // namespace blockserve::engine

#endif  // BLOCKSERVE_ENGINE_GENERATE_H_
