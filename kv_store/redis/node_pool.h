// The pooled connections to one Redis node (the single Redis, or one node of a Redis
// Cluster) and what happens when that node fails.
//
// At most `size` calls talk to the node at once; the others wait for a connection.
// Connections are dialled lazily and kept for reuse. A reused connection that turns out
// broken (a Redis restart breaks every pooled connection unseen) gets its call one retry
// on a freshly dialled one.
//
// The pool is *down* after a dial fails or a call times out (a Redis that accepts
// connections but never answers). While it is down every call fails at once with
// UNAVAILABLE, without touching the node, and the idle connections are dropped. Only a
// probe brings it back up: Probe(), run by the store's background thread once the
// back-off has passed, dials and PINGs the node, so that no caller pays a probe's
// timeout. The back-off starts at `retry_backoff` and doubles with each failed probe
// and each outage in a row, up to `max_retry_backoff`; the first call that gets through
// afterwards resets it (a probe that gets through does not: a node that answers PING
// but times out real calls keeps backing off longer).
#ifndef BLOCKSERVE_KV_STORE_REDIS_NODE_POOL_H_
#define BLOCKSERVE_KV_STORE_REDIS_NODE_POOL_H_

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "kv_store/redis/cluster_protocol.h"
#include "kv_store/redis/connection.h"

namespace blockserve::kv_store::redis {

struct PoolOptions {
  HostPort address;
  Credentials credentials;
  int size = 4;
  absl::Duration connect_timeout = absl::Milliseconds(500);
  absl::Duration op_timeout = absl::Seconds(2);
  absl::Duration retry_backoff = absl::Milliseconds(500);
  absl::Duration max_retry_backoff = absl::Seconds(8);
};

class NodePool {
 public:
  // `on_down` runs (without any of the pool's locks held) each time the pool goes down,
  // so that whoever probes it can schedule the probe.
  NodePool(PoolOptions options, std::function<void()> on_down);
  NodePool(const NodePool&) = delete;
  NodePool& operator=(const NodePool&) = delete;

  const HostPort& address() const { return options_.address; }
  // "redis at host:port", the start of this pool's error messages.
  const std::string& where() const { return where_; }

  // Runs `exchange` on a pooled connection. `exchange` returns false when the
  // connection broke; it must be safe to run again from the start (see the file
  // comment for the one retry). UNAVAILABLE, naming the node, when it cannot be used.
  template <typename Exchange>
  absl::Status WithConnection(Exchange&& exchange);

  // The store's first contact with the node: dials a new connection, sends `command`
  // and returns its reply (an error reply too), pooling the connection. UNAVAILABLE when
  // the node cannot be reached (the pool goes down); UNAUTHENTICATED when it refuses the
  // credentials or requires some (NOAUTH); PERMISSION_DENIED when the user may not run
  // the command (NOPERM). Never the password in a message.
  absl::StatusOr<ReplyPtr> Handshake(const Args& command);

  bool down() const;
  // When Probe() is due: the end of the back-off while down, InfiniteFuture when up.
  absl::Time probe_due() const;
  // Dials and PINGs (bounded by connect_timeout + op_timeout). Up when PONG comes back
  // (the connection is pooled), otherwise down for the next, doubled back-off. True
  // when the pool is up.
  bool Probe();

 private:
  struct Lease {
    std::unique_ptr<Connection> connection;
    bool fresh = false;  // dialled for this call rather than reused from the pool
  };

  // Takes a pool slot (waiting for one) and its idle connection, or dials a new one.
  // UNAVAILABLE at once while the pool is down.
  absl::StatusOr<Lease> Acquire(bool force_dial);
  void Release(Lease lease, bool healthy);
  absl::StatusOr<std::unique_ptr<Connection>> Dial() const;
  absl::Status DownError() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Goes down (a no-op when already down) and tells on_down.
  void MarkDown();
  // Schedules the next probe one back-off from now and doubles the back-off.
  void ScheduleProbeLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool SlotFree() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return down_ || leased_ < options_.size;
  }

  const PoolOptions options_;
  const std::string where_;
  const std::function<void()> on_down_;

  mutable absl::Mutex mu_;
  std::vector<std::unique_ptr<Connection>> idle_ ABSL_GUARDED_BY(mu_);
  int leased_ ABSL_GUARDED_BY(mu_) = 0;
  bool down_ ABSL_GUARDED_BY(mu_) = false;
  absl::Time probe_at_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  absl::Duration next_backoff_ ABSL_GUARDED_BY(mu_);
};

template <typename Exchange>
absl::Status NodePool::WithConnection(Exchange&& exchange) {
  ScopedSigpipeBlock no_sigpipe;
  bool force_dial = false;
  for (;;) {
    absl::StatusOr<Lease> lease = Acquire(force_dial);
    if (!lease.ok()) return lease.status();
    if (exchange(*lease->connection) && lease->connection->drained()) {
      Release(*std::move(lease), /*healthy=*/true);
      return absl::OkStatus();
    }
    const std::string error = lease->connection->error();
    const bool timed_out = lease->connection->timed_out();
    const bool retry = !lease->fresh && !timed_out;
    Release(*std::move(lease), /*healthy=*/false);
    // A node that accepts connections but does not answer would cost every call its
    // op_timeout: after one timeout the pool is down until a probe gets an answer.
    if (timed_out) MarkDown();
    if (!retry) return absl::UnavailableError(absl::StrCat(where_, ": ", error));
    force_dial = true;
  }
}

}  // namespace blockserve::kv_store::redis

#endif  // BLOCKSERVE_KV_STORE_REDIS_NODE_POOL_H_
