// Discovery: where a service finds the addresses of its peers, written once as a spec
// and kept fresh while it serves.
//
// A spec is a comma-separated list of entries, each one of
//   host:port          a fixed address, used as written (tests, the demo, a static list);
//   dns:///name:port   every A/AAAA record of `name` (getaddrinfo), one address each,
//                      all on `port`: e.g. the Kubernetes headless Service of a
//                      StatefulSet, `dns:///query-prefill.default.svc.cluster.local:50062`;
//   file:///path       the host:port entries listed in a file (one per line or comma-
//                      separated; '#' starts a comment), read again like a DNS name: for
//                      deployments whose inventory is a file (a mounted ConfigMap, a file
//                      written by config management) and for loopback tests, where every
//                      process has a port of its own and no DNS name can list them.
// The addresses are the union of the entries, sorted, without duplicates; a resolved
// address is written "ip:port" ("[v6]:port"), so two processes resolving the same name
// name the same peer alike (the router sends decoder addresses that the prefill's
// --allowed_decoders must recognise).
//
// Discovery re-resolves its DNS names every `interval` on a thread of its own and tells
// its owner when the set changed. A name that fails to resolve (or resolves to nothing)
// keeps its last answer: a DNS outage or a scale-to-zero never empties a set that was
// serving (a file that cannot be read, or lists nothing, is treated alike); the
// failure is counted every time and logged once per outage
// (discovery_failed, then discovery_recovered). Health is not its business: the router
// probes what it is given, the prefill only checks membership.
//
// Thread safety: all methods may be called concurrently.
#ifndef BLOCKSERVE_DISCOVERY_DISCOVERY_H_
#define BLOCKSERVE_DISCOVERY_DISCOVERY_H_

#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/metrics.h"

namespace blockserve::discovery {

// A parsed spec (see the file comment).
struct DiscoverySpec {
  // A name resolved again and again: a DNS name, or a file of addresses.
  struct DnsName {
    std::string host;  // without brackets for an IPv6 literal; the path for a file
    int port = 0;      // 0 for a file
    bool file = false;
  };
  std::vector<std::string> static_addresses;  // "host:port" as written
  std::vector<DnsName> dns;  // and files

  bool empty() const { return static_addresses.empty() && dns.empty(); }
  // The spec written back ("a:1,dns:///b:2"), for logs.
  std::string ToString() const;
};

// Parses a spec; InvalidArgument naming the bad entry (a port outside 1..65535, a
// dns:// with an authority, an empty name, a file:// path that is not absolute). Spaces are ignored, duplicates dropped, an
// empty spec is valid and empty.
absl::StatusOr<DiscoverySpec> ParseDiscoverySpec(absl::string_view spec);

// Parses a list of fixed "host:port" entries only (a dns:/// entry is InvalidArgument).
absl::StatusOr<std::vector<std::string>> ParseAddressList(absl::string_view list);

// Turns a DNS name into addresses. Injectable so that tests can change the answer.
class Resolver {
 public:
  virtual ~Resolver() = default;
  // Every address of `host` as "ip:port" / "[v6]:port", sorted, no duplicates.
  // NotFound when the name does not exist, Unavailable when it could not be asked.
  virtual absl::StatusOr<std::vector<std::string>> Resolve(const std::string& host, int port) = 0;
};

// getaddrinfo(3) with AF_UNSPEC and SOCK_STREAM: the system's resolver (/etc/hosts,
// DNS, search domains as /etc/resolv.conf says).
std::shared_ptr<Resolver> SystemResolver();

// The addresses a file:/// entry lists (see the file comment), sorted, no duplicates.
// Unavailable when the file cannot be read, InvalidArgument naming a bad line.
absl::StatusOr<std::vector<std::string>> ReadAddressFile(const std::string& path);

// "ip:port", with brackets for IPv6 ("[::1]:50063").
std::string JoinHostPort(absl::string_view ip, int port);

struct DiscoveryOptions {
  absl::Duration interval = absl::Seconds(5);  // between two resolutions of every name
  // Contains() of an address not in the set resolves again first, at most this often
  // (a decoder that the router already saw and this process not yet).
  absl::Duration miss_refresh_interval = absl::Seconds(1);
  std::shared_ptr<Resolver> resolver;  // null: SystemResolver()
  std::string name;                    // in logs, e.g. "--prefill"
  // `metrics` may be null; else "<metric_prefix>_addresses" (gauge) and
  // "<metric_prefix>_failures_total" (failed resolutions) are kept there.
  MetricsRegistry* metrics = nullptr;
  std::string metric_prefix;
};

class Discovery {
 public:
  using OnChange = std::function<void(const std::vector<std::string>& addresses)>;

  // Resolves nothing yet: call Refresh() (or Start()) first.
  Discovery(DiscoverySpec spec, DiscoveryOptions options);
  // A set of fixed addresses (tests; the static case).
  static std::shared_ptr<Discovery> Fixed(std::vector<std::string> addresses);
  ~Discovery();  // stops the thread; no OnChange runs after it returns
  Discovery(const Discovery&) = delete;
  Discovery& operator=(const Discovery&) = delete;

  // Resolves every DNS name now (in turn) and updates the set; a name that fails keeps
  // its last answer. Returns the first failure (the set is updated from the rest).
  // Calls the OnChange given to Start when the set changed.
  absl::Status Refresh();
  // Calls `on_change` with the current set, then re-resolves every `interval` on a
  // thread (only when the spec has DNS names) and calls it again after each change.
  // `on_change` runs on that thread or in Refresh/Contains; it must not call back here.
  void Start(OnChange on_change);

  std::vector<std::string> Current() const;
  // Whether `address` is in the set; one that is not triggers a re-resolution first
  // (at most every miss_refresh_interval, skipped while another one is running).
  bool Contains(const std::string& address);
  bool dynamic() const { return !spec_.dns.empty(); }
  const DiscoverySpec& spec() const { return spec_; }

 private:
  absl::Status RefreshLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(refresh_mu_);
  void Loop();

  const DiscoverySpec spec_;
  const DiscoveryOptions options_;
  const std::shared_ptr<Resolver> resolver_;
  Gauge* const addresses_gauge_;
  Counter* const failures_;

  // Serialises resolutions and OnChange calls; taken before mu_.
  absl::Mutex refresh_mu_;
  std::vector<std::vector<std::string>> last_answer_ ABSL_GUARDED_BY(refresh_mu_);  // per name
  std::vector<bool> failing_ ABSL_GUARDED_BY(refresh_mu_);  // per name: last try failed
  OnChange on_change_ ABSL_GUARDED_BY(refresh_mu_);

  mutable absl::Mutex mu_;
  std::vector<std::string> current_ ABSL_GUARDED_BY(mu_);
  absl::Time last_refresh_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace blockserve::discovery

#endif  // BLOCKSERVE_DISCOVERY_DISCOVERY_H_
