#include "engine/cpu_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

// The hot loops are compiled twice where the compiler can (x86-64): once for the
// baseline ISA and once for AVX2+FMA, picked at load time, so one binary runs on any
// x86-64 machine and uses the wide units where they exist. Not under ThreadSanitizer:
// gcc instruments the ifunc resolver that picks the clone, and the dynamic loader runs it
// while relocating the library, before the TSan runtime is up: every test linking the
// CPU kernels died with SIGSEGV before main (--config=tsan).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && \
    !defined(__SANITIZE_THREAD__)
#define BLOCKSERVE_MULTIVERSION __attribute__((target_clones("arch=haswell", "default")))
#else
#define BLOCKSERVE_MULTIVERSION
#endif

namespace blockserve::engine {
namespace {

constexpr int64_t kRows = 16;  // query rows per task
constexpr int64_t kTile = 64;  // keys per tile

// exp(x) = 2^n * e^r with n = round(x / ln 2), |r| <= ln2 / 2; e^r by a degree-6
// polynomial (Taylor coefficients; error below 2e-7 relative on that interval).
BLOCKSERVE_MULTIVERSION void ExpKernel(float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = std::min(std::max(x[i], -87.0f), 88.0f);
    const float t = v * 1.44269504f + 12582912.0f;  // round to nearest via 1.5 * 2^23
    const float k = t - 12582912.0f;
    const float r = (v - k * 0.693145752f) - k * 1.42860677e-6f;  // ln2 split hi/lo
    float p = 1.0f / 720;
    p = p * r + 1.0f / 120;
    p = p * r + 1.0f / 24;
    p = p * r + 1.0f / 6;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits;
    std::memcpy(&bits, &t, 4);
    const int32_t e = (bits - 0x4B400000 + 127) << 23;  // 2^k as float bits
    float scale;
    std::memcpy(&scale, &e, 4);
    x[i] = x[i] < -87.0f ? 0.0f : p * scale;
  }
}

struct RowState {
  float max = -std::numeric_limits<float>::infinity();
  float sum = 0;
};

// One (head, row block) task: rows [i0, i1) of head h.
BLOCKSERVE_MULTIVERSION void AttendRows(const float* q, int64_t i0, int64_t i1, const float* k,
                                        const float* v, int64_t past, int64_t window,
                                        int64_t h, const AttentionShape& s, float* out) {
  const int64_t d = s.head_dim, q_ld = s.num_heads * d, kv_ld = s.num_kv_heads * d;
  const int64_t g = h / (s.num_heads / s.num_kv_heads);
  const float* kh = k + g * d;
  const float* vh = v + g * d;
  const float scale = 1.0f / std::sqrt(static_cast<float>(d));
  std::vector<float> kt(d * kTile), p(kTile), acc((i1 - i0) * d, 0.0f);
  std::vector<RowState> st(i1 - i0);
  const int64_t keys = past + i1;
  // Row i sees keys [first(i), past + i]; first() grows with i, so no row of the block
  // needs a key before first(i0).
  auto first = [&](int64_t i) -> int64_t {
    return window > 0 ? std::max<int64_t>(0, past + i - window + 1) : 0;
  };
  for (int64_t j0 = first(i0); j0 < keys; j0 += kTile) {
    const int64_t jn = std::min(kTile, keys - j0);
    for (int64_t jj = 0; jj < jn; ++jj) {  // transpose the tile: kt[e][jj]
      for (int64_t e = 0; e < d; ++e) kt[e * kTile + jj] = kh[(j0 + jj) * kv_ld + e];
    }
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t valid = std::min(jn, past + i + 1 - j0);  // causal limit
      const int64_t lo = std::max<int64_t>(0, first(i) - j0);  // window limit
      if (valid <= lo) continue;
      const float* qi = q + i * q_ld + h * d;
      // Keys [j0 + lo, j0 + valid) of this tile are inside row i's window.
      std::fill(p.begin() + lo, p.begin() + valid, 0.0f);
      for (int64_t e = 0; e < d; ++e) {
        const float qe = qi[e] * scale;
        const float* row = &kt[e * kTile];
        for (int64_t jj = lo; jj < valid; ++jj) p[jj] += qe * row[jj];
      }
      RowState& r = st[i - i0];
      float tile_max = r.max;
      for (int64_t jj = lo; jj < valid; ++jj) tile_max = std::max(tile_max, p[jj]);
      for (int64_t jj = lo; jj < valid; ++jj) p[jj] -= tile_max;
      ExpKernel(p.data() + lo, valid - lo);
      float correction = r.max == -std::numeric_limits<float>::infinity()
                             ? 0.0f
                             : std::exp(r.max - tile_max);
      float* a = &acc[(i - i0) * d];
      if (correction != 1.0f) {
        for (int64_t e = 0; e < d; ++e) a[e] *= correction;
      }
      float sum = r.sum * correction;
      for (int64_t jj = lo; jj < valid; ++jj) {
        sum += p[jj];
        const float pj = p[jj];
        const float* vr = vh + (j0 + jj) * kv_ld;
        for (int64_t e = 0; e < d; ++e) a[e] += pj * vr[e];
      }
      r.max = tile_max;
      r.sum = sum;
    }
  }
  for (int64_t i = i0; i < i1; ++i) {
    const float inv = 1.0f / st[i - i0].sum;
    float* o = out + i * q_ld + h * d;
    const float* a = &acc[(i - i0) * d];
    for (int64_t e = 0; e < d; ++e) o[e] = a[e] * inv;
  }
}

}  // namespace

void ExpInPlace(float* x, int64_t n) { ExpKernel(x, n); }

void CausalAttention(const float* q, int64_t m, const float* k, const float* v, int64_t past,
                     const AttentionShape& shape, float* out, ThreadPool& pool, int64_t window) {
  const int64_t blocks = (m + kRows - 1) / kRows;
  // Row blocks late in the sequence see more keys; handing out the last blocks first
  // keeps the tail of the parallel loop short.
  pool.ParallelFor(shape.num_heads * blocks, [&](int64_t task) {
    const int64_t h = task % shape.num_heads;
    const int64_t b = blocks - 1 - task / shape.num_heads;
    AttendRows(q, b * kRows, std::min(m, (b + 1) * kRows), k, v, past, window, h, shape, out);
  });
}

// Widens K and V into fp32 and runs the fp32 kernel: correct, not fast (a stand-in
// until the kernel reads bf16 itself).
void CausalAttention(const float* q, int64_t m, const uint16_t* k, const uint16_t* v,
                     int64_t past, const AttentionShape& shape, float* out, ThreadPool& pool,
                     int64_t window) {
  const size_t n = (past + m) * shape.num_kv_heads * shape.head_dim;
  std::vector<float> kf(n), vf(n);
  for (size_t i = 0; i < n; ++i) {
    const uint32_t kw = static_cast<uint32_t>(k[i]) << 16, vw = static_cast<uint32_t>(v[i]) << 16;
    std::memcpy(&kf[i], &kw, 4);
    std::memcpy(&vf[i], &vw, 4);
  }
  CausalAttention(q, m, kf.data(), vf.data(), past, shape, out, pool, window);
}

}  // namespace blockserve::engine
