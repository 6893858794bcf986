#include "engine/rope.h"

#include <cmath>
#include <cstring>
#include <numbers>

#include "engine/simd.h"

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

namespace {

// Rotates `n` consecutive head vectors of 2 * half elements by the angles whose cos/sin
// are c and s: x1' = x1 c - x2 s, x2' = x2 c + x1 s, eight pairs at a time. The same
// operations in the same order as the scalar tail (this file does not contract a * b + c
// into an FMA), so every clone and every head_dim gives the same bits.
BLOCKSERVE_MULTIVERSION void RotateVectors(float* x, int64_t n, const float* c, const float* s,
                                           int64_t half) {
  typedef float Vf __attribute__((vector_size(32)));
  for (int64_t v = 0; v < n; ++v, x += 2 * half) {
    int64_t i = 0;
    for (; i + 8 <= half; i += 8) {
      Vf x1, x2, cv, sv;
      std::memcpy(&x1, x + i, sizeof x1);
      std::memcpy(&x2, x + i + half, sizeof x2);
      std::memcpy(&cv, c + i, sizeof cv);
      std::memcpy(&sv, s + i, sizeof sv);
      const Vf y1 = x1 * cv - x2 * sv, y2 = x2 * cv + x1 * sv;
      std::memcpy(x + i, &y1, sizeof y1);
      std::memcpy(x + i + half, &y2, sizeof y2);
    }
    for (; i < half; ++i) {
      const float x1 = x[i], x2 = x[i + half];
      x[i] = x1 * c[i] - x2 * s[i];
      x[i + half] = x2 * c[i] + x1 * s[i];
    }
  }
}

}  // namespace

void Rope::Apply(float* x, int64_t count, int64_t num_heads, int64_t first_position) const {
  const int64_t half = head_dim_ / 2;
  std::vector<float> c(half), s(half);
  for (int64_t t = 0; t < count; ++t) {
    Angles(first_position + t, c.data(), s.data());
    RotateVectors(x + t * num_heads * head_dim_, num_heads, c.data(), s.data(), half);
  }
}

RopeShift Rope::ShiftBy(int64_t delta) const {
  RopeShift shift;
  shift.delta = delta;
  shift.cos.resize(head_dim_ / 2);
  shift.sin.resize(head_dim_ / 2);
  Angles(delta, shift.cos.data(), shift.sin.data());
  return shift;
}

void Rope::Shift(float* x, int64_t count, int64_t num_heads, const RopeShift& shift) const {
  if (shift.delta == 0) return;
  RotateVectors(x, count * num_heads, shift.cos.data(), shift.sin.data(), head_dim_ / 2);
}

void Rope::Shift(float* x, int64_t count, int64_t num_heads, int64_t delta) const {
  if (delta != 0) Shift(x, count, num_heads, ShiftBy(delta));
}

}  // namespace blockserve::engine
