// Tenants: who the router's clients are. A client sends "authorization: Bearer <token>"
// with every call; the router maps the token to a tenant through a tenants file that
// holds only SHA-256 hashes of tokens, never a token:
//
//   {"tenants": [
//     {"name": "team-a",
//      "token_sha256": ["<64 hex digits>", ...],   // several: rotation without downtime
//      "namespace": "team-a",                       // optional; default: the name
//      "read_namespaces": ["public"],               // optional: opt-in shared corpora
//      "may_ingest": true,                          // optional; default true
//      "max_concurrent_requests": 16}               // optional; 0 or absent: no limit
//   ]}
//
// `sha256sum` of the token (without a newline: `printf %s "$TOKEN" | sha256sum`) gives
// the hash. The file is re-read when it changes (checked at most once a second), so
// tokens are added and revoked without a restart; a file that no longer parses keeps
// the previous tenants and logs why.
//
// Status codes, as gRPC intends: no or malformed credentials, or an unknown token →
// UNAUTHENTICATED; a known tenant asking for what it may not do → PERMISSION_DENIED; a
// tenant over its concurrency limit → RESOURCE_EXHAUSTED.
#ifndef BLOCKSERVE_SECURITY_TENANTS_H_
#define BLOCKSERVE_SECURITY_TENANTS_H_

#include <ctime>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "security/tenant_scope.h"

namespace blockserve::security {

struct Tenant {
  std::string name;
  TenantScope scope;
  bool may_ingest = true;
  int max_concurrent_requests = 0;  // 0: no limit
};

// Lowercase hex SHA-256 of `text`.
std::string Sha256Hex(std::string_view text);

// The tenants of a tenants file (the format above); InvalidArgument saying what is
// wrong. Two tenants with one token hash, or one name twice, are refused.
absl::StatusOr<std::vector<std::pair<std::string, Tenant>>> ParseTenants(std::string_view json);

class TenantDirectory {
 public:
  // Reads and checks `path`; an error when it cannot be read or parsed.
  static absl::StatusOr<std::unique_ptr<TenantDirectory>> Open(std::string path);

  // The tenant of an "authorization" metadata value ("Bearer <token>").
  absl::StatusOr<Tenant> Authenticate(std::string_view authorization);

 private:
  explicit TenantDirectory(std::string path) : path_(std::move(path)) {}
  absl::Status Reload() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const std::string path_;
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, Tenant> by_hash_ ABSL_GUARDED_BY(mu_);
  timespec mtime_ ABSL_GUARDED_BY(mu_) = {};
  absl::Time checked_ ABSL_GUARDED_BY(mu_) = absl::InfinitePast();
};

// Counts each tenant's requests in flight against its max_concurrent_requests.
class ConcurrencyLimiter {
 public:
  class Slot {
   public:
    Slot(Slot&& o) noexcept : limiter_(o.limiter_), name_(std::move(o.name_)) {
      o.limiter_ = nullptr;
    }
    Slot(const Slot&) = delete;
    ~Slot();

   private:
    friend class ConcurrencyLimiter;
    Slot(ConcurrencyLimiter* limiter, std::string name)
        : limiter_(limiter), name_(std::move(name)) {}
    ConcurrencyLimiter* limiter_;
    std::string name_;
  };

  // A slot for one request of `tenant`, held until the Slot is destroyed;
  // RESOURCE_EXHAUSTED when the tenant has max_concurrent_requests in flight.
  absl::StatusOr<Slot> Acquire(const Tenant& tenant);

 private:
  absl::Mutex mu_;
  absl::flat_hash_map<std::string, int> in_flight_ ABSL_GUARDED_BY(mu_);
};

}  // namespace blockserve::security

#endif  // BLOCKSERVE_SECURITY_TENANTS_H_
