#include "engine/json_nesting.h"

#include <string>

#include "gtest/gtest.h"

namespace blockserve::engine {
namespace {

std::string Nested(int depth, char open = '[', char close = ']') {
  return std::string(depth, open) + std::string(depth, close);
}

TEST(JsonNestingTest, TheLimitItselfPassesOneMoreFails) {
  EXPECT_TRUE(CheckJsonNesting(Nested(kMaxJsonNesting)).ok());
  const absl::Status s = CheckJsonNesting(Nested(kMaxJsonNesting + 1));
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  EXPECT_NE(s.message().find("128"), std::string_view::npos) << s;
  EXPECT_TRUE(CheckJsonNesting(Nested(3), /*max_depth=*/3).ok());
  EXPECT_FALSE(CheckJsonNesting(Nested(4), /*max_depth=*/3).ok());
}

TEST(JsonNestingTest, ObjectsAndArraysCountAlikeAndSiblingsDoNotAddUp) {
  EXPECT_FALSE(CheckJsonNesting(R"({"a": [{"b": [1]}]})", 3).ok());
  EXPECT_TRUE(CheckJsonNesting(R"({"a": [{"b": [1]}]})", 4).ok());
  EXPECT_TRUE(CheckJsonNesting(R"([[1], [2], [3], {"x": 4}])", 2).ok());
  EXPECT_FALSE(CheckJsonNesting(R"([[1], [2], [3], {"x": [4]}])", 2).ok());
}

TEST(JsonNestingTest, BracketsInStringsDoNotCount) {
  EXPECT_TRUE(CheckJsonNesting(R"({"merges": ["[[[[ {{{{", "]]]]"]})", 2).ok());
  // An escaped quote does not end the string; an escaped backslash before a quote does.
  EXPECT_TRUE(CheckJsonNesting(R"(["a \" [[[[", "b"])", 1).ok());
  EXPECT_FALSE(CheckJsonNesting(R"(["a \\", [[1]]])", 2).ok());
}

TEST(JsonNestingTest, ScalarsAndEmptyTextPass) {
  EXPECT_TRUE(CheckJsonNesting("").ok());
  EXPECT_TRUE(CheckJsonNesting("42").ok());
  EXPECT_TRUE(CheckJsonNesting(R"("[")").ok());
}

}  // namespace
}  // namespace blockserve::engine
