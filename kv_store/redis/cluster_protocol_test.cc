#include "kv_store/redis/cluster_protocol.h"

#include <hiredis/hiredis.h>

#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace blockserve::kv_store::redis {
namespace {

TEST(Crc16Test, MatchesTheSpecsCheckValue) {
  // The cluster spec's reference: CRC16/XMODEM of "123456789" is 0x31C3.
  EXPECT_EQ(Crc16("123456789"), 0x31C3);
  EXPECT_EQ(Crc16(""), 0);
}

TEST(KeySlotTest, MatchesRedisOnKnownKeys) {
  // Values from `CLUSTER KEYSLOT` of a real Redis 7.
  EXPECT_EQ(KeySlot("foo"), 12182);
  EXPECT_EQ(KeySlot("bar"), 5061);
  EXPECT_EQ(KeySlot("123456789"), 0x31C3 % 16384);
  EXPECT_EQ(KeySlot(""), 0);
  const std::string binary("\0\xff\x80", 3);
  EXPECT_EQ(KeySlot(binary), Crc16(binary) % 16384);
}

TEST(HashTagTest, FollowsTheSpecsRules) {
  // The spec's examples.
  EXPECT_EQ(HashTag("{user1000}.following"), "user1000");
  EXPECT_EQ(HashTag("{user1000}.followers"), "user1000");
  EXPECT_EQ(HashTag("foo{}{bar}"), "foo{}{bar}");  // the first tag is empty: the whole key
  EXPECT_EQ(HashTag("foo{{bar}}zap"), "{bar");     // the first '}' after the first '{'
  EXPECT_EQ(HashTag("foo{bar}{zap}"), "bar");      // the first tag only
  // No tag at all.
  EXPECT_EQ(HashTag("plain"), "plain");
  EXPECT_EQ(HashTag("open{only"), "open{only");
  EXPECT_EQ(HashTag("close}only{"), "close}only{");
  EXPECT_EQ(KeySlot("{user1000}.following"), KeySlot("{user1000}.followers"));
  EXPECT_EQ(KeySlot("{user1000}.following"), KeySlot("user1000"));
  EXPECT_EQ(KeySlot("foo{}{bar}"), Crc16("foo{}{bar}") % 16384);
}

TEST(HostPortTest, ParsesHostsIpv6InBracketsAndRefusesTheRest) {
  absl::StatusOr<HostPort> a = ParseHostPort("redis-0.redis:6379");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->host, "redis-0.redis");
  EXPECT_EQ(a->port, 6379);
  absl::StatusOr<HostPort> v6 = ParseHostPort("[::1]:7000");
  ASSERT_TRUE(v6.ok()) << v6.status();
  EXPECT_EQ(v6->host, "::1");
  EXPECT_EQ(v6->ToString(), "[::1]:7000");
  for (const char* bad :
       {"", "host", "host:", ":6379", "host:0", "host:65536", "host:12x", "::1:7000", "[]:7000"}) {
    EXPECT_FALSE(ParseHostPort(bad).ok()) << bad;
  }
}

TEST(ClassifyErrorReplyTest, ReadsRedirectionsAndTransientRefusals) {
  ErrorReply moved = ClassifyErrorReply("MOVED 3999 127.0.0.1:6381", "10.0.0.1");
  EXPECT_EQ(moved.kind, ErrorReply::Kind::kMoved);
  EXPECT_EQ(moved.slot, 3999);
  EXPECT_EQ(moved.target, (HostPort{"127.0.0.1", 6381}));

  ErrorReply ask = ClassifyErrorReply("ASK 16383 redis-2.redis:6379", "10.0.0.1");
  EXPECT_EQ(ask.kind, ErrorReply::Kind::kAsk);
  EXPECT_EQ(ask.slot, 16383);
  EXPECT_EQ(ask.target, (HostPort{"redis-2.redis", 6379}));

  // An empty or unknown endpoint is the replying node's host.
  EXPECT_EQ(ClassifyErrorReply("MOVED 1 :6380", "10.0.0.1").target, (HostPort{"10.0.0.1", 6380}));
  EXPECT_EQ(ClassifyErrorReply("MOVED 1 ?:6380", "10.0.0.1").target, (HostPort{"10.0.0.1", 6380}));
  EXPECT_EQ(ClassifyErrorReply("ASK 1 [fe80::1]:6380", "x").target, (HostPort{"fe80::1", 6380}));

  for (const char* transient :
       {"CLUSTERDOWN The cluster is down",
        "TRYAGAIN Multiple keys request during rehashing of slot",
        "LOADING Redis is loading the dataset in memory", "MASTERDOWN Link with MASTER is down",
        "BUSY Redis is busy running a script"}) {
    EXPECT_EQ(ClassifyErrorReply(transient, "h").kind, ErrorReply::Kind::kUnavailable) << transient;
  }
  for (const char* other :
       {"ERR wrong number of arguments", "OOM command not allowed", "MOVED", "MOVED 16384 h:1",
        "MOVED -1 h:1", "MOVED 1 h", "MOVED 1 h:0", "ASK x h:1", "MOVEDX 1 h:1", ""}) {
    EXPECT_EQ(ClassifyErrorReply(other, "h").kind, ErrorReply::Kind::kOther) << other;
  }
}

// A CLUSTER SLOTS reply built as hiredis would hand it over.
struct FakeReply {
  std::unique_ptr<redisReply> reply = std::make_unique<redisReply>();
  std::vector<std::unique_ptr<FakeReply>> children;
  std::vector<redisReply*> pointers;
  std::string text;
};

std::unique_ptr<FakeReply> Int(long long v) {
  auto r = std::make_unique<FakeReply>();
  *r->reply = {};
  r->reply->type = REDIS_REPLY_INTEGER;
  r->reply->integer = v;
  return r;
}

std::unique_ptr<FakeReply> Str(std::string s) {
  auto r = std::make_unique<FakeReply>();
  *r->reply = {};
  r->text = std::move(s);
  r->reply->type = REDIS_REPLY_STRING;
  r->reply->str = r->text.data();
  r->reply->len = r->text.size();
  return r;
}

std::unique_ptr<FakeReply> Arr(std::vector<std::unique_ptr<FakeReply>> elements) {
  auto r = std::make_unique<FakeReply>();
  *r->reply = {};
  r->reply->type = REDIS_REPLY_ARRAY;
  r->children = std::move(elements);
  for (auto& c : r->children) r->pointers.push_back(c->reply.get());
  r->reply->elements = r->pointers.size();
  r->reply->element = r->pointers.data();
  return r;
}

template <typename... T>
std::vector<std::unique_ptr<FakeReply>> List(T... items) {
  std::vector<std::unique_ptr<FakeReply>> v;
  (v.push_back(std::move(items)), ...);
  return v;
}

TEST(ParseClusterSlotsTest, ReadsRangesMastersAndReplicas) {
  std::unique_ptr<FakeReply> reply =
      Arr(List(Arr(List(Int(0), Int(5460), Arr(List(Str("127.0.0.1"), Int(7001), Str("id1"))),
                        Arr(List(Str("127.0.0.1"), Int(7004), Str("id4"))))),
               Arr(List(Int(5461), Int(16383), Arr(List(Str(""), Int(7002), Str("id2")))))));

  absl::StatusOr<std::vector<SlotRange>> ranges = ParseClusterSlots(*reply->reply, "10.1.2.3");

  ASSERT_TRUE(ranges.ok()) << ranges.status();
  ASSERT_EQ(ranges->size(), 2u);
  EXPECT_EQ((*ranges)[0].first, 0);
  EXPECT_EQ((*ranges)[0].last, 5460);
  EXPECT_EQ((*ranges)[0].master, (HostPort{"127.0.0.1", 7001}));
  ASSERT_EQ((*ranges)[0].replicas.size(), 1u);
  EXPECT_EQ((*ranges)[0].replicas[0], (HostPort{"127.0.0.1", 7004}));
  EXPECT_EQ((*ranges)[1].master, (HostPort{"10.1.2.3", 7002}));  // no host: the replier's
  EXPECT_TRUE((*ranges)[1].replicas.empty());
}

TEST(ParseClusterSlotsTest, RefusesOtherShapes) {
  EXPECT_FALSE(ParseClusterSlots(*Int(1)->reply, "h").ok());
  EXPECT_FALSE(ParseClusterSlots(*Arr(List(Arr(List(Int(0), Int(5)))))->reply, "h").ok());
  EXPECT_FALSE(ParseClusterSlots(
                   *Arr(List(Arr(List(Int(5), Int(4), Arr(List(Str("h"), Int(1)))))))->reply, "h")
                   .ok());
  EXPECT_FALSE(
      ParseClusterSlots(
          *Arr(List(Arr(List(Int(0), Int(16384), Arr(List(Str("h"), Int(1)))))))->reply, "h")
          .ok());
  EXPECT_FALSE(ParseClusterSlots(
                   *Arr(List(Arr(List(Int(0), Int(1), Arr(List(Str("h"), Int(0)))))))->reply, "h")
                   .ok());
  EXPECT_TRUE(ParseClusterSlots(*Arr({})->reply, "h").ok());  // no slots assigned yet
}

}  // namespace
}  // namespace blockserve::kv_store::redis
