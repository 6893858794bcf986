#include "security/tenants.h"

#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/time/clock.h"

namespace blockserve::security {
namespace {

std::string Hash(const std::string& token) { return Sha256Hex(token); }

std::string TwoTenants() {
  return absl::StrReplaceAll(R"({"tenants": [
      {"name": "team-a", "token_sha256": ["A"], "read_namespaces": ["public"],
       "max_concurrent_requests": 1},
      {"name": "team-b", "token_sha256": ["B"], "may_ingest": false}]})",
                             {{"\"A\"", absl::StrCat("\"", Hash("token-a"), "\"")},
                              {"\"B\"", absl::StrCat("\"", Hash("token-b"), "\"")}});
}

std::string WriteFile(const std::string& name, const std::string& text) {
  const char* base = std::getenv("TEST_TMPDIR");
  const std::string path = absl::StrCat(base != nullptr ? base : "/tmp", "/", name, getpid());
  std::ofstream(path) << text;
  return path;
}

TEST(Sha256Test, KnownDigest) {
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(TenantsTest, TokensMapToTheirTenantsAndNothingElseGetsIn) {
  absl::StatusOr<std::unique_ptr<TenantDirectory>> dir =
      TenantDirectory::Open(WriteFile("tenants", TwoTenants()));
  ASSERT_TRUE(dir.ok()) << dir.status();
  absl::StatusOr<Tenant> a = (*dir)->Authenticate("Bearer token-a");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->name, "team-a");
  EXPECT_EQ(a->scope.ns, "team-a");
  EXPECT_EQ(a->scope.reads, std::vector<std::string>{"public"});
  EXPECT_TRUE(a->may_ingest);
  absl::StatusOr<Tenant> b = (*dir)->Authenticate("bearer token-b");
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_FALSE(b->may_ingest);

  EXPECT_TRUE(absl::IsUnauthenticated((*dir)->Authenticate("").status()));
  EXPECT_TRUE(absl::IsUnauthenticated((*dir)->Authenticate("Bearer token-c").status()));
  EXPECT_TRUE(absl::IsUnauthenticated((*dir)->Authenticate("Basic dG9rZW4tYQ==").status()));
  EXPECT_TRUE(absl::IsUnauthenticated((*dir)->Authenticate("Bearer ").status()));
  // The hash itself is not a token.
  EXPECT_TRUE(absl::IsUnauthenticated(
      (*dir)->Authenticate(absl::StrCat("Bearer ", Hash("token-a"))).status()));
}

TEST(TenantsTest, ARevokedTokenStopsWorkingWithoutARestart) {
  const std::string path = WriteFile("tenants_reload", TwoTenants());
  absl::StatusOr<std::unique_ptr<TenantDirectory>> dir = TenantDirectory::Open(path);
  ASSERT_TRUE(dir.ok()) << dir.status();
  ASSERT_TRUE((*dir)->Authenticate("Bearer token-b").ok());
  absl::SleepFor(absl::Milliseconds(20));  // a new mtime
  std::ofstream(path) << absl::StrReplaceAll(
      R"({"tenants": [{"name": "team-a", "token_sha256": ["A"]}]})",
      {{"\"A\"", absl::StrCat("\"", Hash("token-a"), "\"")}});
  bool revoked = false;
  for (const absl::Time deadline = absl::Now() + absl::Seconds(5);
       !revoked && absl::Now() < deadline; absl::SleepFor(absl::Milliseconds(100))) {
    revoked = absl::IsUnauthenticated((*dir)->Authenticate("Bearer token-b").status());
  }
  EXPECT_TRUE(revoked);
  EXPECT_TRUE((*dir)->Authenticate("Bearer token-a").ok());
}

TEST(TenantsTest, BadFilesAreRefusedWithTheReason) {
  const std::string h = Hash("x");
  const auto error = [](const std::string& json) {
    return std::string(ParseTenants(json).status().message());
  };
  EXPECT_NE(error("[").find("not JSON"), std::string::npos);
  EXPECT_NE(error(R"({"tenants": [{"token_sha256": ["00"]}]})").find("name"), std::string::npos);
  EXPECT_NE(error(R"({"tenants": [{"name": "a", "token_sha256": ["00"]}]})").find("64"),
            std::string::npos);
  EXPECT_NE(error(absl::StrCat(R"({"tenants": [{"name": "A B", "token_sha256": [")", h,
                               R"("]}]})"))
                .find("namespace"),
            std::string::npos);
  EXPECT_NE(error(absl::StrCat(R"({"tenants": [{"name": "a", "token_sha256": [")", h,
                               R"("]}, {"name": "b", "token_sha256": [")", h, R"("]}]})"))
                .find("another tenant"),
            std::string::npos);
}

TEST(ConcurrencyLimiterTest, ATenantOverItsLimitIsRefusedUntilASlotFrees) {
  ConcurrencyLimiter limiter;
  Tenant a{"team-a", {"team-a", {}}, true, 1};
  Tenant b{"team-b", {"team-b", {}}, true, 0};
  {
    absl::StatusOr<ConcurrencyLimiter::Slot> first = limiter.Acquire(a);
    ASSERT_TRUE(first.ok());
    EXPECT_TRUE(absl::IsResourceExhausted(limiter.Acquire(a).status()));
    EXPECT_TRUE(limiter.Acquire(b).ok());  // another tenant is not affected
  }
  EXPECT_TRUE(limiter.Acquire(a).ok());
}

TEST(NamespaceTest, Names) {
  EXPECT_TRUE(ValidateNamespace("team-a").ok());
  EXPECT_TRUE(ValidateNamespace("public").ok());
  EXPECT_FALSE(ValidateNamespace("").ok());
  EXPECT_FALSE(ValidateNamespace("-a").ok());
  EXPECT_FALSE(ValidateNamespace("a/b").ok());
  EXPECT_FALSE(ValidateNamespace("a\x1f").ok());
  EXPECT_FALSE(ValidateNamespace(std::string(65, 'a')).ok());
}

}  // namespace
}  // namespace blockserve::security
