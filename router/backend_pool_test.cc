#include "router/backend_pool.h"

#include <gtest/gtest.h>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "discovery/discovery.h"
#include "router/fake_backends.h"
#include "router/rendezvous.h"

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

  FakeDecoder decoder_a_, decoder_b_, decoder_c_;
  FakeServer a_, b_;
  const std::string dead_ = "127.0.0.1:1";
};

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

TEST_F(BackendPoolTest, PrefillAffinityFollowsTheRendezvousOrderWithinTheSlack) {
  FakeServer c({&decoder_c_});
  BackendPoolOptions o = Options({a_.address(), b_.address(), c.address()});
  o.affinity_slack = 1;
  BackendPool pool(o);
  pool.CheckAllNow();
  const uint64_t key = StableHash64("passages");
  const std::vector<std::string> order = pool.PrefillOrder(key);
  ASSERT_EQ(order, RendezvousOrder({a_.address(), b_.address(), c.address()}, key));
  std::vector<BackendPool::Lease> held;
  // The first choice while its load is at most one above the least loaded (0 and 1)...
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<BackendPool::Lease> lease = pool.AcquirePrefill(key);
    ASSERT_TRUE(lease.ok());
    EXPECT_EQ(lease->address(), order[0]) << "request " << i;
    held.push_back(*std::move(lease));
  }
  // ...then the second choice (not whichever idle one the rotation gives), twice...
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<BackendPool::Lease> lease = pool.AcquirePrefill(key);
    ASSERT_TRUE(lease.ok());
    EXPECT_EQ(lease->address(), order[1]) << "request " << i;
    held.push_back(*std::move(lease));
  }
  // ...then the third, and no prefill is ever more than the slack above the least.
  absl::StatusOr<BackendPool::Lease> lease = pool.AcquirePrefill(key);
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ(lease->address(), order[2]);
  held.push_back(*std::move(lease));
  for (int i = 0; i < 30; ++i) {
    absl::StatusOr<BackendPool::Lease> next = pool.AcquirePrefill(key);
    ASSERT_TRUE(next.ok());
    held.push_back(*std::move(next));
    uint32_t least = ~0u, most = 0;
    for (const v1::BackendStatus& s : pool.Snapshot()) {
      if (s.role() != v1::BACKEND_ROLE_PREFILL) continue;
      least = std::min(least, s.in_flight());
      most = std::max(most, s.in_flight());
    }
    EXPECT_LE(most, least + 1 + 1) << "after request " << i;  // slack, +1 for this one
  }
}

TEST_F(BackendPoolTest, PrefillWithoutPassagesIsLeastLoaded) {
  BackendPool pool(Options({a_.address(), b_.address()}));
  pool.CheckAllNow();
  absl::StatusOr<BackendPool::Lease> first = pool.AcquirePrefill(0);
  ASSERT_TRUE(first.ok());
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<BackendPool::Lease> next = pool.AcquirePrefill(0);
    ASSERT_TRUE(next.ok());
    EXPECT_NE(next->address(), first->address());
  }
}

// Four prefills; every pick releases its lease at once, so placement is by score only.
class PlacementTest : public ::testing::Test {
 protected:
  PlacementTest() {
    for (int i = 0; i < 4; ++i) {
      servers_.push_back(std::make_unique<FakeServer>(std::vector<grpc::Service*>{&decoders_[i]}));
      addresses_.push_back(servers_.back()->address());
    }
  }
  static std::unique_ptr<BackendPool> Pool(std::vector<std::string> prefills) {
    BackendPoolOptions o;
    o.prefill = std::move(prefills);
    auto pool = std::make_unique<BackendPool>(o);
    pool->CheckAllNow();
    return pool;
  }
  static std::vector<std::string> Picks(BackendPool& pool) {
    std::vector<std::string> out;
    for (int i = 0; i < 1000; ++i) {
      absl::StatusOr<BackendPool::Lease> lease =
          pool.AcquirePrefill(StableHash64(absl::StrCat("set ", i)));
      out.push_back(lease.ok() ? lease->address() : lease.status().ToString());
    }
    return out;
  }
  FakeDecoder decoders_[4];
  std::vector<std::unique_ptr<FakeServer>> servers_;
  std::vector<std::string> addresses_;
};

TEST_F(PlacementTest, TwoRoutersWithTheSameBackendsPlaceAlike) {
  std::vector<std::string> reversed(addresses_.rbegin(), addresses_.rend());
  std::unique_ptr<BackendPool> one = Pool(addresses_);
  std::unique_ptr<BackendPool> two = Pool(reversed);  // listed in another order
  const std::vector<std::string> picks = Picks(*one);
  EXPECT_EQ(picks, Picks(*two));
  absl::flat_hash_map<std::string, int> per_prefill;
  for (const std::string& p : picks) ++per_prefill[p];
  EXPECT_EQ(per_prefill.size(), 4u);  // all used, none by accident of the test
}

TEST_F(PlacementTest, RemovingAPrefillMovesOnlyItsKeysAndAddingItBackRestoresThem) {
  std::unique_ptr<BackendPool> pool = Pool(addresses_);
  const std::vector<std::string> before = Picks(*pool);
  const std::string gone = addresses_[1];
  std::vector<std::string> rest = addresses_;
  rest.erase(rest.begin() + 1);
  pool->SetBackends(v1::BACKEND_ROLE_PREFILL, rest);
  EXPECT_EQ(pool->BackendCount(v1::BACKEND_ROLE_PREFILL), 3);
  const std::vector<std::string> after = Picks(*pool);
  int moved = 0;
  for (size_t i = 0; i < before.size(); ++i) {
    EXPECT_NE(after[i], gone);
    if (before[i] == gone) {
      ++moved;
    } else {
      EXPECT_EQ(after[i], before[i]) << "key " << i;
    }
  }
  EXPECT_GT(moved, 150);  // ~250 were on it
  // Back again: unhealthy until probed, then it wins its keys back.
  pool->SetBackends(v1::BACKEND_ROLE_PREFILL, addresses_);
  EXPECT_EQ(pool->HealthyCount(v1::BACKEND_ROLE_PREFILL), 3);
  EXPECT_EQ(Picks(*pool), after);
  pool->CheckAllNow();
  EXPECT_EQ(Picks(*pool), before);
}

TEST_F(BackendPoolTest, RemovedBackendKeepsItsLeasesValidAndIsNeverChosenAgain) {
  BackendPool pool(Options({a_.address(), b_.address()}));
  pool.CheckAllNow();
  absl::StatusOr<BackendPool::Lease> on_a = pool.Acquire(v1::BACKEND_ROLE_DECODER, {b_.address()});
  ASSERT_TRUE(on_a.ok());
  pool.SetBackends(v1::BACKEND_ROLE_DECODER, {b_.address()});
  EXPECT_EQ(pool.BackendCount(v1::BACKEND_ROLE_DECODER), 1);
  // The lease still works: its address and channel are those of A, and A answers.
  EXPECT_EQ(on_a->address(), a_.address());
  EXPECT_EQ(ProbeHealth(on_a->channel(), absl::Seconds(2)).value_or(false), true);
  for (int i = 0; i < 4; ++i) {
    absl::StatusOr<BackendPool::Lease> lease = pool.Acquire(v1::BACKEND_ROLE_DECODER);
    ASSERT_TRUE(lease.ok());
    EXPECT_EQ(lease->address(), b_.address());
  }
  for (const v1::BackendStatus& s : pool.Snapshot()) {
    EXPECT_FALSE(s.role() == v1::BACKEND_ROLE_DECODER && s.address() == a_.address());
  }
  pool.CheckAllNow();  // a probe round must not bring it back
  EXPECT_EQ(pool.HealthyCount(v1::BACKEND_ROLE_DECODER), 1);
  on_a->Finish(absl::UnavailableError("late failure on a removed backend"));
  on_a = absl::UnavailableError("released");  // drops the last reference to A
  EXPECT_EQ(pool.Acquire(v1::BACKEND_ROLE_DECODER, {b_.address()}).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(BackendPoolTest, AddedBackendIsProbedBeforeUse) {
  BackendPoolOptions o = Options({a_.address()});
  o.health_interval = absl::Hours(1);  // only the probe asked for by SetBackends runs
  MetricsRegistry metrics;
  BackendPool pool(o, &metrics);
  pool.Start();
  pool.SetBackends(v1::BACKEND_ROLE_DECODER, {a_.address(), b_.address()});
  EXPECT_EQ(metrics.GetGauge("blockserve_router_discovered_decoders", "")->value(), 2);
  // Not used before its probe says SERVING (A takes everything meanwhile)...
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  while (pool.HealthyCount(v1::BACKEND_ROLE_DECODER) != 2 && absl::Now() < give_up) {
    absl::StatusOr<BackendPool::Lease> lease = pool.Acquire(v1::BACKEND_ROLE_DECODER, {});
    ASSERT_TRUE(lease.ok());
    if (pool.HealthyCount(v1::BACKEND_ROLE_DECODER) == 1) {
      EXPECT_EQ(lease->address(), a_.address());
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  // ...and then by the health thread's own probe, long before its next round.
  EXPECT_EQ(pool.HealthyCount(v1::BACKEND_ROLE_DECODER), 2);
  EXPECT_EQ(metrics.GetGauge("blockserve_router_healthy_decoders", "")->value(), 2);
}

TEST_F(BackendPoolTest, AddedBackendThatIsDownStaysUnused) {
  BackendPool pool(Options({a_.address()}));
  pool.CheckAllNow();
  pool.SetBackends(v1::BACKEND_ROLE_DECODER, {a_.address(), dead_});
  pool.CheckAllNow();
  EXPECT_EQ(pool.BackendCount(v1::BACKEND_ROLE_DECODER), 2);
  EXPECT_EQ(pool.HealthyCount(v1::BACKEND_ROLE_DECODER), 1);
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(pool.Acquire(v1::BACKEND_ROLE_DECODER).value().address(), a_.address());
  }
}

// The real path end to end: dns:///localhost:PORT through getaddrinfo into the pool.
TEST_F(BackendPoolTest, DiscoveredLocalhostBackendServes) {
  const std::string port = a_.address().substr(a_.address().rfind(':') + 1);
  discovery::Discovery d(
      discovery::ParseDiscoverySpec(absl::StrCat("dns:///localhost:", port)).value(), {});
  ASSERT_TRUE(d.Refresh().ok());
  BackendPool pool(BackendPoolOptions{});
  d.Start([&pool](const std::vector<std::string>& set) {
    pool.SetBackends(v1::BACKEND_ROLE_PREFILL, set);
  });
  pool.CheckAllNow();
  EXPECT_GE(pool.BackendCount(v1::BACKEND_ROLE_PREFILL), 1);  // 127.0.0.1, maybe ::1
  absl::StatusOr<BackendPool::Lease> lease = pool.AcquirePrefill(0, {absl::StrCat("[::1]:", port)});
  ASSERT_TRUE(lease.ok()) << lease.status();
  EXPECT_EQ(lease->address(), absl::StrCat("127.0.0.1:", port));
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
