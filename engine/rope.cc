#include "engine/rope.h"

#include <cmath>
#include <numbers>

namespace blockserve::engine {

std::vector<double> RopeInverseFrequencies(int64_t head_dim, double theta,
                                           const RopeScaling& scaling) {
  const int64_t half = head_dim / 2;
  std::vector<double> inv_freq(half);
  for (int64_t i = 0; i < half; ++i) {
    inv_freq[i] = 1.0 / std::pow(theta, static_cast<double>(2 * i) / head_dim);
  }
  switch (scaling.type) {
    case RopeScalingType::kNone:
      break;
    case RopeScalingType::kLinear:
      for (double& f : inv_freq) f /= scaling.factor;
      break;
    case RopeScalingType::kLlama3: {
      const double old_ctx = static_cast<double>(scaling.original_max_position_embeddings);
      const double low_freq_wavelen = old_ctx / scaling.low_freq_factor;
      const double high_freq_wavelen = old_ctx / scaling.high_freq_factor;
      for (double& f : inv_freq) {
        const double wavelen = 2 * std::numbers::pi / f;
        if (wavelen < high_freq_wavelen) continue;
        if (wavelen > low_freq_wavelen) {
          f /= scaling.factor;
          continue;
        }
        const double smooth = (old_ctx / wavelen - scaling.low_freq_factor) /
                              (scaling.high_freq_factor - scaling.low_freq_factor);
        f = (1 - smooth) * f / scaling.factor + smooth * f;
      }
      break;
    }
  }
  return inv_freq;
}

Rope::Rope(int64_t head_dim, double theta, const RopeScaling& scaling)
    : head_dim_(head_dim), inv_freq_(RopeInverseFrequencies(head_dim, theta, scaling)) {}

Rope::Rope(const ModelConfig& config)
    : Rope(config.head_dim, config.rope_theta, config.rope_scaling) {}

void Rope::Angles(int64_t position, float* cos_out, float* sin_out) const {
  for (size_t i = 0; i < inv_freq_.size(); ++i) {
    const double a = static_cast<double>(position) * inv_freq_[i];
    cos_out[i] = static_cast<float>(std::cos(a));
    sin_out[i] = static_cast<float>(std::sin(a));
  }
}

void Rope::RotateOne(float* x, const float* c, const float* s, int64_t half) {
  for (int64_t i = 0; i < half; ++i) {
    const float x1 = x[i];
    const float x2 = x[i + half];
    x[i] = x1 * c[i] - x2 * s[i];
    x[i + half] = x2 * c[i] + x1 * s[i];
  }
}

void Rope::Apply(float* x, int64_t count, int64_t num_heads, int64_t first_position) const {
  const int64_t half = head_dim_ / 2;
  std::vector<float> c(half), s(half);
  for (int64_t t = 0; t < count; ++t) {
    Angles(first_position + t, c.data(), s.data());
    float* row = x + t * num_heads * head_dim_;
    for (int64_t h = 0; h < num_heads; ++h) RotateOne(row + h * head_dim_, c.data(), s.data(), half);
  }
}

void Rope::Shift(float* x, int64_t count, int64_t num_heads, int64_t delta) const {
  if (delta == 0) return;
  const int64_t half = head_dim_ / 2;
  std::vector<float> c(half), s(half);
  Angles(delta, c.data(), s.data());
  for (int64_t v = 0; v < count * num_heads; ++v) RotateOne(x + v * head_dim_, c.data(), s.data(), half);
}

}  // namespace blockserve::engine
