// Next-token sampling from logits: greedy, temperature, top-k and top-p (nucleus),
// reproducible from a seed.
#ifndef BLOCKSERVE_ENGINE_SAMPLING_H_
#define BLOCKSERVE_ENGINE_SAMPLING_H_

#include <cstdint>
#include <random>

#include "absl/status/status.h"
#include "absl/types/span.h"

namespace blockserve::engine {

struct SamplingParams {
  double temperature = 0;  // 0: greedy (argmax); else logits / temperature
  int64_t top_k = 0;       // 0: no limit; else keep the k most likely tokens
  double top_p = 1;        // keep the smallest set of tokens whose probability >= top_p
  uint64_t seed = 0;
};

// InvalidArgument for temperature < 0 or not finite, top_k < 0, top_p outside (0, 1].
absl::Status ValidateSamplingParams(const SamplingParams& params);

class Sampler {
 public:
  // `params` must be valid.
  explicit Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {}

  // Returns a token id in [0, logits.size()). Ties in greedy mode go to the lowest id.
  // A non-greedy sample consumes exactly one draw from the seeded generator.
  int32_t Sample(absl::Span<const float> logits);

  // Moves past `samples` samples taken elsewhere with the same params, whatever their
  // logits: afterwards Sample draws exactly as it would after that many Sample calls. The
  // decoder continues the prefill's stream this way (the prefill sampled token 0).
  void SkipSamples(int64_t samples);

 private:
  // The uniform in [0, 1) a non-greedy sample consumes.
  double Draw();

  SamplingParams params_;
  std::mt19937_64 rng_;
};

}  // namespace blockserve::engine

#endif  // BLOCKSERVE_ENGINE_SAMPLING_H_
