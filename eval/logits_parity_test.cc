// The engine computes what PyTorch computed when it trained the shipped model: for a few
// held-out prompts, training/train.py stored PyTorch's logits (testdata/parity.json) at the
// last prompt position and after feeding back answer tokens, under full attention and
// under the Block-Attention mask (positions re-encoded or not, global blocks). The engine
// must reproduce them within fp32 tolerance from the BF16 weights of the model folder.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "engine/engine.h"
#include "gtest/gtest.h"
#include <nlohmann/json.hpp>

namespace blockserve::engine {
namespace {

constexpr float kTolerance = 1e-3f;

std::string Runfile(const std::string& path) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  return srcdir == nullptr ? path : std::string(srcdir) + "/blockserve/" + path;
}

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size()) return INFINITY;
  float d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::fabs(a[i] - b[i]));
  return d;
}

TEST(LogitsParity, EngineMatchesPyTorchInEveryMode) {
  std::ifstream in(Runfile("eval/testdata/parity.json"));
  ASSERT_TRUE(in) << "missing eval/testdata/parity.json";
  std::stringstream text;
  text << in.rdbuf();
  const nlohmann::json fixture = nlohmann::json::parse(text.str());
  absl::StatusOr<std::unique_ptr<Engine>> engine =
      Engine::Load(Runfile(fixture["model"].get<std::string>()));
  ASSERT_TRUE(engine.ok()) << engine.status();
  ASSERT_FALSE(fixture["cases"].empty());

  for (const nlohmann::json& c : fixture["cases"]) {
    SCOPED_TRACE(c["name"].get<std::string>());
    const auto blocks_tokens = c["blocks"].get<std::vector<std::vector<int32_t>>>();
    const auto query = c["query"].get<std::vector<int32_t>>();
    const auto decode = c["decode_tokens"].get<std::vector<int32_t>>();
    const auto expected = c["logits"].get<std::vector<std::vector<float>>>();
    ASSERT_EQ(expected.size(), decode.size() + 1);
    std::vector<BlockInput> blocks;
    for (const auto& b : blocks_tokens) blocks.push_back(BlockInput{b});
    PrefillOptions options;
    options.mode = c["mode"] == "full" ? AttentionMode::kFull : AttentionMode::kBlock;
    options.reencode_positions = c["reencode_positions"].get<bool>();
    options.global_blocks = c["global_blocks"].get<int64_t>();

    absl::StatusOr<PrefillResult> prefill = (*engine)->PrefillLast(blocks, query, options);
    ASSERT_TRUE(prefill.ok()) << prefill.status();
    EXPECT_LE(MaxAbsDiff(prefill->logits_last, expected[0]), kTolerance);
    int64_t position = prefill->next_position;
    for (size_t i = 0; i < decode.size(); ++i) {
      DecodeInput step{&prefill->cache, decode[i], position++};
      absl::StatusOr<std::vector<std::vector<float>>> logits = (*engine)->DecodeStep({step});
      ASSERT_TRUE(logits.ok()) << logits.status();
      EXPECT_LE(MaxAbsDiff((*logits)[0], expected[i + 1]), kTolerance) << "decode step " << i;
    }
  }
}

}  // namespace
}  // namespace blockserve::engine
