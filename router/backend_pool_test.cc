#include "router/backend_pool.h"

#include <gtest/gtest.h>

#include "router/fake_backends.h"

namespace blockserve::router {
namespace {

using testing::FakeDecoder;
using testing::FakeServer;

// Two healthy fake decoders and one address where nothing listens.
class BackendPoolTest : public ::testing::Test {
 protected:
  BackendPoolTest() : a_({&decoder_a_}), b_({&decoder_b_}) {}

  BackendPoolOptions Options(std::vector<std::string> decoders) {
    BackendPoolOptions o;
    o.decoder = std::move(decoders);
    o.prefill = o.decoder;  // the same servers play prefill for placement tests
    o.health_timeout = absl::Milliseconds(500);
    return o;
  }

  FakeDecoder decoder_a_, decoder_b_;
  FakeServer a_, b_;
  const std::string dead_ = "127.0.0.1:1";
};

TEST(ParseAddressListTest, SplitsTrimsAndDropsDuplicates) {
  absl::StatusOr<std::vector<std::string>> list =
      ParseAddressList(" a:1, b:2 ,,a:1,[::1]:3 ");
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(*list, (std::vector<std::string>{"a:1", "b:2", "[::1]:3"}));
  EXPECT_TRUE(ParseAddressList("").ok());
}

TEST(ParseAddressListTest, RejectsEntriesWithoutAValidPort) {
  EXPECT_EQ(ParseAddressList("host").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseAddressList("host:0").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseAddressList("host:x").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(BackendPoolTest, ProbeHealthSeesServingAndUnreachable) {
  EXPECT_EQ(ProbeHealth(MakeBackendChannel(a_.address()), absl::Seconds(2)).value_or(false), true);
  EXPECT_FALSE(ProbeHealth(MakeBackendChannel(dead_), absl::Seconds(2)).ok());
}

TEST_F(BackendPoolTest, UnreachableBackendIsNeverChosen) {
  BackendPool pool(Options({dead_, a_.address()}));
  pool.CheckAllNow();
  EXPECT_EQ(pool.HealthyCount(v1::BACKEND_ROLE_DECODER), 1);
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<BackendPool::Lease> lease = pool.Acquire(v1::BACKEND_ROLE_DECODER);
    ASSERT_TRUE(lease.ok());
    EXPECT_EQ(lease->address(), a_.address());
  }
}

TEST_F(BackendPoolTest, NoHealthyBackendIsUnavailable) {
  BackendPool pool(Options({dead_}));
  pool.CheckAllNow();
  EXPECT_EQ(pool.Acquire(v1::BACKEND_ROLE_DECODER).status().code(),
            absl::StatusCode::kUnavailable);
  EXPECT_EQ(pool.Acquire(v1::BACKEND_ROLE_ENCODER).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(BackendPoolTest, ChoosesTheLeastLoaded) {
  BackendPool pool(Options({a_.address(), b_.address()}));
  pool.CheckAllNow();
  absl::StatusOr<BackendPool::Lease> first = pool.Acquire(v1::BACKEND_ROLE_DECODER);
  ASSERT_TRUE(first.ok());
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<BackendPool::Lease> next = pool.Acquire(v1::BACKEND_ROLE_DECODER);
    ASSERT_TRUE(next.ok());
    EXPECT_NE(next->address(), first->address());  // the other one has nothing in flight
  }
}

TEST_F(BackendPoolTest, ExcludedBackendsAreSkipped) {
  BackendPool pool(Options({a_.address(), b_.address()}));
  pool.CheckAllNow();
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<BackendPool::Lease> lease = pool.Acquire(v1::BACKEND_ROLE_DECODER, {a_.address()});
    ASSERT_TRUE(lease.ok());
    EXPECT_EQ(lease->address(), b_.address());
  }
  EXPECT_FALSE(pool.Acquire(v1::BACKEND_ROLE_DECODER, {a_.address(), b_.address()}).ok());
}

TEST_F(BackendPoolTest, PrefillAffinityHoldsWithinTheSlack) {
  BackendPoolOptions o = Options({a_.address(), b_.address()});
  o.affinity_slack = 1;
  BackendPool pool(o);
  pool.CheckAllNow();
  const uint64_t key = 42;
  pool.RememberPrefill(key, a_.address());
  std::vector<BackendPool::Lease> held;
  // A is preferred while its load is at most one above B's (0 and 1 in flight)...
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<BackendPool::Lease> lease = pool.AcquirePrefill(key);
    ASSERT_TRUE(lease.ok());
    EXPECT_EQ(lease->address(), a_.address()) << "request " << i;
    held.push_back(*std::move(lease));
  }
  // ...and no longer once it has two more in flight than B.
  absl::StatusOr<BackendPool::Lease> lease = pool.AcquirePrefill(key);
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ(lease->address(), b_.address());
}

TEST_F(BackendPoolTest, MarkedUnhealthyUntilAProbeSaysServing) {
  BackendPool pool(Options({a_.address()}));
  pool.CheckAllNow();
  pool.MarkUnhealthy(a_.address(), "stream broke");
  EXPECT_FALSE(pool.Acquire(v1::BACKEND_ROLE_DECODER).ok());
  pool.CheckAllNow();
  EXPECT_TRUE(pool.Acquire(v1::BACKEND_ROLE_DECODER).ok());
}

TEST_F(BackendPoolTest, NotServingBackendIsDroppedAndComesBack) {
  BackendPool pool(Options({a_.address()}));
  pool.CheckAllNow();
  a_.SetServing(false);
  pool.CheckAllNow();
  EXPECT_EQ(pool.HealthyCount(v1::BACKEND_ROLE_DECODER), 0);
  a_.SetServing(true);
  pool.CheckAllNow();
  EXPECT_EQ(pool.HealthyCount(v1::BACKEND_ROLE_DECODER), 1);
}

TEST_F(BackendPoolTest, HealthThreadNoticesADeadBackend) {
  BackendPoolOptions o = Options({a_.address(), b_.address()});
  o.health_interval = absl::Milliseconds(50);
  BackendPool pool(o);
  pool.Start();
  EXPECT_EQ(pool.HealthyCount(v1::BACKEND_ROLE_DECODER), 2);
  b_.Kill();
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (pool.HealthyCount(v1::BACKEND_ROLE_DECODER) != 1 && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(pool.HealthyCount(v1::BACKEND_ROLE_DECODER), 1);
}

TEST_F(BackendPoolTest, SnapshotCountsRequestsLoadAndFailures) {
  BackendPool pool(Options({a_.address()}));
  pool.CheckAllNow();
  absl::StatusOr<BackendPool::Lease> ok = pool.Acquire(v1::BACKEND_ROLE_DECODER);
  absl::StatusOr<BackendPool::Lease> bad = pool.Acquire(v1::BACKEND_ROLE_DECODER);
  ASSERT_TRUE(ok.ok() && bad.ok());
  ok->Finish(absl::OkStatus());
  bad->Finish(absl::UnavailableError("boom"));
  std::vector<v1::BackendStatus> snapshot = pool.Snapshot();
  ASSERT_EQ(snapshot.size(), 2u);  // listed as decoder and as prefill
  const v1::BackendStatus& s = snapshot[1];
  EXPECT_EQ(s.role(), v1::BACKEND_ROLE_DECODER);
  EXPECT_TRUE(s.healthy());
  EXPECT_EQ(s.in_flight(), 2u);
  EXPECT_EQ(s.requests_total(), 2u);
  EXPECT_EQ(s.requests_failed(), 1u);
  EXPECT_NE(s.last_error().find("boom"), std::string::npos);
  EXPECT_GE(s.last_healthy_ago_ms(), 0);
}

}  // namespace
}  // namespace blockserve::router
