#include "engine/rope.h"

#include <cmath>
#include <random>

#include <gtest/gtest.h>

namespace blockserve::engine {
namespace {

std::vector<float> RandomVectors(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g;
  std::vector<float> x(n);
  for (float& v : x) v = g(rng);
  return x;
}

TEST(RopeTest, UnscaledFrequenciesAreThetaPowers) {
  std::vector<double> f = RopeInverseFrequencies(8, 10000, RopeScaling{});
  ASSERT_EQ(f.size(), 4u);
  EXPECT_DOUBLE_EQ(f[0], 1.0);
  EXPECT_NEAR(f[1], 0.1, 1e-15);
  EXPECT_NEAR(f[2], 0.01, 1e-16);
  EXPECT_NEAR(f[3], 0.001, 1e-17);
}

// Reference values computed separately (Python, from Llama 3.1's published scheme) for
// head_dim 128, theta 500000, factor 8, low 1, high 4, original context 8192.
TEST(RopeTest, Llama3ScalingMatchesIndependentlyComputedValues) {
  RopeScaling s{RopeScalingType::kLlama3, 8, 1, 4, 8192};
  std::vector<double> f = RopeInverseFrequencies(128, 500000, s);
  const std::pair<int, double> expected[] = {
      {0, 1.0},                      // high frequency: unchanged
      {10, 0.12868737343265052},     // unchanged
      {28, 0.0032114459947525913},   // just above the band: unchanged
      {30, 0.0013718935677611381},   // in the band: interpolated
      {32, 0.0005248461609929547},   // interpolated
      {34, 0.00017850781276799638},  // interpolated
      {40, 3.428102195952591e-05},   // low frequency: divided by 8
      {63, 3.068925988914511e-07},   // divided by 8
  };
  for (auto [i, want] : expected) EXPECT_NEAR(f[i] / want, 1.0, 1e-12) << "i=" << i;
}

TEST(RopeTest, LinearScalingDividesFrequenciesAndCompressesPositions) {
  RopeScaling linear{RopeScalingType::kLinear, 2};
  std::vector<double> plain = RopeInverseFrequencies(16, 10000, RopeScaling{});
  std::vector<double> scaled = RopeInverseFrequencies(16, 10000, linear);
  for (size_t i = 0; i < plain.size(); ++i) EXPECT_DOUBLE_EQ(scaled[i], plain[i] / 2);
  // Position 10 under factor 2 is position 5 unscaled.
  std::vector<float> a = RandomVectors(16, 1), b = a;
  Rope(16, 10000, linear).Apply(a.data(), 1, 1, 10);
  Rope(16, 10000, RopeScaling{}).Apply(b.data(), 1, 1, 5);
  for (int i = 0; i < 16; ++i) EXPECT_NEAR(a[i], b[i], 1e-6);
}

// rotate_half layout: element i pairs with element i + d/2, not with i + 1.
TEST(RopeTest, RotatesHalvesAsHuggingFaceDoes) {
  std::vector<float> x = {1, 2, 3, 4};  // d = 4, inv_freq = {1, 0.01}
  Rope(4, 10000, RopeScaling{}).Apply(x.data(), 1, 1, 1);
  EXPECT_NEAR(x[0], 1 * std::cos(1.0) - 3 * std::sin(1.0), 1e-6);
  EXPECT_NEAR(x[2], 3 * std::cos(1.0) + 1 * std::sin(1.0), 1e-6);
  EXPECT_NEAR(x[1], 2 * std::cos(0.01) - 4 * std::sin(0.01), 1e-6);
  EXPECT_NEAR(x[3], 4 * std::cos(0.01) + 2 * std::sin(0.01), 1e-6);
}

TEST(RopeTest, ShiftingEncodedVectorsEqualsEncodingAtTheSum) {
  const int64_t d = 64, heads = 3, count = 5;
  Rope rope(d, 500000, RopeScaling{RopeScalingType::kLlama3, 8, 1, 4, 8192});
  std::vector<float> shifted = RandomVectors(count * heads * d, 7), direct = shifted;
  rope.Apply(shifted.data(), count, heads, 0);
  rope.Shift(shifted.data(), count, heads, 4093);
  rope.Apply(direct.data(), count, heads, 4093);
  for (size_t i = 0; i < direct.size(); ++i) EXPECT_NEAR(shifted[i], direct[i], 1e-5);
}

TEST(RopeTest, NegativeShiftUndoesAShift) {
  Rope rope(32, 10000, RopeScaling{});
  std::vector<float> x = RandomVectors(2 * 32, 3), orig = x;
  rope.Shift(x.data(), 2, 1, 777);
  rope.Shift(x.data(), 2, 1, -777);
  for (size_t i = 0; i < x.size(); ++i) EXPECT_NEAR(x[i], orig[i], 1e-5);
}

}  // namespace
}  // namespace blockserve::engine
