#include "engine/generate.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "engine/stopwatch.h"

namespace blockserve::engine {
namespace {

// Cuts `text` before the earliest stop string it contains; returns whether it did.
bool CutAtStopString(std::string& text, const std::vector<std::string>& stops) {
  size_t cut = std::string::npos;
  for (const std::string& s : stops) {
    if (!s.empty()) cut = std::min(cut, text.find(s));
  }
  if (cut == std::string::npos) return false;
  text.resize(cut);
  return true;
}

}  // namespace

std::string_view FinishReasonName(FinishReason r) {
  switch (r) {
    case FinishReason::kEos:
      return "eos";
    case FinishReason::kStopString:
      return "stop";
    case FinishReason::kLength:
      return "length";
  }
  return "unknown";
}

absl::StatusOr<Generation> Generate(Engine& engine, absl::Span<const BlockInput> blocks,
                                    absl::Span<const int32_t> last, const PrefillOptions& options,
                                    const SamplingParams& sampling, const StopCriteria& stop) {
  if (absl::Status s = ValidateSamplingParams(sampling); !s.ok()) return s;
  if (stop.max_new_tokens < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("max_new_tokens must be >= 1, got ", stop.max_new_tokens));
  }
  const Stopwatch clock;
  absl::StatusOr<PrefillResult> prefill = engine.PrefillLast(blocks, last, options);
  if (!prefill.ok()) return prefill.status();
  Sampler sampler(sampling);
  Generation g;
  g.stats = prefill->stats;
  int32_t token = sampler.Sample(prefill->logits_last);
  g.ttft_ms = clock.ElapsedMs();
  int64_t position = prefill->next_position;
  const std::vector<int32_t>& eos = engine.eos_ids();
  while (true) {
    if (stop.stop_on_eos && std::find(eos.begin(), eos.end(), token) != eos.end()) {
      g.finish = FinishReason::kEos;
      break;
    }
    g.tokens.push_back(token);
    absl::StatusOr<std::string> text = engine.tokenizer().Decode(g.tokens, /*skip_special=*/true);
    if (!text.ok()) return text.status();
    g.text = *std::move(text);
    if (CutAtStopString(g.text, stop.stop_strings)) {
      g.finish = FinishReason::kStopString;
      break;
    }
    if (static_cast<int64_t>(g.tokens.size()) >= stop.max_new_tokens) {
      g.finish = FinishReason::kLength;
      break;
    }
    DecodeInput in{&prefill->cache, token, position++};
    absl::StatusOr<std::vector<std::vector<float>>> logits = engine.DecodeStep({in});
    if (!logits.ok()) return logits.status();
    token = sampler.Sample((*logits)[0]);
  }
  g.total_ms = clock.ElapsedMs();
  return g;
}

}  // namespace blockserve::engine
