#include "engine/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <vector>

#include "absl/strings/str_cat.h"

namespace blockserve::engine {

absl::Status ValidateSamplingParams(const SamplingParams& p) {
  if (!std::isfinite(p.temperature) || p.temperature < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("temperature must be a finite number >= 0, got ", p.temperature));
  }
  if (p.top_k < 0) return absl::InvalidArgumentError(absl::StrCat("top_k must be >= 0, got ", p.top_k));
  if (!(p.top_p > 0 && p.top_p <= 1)) {
    return absl::InvalidArgumentError(absl::StrCat("top_p must be in (0, 1], got ", p.top_p));
  }
  return absl::OkStatus();
}

int32_t Sampler::Sample(absl::Span<const float> logits) {
  const int64_t n = logits.size();
  if (params_.temperature == 0) {
    return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
  }
  // Candidates sorted by logit, descending (stable so equal logits keep id order).
  std::vector<int32_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](int32_t a, int32_t b) { return logits[a] > logits[b]; });
  int64_t keep = params_.top_k > 0 ? std::min<int64_t>(params_.top_k, n) : n;
  std::vector<double> prob(keep);
  const double mx = logits[order[0]];
  double sum = 0;
  for (int64_t i = 0; i < keep; ++i) {
    prob[i] = std::exp((logits[order[i]] - mx) / params_.temperature);
    sum += prob[i];
  }
  // Nucleus: the shortest prefix whose mass reaches top_p.
  double mass = 0;
  int64_t nucleus = keep;
  for (int64_t i = 0; i < keep; ++i) {
    mass += prob[i] / sum;
    if (mass >= params_.top_p) {
      nucleus = i + 1;
      break;
    }
  }
  // Exactly one uniform draw per sampled token, whatever survives the filters, so a
  // sequence continued elsewhere (prefill -> decoder) skips draws by counting tokens
  // (SkipSamples).
  const double u = Draw();
  double total = 0;
  for (int64_t i = 0; i < nucleus; ++i) total += prob[i];
  double acc = 0;
  for (int64_t i = 0; i < nucleus; ++i) {
    acc += prob[i];
    if (u * total < acc) return order[i];
  }
  return order[nucleus - 1];
}

void Sampler::SkipSamples(int64_t samples) {
  if (params_.temperature == 0) return;  // greedy samples draw nothing
  for (int64_t i = 0; i < samples; ++i) Draw();
}

double Sampler::Draw() { return std::uniform_real_distribution<double>(0.0, 1.0)(rng_); }

}  // namespace blockserve::engine
