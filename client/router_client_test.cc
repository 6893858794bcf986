#include "client/router_client.h"

#include <sstream>

#include <gtest/gtest.h>

namespace blockserve::client {
namespace {

absl::StatusOr<std::vector<v1::Passage>> Parse(const std::string& text) {
  std::istringstream in(text);
  return ParsePassagesJsonl(in, "corpus.jsonl");
}

TEST(ParsePassagesJsonlTest, ReadsIdsAndTextsSkippingBlankLines) {
  absl::StatusOr<std::vector<v1::Passage>> p =
      Parse("{\"id\": \"a\", \"text\": \"Alpha.\"}\n\n  \n{\"id\": 7, \"text\": \"Seven\"}\n"
            "{\"text\": \"anonymous\", \"extra\": 1}\n");
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->size(), 3u);
  EXPECT_EQ((*p)[0].id(), "a");
  EXPECT_EQ((*p)[0].text(), "Alpha.");
  EXPECT_EQ((*p)[1].id(), "7");
  EXPECT_EQ((*p)[2].id(), "");
}

TEST(ParsePassagesJsonlTest, ErrorsNameTheLine) {
  absl::StatusOr<std::vector<v1::Passage>> p = Parse("{\"id\": \"a\", \"text\": \"x\"}\n{oops\n");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(p.status().message().find("corpus.jsonl:2"), std::string::npos) << p.status();
  EXPECT_FALSE(Parse("{\"id\": \"a\"}\n").ok());                   // no text
  EXPECT_FALSE(Parse("[1, 2]\n").ok());                            // not an object
  EXPECT_FALSE(Parse("{\"id\": [], \"text\": \"x\"}\n").ok());     // bad id
  EXPECT_FALSE(Parse("{\"id\": \"a\", \"text\": \"\xff\"}\n").ok());  // invalid UTF-8
}

TEST(ReadPassagesJsonlTest, MissingFileIsNotFound) {
  EXPECT_EQ(ReadPassagesJsonl("/nonexistent/corpus.jsonl").status().code(),
            absl::StatusCode::kNotFound);
}

TEST(IsValidUtf8Test, AcceptsWellFormedAndRejectsTheRest) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("\xff"));
  EXPECT_FALSE(IsValidUtf8("\xc3"));              // truncated
  EXPECT_FALSE(IsValidUtf8("\xe2\x82"));          // truncated
  EXPECT_FALSE(IsValidUtf8("\xc0\xaf"));          // overlong '/'
  EXPECT_FALSE(IsValidUtf8("\xed\xa0\x80"));      // surrogate
  EXPECT_FALSE(IsValidUtf8("\xf4\x90\x80\x80"));  // past U+10FFFF
  EXPECT_FALSE(IsValidUtf8("a\x80" "b"));         // stray continuation byte
}

}  // namespace
}  // namespace blockserve::client
