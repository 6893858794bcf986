#include "engine/cpu_attention.h"

#include <algorithm>
#include <cmath>
#include <random>

#include <gtest/gtest.h>

namespace blockserve::engine {
namespace {

// The definition, in double precision, one (row, head) at a time.
std::vector<float> NaiveAttention(const std::vector<float>& q, int64_t m, const std::vector<float>& k,
                                  const std::vector<float>& v, int64_t past, const AttentionShape& s,
                                  int64_t window = 0) {
  const int64_t d = s.head_dim, q_ld = s.num_heads * d, kv_ld = s.num_kv_heads * d;
  std::vector<float> out(m * q_ld);
  for (int64_t i = 0; i < m; ++i) {
    for (int64_t h = 0; h < s.num_heads; ++h) {
      const int64_t g = h / (s.num_heads / s.num_kv_heads);
      std::vector<double> w(past + i + 1, -INFINITY);  // exp(-inf) = 0: outside the window
      double mx = -1e300, z = 0;
      const int64_t first = window > 0 ? std::max<int64_t>(0, past + i - window + 1) : 0;
      for (int64_t j = first; j <= past + i; ++j) {
        double dot = 0;
        for (int64_t e = 0; e < d; ++e) dot += double(q[i * q_ld + h * d + e]) * k[j * kv_ld + g * d + e];
        w[j] = dot / std::sqrt(double(d));
        mx = std::max(mx, w[j]);
      }
      for (double& x : w) z += (x = std::exp(x - mx));
      for (int64_t e = 0; e < d; ++e) {
        double acc = 0;
        for (int64_t j = 0; j <= past + i; ++j) acc += w[j] / z * v[j * kv_ld + g * d + e];
        out[i * q_ld + h * d + e] = float(acc);
      }
    }
  }
  return out;
}

std::vector<float> Random(int64_t n, std::mt19937& rng, float scale) {
  std::normal_distribution<float> g(0, scale);
  std::vector<float> x(n);
  for (float& f : x) f = g(rng);
  return x;
}

struct Case {
  int64_t m, past, heads, kv_heads, head_dim;
  int64_t window = 0;  // 0: full causal attention
};

class CausalAttentionTest : public testing::TestWithParam<Case> {};

TEST_P(CausalAttentionTest, MatchesTheDefinition) {
  const Case c = GetParam();
  const AttentionShape s{c.heads, c.kv_heads, c.head_dim};
  std::mt19937 rng(c.m * 1000 + c.past);
  const int64_t total = c.past + c.m;
  // Scale 2 makes the softmax peaked, so a masking or max-tracking bug shows.
  std::vector<float> q = Random(c.m * c.heads * c.head_dim, rng, 2.0f);
  std::vector<float> k = Random(total * c.kv_heads * c.head_dim, rng, 2.0f);
  std::vector<float> v = Random(total * c.kv_heads * c.head_dim, rng, 1.0f);
  std::vector<float> out(q.size());
  ThreadPool pool(2);
  CausalAttention(q.data(), c.m, k.data(), v.data(), c.past, s, out.data(), pool, c.window);
  std::vector<float> want = NaiveAttention(q, c.m, k, v, c.past, s, c.window);
  for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], want[i], 2e-5) << "at " << i;
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, CausalAttentionTest,
    testing::Values(Case{1, 0, 2, 1, 8},        // one token, nothing before it
                    Case{1, 300, 4, 2, 16},     // a decode step over several key tiles
                    Case{37, 0, 4, 4, 32},      // prefill, rows span three row blocks
                    Case{70, 130, 8, 2, 64},    // query block after cached blocks, GQA
                    Case{16, 64, 2, 2, 128},    // exactly one row block and one tile
                    // Sliding windows: within one tile, across tile edges, a decode step
                    // whose window skips whole tiles, a window of 1 (only itself), and
                    // one larger than the context (no effect).
                    Case{37, 0, 4, 2, 32, 5},
                    Case{70, 130, 8, 2, 64, 100},
                    Case{1, 300, 4, 2, 16, 64},
                    Case{20, 10, 2, 1, 8, 1},
                    Case{37, 20, 4, 4, 16, 1000}));

// A window really changes the result (so the cases above can fail).
TEST(CausalAttentionWindowTest, WindowChangesTheOutput) {
  const AttentionShape s{2, 1, 8};
  std::mt19937 rng(7);
  std::vector<float> q = Random(10 * 16, rng, 2.0f), k = Random(10 * 8, rng, 2.0f),
                     v = Random(10 * 8, rng, 1.0f);
  std::vector<float> full(q.size()), windowed(q.size());
  ThreadPool pool(2);
  CausalAttention(q.data(), 10, k.data(), v.data(), 0, s, full.data(), pool);
  CausalAttention(q.data(), 10, k.data(), v.data(), 0, s, windowed.data(), pool, 3);
  // Rows 0..2 see the same keys either way; row 9 does not.
  for (int64_t e = 0; e < 3 * 16; ++e) EXPECT_EQ(full[e], windowed[e]);
  float diff = 0;
  for (int64_t e = 9 * 16; e < 10 * 16; ++e) diff = std::max(diff, std::abs(full[e] - windowed[e]));
  EXPECT_GT(diff, 1e-2f);
}

TEST(ExpTest, MatchesStdExpAcrossTheRange) {
  std::vector<float> x;
  for (float v = -100; v <= 88; v += 0.0137f) x.push_back(v);
  std::vector<float> y = x;
  ExpInPlace(y.data(), y.size());
  for (size_t i = 0; i < x.size(); ++i) {
    const double want = std::exp(double(x[i]));
    if (x[i] < -87) {
      EXPECT_LT(y[i], 1e-37);
    } else {
      ASSERT_NEAR(y[i] / want, 1.0, 1e-6) << "x=" << x[i];
    }
  }
}

}  // namespace
}  // namespace blockserve::engine
