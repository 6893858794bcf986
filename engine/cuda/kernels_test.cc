// Every kernel of kernels.h against its CPU twin, on random inputs.
//
// Tolerances (chosen from the arithmetic, never measured: no GPU was available):
//  - exact where both sides do the same rounding (embedding lookup, fp32 -> bf16 cast,
//    bias and residual adds, argmax);
//  - kBf16Rel relative (+ a small absolute floor) where the GPU's output is bf16 (RMSNorm,
//    SwiGLU): one rounding to 8 significant bits is at most 2^-9 relative;
//  - kRopeTol absolute for RoPE: both sides take cos/sin in double and rotate in fp32,
//    differing at most by FMA contraction (a few ulp of values of order 1);
//  - kAttnTol absolute for attention: fp32 on both sides, different summation orders and
//    exp implementations (CPU polynomial vs CUDA expf).
// Tagged manual+gpu: run by scripts/gpu_test.sh only. NEVER RUN so far (the
// sliding-window case included: compiled and linked, never run).
#include "engine/cuda/kernels.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

#include "engine/cpu_attention.h"
#include "engine/cuda/cuda_util.h"
#include "engine/rope.h"
#include "engine/sampling.h"
#include "engine/thread_pool.h"

namespace blockserve::engine::cuda {
namespace {

constexpr float kBf16Rel = 1.0f / 256;
constexpr float kRopeTol = 1e-5f;
constexpr float kAttnTol = 1e-4f;

std::vector<float> Random(int64_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

template <typename T>
DeviceArray<T> ToDevice(const std::vector<T>& host) {
  DeviceArray<T> d;
  absl::Status s = d.Upload(host.data(), host.size());
  EXPECT_TRUE(s.ok()) << s;
  return d;
}

template <typename T>
std::vector<T> ToHost(const DeviceArray<T>& d, size_t n) {
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess) << cudaGetErrorString(cudaGetLastError());
  std::vector<T> h(n);
  EXPECT_EQ(cudaMemcpy(h.data(), d.get(), n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  return h;
}

template <typename T>
DeviceArray<T> Zeros(size_t n) {
  DeviceArray<T> d;
  EXPECT_TRUE(d.Reserve(n).ok());
  cudaMemset(d.get(), 0, n * sizeof(T));
  return d;
}

std::vector<float> ToFloat(const std::vector<bf16>& v) {
  std::vector<float> f(v.size());
  for (size_t i = 0; i < v.size(); ++i) f[i] = __bfloat162float(v[i]);
  return f;
}

class KernelsTest : public testing::Test {
 protected:
  void SetUp() override {
    ASSERT_GT(CudaDeviceCount(), 0) << "this test needs a CUDA GPU";
    ASSERT_EQ(cudaSetDevice(0), cudaSuccess);
  }
};

TEST_F(KernelsTest, EmbeddingCopiesTheTokensRows) {
  const int64_t vocab = 50, hidden = 72;
  std::vector<bf16> table(vocab * hidden);
  const std::vector<float> values = Random(vocab * hidden, 1);
  for (size_t i = 0; i < table.size(); ++i) table[i] = __float2bfloat16(values[i]);
  const std::vector<int32_t> tokens = {3, 49, 0, 3, 17};
  DeviceArray<bf16> d_table = ToDevice(table);
  DeviceArray<int32_t> d_tokens = ToDevice(tokens);
  DeviceArray<float> out = Zeros<float>(tokens.size() * hidden);
  LaunchEmbedding(d_table.get(), d_tokens.get(), tokens.size(), hidden, out.get(), nullptr);
  const std::vector<float> got = ToHost(out, tokens.size() * hidden);
  for (size_t t = 0; t < tokens.size(); ++t) {
    for (int64_t c = 0; c < hidden; ++c) {
      ASSERT_EQ(got[t * hidden + c], __bfloat162float(table[tokens[t] * hidden + c]));
    }
  }
}

TEST_F(KernelsTest, RmsNormMatchesTheCpuFormula) {
  const int64_t rows = 5, cols = 300;  // cols not a multiple of the block size
  const std::vector<float> x = Random(rows * cols, 2, 3.0f), w = Random(cols, 3);
  const float eps = 1e-5f;
  DeviceArray<float> dx = ToDevice(x), dw = ToDevice(w);
  DeviceArray<bf16> dy = Zeros<bf16>(rows * cols);
  LaunchRmsNorm(dx.get(), rows, cols, dw.get(), eps, dy.get(), nullptr);
  const std::vector<float> got = ToFloat(ToHost(dy, rows * cols));
  for (int64_t i = 0; i < rows; ++i) {
    double ss = 0;
    for (int64_t j = 0; j < cols; ++j) ss += double{x[i * cols + j]} * x[i * cols + j];
    const float inv = static_cast<float>(1.0 / std::sqrt(ss / cols + eps));
    for (int64_t j = 0; j < cols; ++j) {
      const float want = x[i * cols + j] * inv * w[j];
      ASSERT_NEAR(got[i * cols + j], want, kBf16Rel * std::abs(want) + 1e-6f) << i << "," << j;
    }
  }
}

TEST_F(KernelsTest, BiasResidualSwiGluAndCastAreElementwise) {
  const int64_t rows = 3, cols = 40, n = rows * cols;
  const std::vector<float> x = Random(n, 4), y = Random(n, 5), bias = Random(cols, 6);
  DeviceArray<float> dx = ToDevice(x), dy = ToDevice(y), db = ToDevice(bias);
  LaunchAddBias(dx.get(), rows, cols, db.get(), nullptr);
  std::vector<float> got = ToHost(dx, n);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(got[i], x[i] + bias[i % cols]);

  DeviceArray<float> dx2 = ToDevice(x);
  LaunchAddInPlace(dx2.get(), dy.get(), n, nullptr);
  got = ToHost(dx2, n);
  for (int64_t i = 0; i < n; ++i) ASSERT_EQ(got[i], x[i] + y[i]);

  DeviceArray<bf16> act = Zeros<bf16>(n);
  DeviceArray<float> gate = ToDevice(x), up = ToDevice(y);
  LaunchSwiGlu(gate.get(), up.get(), n, act.get(), nullptr);
  const std::vector<float> swiglu = ToFloat(ToHost(act, n));
  for (int64_t i = 0; i < n; ++i) {
    const float want = x[i] / (1.0f + std::exp(-x[i])) * y[i];  // the CPU backend's formula
    ASSERT_NEAR(swiglu[i], want, kBf16Rel * std::abs(want) + 1e-6f);
  }

  DeviceArray<bf16> cast = Zeros<bf16>(n);
  LaunchToBf16(dx2.get(), n, cast.get(), nullptr);
  const std::vector<bf16> c = ToHost(cast, n);
  for (int64_t i = 0; i < n; ++i) {
    ASSERT_EQ(__bfloat162float(c[i]), __bfloat162float(__float2bfloat16(x[i] + y[i])));
  }
}

// Llama 3 scaling: the inverse frequencies come from the CPU code, uploaded as is.
Rope Llama3Rope(int64_t head_dim) {
  return Rope(head_dim, 500000, RopeScaling{RopeScalingType::kLlama3, 8, 1, 4, 64});
}

TEST_F(KernelsTest, RopeApplyMatchesRopeAtEachRowsPosition) {
  const int64_t rows = 7, heads = 3, d = 64;
  const Rope rope = Llama3Rope(d);
  const std::vector<int64_t> positions = {0, 1, 5, 1000, 31999, -12, 123456};
  std::vector<float> x = Random(rows * heads * d, 7);
  DeviceArray<float> dx = ToDevice(x);
  DeviceArray<int64_t> dpos = ToDevice(positions);
  DeviceArray<double> inv = ToDevice(rope.inv_freq());
  LaunchRopeApply(dx.get(), rows, heads, d, dpos.get(), inv.get(), nullptr);
  const std::vector<float> got = ToHost(dx, x.size());
  for (int64_t r = 0; r < rows; ++r) rope.Apply(x.data() + r * heads * d, 1, heads, positions[r]);
  for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(got[i], x[i], kRopeTol) << i;
}

TEST_F(KernelsTest, RopeShiftRotatesTheRowRangeOfEveryLayerInOneLaunch) {
  const int64_t layers = 3, rows = 10, kv_heads = 2, d = 32, row = kv_heads * d;
  const int64_t first = 2, count = 6;
  const Rope rope = Llama3Rope(d);
  DeviceArray<double> inv = ToDevice(rope.inv_freq());
  for (int64_t delta : {int64_t{37}, int64_t{-5}, int64_t{40000}}) {
    std::vector<float> k = Random(layers * rows * row, 8);
    DeviceArray<float> dk = ToDevice(k);
    LaunchRopeShift(dk.get(), layers, rows * row, first, count, kv_heads, d, inv.get(), delta,
                    nullptr);
    const std::vector<float> got = ToHost(dk, k.size());
    for (int64_t l = 0; l < layers; ++l) rope.Shift(k.data() + l * rows * row + first * row, count, kv_heads, delta);
    for (int64_t l = 0; l < layers; ++l) {
      for (int64_t r = 0; r < rows; ++r) {
        for (int64_t e = 0; e < row; ++e) {
          const size_t i = (l * rows + r) * row + e;
          if (r < first || r >= first + count) {
            ASSERT_EQ(got[i], k[i]) << "row outside the range changed";
          } else {
            ASSERT_NEAR(got[i], k[i], kRopeTol) << "delta " << delta;
          }
        }
      }
    }
  }
}

// One sequence of an attention launch: `past` cached rows, then `m` new query rows, and
// the AttentionItem window (0: full causal attention).
struct AttentionSeq {
  int64_t past = 0, m = 0, window = 0;
};

// Random q, k and v for `seqs` (from `seed`), each sequence's first row in q, and the
// kernel's output for all of them in one launch.
struct AttentionRun {
  std::vector<float> q, out;
  std::vector<std::vector<float>> k, v;
  std::vector<int64_t> q_row0;
};

AttentionRun RunAttention(const std::vector<AttentionSeq>& seqs, const AttentionShape& shape,
                          uint64_t seed) {
  const int64_t d = shape.head_dim, q_ld = shape.num_heads * d, kv_ld = shape.num_kv_heads * d;
  AttentionRun run;
  int64_t total = 0, max_m = 0;
  for (const AttentionSeq& s : seqs) {
    run.q_row0.push_back(total);
    total += s.m;
    max_m = std::max(max_m, s.m);
  }
  run.q = Random(total * q_ld, seed, 2.0f);
  DeviceArray<float> dq = ToDevice(run.q);
  std::vector<DeviceArray<float>> dk, dv;
  std::vector<AttentionItem> items;
  for (size_t i = 0; i < seqs.size(); ++i) {
    const int64_t rows = seqs[i].past + seqs[i].m;
    run.k.push_back(Random(rows * kv_ld, seed + 100 + i, 2.0f));
    run.v.push_back(Random(rows * kv_ld, seed + 200 + i));
    dk.push_back(ToDevice(run.k.back()));
    dv.push_back(ToDevice(run.v.back()));
    items.push_back({dk.back().get(), dv.back().get(), run.q_row0[i], seqs[i].m, seqs[i].past,
                     seqs[i].window});
  }
  DeviceArray<AttentionItem> ditems = ToDevice(items);
  DeviceArray<float> out = Zeros<float>(total * q_ld);
  LaunchAttention(dq.get(), ditems.get(), items.size(), max_m, shape.num_heads,
                  shape.num_kv_heads, d, out.get(), nullptr);
  run.out = ToHost(out, total * q_ld);
  return run;
}

// One batch holding a prefill with a cached past, a prefill without one and two decode
// steps, for several head sizes (<= 128 and the > 48 KiB shared-memory path at 256).
TEST_F(KernelsTest, AttentionMatchesCpuCausalAttentionForPrefillAndDecode) {
  const std::vector<AttentionSeq> seqs = {{20, 7}, {0, 33}, {45, 1}, {70, 1}};
  ThreadPool pool(2);
  for (int64_t d : {int64_t{32}, int64_t{128}, int64_t{256}}) {
    const AttentionShape shape{4, 2, d};
    const int64_t q_ld = shape.num_heads * d;
    const AttentionRun run = RunAttention(seqs, shape, 9);
    std::vector<float> want(run.out.size());
    for (size_t i = 0; i < seqs.size(); ++i) {
      CausalAttention(run.q.data() + run.q_row0[i] * q_ld, seqs[i].m, run.k[i].data(),
                      run.v[i].data(), seqs[i].past, shape, want.data() + run.q_row0[i] * q_ld,
                      pool);
    }
    for (size_t i = 0; i < want.size(); ++i) {
      ASSERT_NEAR(run.out[i], want[i], kAttnTol) << "d " << d << " at " << i;
    }
  }
}

// Sliding-window attention written out directly, in double: new row i of sequence `s`
// (whose q rows start at q_row0; sequence index past + i), head h, sees keys j with
// past + i - window < j <= past + i (every j <= past + i when the window is 0).
std::vector<float> NaiveAttention(const std::vector<float>& q, int64_t q_row0,
                                  const AttentionSeq& s, const std::vector<float>& k,
                                  const std::vector<float>& v, const AttentionShape& shape) {
  const int64_t d = shape.head_dim, q_ld = shape.num_heads * d, kv_ld = shape.num_kv_heads * d;
  std::vector<float> out(s.m * q_ld);
  for (int64_t i = 0; i < s.m; ++i) {
    const int64_t last = s.past + i;
    const int64_t first = s.window > 0 ? std::max<int64_t>(0, last - s.window + 1) : 0;
    for (int64_t h = 0; h < shape.num_heads; ++h) {
      const int64_t g = h / (shape.num_heads / shape.num_kv_heads);
      std::vector<double> score(last + 1);
      double max_score = -INFINITY, sum = 0;
      for (int64_t j = first; j <= last; ++j) {
        double dot = 0;
        for (int64_t e = 0; e < d; ++e) {
          dot += double{q[(q_row0 + i) * q_ld + h * d + e]} * k[j * kv_ld + g * d + e];
        }
        score[j] = dot / std::sqrt(double(d));
        max_score = std::max(max_score, score[j]);
      }
      for (int64_t j = first; j <= last; ++j) sum += std::exp(score[j] - max_score);
      for (int64_t e = 0; e < d; ++e) {
        double acc = 0;
        for (int64_t j = first; j <= last; ++j) {
          acc += std::exp(score[j] - max_score) * v[j * kv_ld + g * d + e];
        }
        out[i * q_ld + h * d + e] = static_cast<float>(acc / sum);
      }
    }
  }
  return out;
}

// Windowed and full sequences in one launch: windows cutting into a cached past, a
// prefill longer than the window spanning several 32-key tiles (so the rows of one
// block start at different keys), decode steps, a window of 1 (each row sees only
// itself) and one wider than the sequence. Compiled, never run (no GPU was available).
TEST_F(KernelsTest, AttentionWithSlidingWindowsMatchesANaiveReference) {
  const std::vector<AttentionSeq> seqs = {{20, 7, 5}, {0, 70, 40}, {100, 1, 33}, {45, 1, 0},
                                          {3, 2, 1000}, {10, 9, 1}, {37, 30, 0}};
  for (int64_t d : {int64_t{32}, int64_t{128}, int64_t{256}}) {
    const AttentionShape shape{4, 2, d};
    const int64_t q_ld = shape.num_heads * d;
    const AttentionRun run = RunAttention(seqs, shape, 11);
    for (size_t i = 0; i < seqs.size(); ++i) {
      const AttentionSeq& s = seqs[i];
      const std::vector<float> want =
          NaiveAttention(run.q, run.q_row0[i], s, run.k[i], run.v[i], shape);
      const float* got = run.out.data() + run.q_row0[i] * q_ld;
      for (size_t e = 0; e < want.size(); ++e) {
        ASSERT_NEAR(got[e], want[e], kAttnTol) << "d " << d << " sequence " << i << " at " << e;
      }
      // The data discriminates: where the window cuts keys off, full attention differs.
      if (s.window > 0 && s.window < s.past + s.m) {
        const std::vector<float> full = NaiveAttention(
            run.q, run.q_row0[i], {s.past, s.m, 0}, run.k[i], run.v[i], shape);
        float diff = 0;
        for (size_t e = 0; e < want.size(); ++e) {
          diff = std::max(diff, std::abs(full[e] - want[e]));
        }
        EXPECT_GT(diff, 100 * kAttnTol) << "sequence " << i;
      }
    }
  }
}

TEST_F(KernelsTest, ArgmaxPicksTheLowestIndexOfTheMaximumLikeGreedySampling) {
  const int64_t rows = 4, cols = 1000;
  std::vector<float> x = Random(rows * cols, 10);
  x[1 * cols + 700] = 50;  // a tie: the lower index must win
  x[1 * cols + 300] = 50;
  x[2 * cols + 999] = 60;  // the last column
  x[3 * cols + 0] = 70;    // the first column
  DeviceArray<float> dx = ToDevice(x);
  DeviceArray<int32_t> out = Zeros<int32_t>(rows);
  LaunchArgmax(dx.get(), rows, cols, out.get(), nullptr);
  const std::vector<int32_t> got = ToHost(out, rows);
  for (int64_t r = 0; r < rows; ++r) {
    Sampler greedy(SamplingParams{});
    EXPECT_EQ(got[r], greedy.Sample(absl::MakeConstSpan(x.data() + r * cols, cols))) << r;
  }
  EXPECT_EQ(got[1], 300);
}

}  // namespace
}  // namespace blockserve::engine::cuda
