#include "kv_store/redis/node_pool.h"

#include <hiredis/hiredis.h>

#include <algorithm>

#include "absl/strings/match.h"

namespace blockserve::kv_store::redis {
namespace {

// A probe never comes sooner than this after the last one, even with retry_backoff 0.
constexpr absl::Duration kMinProbeInterval = absl::Milliseconds(10);

}  // namespace

NodePool::NodePool(PoolOptions options, std::function<void()> on_down)
    : options_(std::move(options)),
      where_(absl::StrCat("redis at ", options_.address.ToString())),
      on_down_(std::move(on_down)),
      next_backoff_(options_.retry_backoff) {}

absl::StatusOr<std::unique_ptr<Connection>> NodePool::Dial() const {
  return Connection::Dial(options_.address.host, options_.address.port, options_.credentials,
                          options_.connect_timeout, options_.op_timeout);
}

absl::Status NodePool::DownError() const {
  return absl::UnavailableError(absl::StrCat(
      where_, " is down or not answering (a dial failed or a call timed out; the next try is in ",
      absl::FormatDuration(std::max(absl::ZeroDuration(), probe_at_ - absl::Now())), ")"));
}

absl::StatusOr<NodePool::Lease> NodePool::Acquire(bool force_dial) {
  Lease lease;
  {
    absl::MutexLock lock(&mu_);
    // Down: fail at once, also rather than wait for a slot held by a stuck call.
    mu_.Await(absl::Condition(this, &NodePool::SlotFree));
    if (down_) return DownError();
    ++leased_;
    if (!force_dial && !idle_.empty()) {
      lease.connection = std::move(idle_.back());
      idle_.pop_back();
      return lease;
    }
  }
  // Dial outside the lock so that a slow connect does not stall the other threads.
  absl::StatusOr<std::unique_ptr<Connection>> dialled = Dial();
  if (!dialled.ok()) {
    {
      absl::MutexLock lock(&mu_);
      --leased_;
    }
    MarkDown();
    // Refused credentials after the store opened (a password changed under a running
    // store) make the node unusable like an outage: UNAVAILABLE to the callers, whose
    // status codes say "a dependency is down", not "you are not authenticated".
    return absl::IsUnavailable(dialled.status())
               ? dialled.status()
               : absl::UnavailableError(dialled.status().message());
  }
  lease.connection = *std::move(dialled);
  lease.fresh = true;
  return lease;
}

void NodePool::Release(Lease lease, bool healthy) {
  absl::MutexLock lock(&mu_);
  --leased_;
  if (!healthy || lease.connection == nullptr) return;
  // A call got through: the next outage backs off from retry_backoff again.
  next_backoff_ = options_.retry_backoff;
  if (!down_) idle_.push_back(std::move(lease.connection));
}

void NodePool::ScheduleProbeLocked() {
  probe_at_ = absl::Now() + std::max(next_backoff_, kMinProbeInterval);
  next_backoff_ = std::min(next_backoff_ * 2, options_.max_retry_backoff);
}

void NodePool::MarkDown() {
  {
    absl::MutexLock lock(&mu_);
    if (down_) return;
    down_ = true;
    idle_.clear();
    ScheduleProbeLocked();
  }
  if (on_down_) on_down_();
}

bool NodePool::down() const {
  absl::MutexLock lock(&mu_);
  return down_;
}

absl::Time NodePool::probe_due() const {
  absl::MutexLock lock(&mu_);
  return down_ ? probe_at_ : absl::InfiniteFuture();
}

bool NodePool::Probe() {
  ScopedSigpipeBlock no_sigpipe;
  absl::StatusOr<std::unique_ptr<Connection>> c = Dial();
  bool up = false;
  if (c.ok()) {
    const ReplyPtr pong = (*c)->Command({"PING"});
    up = pong != nullptr && pong->type != REDIS_REPLY_ERROR && (*c)->drained();
  }
  absl::MutexLock lock(&mu_);
  if (!down_) return true;
  if (!up) {
    ScheduleProbeLocked();
    return false;
  }
  down_ = false;
  probe_at_ = absl::InfiniteFuture();
  idle_.push_back(*std::move(c));
  return true;
}

absl::StatusOr<ReplyPtr> NodePool::Handshake(const Args& command) {
  ScopedSigpipeBlock no_sigpipe;
  absl::StatusOr<std::unique_ptr<Connection>> c = Dial();
  if (!c.ok()) {
    if (absl::IsUnavailable(c.status())) MarkDown();
    return c.status();
  }
  ReplyPtr reply = (*c)->Command(command);
  if (reply == nullptr) {
    if ((*c)->timed_out()) MarkDown();
    return absl::UnavailableError(absl::StrCat(where_, ": ", (*c)->error()));
  }
  if (reply->type == REDIS_REPLY_ERROR) {
    const std::string said(reply->str, reply->len);
    // Without a password every command but AUTH gets NOAUTH: the store would run and
    // every read would miss, every write be dropped. Say so at start-up instead.
    if (absl::StartsWith(said, "NOAUTH")) {
      return absl::UnauthenticatedError(
          absl::StrCat(where_, " requires a password and none is configured: ", said));
    }
    if (absl::StartsWith(said, "NOPERM")) {
      return absl::PermissionDeniedError(
          absl::StrCat(where_, " refused ", std::string(command.args().front()), ": ", said));
    }
  }
  if ((*c)->drained()) {
    absl::MutexLock lock(&mu_);
    if (!down_) idle_.push_back(*std::move(c));
  }
  return reply;
}

}  // namespace blockserve::kv_store::redis
