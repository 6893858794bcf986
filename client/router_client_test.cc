#include "client/router_client.h"

#include <set>
#include <sstream>
#include <string>
#include <vector>

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

std::vector<v1::Passage> Corpus(int n) {
  std::vector<v1::Passage> out;
  for (int i = 0; i < n; ++i) {
    v1::Passage p;
    if (i % 10 != 9) p.set_id("doc-" + std::to_string(i));  // every tenth has no id
    p.set_text("Passage number " + std::to_string(i) + ".");
    out.push_back(p);
  }
  return out;
}

TEST(ShardTest, EveryPassageIsInExactlyOneShardForSeveralCounts) {
  const std::vector<v1::Passage> all = Corpus(1000);
  for (int count : {1, 2, 3, 4, 7, 16, 64}) {
    std::vector<int> seen(all.size(), 0);
    size_t total = 0;
    for (int index = 0; index < count; ++index) {
      const std::vector<v1::Passage> shard = PassagesOfShard(all, index, count);
      total += shard.size();
      for (const v1::Passage& p : shard) {
        // Passages are unique by text here: find which one it is.
        const int i = std::stoi(p.text().substr(std::string("Passage number ").size()));
        ++seen[i];
      }
    }
    EXPECT_EQ(total, all.size()) << count;
    for (size_t i = 0; i < seen.size(); ++i) {
      ASSERT_EQ(seen[i], 1) << "passage " << i << " with " << count << " shards";
    }
  }
}

TEST(ShardTest, TheSplitIsBalancedAndIgnoresOrder) {
  const std::vector<v1::Passage> all = Corpus(4000);
  std::vector<v1::Passage> reversed(all.rbegin(), all.rend());
  for (int index = 0; index < 4; ++index) {
    const std::vector<v1::Passage> shard = PassagesOfShard(all, index, 4);
    // 1000 expected; a hash that ignored part of the key would be far off.
    EXPECT_GT(shard.size(), 850u) << index;
    EXPECT_LT(shard.size(), 1150u) << index;
    std::set<std::string> a, b;
    for (const v1::Passage& p : shard) a.insert(p.text());
    for (const v1::Passage& p : PassagesOfShard(reversed, index, 4)) b.insert(p.text());
    EXPECT_EQ(a, b) << "shard " << index << " depends on the order of the corpus";
  }
}

TEST(ShardTest, TheShardIsAFixedFunctionOfTheIdOrElseTheText) {
  v1::Passage p;
  p.set_id("a");
  p.set_text("one text");
  v1::Passage same_id = p;
  same_id.set_text("another text");
  EXPECT_EQ(ShardKeyHash(p), ShardKeyHash(same_id));  // the text does not matter with an id
  // FNV-1a 64 of "a" (a published test vector): the same on every platform and build.
  EXPECT_EQ(ShardKeyHash(p), 0xaf63dc4c8601ec8cull);
  v1::Passage anonymous;
  anonymous.set_text("a");
  EXPECT_EQ(ShardKeyHash(anonymous), ShardKeyHash(p));
  EXPECT_EQ(ShardOf(p, 1), 0);
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
