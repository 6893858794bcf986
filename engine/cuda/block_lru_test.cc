// The GPU block cache's LRU bookkeeping (block_lru.h). CPU only: runs in CI.
#include "engine/cuda/block_lru.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace blockserve::engine::cuda {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

TEST(BlockLruTest, EvictsLeastRecentlyUsedFirstToStayWithinTheByteBound) {
  BlockLru lru(100);
  ASSERT_TRUE(lru.Insert("a", 40).ok());
  ASSERT_TRUE(lru.Insert("b", 30).ok());
  ASSERT_TRUE(lru.Insert("c", 20).ok());
  EXPECT_TRUE(lru.Lookup("a"));  // a is now the most recent; b the least
  absl::StatusOr<std::vector<std::string>> evicted = lru.Insert("d", 45);
  ASSERT_TRUE(evicted.ok()) << evicted.status();
  EXPECT_THAT(*evicted, ElementsAre("b", "c"));
  EXPECT_THAT(lru.KeysByRecency(), ElementsAre("d", "a"));
  EXPECT_EQ(lru.stats().bytes, 85);
  EXPECT_EQ(lru.stats().entries, 2);
  EXPECT_EQ(lru.stats().evictions, 2);
  EXPECT_LE(lru.stats().bytes, lru.capacity_bytes());
}

TEST(BlockLruTest, CountsHitsAndMisses) {
  BlockLru lru(10);
  EXPECT_FALSE(lru.Lookup("x"));
  ASSERT_TRUE(lru.Insert("x", 5).ok());
  EXPECT_TRUE(lru.Lookup("x"));
  EXPECT_TRUE(lru.Lookup("x"));
  EXPECT_FALSE(lru.Lookup("y"));
  EXPECT_EQ(lru.stats().hits, 2);
  EXPECT_EQ(lru.stats().misses, 2);
  EXPECT_TRUE(lru.Contains("x"));  // Contains counts nothing
  EXPECT_EQ(lru.stats().hits, 2);
}

TEST(BlockLruTest, ContainsDoesNotRefreshRecency) {
  BlockLru lru(10);
  ASSERT_TRUE(lru.Insert("old", 5).ok());
  ASSERT_TRUE(lru.Insert("new", 5).ok());
  EXPECT_TRUE(lru.Contains("old"));
  absl::StatusOr<std::vector<std::string>> evicted = lru.Insert("newest", 5);
  ASSERT_TRUE(evicted.ok());
  EXPECT_THAT(*evicted, ElementsAre("old"));
}

TEST(BlockLruTest, PinnedEntriesAreNeverEvicted) {
  BlockLru lru(100);
  ASSERT_TRUE(lru.Insert("pinned", 60).ok());
  ASSERT_TRUE(lru.Insert("free", 30).ok());
  ASSERT_TRUE(lru.Pin("pinned"));
  absl::StatusOr<std::vector<std::string>> evicted = lru.Insert("next", 40);
  ASSERT_TRUE(evicted.ok()) << evicted.status();
  EXPECT_THAT(*evicted, ElementsAre("free"));
  // Only the pinned block could make room: refused, and nothing was evicted.
  absl::StatusOr<std::vector<std::string>> refused = lru.Insert("big", 70);
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(lru.KeysByRecency(), ElementsAre("next", "pinned"));
  ASSERT_TRUE(lru.Unpin("pinned"));
  EXPECT_FALSE(lru.Unpin("pinned"));
  evicted = lru.Insert("big", 70);
  ASSERT_TRUE(evicted.ok());
  EXPECT_THAT(*evicted, ElementsAre("pinned", "next"));
}

TEST(BlockLruTest, RejectsOversizedAndDuplicateBlocks) {
  BlockLru lru(10);
  EXPECT_EQ(lru.Insert("huge", 11).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(lru.Insert("neg", -1).status().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(lru.Insert("k", 4).ok());
  EXPECT_EQ(lru.Insert("k", 4).status().code(), absl::StatusCode::kAlreadyExists);
  EXPECT_EQ(lru.stats().bytes, 4);
}

TEST(BlockLruTest, EraseReleasesBytes) {
  BlockLru lru(10);
  ASSERT_TRUE(lru.Insert("k", 7).ok());
  EXPECT_TRUE(lru.Erase("k"));
  EXPECT_FALSE(lru.Erase("k"));
  EXPECT_EQ(lru.stats().bytes, 0);
  EXPECT_EQ(lru.stats().entries, 0);
  absl::StatusOr<std::vector<std::string>> evicted = lru.Insert("j", 10);
  ASSERT_TRUE(evicted.ok());
  EXPECT_THAT(*evicted, IsEmpty());
}

}  // namespace
}  // namespace blockserve::engine::cuda
