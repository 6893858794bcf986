// CPU backend: fp32 throughout; the GEMMs (projections, attention scores and values) go
// through OpenBLAS, which uses every core. The element-wise work stays on one thread on
// purpose: OpenMP's spinning worker threads fought OpenBLAS's for two cores and made
// prefill 5-20x slower (measured with the demo, OMP_WAIT_POLICY=active vs one thread).
#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "absl/strings/str_cat.h"
#include "engine/backend.h"
#include "engine/rope.h"

namespace blockserve::engine {
namespace {

// y[m, n] = x[m, k] * W^T (+ bias), W stored [n, k] as Hugging Face does.
void Linear(const float* x, int64_t m, int64_t k, const std::vector<float>& w, int64_t n,
            const std::vector<float>& bias, float* y) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, n, k, 1.0f, x, k, w.data(), k, 0.0f,
              y, n);
  if (bias.empty()) return;
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t j = 0; j < n; ++j) y[i * n + j] += bias[j];
  }
}

// y = x / sqrt(mean(x^2) + eps) * w, row by row over [m, n].
void RmsNorm(const float* x, int64_t m, int64_t n, const std::vector<float>& w, double eps,
             float* y) {
  for (int64_t i = 0; i < m; ++i) {
    const float* xi = x + i * n;
    double ss = 0;
    for (int64_t j = 0; j < n; ++j) ss += static_cast<double>(xi[j]) * xi[j];
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / n + eps));
    for (int64_t j = 0; j < n; ++j) y[i * n + j] = xi[j] * inv * w[j];
  }
}

// Softmax of each row's first `len(row)` entries in place, after scaling by `scale`;
// entries past the row's length are set to zero (they are masked out).
void MaskedSoftmaxRows(float* s, int64_t rows, int64_t cols, int64_t first_len, float scale) {
  for (int64_t r = 0; r < rows; ++r) {
    float* row = s + r * cols;
    const int64_t len = first_len + r;
    float mx = -std::numeric_limits<float>::infinity();
    for (int64_t j = 0; j < len; ++j) mx = std::max(mx, row[j] * scale);
    double sum = 0;
    for (int64_t j = 0; j < len; ++j) {
      row[j] = std::exp(row[j] * scale - mx);
      sum += row[j];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int64_t j = 0; j < len; ++j) row[j] *= inv;
    std::fill(row + len, row + cols, 0.0f);
  }
}

class CpuBackend : public Backend {
 public:
  CpuBackend(ModelWeights weights, CpuBackendOptions options)
      : w_(std::move(weights)), rope_(w_.config) {
    if (options.num_threads > 0) openblas_set_num_threads(options.num_threads);
  }

  std::string_view name() const override { return "cpu"; }
  const ModelConfig& config() const override { return w_.config; }

  absl::Status Forward(absl::Span<const ForwardItem> batch,
                       std::vector<std::vector<float>>* logits) override;

  void ShiftKeys(KvCache& cache, int64_t first_row, int64_t count, int64_t delta) override {
    const KvShape& s = cache.shape();
    for (int64_t l = 0; l < s.num_layers; ++l) {
      rope_.Shift(cache.k(l) + first_row * s.row(), count, s.num_kv_heads, delta);
    }
  }

 private:
  absl::Status Validate(absl::Span<const ForwardItem> batch) const;
  // Attention of `m` new query rows q [m, heads*head_dim] over all rows of `cache` at
  // `layer` (the last m of which are the queries' own), causal among the new rows.
  void Attention(const float* q, int64_t m, const KvCache& cache, int64_t layer, float* out);
  void Layer(int64_t l, absl::Span<const ForwardItem> batch, const std::vector<int64_t>& row0,
             const std::vector<int64_t>& cache_row0, std::vector<float>& x, int64_t total);

  ModelWeights w_;
  Rope rope_;
  std::vector<float> scores_;  // attention scratch, reused across calls
};

absl::Status CpuBackend::Validate(absl::Span<const ForwardItem> batch) const {
  const ModelConfig& c = w_.config;
  const KvShape want{c.num_hidden_layers, c.num_key_value_heads, c.head_dim};
  for (size_t b = 0; b < batch.size(); ++b) {
    const ForwardItem& item = batch[b];
    for (size_t a = 0; a < b; ++a) {
      if (batch[a].cache == item.cache) {
        return absl::InvalidArgumentError("two forward items share one KV cache");
      }
    }
    if (item.tokens.empty()) return absl::InvalidArgumentError("forward item has no tokens");
    if (item.cache == nullptr) return absl::InvalidArgumentError("forward item has no cache");
    if (!(item.cache->shape() == want)) {
      return absl::InvalidArgumentError("KV cache shape does not match the model");
    }
    for (int32_t t : item.tokens) {
      if (t < 0 || t >= c.vocab_size) {
        return absl::InvalidArgumentError(
            absl::StrCat("token id ", t, " is outside the vocabulary [0, ", c.vocab_size, ")"));
      }
    }
  }
  return absl::OkStatus();
}

void CpuBackend::Attention(const float* q, int64_t m, const KvCache& cache, int64_t layer,
                           float* out) {
  const ModelConfig& c = w_.config;
  const int64_t hd = c.head_dim, q_ld = c.num_attention_heads * hd, kv_ld = cache.shape().row();
  const int64_t total = cache.num_tokens(), past = total - m;
  const int64_t group = c.num_attention_heads / c.num_key_value_heads;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(hd)));
  // Query rows are processed in chunks so the score matrix is chunk x keys, never
  // total x total.
  constexpr int64_t kChunk = 256;
  scores_.resize(std::min(m, kChunk) * total);
  for (int64_t h = 0; h < c.num_attention_heads; ++h) {
    const float* kh = cache.k(layer) + (h / group) * hd;
    const float* vh = cache.v(layer) + (h / group) * hd;
    for (int64_t i0 = 0; i0 < m; i0 += kChunk) {
      const int64_t rows = std::min(kChunk, m - i0), keys = past + i0 + rows;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, rows, keys, hd, 1.0f,
                  q + i0 * q_ld + h * hd, q_ld, kh, kv_ld, 0.0f, scores_.data(), keys);
      MaskedSoftmaxRows(scores_.data(), rows, keys, past + i0 + 1, scale);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, rows, hd, keys, 1.0f,
                  scores_.data(), keys, vh, kv_ld, 0.0f, out + i0 * q_ld + h * hd, q_ld);
    }
  }
}

// One decoder layer over all `total` rows of the batch (x is [total, hidden]):
//   x += o_proj(attention(rope(q_proj(norm(x))), cache))
//   x += down_proj(silu(gate_proj(norm(x))) * up_proj(norm(x)))
void CpuBackend::Layer(int64_t l, absl::Span<const ForwardItem> batch,
                       const std::vector<int64_t>& row0, const std::vector<int64_t>& cache_row0,
                       std::vector<float>& x, int64_t total) {
  const ModelConfig& c = w_.config;
  const LayerWeights& lw = w_.layers[l];
  const int64_t hidden = c.hidden_size, qd = c.num_attention_heads * c.head_dim,
                kvd = c.num_key_value_heads * c.head_dim, inter = c.intermediate_size;
  std::vector<float> h(total * hidden), q(total * qd), k(total * kvd), v(total * kvd),
      att(total * qd);
  RmsNorm(x.data(), total, hidden, lw.input_norm, c.rms_norm_eps, h.data());
  Linear(h.data(), total, hidden, lw.wq, qd, lw.bq, q.data());
  Linear(h.data(), total, hidden, lw.wk, kvd, lw.bk, k.data());
  Linear(h.data(), total, hidden, lw.wv, kvd, lw.bv, v.data());
  for (size_t b = 0; b < batch.size(); ++b) {
    const ForwardItem& item = batch[b];
    const int64_t m = item.tokens.size();
    float* qb = q.data() + row0[b] * qd;
    float* kb = k.data() + row0[b] * kvd;
    rope_.Apply(qb, m, c.num_attention_heads, item.first_position);
    rope_.Apply(kb, m, c.num_key_value_heads, item.first_position);
    std::copy(kb, kb + m * kvd, item.cache->k(l) + cache_row0[b] * kvd);
    std::copy(v.data() + row0[b] * kvd, v.data() + (row0[b] + m) * kvd,
              item.cache->v(l) + cache_row0[b] * kvd);
    Attention(qb, m, *item.cache, l, att.data() + row0[b] * qd);
  }
  Linear(att.data(), total, qd, lw.wo, hidden, {}, h.data());
  for (int64_t i = 0; i < total * hidden; ++i) x[i] += h[i];

  RmsNorm(x.data(), total, hidden, lw.post_attention_norm, c.rms_norm_eps, h.data());
  std::vector<float> gate(total * inter), up(total * inter);
  Linear(h.data(), total, hidden, lw.w_gate, inter, {}, gate.data());
  Linear(h.data(), total, hidden, lw.w_up, inter, {}, up.data());
  for (int64_t i = 0; i < total * inter; ++i) {
    gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
  }
  Linear(gate.data(), total, inter, lw.w_down, hidden, {}, h.data());
  for (int64_t i = 0; i < total * hidden; ++i) x[i] += h[i];
}

absl::Status CpuBackend::Forward(absl::Span<const ForwardItem> batch,
                                 std::vector<std::vector<float>>* logits) {
  if (absl::Status s = Validate(batch); !s.ok()) return s;
  const ModelConfig& c = w_.config;
  const int64_t hidden = c.hidden_size;
  std::vector<int64_t> row0(batch.size()), cache_row0(batch.size());
  int64_t total = 0;
  for (size_t b = 0; b < batch.size(); ++b) {
    row0[b] = total;
    total += batch[b].tokens.size();
    cache_row0[b] = batch[b].cache->Append(batch[b].tokens);
  }
  std::vector<float> x(total * hidden);
  for (size_t b = 0; b < batch.size(); ++b) {
    for (size_t t = 0; t < batch[b].tokens.size(); ++t) {
      const float* e = w_.embed.data() + static_cast<int64_t>(batch[b].tokens[t]) * hidden;
      std::copy(e, e + hidden, x.data() + (row0[b] + t) * hidden);
    }
  }
  for (int64_t l = 0; l < c.num_hidden_layers; ++l) Layer(l, batch, row0, cache_row0, x, total);

  logits->assign(batch.size(), {});
  std::vector<float> normed(hidden);
  for (size_t b = 0; b < batch.size(); ++b) {
    if (!batch[b].want_logits) continue;
    const int64_t last = row0[b] + batch[b].tokens.size() - 1;
    RmsNorm(x.data() + last * hidden, 1, hidden, w_.final_norm, c.rms_norm_eps, normed.data());
    (*logits)[b].resize(c.vocab_size);
    Linear(normed.data(), 1, hidden, w_.lm_head, c.vocab_size, {}, (*logits)[b].data());
  }
  return absl::OkStatus();
}

}  // namespace

std::unique_ptr<Backend> CreateCpuBackend(ModelWeights weights, CpuBackendOptions options) {
  return std::make_unique<CpuBackend>(std::move(weights), options);
}

}  // namespace blockserve::engine
