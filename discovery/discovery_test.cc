#include "discovery/discovery.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "discovery/fake_resolver.h"

namespace blockserve::discovery {
namespace {

using testing::FakeResolver;

std::vector<std::string> Addresses(std::initializer_list<const char*> list) {
  return std::vector<std::string>(list.begin(), list.end());
}

TEST(ParseDiscoverySpecTest, StaticAndDnsEntries) {
  absl::StatusOr<DiscoverySpec> spec =
      ParseDiscoverySpec(" a:1, dns:///svc.ns.svc.cluster.local:50062 ,a:1,[::1]:3,dns:///[::1]:4");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->static_addresses, Addresses({"a:1", "[::1]:3"}));
  ASSERT_EQ(spec->dns.size(), 2u);
  EXPECT_EQ(spec->dns[0].host, "svc.ns.svc.cluster.local");
  EXPECT_EQ(spec->dns[0].port, 50062);
  EXPECT_EQ(spec->dns[1].host, "::1");
  EXPECT_EQ(spec->ToString(), "a:1,[::1]:3,dns:///svc.ns.svc.cluster.local:50062,dns:///[::1]:4");
  EXPECT_TRUE(ParseDiscoverySpec("").ok());
  EXPECT_TRUE(ParseDiscoverySpec("").value().empty());
}

TEST(ParseDiscoverySpecTest, RejectsBadEntriesNamingThem) {
  for (const char* bad : {"host", "host:0", "host:x", "dns:///svc", "dns:///svc:70000",
                          "dns://8.8.8.8/svc:53", "dns:svc:1", "dns:///:5", "dns:///a/b:5"}) {
    absl::StatusOr<DiscoverySpec> spec = ParseDiscoverySpec(bad);
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(spec.status().message().find(bad), std::string::npos)
        << bad << ": " << spec.status();
  }
}

TEST(ParseAddressListTest, SplitsTrimsDropsDuplicatesAndRefusesDns) {
  absl::StatusOr<std::vector<std::string>> list = ParseAddressList(" a:1, b:2 ,,a:1,[::1]:3 ");
  ASSERT_TRUE(list.ok()) << list.status();
  EXPECT_EQ(*list, Addresses({"a:1", "b:2", "[::1]:3"}));
  EXPECT_EQ(ParseAddressList("dns:///a:1").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(DiscoveryTest, FollowsTheAnswerAndKeepsTheLastOneOnFailure) {
  auto resolver = std::make_shared<FakeResolver>();
  MetricsRegistry metrics;
  Discovery d(ParseDiscoverySpec("dns:///prefill:50062,fixed:7").value(),
              {.resolver = resolver, .name = "--prefill", .metrics = &metrics,
               .metric_prefix = "test_discovery"});
  EXPECT_EQ(d.Current(), Addresses({"fixed:7"}));  // nothing resolved yet

  resolver->Set("prefill", Addresses({"10.0.0.2", "10.0.0.1"}));
  ASSERT_TRUE(d.Refresh().ok());
  EXPECT_EQ(d.Current(), Addresses({"10.0.0.1:50062", "10.0.0.2:50062", "fixed:7"}));

  // A pod appears, another goes.
  resolver->Set("prefill", Addresses({"10.0.0.2", "10.0.0.3"}));
  ASSERT_TRUE(d.Refresh().ok());
  EXPECT_EQ(d.Current(), Addresses({"10.0.0.2:50062", "10.0.0.3:50062", "fixed:7"}));

  // DNS down, then the name gone, then no address: the last set stays, failures count.
  resolver->Set("prefill", absl::UnavailableError("SERVFAIL"));
  EXPECT_EQ(d.Refresh().code(), absl::StatusCode::kUnavailable);
  resolver->Set("other", Addresses({"1.1.1.1"}));
  resolver->Set("prefill", Addresses({}));
  EXPECT_EQ(d.Refresh().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(d.Current(), Addresses({"10.0.0.2:50062", "10.0.0.3:50062", "fixed:7"}));
  EXPECT_EQ(metrics.GetCounter("test_discovery_failures_total", "")->value(), 2);
  EXPECT_EQ(metrics.GetGauge("test_discovery_addresses", "")->value(), 3);
}

TEST(DiscoveryTest, StartReportsNowAndTheThreadReportsChanges) {
  auto resolver = std::make_shared<FakeResolver>();
  resolver->Set("decoder", Addresses({"10.0.0.1"}));
  Discovery d(ParseDiscoverySpec("dns:///decoder:50063").value(),
              {.interval = absl::Milliseconds(20), .resolver = resolver});
  ASSERT_TRUE(d.Refresh().ok());
  absl::Mutex mu;
  std::vector<std::vector<std::string>> seen;
  d.Start([&](const std::vector<std::string>& set) {
    absl::MutexLock lock(&mu);
    seen.push_back(set);
  });
  {
    absl::MutexLock lock(&mu);
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0], Addresses({"10.0.0.1:50063"}));
  }
  resolver->Set("decoder", Addresses({"10.0.0.1", "10.0.0.9"}));
  auto two_reports = [&] { return seen.size() >= 2; };
  absl::MutexLock lock(&mu);
  EXPECT_TRUE(mu.AwaitWithTimeout(absl::Condition(&two_reports), absl::Seconds(10)));
  ASSERT_GE(seen.size(), 2u);
  EXPECT_EQ(seen[1], Addresses({"10.0.0.1:50063", "10.0.0.9:50063"}));
  // Nothing changed since: no further reports however many rounds ran.
  const int calls = resolver->calls();
  mu.AwaitWithTimeout(absl::Condition(+[](std::vector<std::vector<std::string>>*) { return false; },
                                      &seen),
                      absl::Milliseconds(100));
  EXPECT_GT(resolver->calls(), calls);
  EXPECT_EQ(seen.size(), 2u);
}

TEST(DiscoveryTest, ContainsResolvesAgainOnAMissAtMostEveryInterval) {
  auto resolver = std::make_shared<FakeResolver>();
  resolver->Set("decoder", Addresses({"10.0.0.1"}));
  Discovery d(ParseDiscoverySpec("dns:///decoder:50063").value(),
              {.interval = absl::Hours(1), .miss_refresh_interval = absl::Milliseconds(200),
               .resolver = resolver});
  ASSERT_TRUE(d.Refresh().ok());
  EXPECT_TRUE(d.Contains("10.0.0.1:50063"));
  const int after_first = resolver->calls();
  // A decoder scaled up: the router already names it, this set has not seen it yet.
  resolver->Set("decoder", Addresses({"10.0.0.1", "10.0.0.2"}));
  absl::SleepFor(absl::Milliseconds(250));
  EXPECT_TRUE(d.Contains("10.0.0.2:50063"));
  EXPECT_EQ(resolver->calls(), after_first + 1);
  // Misses right after do not ask again (an attacker naming addresses cannot make the
  // process flood its resolver).
  for (int i = 0; i < 20; ++i) EXPECT_FALSE(d.Contains("10.9.9.9:50063"));
  EXPECT_EQ(resolver->calls(), after_first + 1);
}

TEST(DiscoveryTest, FixedSetNeverResolves) {
  std::shared_ptr<Discovery> d = Discovery::Fixed({"b:2", "a:1"});
  EXPECT_FALSE(d->dynamic());
  EXPECT_EQ(d->Current(), Addresses({"a:1", "b:2"}));
  EXPECT_TRUE(d->Contains("a:1"));
  EXPECT_FALSE(d->Contains("c:3"));
  EXPECT_TRUE(d->Refresh().ok());
}

TEST(DiscoveryTest, AFileListsAddressesAndIsReadAgain) {
  const std::string path = absl::StrCat(::testing::TempDir(), "/prefills.txt");
  std::ofstream(path) << "# the prefills\n127.0.0.1:7001\n 127.0.0.1:7002 , 127.0.0.1:7001\n";
  absl::StatusOr<DiscoverySpec> spec = ParseDiscoverySpec(absl::StrCat("file://", path, ",fixed:9"));
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_EQ(spec->ToString(), absl::StrCat("fixed:9,file://", path));
  Discovery d(*spec, {.name = "--prefill"});
  EXPECT_TRUE(d.dynamic());
  ASSERT_TRUE(d.Refresh().ok());
  EXPECT_EQ(d.Current(), Addresses({"127.0.0.1:7001", "127.0.0.1:7002", "fixed:9"}));

  // A prefill added to the file; then the file gone and then empty: the last set stays.
  std::ofstream(path) << "127.0.0.1:7001\n127.0.0.1:7002\n127.0.0.1:7003\n";
  ASSERT_TRUE(d.Refresh().ok());
  EXPECT_EQ(d.Current(),
            Addresses({"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003", "fixed:9"}));
  std::remove(path.c_str());
  EXPECT_EQ(d.Refresh().code(), absl::StatusCode::kUnavailable);
  std::ofstream(path) << "# nothing\n";
  EXPECT_EQ(d.Refresh().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(d.Current().size(), 4u);

  // A bad line names the file and the line; the set stays.
  std::ofstream(path) << "127.0.0.1:7001\nno-port\n";
  const absl::Status bad = d.Refresh();
  EXPECT_EQ(bad.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(bad.message().find(absl::StrCat(path, ":2")), std::string::npos) << bad;
  EXPECT_EQ(d.Current().size(), 4u);

  EXPECT_EQ(ParseDiscoverySpec("file://relative/path").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(SystemResolverTest, ResolvesLocalhostThroughGetaddrinfo) {
  Discovery d(ParseDiscoverySpec("dns:///localhost:50099").value(), {});
  ASSERT_TRUE(d.Refresh().ok());
  const std::vector<std::string> set = d.Current();
  // /etc/hosts names 127.0.0.1 (and, where IPv6 is configured, ::1).
  EXPECT_TRUE(std::find(set.begin(), set.end(), "127.0.0.1:50099") != set.end())
      << absl::StrJoin(set, ",");
  for (const std::string& a : set) {
    EXPECT_TRUE(a == "127.0.0.1:50099" || a == "[::1]:50099") << a;
  }
}

TEST(SystemResolverTest, UnknownNameIsAnErrorNotAnEmptySet) {
  absl::StatusOr<std::vector<std::string>> answer =
      SystemResolver()->Resolve("no-such-host.invalid", 1);
  EXPECT_FALSE(answer.ok());
  EXPECT_NE(answer.status().message().find("no-such-host.invalid"), std::string::npos);
}

}  // namespace
}  // namespace blockserve::discovery
