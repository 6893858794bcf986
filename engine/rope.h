// Rotary position embedding (RoPE) in Hugging Face's "rotate_half" layout.
//
// For a head vector x of even size d, split into halves x1 = x[0:d/2], x2 = x[d/2:d].
// With angle a_i = p * inv_freq[i] for i < d/2:
//   out[i]       = x1[i] * cos(a_i) - x2[i] * sin(a_i)
//   out[i + d/2] = x2[i] * cos(a_i) + x1[i] * sin(a_i)
// Rotations compose additively, R(a + b) = R(b) * R(a), which is what lets a block
// encoded at position 0 be moved to offset o by rotating its keys by R(o): that is the
// whole of Block-Attention's position re-encoding, and it lives only here.
#ifndef BLOCKSERVE_ENGINE_ROPE_H_
#define BLOCKSERVE_ENGINE_ROPE_H_

#include <cstdint>
#include <vector>

#include "engine/model_config.h"

namespace blockserve::engine {

// Inverse frequencies theta^(-2i/d), i < d/2, adjusted by the config's rope_scaling:
//  - linear: every frequency divided by `factor` (positions are compressed);
//  - llama3: wavelengths shorter than original_ctx/high_freq_factor keep their
//    frequency, longer than original_ctx/low_freq_factor are divided by `factor`, and the
//    band between is interpolated smoothly (Llama 3.1's scheme).
std::vector<double> RopeInverseFrequencies(int64_t head_dim, double theta,
                                           const RopeScaling& scaling);

// One shift's cos/sin (Rope::ShiftBy), computed once and applied to any number of rows.
struct RopeShift {
  int64_t delta = 0;
  std::vector<float> cos, sin;
};

class Rope {
 public:
  Rope(int64_t head_dim, double theta, const RopeScaling& scaling);
  explicit Rope(const ModelConfig& config);

  int64_t head_dim() const { return head_dim_; }
  const std::vector<double>& inv_freq() const { return inv_freq_; }

  // Rotates `count` consecutive vectors of `num_heads` heads each, laid out
  // [count][num_heads][head_dim]; vector t is rotated by position `first_position + t`.
  // Negative positions rotate backwards (used to undo an offset).
  void Apply(float* x, int64_t count, int64_t num_heads, int64_t first_position) const;

  // Rotates every vector by the same `delta` positions: re-encodes keys that were
  // encoded starting at position s so that they start at s + delta.
  void Shift(float* x, int64_t count, int64_t num_heads, int64_t delta) const;
  // The same with the angles computed beforehand: a block's rows shifted a chunk at a
  // time compute their cos/sin (in double) once.
  RopeShift ShiftBy(int64_t delta) const;
  void Shift(float* x, int64_t count, int64_t num_heads, const RopeShift& shift) const;

 private:
  // cos/sin of angle p * inv_freq[i], computed in double so that shifting by a large
  // offset stays within fp32 rounding of direct encoding.
  void Angles(int64_t position, float* cos_out, float* sin_out) const;

  int64_t head_dim_;
  std::vector<double> inv_freq_;
};

}  // namespace blockserve::engine

#endif  // BLOCKSERVE_ENGINE_ROPE_H_
