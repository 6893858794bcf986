#include "engine/generate.h"

#include "engine/stopwatch.h"

namespace blockserve::engine {

absl::StatusOr<Generation> Generate(Engine& engine, absl::Span<const BlockInput> blocks,
                                    absl::Span<const int32_t> last, const PrefillOptions& options,
                                    const SamplingParams& sampling, const StopRules& stop) {
  if (absl::Status s = ValidateSamplingParams(sampling); !s.ok()) return s;
  if (absl::Status s = ValidateStopRules(stop); !s.ok()) return s;
  const Stopwatch clock;
  absl::StatusOr<PrefillResult> prefill = engine.PrefillLast(blocks, last, options);
  if (!prefill.ok()) return prefill.status();
  Sampler sampler(sampling);
  int64_t position = prefill->next_position;
  SequenceEnd end(engine.tokenizer(), engine.eos_ids(), stop, position,
                  engine.config().max_position_embeddings);
  Generation g;
  g.stats = prefill->stats;
  int32_t token = sampler.Sample(prefill->logits_last);
  g.ttft_ms = clock.ElapsedMs();
  while (true) {
    SequenceEnd::Step step = end.Next(token);
    if (step.keep) g.tokens.push_back(token);
    if (step.finish) {
      g.finish = *step.finish;
      break;
    }
    DecodeInput in{&prefill->cache, token, position++};
    absl::StatusOr<std::vector<std::vector<float>>> logits = engine.DecodeStep({in});
    if (!logits.ok()) return logits.status();
    token = sampler.Sample((*logits)[0]);
  }
  g.text = end.text();
  g.total_ms = clock.ElapsedMs();
  return g;
}

}  // namespace blockserve::engine
