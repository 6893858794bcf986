// CPU backend: fp32 throughout. One thread pool does all the parallel work: each
// projection GEMM is split by output columns into single-threaded OpenBLAS calls, and
// attention runs as (head, row block) tasks of a tiled kernel (cpu_attention.h).
// OpenBLAS's own threads are switched off on purpose: its spinning workers (like
// OpenMP's, tried first) fought the other threads for the cores and made prefill
// 5-20x slower on two cores.
#include <cblas.h>

#include <algorithm>
#include <cstddef>
#include <cmath>
#include <limits>

#include "engine/backend.h"
#include "engine/cpu_attention.h"
#include "engine/dtype.h"
#include "engine/rope.h"
#include "engine/thread_pool.h"

namespace blockserve::engine {
namespace {

// y[m, n] = x[m, k] * W^T (+ bias), W stored [n, k] as Hugging Face does. The output
// columns are split into one slice per task, each a single-threaded GEMM.
void Linear(ThreadPool& pool, const float* x, int64_t m, int64_t k, const std::vector<float>& w,
            int64_t n, const std::vector<float>& bias, float* y) {
  const int64_t tasks = std::min<int64_t>(n / 16 + 1, 4 * pool.size());
  const int64_t per = (n + tasks - 1) / tasks;
  pool.ParallelFor(tasks, [&](int64_t t) {
    const int64_t n0 = t * per, cols = std::min(n, n0 + per) - n0;
    if (cols <= 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, m, cols, k, 1.0f, x, k,
                w.data() + n0 * k, k, 0.0f, y + n0, n);
    if (bias.empty()) return;
    for (int64_t i = 0; i < m; ++i) {
      for (int64_t j = n0; j < n0 + cols; ++j) y[i * n + j] += bias[j];
    }
  });
}

// y = x / sqrt(mean(x^2) + eps) * w, row by row over [m, n].
void RmsNorm(ThreadPool& pool, const float* x, int64_t m, int64_t n, const std::vector<float>& w,
             double eps, float* y) {
  pool.ParallelFor(m, [&](int64_t i) {
    const float* xi = x + i * n;
    double ss = 0;
    for (int64_t j = 0; j < n; ++j) ss += static_cast<double>(xi[j]) * xi[j];
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / n + eps));
    for (int64_t j = 0; j < n; ++j) y[i * n + j] = xi[j] * inv * w[j];
  });
}

// Applies fn to [begin, end) slices of [0, n) in parallel, in chunks big enough to be
// worth a task.
template <typename F>
void ParallelChunks(ThreadPool& pool, int64_t n, F&& fn) {
  constexpr int64_t kChunk = 1 << 14;
  pool.ParallelFor((n + kChunk - 1) / kChunk, [&](int64_t c) {
    fn(c * kChunk, std::min(n, (c + 1) * kChunk));
  });
}

class CpuBackend : public Backend {
 public:
  CpuBackend(ModelWeights weights, CpuBackendOptions options)
      : w_(std::move(weights)), rope_(w_.config), pool_(options.num_threads) {
    openblas_set_num_threads(1);
  }

  std::string_view name() const override { return "cpu"; }
  const ModelConfig& config() const override { return w_.config; }

  void ShiftKeys(KvCache& cache, int64_t first_row, int64_t count, int64_t delta) override {
    const KvShape& s = cache.shape();
    if (cache.dtype() == DType::kF32) {
      for (int64_t l = 0; l < s.num_layers; ++l) {
        rope_.Shift(cache.k(l) + first_row * s.row(), count, s.num_kv_heads, delta);
      }
      return;
    }
    // bf16 keys: widen a few rows at a time, rotate, round back. The rotation is
    // computed in fp32 from the stored (rounded) key, so a shifted bf16 key differs from
    // one encoded at the new position by bf16 rounding only.
    for (int64_t l = 0; l < s.num_layers; ++l) {
      uint16_t* k = cache.k_bf16(l) + first_row * s.row();
      ShiftRows(k, DType::kBF16, k, DType::kBF16, count, s, delta);
    }
  }

  // With bf16 on either side, one pass over the block: each chunk of rows is widened,
  // rotated and stored while it is still in cache, instead of a copy of the whole block
  // and a second pass that widens, rotates and narrows again. Same arithmetic as
  // ShiftKeys. fp32 to fp32 keeps the two passes (memcpy, then rotating in place): the
  // chunked pass adds two copies through the buffer and measured slower
  // (bench/results/rope_shift.md: 28.1 vs 20.6 ms for 32K tokens of the small shape).
  void AppendShifted(KvCache& cache, const KvCache& block, int64_t delta) override {
    if (cache.dtype() == DType::kF32 && block.dtype() == DType::kF32) {
      Backend::AppendShifted(cache, block, delta);
      return;
    }
    const KvShape& s = cache.shape();
    const int64_t first = cache.AppendUninitialized(block.tokens()), n = block.num_tokens(),
                  row = s.row();
    const DType from = block.dtype(), to = cache.dtype();
    const size_t to_size = DTypeSize(to);
    for (int64_t l = 0; l < s.num_layers; ++l) {
      auto* k = static_cast<std::byte*>(cache.k_data(l)) + first * row * to_size;
      ShiftRows(block.k_data(l), from, k, to, n, s, delta);
      ConvertDType(from, block.v_data(l), n * row, to,
                   static_cast<std::byte*>(cache.v_data(l)) + first * row * to_size);
    }
  }

  bool SupportsKvDType(DType dtype) const override {
    return dtype == DType::kF32 || dtype == DType::kBF16;
  }

 private:
  // `rows` key rows from `src` (dtype `from`) rotated by `delta` positions into `dst`
  // (dtype `to`; may be `src`): a chunk of rows at a time is widened into an fp32 buffer
  // that stays in cache, rotated there and stored.
  void ShiftRows(const void* src, DType from, void* dst, DType to, int64_t rows,
                 const KvShape& s, int64_t delta) const {
    constexpr int64_t chunk = 64;
    std::vector<float> buf(chunk * s.row());
    const RopeShift shift = rope_.ShiftBy(delta);
    const auto* in = static_cast<const std::byte*>(src);
    auto* out = static_cast<std::byte*>(dst);
    for (int64_t r = 0; r < rows; r += chunk) {
      const int64_t n = std::min(chunk, rows - r), elems = n * s.row();
      ConvertToF32(from, in + r * s.row() * DTypeSize(from), elems, buf.data());
      rope_.Shift(buf.data(), n, s.num_kv_heads, shift);
      ConvertFromF32(to, buf.data(), elems, out + r * s.row() * DTypeSize(to));
    }
  }

  // Cannot fail: Forward has checked the batch.
  absl::Status DoForward(absl::Span<const ForwardItem> batch,
                         std::vector<std::vector<float>>* logits) override;
  void Layer(int64_t l, absl::Span<const ForwardItem> batch, const std::vector<int64_t>& row0,
             const std::vector<int64_t>& cache_row0, std::vector<float>& x, int64_t total);

  ModelWeights w_;
  Rope rope_;
  ThreadPool pool_;
};

// One decoder layer over all `total` rows of the batch (x is [total, hidden]):
//   x += o_proj(attention(rope(q_proj(norm(x))), cache))
//   x += down_proj(silu(gate_proj(norm(x))) * up_proj(norm(x)))
// Every projection adds its bias when the model has one (empty vector otherwise).
// Attention is limited to the layer's sliding window, if any, counted in cache rows:
// the row index in the cache is the token's index in the sequence.
void CpuBackend::Layer(int64_t l, absl::Span<const ForwardItem> batch,
                       const std::vector<int64_t>& row0, const std::vector<int64_t>& cache_row0,
                       std::vector<float>& x, int64_t total) {
  const ModelConfig& c = w_.config;
  const LayerWeights& lw = w_.layers[l];
  const int64_t hidden = c.hidden_size, qd = c.num_attention_heads * c.head_dim,
                kvd = c.num_key_value_heads * c.head_dim, inter = c.intermediate_size;
  std::vector<float> h(total * hidden), q(total * qd), k(total * kvd), v(total * kvd),
      att(total * qd);
  RmsNorm(pool_, x.data(), total, hidden, lw.input_norm, c.rms_norm_eps, h.data());
  Linear(pool_, h.data(), total, hidden, lw.wq, qd, lw.bq, q.data());
  Linear(pool_, h.data(), total, hidden, lw.wk, kvd, lw.bk, k.data());
  Linear(pool_, h.data(), total, hidden, lw.wv, kvd, lw.bv, v.data());
  const AttentionShape shape{c.num_attention_heads, c.num_key_value_heads, c.head_dim};
  for (size_t b = 0; b < batch.size(); ++b) {
    const ForwardItem& item = batch[b];
    const int64_t m = item.tokens.size();
    float* qb = q.data() + row0[b] * qd;
    float* kb = k.data() + row0[b] * kvd;
    constexpr int64_t kRopeRows = 64;
    pool_.ParallelFor((m + kRopeRows - 1) / kRopeRows, [&](int64_t chunk) {
      const int64_t t0 = chunk * kRopeRows, n = std::min(m, t0 + kRopeRows) - t0;
      rope_.Apply(qb + t0 * qd, n, c.num_attention_heads, item.first_position + t0);
      rope_.Apply(kb + t0 * kvd, n, c.num_key_value_heads, item.first_position + t0);
    });
    // The new rows go into the cache in its dtype; attention then reads them from there,
    // so a token sees its own K/V exactly as later tokens will (rounded, for bf16).
    KvCache& cache = *item.cache;
    const DType kv = cache.dtype();
    const size_t at = cache_row0[b] * kvd * DTypeSize(kv);
    ConvertFromF32(kv, kb, m * kvd, static_cast<std::byte*>(cache.k_data(l)) + at);
    ConvertFromF32(kv, v.data() + row0[b] * kvd, m * kvd,
                   static_cast<std::byte*>(cache.v_data(l)) + at);
    const int64_t window = c.LayerWindow(l).value_or(0);
    float* out = att.data() + row0[b] * qd;
    if (kv == DType::kF32) {
      CausalAttention(qb, m, cache.k(l), cache.v(l), cache_row0[b], shape, out, pool_, window);
    } else {
      CausalAttention(qb, m, cache.k_bf16(l), cache.v_bf16(l), cache_row0[b], shape, out, pool_,
                      window);
    }
  }
  auto add_into_x = [&](int64_t a, int64_t b) {
    for (int64_t i = a; i < b; ++i) x[i] += h[i];
  };
  Linear(pool_, att.data(), total, qd, lw.wo, hidden, lw.bo, h.data());
  ParallelChunks(pool_, total * hidden, add_into_x);

  RmsNorm(pool_, x.data(), total, hidden, lw.post_attention_norm, c.rms_norm_eps, h.data());
  std::vector<float> gate(total * inter), up(total * inter);
  Linear(pool_, h.data(), total, hidden, lw.w_gate, inter, lw.b_gate, gate.data());
  Linear(pool_, h.data(), total, hidden, lw.w_up, inter, lw.b_up, up.data());
  ParallelChunks(pool_, total * inter, [&](int64_t a, int64_t b) {
    for (int64_t i = a; i < b; ++i) gate[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
  });
  Linear(pool_, gate.data(), total, inter, lw.w_down, hidden, lw.b_down, h.data());
  ParallelChunks(pool_, total * hidden, add_into_x);
}

absl::Status CpuBackend::DoForward(absl::Span<const ForwardItem> batch,
                                   std::vector<std::vector<float>>* logits) {
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
    RmsNorm(pool_, x.data() + last * hidden, 1, hidden, w_.final_norm, c.rms_norm_eps,
            normed.data());
    (*logits)[b].resize(c.vocab_size);
    Linear(pool_, normed.data(), 1, hidden, w_.lm_head, c.vocab_size, {}, (*logits)[b].data());
  }
  return absl::OkStatus();
}

}  // namespace

std::unique_ptr<Backend> CreateCpuBackend(ModelWeights weights, CpuBackendOptions options) {
  return std::make_unique<CpuBackend>(std::move(weights), options);
}

}  // namespace blockserve::engine
