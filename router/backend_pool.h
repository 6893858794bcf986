// BackendPool: the router's view of its backends — the prefill, decoder and encoder
// addresses (given at construction, then replaced at run time by SetBackends as
// discovery/ finds pods come and go), each with a gRPC channel, a health state kept
// fresh by grpc.health.v1 probes, and load (requests in flight through this router).
//
// Placement rules, all here so the router's request logic only asks "give me one":
//  - every role: the least-loaded healthy backend (ties rotate), never an excluded one;
//  - prefill, cache-aware: a prompt's passages hash to an affinity key, and the healthy
//    prefills are ranked for it by rendezvous hashing (router/rendezvous.h), so every
//    router with the same healthy prefills prefers the same one for the same passages
//    (its local cache tier, if any, is warm for them). The first in that order whose
//    load is at most `affinity_slack` above the least-loaded healthy prefill's is taken.
// A backend is unhealthy after a failed probe or after the router saw it break
// (MarkUnhealthy); it is used again once a probe answers SERVING. A backend added at
// run time is unhealthy until its first probe (asked for at once) answers SERVING. A
// removed one is never chosen again; leases on it stay valid, and its channel is
// closed when the last of them is released.
//
// Thread safety: all methods may be called concurrently.
#ifndef BLOCKSERVE_ROUTER_BACKEND_POOL_H_
#define BLOCKSERVE_ROUTER_BACKEND_POOL_H_

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/metrics.h"
#include "proto/blockserve.pb.h"
#include "security/tls.h"

namespace blockserve::router {

using Role = v1::BackendRole;

struct BackendPoolOptions {
  // The backends at start, "host:port" each; SetBackends replaces them.
  std::vector<std::string> prefill;
  std::vector<std::string> decoder;
  std::vector<std::string> encoder;
  absl::Duration health_interval = absl::Seconds(1);
  absl::Duration health_timeout = absl::Milliseconds(800);
  // Walking the prefills in rendezvous order, skip one that has more than this many
  // requests in flight above the least-loaded healthy prefill.
  int affinity_slack = 2;
  // How the router dials its backends: mTLS with its router certificate, each backend's
  // certificate checked for its role (security/tls.h). Default: plaintext (tests).
  security::TransportSecurity transport = {.insecure = true};
};

// One grpc.health.v1 Check of the whole server (service ""). Ok(true) for SERVING,
// Ok(false) for any other answer, the RPC's error when it fails.
absl::StatusOr<bool> ProbeHealth(const std::shared_ptr<grpc::Channel>& channel,
                                 absl::Duration timeout);

// Channel to a backend with the router's settings (fast reconnects, large messages);
// null credentials: plaintext.
std::shared_ptr<grpc::Channel> MakeBackendChannel(
    const std::string& address, std::shared_ptr<grpc::ChannelCredentials> credentials = nullptr);

class BackendPool {
 private:
  struct Backend;

 public:
  // A backend chosen for one request: counts as in flight until destroyed. Call
  // Finish() with the request's outcome (a non-OK status counts as failed).
  class Lease {
   public:
    Lease(Lease&& other) noexcept;
    Lease& operator=(Lease&& other) noexcept;
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    ~Lease();

    const std::string& address() const;
    const std::shared_ptr<grpc::Channel>& channel() const;
    void Finish(const absl::Status& outcome);

   private:
    friend class BackendPool;
    Lease(BackendPool* pool, std::shared_ptr<Backend> backend)
        : pool_(pool), backend_(std::move(backend)) {}
    void Release();
    BackendPool* pool_ = nullptr;
    std::shared_ptr<Backend> backend_;  // outlives its removal from the pool
    bool finished_ = false;
  };

  // `metrics` may be null; else healthy-backend gauges are kept there.
  explicit BackendPool(BackendPoolOptions options, MetricsRegistry* metrics = nullptr);
  ~BackendPool();  // stops the health thread
  BackendPool(const BackendPool&) = delete;
  BackendPool& operator=(const BackendPool&) = delete;

  // Probes every backend once (in parallel, waits for the answers), then keeps probing
  // every `health_interval` on a background thread.
  void Start();
  // One probe round now, waiting for the answers (tests; also used by Start).
  void CheckAllNow();
  // Asks the health thread to probe `address` soon (every role it serves).
  void CheckSoon(const std::string& address);
  // Stops using `address` (every role it serves) until a probe started after this
  // call answers SERVING.
  void MarkUnhealthy(const std::string& address, const std::string& reason);

  // Least-loaded healthy backend of `role` whose address is not in `exclude`.
  // Unavailable when there is none (none configured, all unhealthy or excluded).
  absl::StatusOr<Lease> Acquire(Role role, const absl::flat_hash_set<std::string>& exclude = {});
  // Acquire(kPrefill) with cache affinity for `affinity_key` (0 = none: least loaded).
  absl::StatusOr<Lease> AcquirePrefill(uint64_t affinity_key,
                                       const absl::flat_hash_set<std::string>& exclude = {});
  // The healthy prefills in rendezvous order for `affinity_key`, best first (what
  // AcquirePrefill walks when nothing is loaded).
  std::vector<std::string> PrefillOrder(uint64_t affinity_key) const;

  // Makes `addresses` the backends of `role`: new ones are added (unhealthy until a
  // probe, asked for at once, answers SERVING), missing ones removed (leases on them
  // stay valid). Kept ones keep their state. Logged as backend_added / backend_removed.
  void SetBackends(Role role, const std::vector<std::string>& addresses);

  int HealthyCount(Role role) const;
  int BackendCount(Role role) const;  // healthy or not, not removed
  std::vector<v1::BackendStatus> Snapshot() const;

 private:
  struct Backend : std::enable_shared_from_this<Backend> {
    std::string address;
    Role role;
    uint64_t address_hash = 0;  // StableHash64(address), for rendezvous
    std::shared_ptr<grpc::Channel> channel;
    bool removed = false;  // by SetBackends; kept alive by its leases only
    bool healthy = false;
    bool probed = false;
    absl::Time last_healthy = absl::InfinitePast();
    absl::Time marked_unhealthy = absl::InfinitePast();  // last MarkUnhealthy
    uint32_t in_flight = 0;
    uint64_t requests_total = 0;
    uint64_t requests_failed = 0;
    std::string last_error;
  };

  using BackendPtr = std::shared_ptr<Backend>;
  std::vector<Backend*> CandidatesLocked(Role role,
                                         const absl::flat_hash_set<std::string>& exclude) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Backend* PickLocked(Role role, const absl::flat_hash_set<std::string>& exclude)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  BackendPtr NewBackend(Role role, const std::string& address) const;
  Lease LeaseLocked(Backend* b) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Probe(const std::vector<BackendPtr>& backends);
  void UpdateGaugesLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HealthLoop();

  const BackendPoolOptions options_;
  MetricsRegistry* const metrics_;
  // How the router dials each role (index: Role).
  std::shared_ptr<grpc::ChannelCredentials> credentials_[4];

  mutable absl::Mutex mu_;
  std::vector<BackendPtr> backends_ ABSL_GUARDED_BY(mu_);  // not removed
  uint64_t rotation_ ABSL_GUARDED_BY(mu_) = 0;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::flat_hash_set<BackendPtr> check_soon_ ABSL_GUARDED_BY(mu_);
  std::thread health_thread_;
};

}  // namespace blockserve::router

#endif  // BLOCKSERVE_ROUTER_BACKEND_POOL_H_
