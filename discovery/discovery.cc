#include "discovery/discovery.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <fstream>
#include <set>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/log.h"

namespace blockserve::discovery {
namespace {

constexpr absl::string_view kDnsScheme = "dns:";
constexpr absl::string_view kFileScheme = "file://";

// Splits "host:port" (host may be "[v6]"); InvalidArgument unless the port is 1..65535
// and the host non-empty.
absl::Status SplitHostPort(absl::string_view entry, std::string* host, int* port) {
  const size_t colon = entry.rfind(':');
  if (colon == absl::string_view::npos || colon == 0 ||
      !absl::SimpleAtoi(entry.substr(colon + 1), port) || *port <= 0 || *port > 65535) {
    return absl::InvalidArgumentError(absl::StrCat(
        "expected host:port with a port in 1..65535, found \"", std::string(entry), "\""));
  }
  *host = std::string(entry.substr(0, colon));
  return absl::OkStatus();
}

absl::StatusOr<DiscoverySpec::DnsName> ParseDnsEntry(absl::string_view entry) {
  absl::string_view rest = entry.substr(kDnsScheme.size());
  if (!absl::ConsumePrefix(&rest, "///")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", std::string(entry),
        "\": write dns:///name:port (three slashes; a chosen DNS server, dns://server/, is "
        "not supported)"));
  }
  DiscoverySpec::DnsName name;
  if (absl::Status s = SplitHostPort(rest, &name.host, &name.port); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("\"", std::string(entry), "\": ", s.message()));
  }
  if (absl::StartsWith(name.host, "[") && absl::EndsWith(name.host, "]")) {
    name.host = name.host.substr(1, name.host.size() - 2);
  }
  if (name.host.empty() || absl::StrContains(name.host, "/")) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", std::string(entry), "\": the name to resolve is empty or has a '/'"));
  }
  return name;
}

absl::StatusOr<DiscoverySpec::DnsName> ParseFileEntry(absl::string_view entry) {
  const absl::string_view path = entry.substr(kFileScheme.size());
  if (!absl::StartsWith(path, "/")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", std::string(entry), "\": write file:///absolute/path (three slashes)"));
  }
  return DiscoverySpec::DnsName{.host = std::string(path), .port = 0, .file = true};
}

class GetaddrinfoResolver final : public Resolver {
 public:
  absl::StatusOr<std::vector<std::string>> Resolve(const std::string& host, int port) override {
    addrinfo hints = {};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* result = nullptr;
    const int rc = getaddrinfo(host.c_str(), nullptr, &hints, &result);
    if (rc != 0) {
      const std::string why = absl::StrCat("resolving \"", host, "\": ", gai_strerror(rc));
      return rc == EAI_NONAME ? absl::NotFoundError(why) : absl::UnavailableError(why);
    }
    std::set<std::string> addresses;
    for (const addrinfo* a = result; a != nullptr; a = a->ai_next) {
      char ip[INET6_ADDRSTRLEN] = {};
      const void* raw = nullptr;
      if (a->ai_family == AF_INET) {
        raw = &reinterpret_cast<const sockaddr_in*>(a->ai_addr)->sin_addr;
      } else if (a->ai_family == AF_INET6) {
        raw = &reinterpret_cast<const sockaddr_in6*>(a->ai_addr)->sin6_addr;
      } else {
        continue;
      }
      if (inet_ntop(a->ai_family, raw, ip, sizeof(ip)) != nullptr) {
        addresses.insert(JoinHostPort(ip, port));
      }
    }
    freeaddrinfo(result);
    return std::vector<std::string>(addresses.begin(), addresses.end());
  }
};

}  // namespace

std::string JoinHostPort(absl::string_view ip, int port) {
  return absl::StrContains(ip, ":") ? absl::StrCat("[", std::string(ip), "]:", port)
                                    : absl::StrCat(std::string(ip), ":", port);
}

absl::StatusOr<std::vector<std::string>> ReadAddressFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::UnavailableError(absl::StrCat("cannot read \"", path, "\""));
  std::set<std::string> addresses;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    const absl::string_view content = absl::string_view(line).substr(0, line.find('#'));
    for (absl::string_view part : absl::StrSplit(content, ',')) {
      const std::string entry(absl::StripAsciiWhitespace(part));
      if (entry.empty()) continue;
      std::string host;
      int port = 0;
      if (absl::Status s = SplitHostPort(entry, &host, &port); !s.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(path, ":", n, ": ", s.message()));
      }
      addresses.insert(entry);
    }
  }
  if (in.bad()) return absl::UnavailableError(absl::StrCat("error reading \"", path, "\""));
  return std::vector<std::string>(addresses.begin(), addresses.end());
}

std::string DiscoverySpec::ToString() const {
  std::vector<std::string> parts = static_addresses;
  for (const DnsName& d : dns) {
    parts.push_back(d.file ? absl::StrCat("file://", d.host)
                           : absl::StrCat("dns:///", JoinHostPort(d.host, d.port)));
  }
  return absl::StrJoin(parts, ",");
}

absl::StatusOr<DiscoverySpec> ParseDiscoverySpec(absl::string_view spec) {
  DiscoverySpec out;
  absl::flat_hash_set<std::string> seen;
  for (absl::string_view part : absl::StrSplit(spec, ',')) {
    const std::string entry(absl::StripAsciiWhitespace(part));
    if (entry.empty() || !seen.insert(entry).second) continue;
    if (absl::StartsWith(entry, kDnsScheme) || absl::StartsWith(entry, kFileScheme)) {
      absl::StatusOr<DiscoverySpec::DnsName> name = absl::StartsWith(entry, kDnsScheme)
                                                         ? ParseDnsEntry(entry)
                                                         : ParseFileEntry(entry);
      if (!name.ok()) return name.status();
      out.dns.push_back(*std::move(name));
      continue;
    }
    std::string host;
    int port = 0;
    if (absl::Status s = SplitHostPort(entry, &host, &port); !s.ok()) return s;
    out.static_addresses.push_back(entry);
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> ParseAddressList(absl::string_view list) {
  absl::StatusOr<DiscoverySpec> spec = ParseDiscoverySpec(list);
  if (!spec.ok()) return spec.status();
  if (!spec->dns.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("expected host:port entries only, found \"", spec->ToString(), "\""));
  }
  return std::move(spec->static_addresses);
}

std::shared_ptr<Resolver> SystemResolver() {
  static const auto* const resolver = new std::shared_ptr<Resolver>(new GetaddrinfoResolver);
  return *resolver;
}

// ─────────────────────────────── Discovery ───────────────────────────────────

Discovery::Discovery(DiscoverySpec spec, DiscoveryOptions options)
    : spec_(std::move(spec)),
      options_(std::move(options)),
      resolver_(options_.resolver != nullptr ? options_.resolver : SystemResolver()),
      addresses_gauge_(options_.metrics == nullptr
                           ? nullptr
                           : options_.metrics->GetGauge(
                                 options_.metric_prefix + "_addresses",
                                 absl::StrCat("addresses discovered for ", options_.name))),
      failures_(options_.metrics == nullptr
                    ? nullptr
                    : options_.metrics->GetCounter(
                          options_.metric_prefix + "_failures_total",
                          absl::StrCat("failed DNS resolutions for ", options_.name,
                                       " (the last answer is kept)"))) {
  absl::MutexLock refresh(&refresh_mu_);
  last_answer_.resize(spec_.dns.size());
  failing_.assign(spec_.dns.size(), false);
  absl::MutexLock lock(&mu_);
  std::set<std::string> fixed(spec_.static_addresses.begin(), spec_.static_addresses.end());
  current_.assign(fixed.begin(), fixed.end());
  if (addresses_gauge_ != nullptr) addresses_gauge_->Set(current_.size());
}

std::shared_ptr<Discovery> Discovery::Fixed(std::vector<std::string> addresses) {
  DiscoverySpec spec;
  spec.static_addresses = std::move(addresses);
  return std::make_shared<Discovery>(std::move(spec), DiscoveryOptions{});
}

Discovery::~Discovery() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

absl::Status Discovery::Refresh() {
  absl::MutexLock refresh(&refresh_mu_);
  return RefreshLocked();
}

absl::Status Discovery::RefreshLocked() {
  absl::Status first_failure;
  for (size_t i = 0; i < spec_.dns.size(); ++i) {
    const DiscoverySpec::DnsName& name = spec_.dns[i];
    absl::StatusOr<std::vector<std::string>> answer =
        name.file ? ReadAddressFile(name.host) : resolver_->Resolve(name.host, name.port);
    if (answer.ok() && answer->empty()) {
      answer = absl::NotFoundError(
          absl::StrCat("\"", name.host, "\" ", name.file ? "lists" : "has", " no address"));
    }
    if (!answer.ok()) {
      if (failures_ != nullptr) failures_->Add();
      if (!failing_[i]) {  // logged once per outage, counted every time
        LogEvent("discovery_failed", {{"flag", options_.name},
                                      {"name", name.host},
                                      {"error", answer.status().ToString()},
                                      {"kept", absl::StrJoin(last_answer_[i], ",")}});
      }
      failing_[i] = true;
      if (first_failure.ok()) first_failure = answer.status();
      continue;
    }
    if (failing_[i]) {
      LogEvent("discovery_recovered", {{"flag", options_.name}, {"name", name.host}});
    }
    failing_[i] = false;
    last_answer_[i] = *std::move(answer);
  }
  std::set<std::string> all(spec_.static_addresses.begin(), spec_.static_addresses.end());
  for (const std::vector<std::string>& answer : last_answer_) all.insert(answer.begin(), answer.end());
  std::vector<std::string> next(all.begin(), all.end());
  bool changed = false;
  {
    absl::MutexLock lock(&mu_);
    last_refresh_ = absl::Now();
    changed = next != current_;
    if (changed) current_ = next;
  }
  if (changed) {
    if (addresses_gauge_ != nullptr) addresses_gauge_->Set(next.size());
    LogEvent("discovered", {{"flag", options_.name},
                            {"spec", spec_.ToString()},
                            {"addresses", absl::StrJoin(next, ",")}});
    if (on_change_) on_change_(next);
  }
  return first_failure;
}

void Discovery::Start(OnChange on_change) {
  {
    absl::MutexLock refresh(&refresh_mu_);
    on_change_ = std::move(on_change);
    if (on_change_) on_change_(Current());
  }
  if (dynamic() && !thread_.joinable()) thread_ = std::thread([this] { Loop(); });
}

void Discovery::Loop() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      const absl::Time next = last_refresh_ + options_.interval;
      mu_.AwaitWithDeadline(absl::Condition(&stopping_), next);
      if (stopping_) return;
      if (absl::Now() < next) continue;  // a Contains() miss refreshed meanwhile
    }
    absl::MutexLock refresh(&refresh_mu_);
    RefreshLocked().IgnoreError();  // logged and counted there
  }
}

std::vector<std::string> Discovery::Current() const {
  absl::MutexLock lock(&mu_);
  return current_;
}

bool Discovery::Contains(const std::string& address) {
  {
    absl::MutexLock lock(&mu_);
    if (std::binary_search(current_.begin(), current_.end(), address)) return true;
    if (!dynamic() || absl::Now() - last_refresh_ < options_.miss_refresh_interval) return false;
  }
  // Resolve again unless a resolution is running (then its answer is as fresh).
  if (refresh_mu_.TryLock()) {
    RefreshLocked().IgnoreError();
    refresh_mu_.Unlock();
  }
  absl::MutexLock lock(&mu_);
  return std::binary_search(current_.begin(), current_.end(), address);
}

}  // namespace blockserve::discovery
