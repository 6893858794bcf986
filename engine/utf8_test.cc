#include "engine/utf8.h"

#include <gtest/gtest.h>

namespace blockserve::engine {
namespace {

TEST(Utf8Test, AcceptsWellFormedText) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x99\x82"));  // café 日本 🙂
}

TEST(Utf8Test, RejectsIllFormedSequences) {
  EXPECT_FALSE(IsValidUtf8("\xC3"));              // cut off
  EXPECT_FALSE(IsValidUtf8("\x80"));              // lone continuation
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));          // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));      // surrogate U+D800
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(IsValidUtf8("\xFF"));
}

TEST(Utf8Test, CompletePrefixHoldsBackAnUnfinishedCharacter) {
  EXPECT_EQ(CompleteUtf8Prefix("ab"), 2u);
  EXPECT_EQ(CompleteUtf8Prefix("ab\xF0\x9F"), 2u);      // half an emoji
  EXPECT_EQ(CompleteUtf8Prefix("ab\xF0\x9F\x99\x82"), 6u);
  EXPECT_EQ(CompleteUtf8Prefix("\xC3"), 0u);
}

TEST(Utf8Test, SanitizeReplacesOnlyBadBytes) {
  EXPECT_EQ(SanitizeUtf8("a\xFF" "b"), "a\xEF\xBF\xBD" "b");
  EXPECT_EQ(SanitizeUtf8("caf\xC3\xA9"), "caf\xC3\xA9");
  EXPECT_EQ(SanitizeUtf8("a\x01\nb", /*printable=*/true), "a\xEF\xBF\xBD\nb");
  EXPECT_EQ(SanitizeUtf8("a\x01\nb", /*printable=*/false), "a\x01\nb");
  EXPECT_TRUE(IsValidUtf8(SanitizeUtf8("\xC3\x28\xE2\x82\xF0\x9F\x99")));
}

}  // namespace
}  // namespace blockserve::engine
