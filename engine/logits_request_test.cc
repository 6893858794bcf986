#include "engine/logits_request.h"

#include <filesystem>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "engine/tiny_model.h"

namespace blockserve::engine {
namespace {

TEST(LogitsRequestTest, ParsesPassagesQueryModeAndGlobalBlocks) {
  absl::StatusOr<LogitsRequest> r =
      ParseLogitsRequest(R"({"blocks": [[1, 2], [3], [4, 5, 6]], "mode": "full", "global_blocks": 1})");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->passages, (std::vector<std::vector<int32_t>>{{1, 2}, {3}}));
  EXPECT_EQ(r->query, (std::vector<int32_t>{4, 5, 6}));
  EXPECT_EQ(r->options.mode, AttentionMode::kFull);
  EXPECT_EQ(r->options.global_blocks, 1);
}

TEST(LogitsRequestTest, MalformedRequestsAreRejected) {
  for (const char* bad : {"", "[]", "{}", R"({"blocks": []})", R"({"blocks": [[]]})",
                          R"({"blocks": [[1, "a"]]})", R"({"blocks": [[-1]]})",
                          R"({"blocks": [[1]], "mode": "sparse"})",
                          R"({"blocks": [[1]], "global_blocks": "x"})", R"({"blocks": [1, 2]})",
                          // These threw nlohmann::json::type_error and aborted the tool.
                          R"({"blocks": [[1]], "mode": 5})", R"({"blocks": [[1]], "mode": null})",
                          R"({"blocks": [[1]], "mode": ["block"]})",
                          R"({"blocks": [[1]], "global_blocks": -1})"}) {
    EXPECT_EQ(ParseLogitsRequest(bad).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

// A bad id nested a million deep: quoting it in the error (json::dump) recursed once per
// level and overflowed the stack (SIGSEGV). Refused by the nesting limit before parsing.
TEST(LogitsRequestTest, DeeplyNestedJsonIsInvalidArgumentNotAStackOverflow) {
  const int depth = 1'000'000;
  const std::string request =
      R"({"blocks": [[)" + std::string(depth, '[') + std::string(depth, ']') + "]]}";
  const absl::Status s = ParseLogitsRequest(request).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_NE(s.message().find("nested deeper than"), std::string_view::npos) << s;
}

TEST(LogitsRequestTest, BlockAndFullModeGiveDifferentLogitsOverSeveralBlocks) {
  const std::string dir = testing::TempDir() + "/logits_request_test";
  ASSERT_TRUE(WriteTinyModel(dir, {}).ok());
  std::unique_ptr<Engine> engine = *Engine::Load(dir);
  LogitsRequest block = *ParseLogitsRequest(R"({"blocks": [[10, 11, 12], [13, 14], [15, 16]]})");
  LogitsRequest full = block;
  full.options.mode = AttentionMode::kFull;
  absl::StatusOr<std::string> a = RunLogitsRequest(*engine, block);
  absl::StatusOr<std::string> b = RunLogitsRequest(*engine, full);
  ASSERT_TRUE(a.ok() && b.ok());
  nlohmann::json ja = nlohmann::json::parse(*a), jb = nlohmann::json::parse(*b);
  ASSERT_EQ(ja["logits_last"].size(), static_cast<size_t>(engine->config().vocab_size));
  EXPECT_NE(ja["logits_last"], jb["logits_last"]);  // the block mask changes the answer
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace blockserve::engine
