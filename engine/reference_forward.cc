#include "engine/reference_forward.h"

#include <cmath>
#include <numeric>

#include "engine/model_files.h"
#include "engine/rope.h"

namespace blockserve::engine {
namespace {

std::vector<float> Norm(const std::vector<float>& x, const std::vector<float>& w, double eps) {
  double ss = 0;
  for (float v : x) ss += double(v) * v;
  const double inv = 1.0 / std::sqrt(ss / x.size() + eps);
  std::vector<float> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = float(x[i] * inv * w[i]);
  return y;
}

// y[o] = sum_i W[o][i] x[i] + b[o]
std::vector<float> MatVec(const std::vector<float>& W, const std::vector<float>& b,
                          const std::vector<float>& x, int64_t out) {
  std::vector<float> y(out);
  for (int64_t o = 0; o < out; ++o) {
    double acc = b.empty() ? 0 : b[o];
    for (size_t i = 0; i < x.size(); ++i) acc += double(W[o * x.size() + i]) * x[i];
    y[o] = float(acc);
  }
  return y;
}

// Rotates each head of `x` (heads * d) to position p, rotate_half convention, computing
// the frequencies directly from the formula in RopeInverseFrequencies's contract.
void RotateHeads(std::vector<float>& x, int64_t d, int64_t p, const std::vector<double>& inv_freq) {
  const int64_t half = d / 2;
  for (size_t h = 0; h < x.size() / d; ++h) {
    float* v = x.data() + h * d;
    for (int64_t i = 0; i < half; ++i) {
      const double a = p * inv_freq[i], x1 = v[i], x2 = v[i + half];
      v[i] = float(x1 * std::cos(a) - x2 * std::sin(a));
      v[i + half] = float(x2 * std::cos(a) + x1 * std::sin(a));
    }
  }
}

}  // namespace

std::function<bool(int64_t, int64_t)> BlockMask(const std::vector<int64_t>& block_lengths) {
  std::vector<int64_t> block_of;
  for (size_t b = 0; b < block_lengths.size(); ++b) block_of.insert(block_of.end(), block_lengths[b], b);
  const int64_t last = block_lengths.size() - 1;
  return [block_of, last](int64_t i, int64_t j) {
    if (j > i) return false;
    return block_of[i] == last || block_of[i] == block_of[j];
  };
}

ReferenceOutput ReferenceForward(const ModelWeights& w, const std::vector<int32_t>& tokens,
                                 const std::vector<int64_t>& positions,
                                 const std::function<bool(int64_t, int64_t)>& mask) {
  const ModelConfig& c = w.config;
  const int64_t n = tokens.size(), H = c.hidden_size, d = c.head_dim, nh = c.num_attention_heads,
                nkv = c.num_key_value_heads;
  std::vector<double> inv_freq(d / 2);
  for (int64_t i = 0; i < d / 2; ++i) inv_freq[i] = std::pow(c.rope_theta, -2.0 * i / d);
  if (c.rope_scaling.type != RopeScalingType::kNone) {
    // Scaled frequencies are tested on their own in rope_test; reuse them here.
    inv_freq = RopeInverseFrequencies(d, c.rope_theta, c.rope_scaling);
  }
  std::vector<std::vector<float>> x(n);
  for (int64_t t = 0; t < n; ++t) x[t].assign(w.embed.begin() + tokens[t] * H, w.embed.begin() + (tokens[t] + 1) * H);
  ReferenceOutput out;
  for (int64_t layer = 0; layer < c.num_hidden_layers; ++layer) {
    const LayerWeights& L = w.layers[layer];
    // Sliding window (Hugging Face's convention): token i sees token j only if
    // i - window < j, on top of the given mask; indices are sequence indices.
    const bool windowed = c.sliding_window.has_value() &&
                          (c.windowed_layers.empty() || c.windowed_layers[layer]);
    const int64_t window = windowed ? *c.sliding_window : 0;
    auto sees = [&](int64_t i, int64_t j) { return mask(i, j) && (!windowed || i - j < window); };
    std::vector<std::vector<float>> q(n), k(n), v(n);
    for (int64_t t = 0; t < n; ++t) {
      std::vector<float> h = Norm(x[t], L.input_norm, c.rms_norm_eps);
      q[t] = MatVec(L.wq, L.bq, h, nh * d);
      k[t] = MatVec(L.wk, L.bk, h, nkv * d);
      v[t] = MatVec(L.wv, L.bv, h, nkv * d);
      RotateHeads(q[t], d, positions[t], inv_freq);
      RotateHeads(k[t], d, positions[t], inv_freq);
    }
    out.k.push_back(k);
    out.v.push_back(v);
    for (int64_t i = 0; i < n; ++i) {
      std::vector<float> att(nh * d, 0.0f);
      for (int64_t hq = 0; hq < nh; ++hq) {
        const int64_t hk = hq / (nh / nkv);
        std::vector<double> s(n, -INFINITY);
        double mx = -INFINITY;
        for (int64_t j = 0; j < n; ++j) {
          if (!sees(i, j)) continue;
          double dot = 0;
          for (int64_t e = 0; e < d; ++e) dot += double(q[i][hq * d + e]) * k[j][hk * d + e];
          s[j] = dot / std::sqrt(double(d));
          mx = std::max(mx, s[j]);
        }
        double z = 0;
        for (int64_t j = 0; j < n; ++j) z += std::isinf(s[j]) ? 0 : std::exp(s[j] - mx);
        for (int64_t j = 0; j < n; ++j) {
          if (std::isinf(s[j])) continue;
          const double p = std::exp(s[j] - mx) / z;
          for (int64_t e = 0; e < d; ++e) att[hq * d + e] += float(p * v[j][hk * d + e]);
        }
      }
      std::vector<float> o = MatVec(L.wo, L.bo, att, H);
      for (int64_t e = 0; e < H; ++e) x[i][e] += o[e];
      std::vector<float> h = Norm(x[i], L.post_attention_norm, c.rms_norm_eps);
      std::vector<float> g = MatVec(L.w_gate, L.b_gate, h, c.intermediate_size);
      std::vector<float> u = MatVec(L.w_up, L.b_up, h, c.intermediate_size);
      for (size_t e = 0; e < g.size(); ++e) g[e] = float(g[e] / (1 + std::exp(-double(g[e]))) * u[e]);
      std::vector<float> down = MatVec(L.w_down, L.b_down, g, H);
      for (int64_t e = 0; e < H; ++e) x[i][e] += down[e];
    }
  }
  for (int64_t t = 0; t < n; ++t) {
    out.logits.push_back(MatVec(w.lm_head, {}, Norm(x[t], w.final_norm, c.rms_norm_eps), c.vocab_size));
  }
  return out;
}

std::vector<int32_t> TestTokens(int64_t n, int32_t seed, int32_t vocab) {
  std::vector<int32_t> t(n);
  for (int64_t i = 0; i < n; ++i) t[i] = static_cast<int32_t>((seed * 7919 + i * 104729) % vocab);
  return t;
}

absl::StatusOr<ModelWeights> LoadModelWeights(const std::string& dir) {
  absl::StatusOr<ModelFiles> files = ModelFiles::Open(dir);
  if (!files.ok()) return files.status();
  return LoadWeights(*files);
}

std::vector<std::vector<int32_t>> TestBlocks(const std::vector<int64_t>& lengths, int32_t vocab) {
  std::vector<std::vector<int32_t>> blocks;
  for (size_t i = 0; i < lengths.size(); ++i) {
    blocks.push_back(TestTokens(lengths[i], static_cast<int32_t>(i + 1), vocab));
  }
  return blocks;
}

std::vector<int32_t> JoinBlocks(const std::vector<std::vector<int32_t>>& blocks) {
  std::vector<int32_t> all;
  for (const std::vector<int32_t>& b : blocks) all.insert(all.end(), b.begin(), b.end());
  return all;
}

std::vector<int64_t> Iota(int64_t n, int64_t start) {
  std::vector<int64_t> p(n);
  std::iota(p.begin(), p.end(), start);
  return p;
}

}  // namespace blockserve::engine
