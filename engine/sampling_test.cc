#include "engine/sampling.h"

#include <cmath>

#include <gtest/gtest.h>

namespace blockserve::engine {
namespace {

const std::vector<float> kLogits = {0.5f, 2.0f, -1.0f, 1.9f, 0.0f};

TEST(SamplingTest, GreedyPicksTheLargestLogit) {
  Sampler s(SamplingParams{});
  EXPECT_EQ(s.Sample(kLogits), 1);
}

TEST(SamplingTest, TopKOfOneIsGreedyAtAnyTemperature) {
  Sampler s(SamplingParams{.temperature = 5, .top_k = 1, .seed = 3});
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.Sample(kLogits), 1);
}

TEST(SamplingTest, TinyTopPKeepsOnlyTheMostLikelyToken) {
  Sampler s(SamplingParams{.temperature = 1, .top_p = 1e-6, .seed = 9});
  for (int i = 0; i < 50; ++i) EXPECT_EQ(s.Sample(kLogits), 1);
}

TEST(SamplingTest, TopKTwoOnlyEverPicksTheTwoBest) {
  Sampler s(SamplingParams{.temperature = 10, .top_k = 2, .seed = 4});
  for (int i = 0; i < 200; ++i) {
    int32_t t = s.Sample(kLogits);
    EXPECT_TRUE(t == 1 || t == 3) << t;
  }
}

TEST(SamplingTest, SameSeedSameSequence) {
  SamplingParams p{.temperature = 1.0, .seed = 42};
  Sampler a(p), b(p);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.Sample(kLogits), b.Sample(kLogits));
}

TEST(SamplingTest, TemperatureOneFollowsSoftmaxFrequencies) {
  // p(1) = 3/4 for logits {0, ln 3}.
  const std::vector<float> logits = {0.0f, static_cast<float>(std::log(3.0))};
  Sampler s(SamplingParams{.temperature = 1.0, .seed = 5});
  int ones = 0;
  const int n = 20000;
  for (int i = 0; i < n; ++i) ones += s.Sample(logits);
  EXPECT_NEAR(static_cast<double>(ones) / n, 0.75, 0.02);
}

TEST(SamplingTest, EverySampleConsumesExactlyOneDraw) {
  // A sampler whose first tokens had a single surviving candidate and one whose first
  // tokens had many must still be at the same point of the seeded stream afterwards:
  // that is what lets the decoder continue the prefill's stream by skipping one draw.
  const std::vector<float> peaked = {50.0f, 0.0f, 0.0f, 0.0f, 0.0f};
  for (uint64_t seed = 1; seed <= 50; ++seed) {
    const SamplingParams p{.temperature = 1.0, .top_p = 0.9, .seed = seed};
    Sampler a(p), b(p);
    for (int i = 0; i < 3; ++i) {
      EXPECT_EQ(a.Sample(peaked), 0);
      b.Sample(kLogits);
    }
    EXPECT_EQ(a.Sample(kLogits), b.Sample(kLogits)) << "seed " << seed;
  }
}

TEST(SamplingTest, SkipSamplesContinuesAnotherSamplersStream) {
  const SamplingParams p{.temperature = 1.0, .top_k = 3, .seed = 8};
  Sampler first(p), continued(p);
  for (int i = 0; i < 4; ++i) first.Sample(kLogits);
  continued.SkipSamples(4);
  for (int i = 0; i < 50; ++i) EXPECT_EQ(continued.Sample(kLogits), first.Sample(kLogits)) << i;
}

TEST(SamplingTest, InvalidParametersAreRejected) {
  EXPECT_FALSE(ValidateSamplingParams({.temperature = -1}).ok());
  EXPECT_FALSE(ValidateSamplingParams({.temperature = NAN}).ok());
  EXPECT_FALSE(ValidateSamplingParams({.top_k = -2}).ok());
  EXPECT_FALSE(ValidateSamplingParams({.top_p = 0}).ok());
  EXPECT_FALSE(ValidateSamplingParams({.top_p = 1.5}).ok());
  EXPECT_TRUE(ValidateSamplingParams({.temperature = 0.7, .top_k = 40, .top_p = 0.9}).ok());
}

}  // namespace
}  // namespace blockserve::engine
