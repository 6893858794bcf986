#include "engine/cpu_attention.h"

#include <algorithm>
#include <cmath>
#include <random>

#include <gtest/gtest.h>

#include "engine/dtype.h"

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
                    Case{37, 20, 4, 4, 16, 1000},
                    // GQA ratios 1, 2, 4, 8 (a task stacks a group's heads) with head
                    // dims 32, 64, 80, 128 and odd ones (micro-kernel and vector tails).
                    Case{33, 40, 8, 8, 32},
                    Case{33, 40, 8, 4, 64},
                    Case{20, 150, 8, 2, 80},
                    Case{19, 70, 16, 2, 128},
                    Case{25, 300, 4, 2, 36},
                    Case{9, 0, 8, 1, 20},
                    Case{3, 10, 8, 2, 7},      // 12 stacked rows padded to 16 lanes
                    Case{300, 0, 8, 2, 32},    // prefill over many row blocks and tiles
                    // Few tasks over a long past: the keys are split and the partial
                    // softmax states merged (decode, a short query, with windows too).
                    Case{1, 3000, 8, 2, 32},
                    Case{1, 2500, 32, 8, 128},
                    Case{1, 5000, 4, 1, 36},
                    Case{2, 4000, 8, 2, 64},
                    Case{50, 3000, 8, 2, 32},
                    Case{1, 3000, 8, 2, 32, 700},
                    Case{5, 2000, 8, 2, 32, 300},
                    Case{100, 50, 8, 2, 32, 37},
                    Case{64, 0, 8, 8, 64, 130}));

// The bf16 K/V overload against the fp32 kernel fed the same bf16-rounded values: the
// same arithmetic on the same numbers, so only float rounding noise may differ.
class CausalAttentionBf16Test : public testing::TestWithParam<Case> {};

TEST_P(CausalAttentionBf16Test, MatchesFp32OnRoundedValues) {
  const Case c = GetParam();
  const AttentionShape s{c.heads, c.kv_heads, c.head_dim};
  std::mt19937 rng(c.m * 7 + c.past);
  const int64_t total = c.past + c.m;
  std::vector<float> q = Random(c.m * c.heads * c.head_dim, rng, 2.0f);
  std::vector<float> k = Random(total * c.kv_heads * c.head_dim, rng, 2.0f);
  std::vector<float> v = Random(total * c.kv_heads * c.head_dim, rng, 1.0f);
  std::vector<uint16_t> kb(k.size()), vb(v.size());
  for (size_t i = 0; i < k.size(); ++i) {
    kb[i] = F32ToBF16(k[i]);
    vb[i] = F32ToBF16(v[i]);
    k[i] = BF16ToF32(kb[i]);
    v[i] = BF16ToF32(vb[i]);
  }
  std::vector<float> want(q.size()), got(q.size());
  ThreadPool pool(2);
  CausalAttention(q.data(), c.m, k.data(), v.data(), c.past, s, want.data(), pool, c.window);
  CausalAttention(q.data(), c.m, kb.data(), vb.data(), c.past, s, got.data(), pool, c.window);
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-6) << "at " << i;
}

INSTANTIATE_TEST_SUITE_P(Shapes, CausalAttentionBf16Test,
                         testing::Values(Case{1, 0, 2, 1, 8}, Case{37, 0, 4, 4, 32},
                                         Case{70, 130, 8, 2, 64}, Case{25, 300, 4, 2, 36},
                                         Case{19, 70, 16, 2, 128}, Case{1, 3000, 8, 2, 32},
                                         Case{5, 2000, 8, 2, 32, 300},
                                         Case{100, 50, 8, 2, 32, 37}));

// Every thread count gives the definition's answer (the cut into tasks and key splits
// depends on it).
TEST(CausalAttentionThreadsTest, AnyPoolSize) {
  const AttentionShape s{8, 2, 32};
  std::mt19937 rng(11);
  const int64_t m = 3, past = 2000;
  std::vector<float> q = Random(m * 8 * 32, rng, 2.0f), k = Random((past + m) * 2 * 32, rng, 2.0f),
                     v = Random((past + m) * 2 * 32, rng, 1.0f);
  const std::vector<float> want = NaiveAttention(q, m, k, v, past, s);
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    std::vector<float> out(q.size());
    CausalAttention(q.data(), m, k.data(), v.data(), past, s, out.data(), pool);
    for (size_t i = 0; i < out.size(); ++i) ASSERT_NEAR(out[i], want[i], 2e-5) << threads << " threads, at " << i;
  }
}

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

TEST(ExpTest, Exp2MatchesStdExp2AcrossTheRange) {
  std::vector<float> x = {-std::numeric_limits<float>::infinity(), -0.0f, 0.0f};
  for (float v = -130; v <= 0; v += 0.00731f) x.push_back(v);
  std::vector<float> y = x;
  Exp2InPlace(y.data(), y.size());
  for (size_t i = 0; i < x.size(); ++i) {
    if (x[i] < -125) {
      EXPECT_EQ(y[i], 0.0f) << "x=" << x[i];
    } else {
      ASSERT_NEAR(y[i] / std::exp2(double(x[i])), 1.0, 3e-7) << "x=" << x[i];
    }
  }
}

}  // namespace
}  // namespace blockserve::engine
