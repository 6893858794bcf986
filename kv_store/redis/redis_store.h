// A KvStore in Redis, through hiredis: the store that nodes share.
//
// Keys: `<key_prefix>blk:<BlockKey::Hex()>` holds the codec's bytes of a block (the
// content key already includes the model fingerprint); `<key_prefix>pid:<passage id>`
// holds a passage's catalog entry (kv_store/catalog_value.h: its content key, bound to
// the passage id, so a copied or forged entry reads as absent); `<key_prefix>src:<BlockKey::Hex()>` holds the
// source of a named passage's block (kv_store/source.h: 4 bytes a token). Blocks get the
// optional TTL (SET … PX); catalog entries and sources never expire, so a block evicted
// or expired can always be encoded again from its source. Their memory is bounded by
// the named passages: 4 × tokens + 24 bytes each (plus Redis's per-key overhead). Run
// Redis with a volatile-* maxmemory-policy (evicts only keys with a TTL) and a block TTL
// so that Redis's own eviction never takes sources or catalog entries.
//
// Redis is a cache here, so an unreachable Redis is not an error for block reads: Get
// and GetMany return misses (Unavailable, counted as misses) and Contains says absent. A catalog lookup is
// different (a passage named by id cannot be recomputed without it): LookupPassage says
// UNAVAILABLE. Put/PutPassage drop the write, count it in `dropped_puts`, log
// (rate-limited to a line per 10 s) and return UNAVAILABLE. No call blocks longer than
// about `connect_timeout` + `op_timeout` per socket read or write, and after a call timed
// out (a Redis that accepts connections and never answers) the calls of the next
// back-off fail at once instead of each waiting out its own timeout. The back-off starts
// at `retry_backoff` and doubles with each failure in a row (a failed dial, a timed-out
// call), up to `max_retry_backoff`; the first call that gets through resets it. Open()
// succeeds while Redis is down; the pool dials again at most once per back-off, and
// connections broken by a Redis restart are discarded and re-dialled on their next use,
// so the store recovers without being reopened.
//
// Safe to call from several threads; at most `pool_size` calls talk to Redis at once,
// the others wait for a connection.
#ifndef BLOCKSERVE_KV_STORE_REDIS_REDIS_STORE_H_
#define BLOCKSERVE_KV_STORE_REDIS_REDIS_STORE_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "kv_store/kv_store.h"
#include "kv_store/codec.h"

namespace blockserve::kv_store {
namespace redis {
class Args;
class Connection;
struct BulkReply;
}  // namespace redis

struct RedisStoreOptions {
  std::string host = "127.0.0.1";
  int port = 6379;
  int pool_size = 4;  // connections, dialled lazily
  absl::Duration connect_timeout = absl::Milliseconds(500);
  absl::Duration op_timeout = absl::Seconds(2);  // per socket read/write, not per call
  std::optional<absl::Duration> ttl;             // blocks only; at least 1 ms
  std::string key_prefix = "bs:v1:";
  CodecOptions codec;  // what Put encodes with and what Get expects
  absl::Duration retry_backoff = absl::Milliseconds(500);  // after a first failure
  absl::Duration max_retry_backoff = absl::Seconds(8);     // the most it grows to
  // AUTH on every new connection, before any other command, when `password` is set:
  // `AUTH <password>` (requirepass, the default user) or, with a `user`, `AUTH <user>
  // <password>` (an ACL user). The password is never logged nor put into an error.
  std::string user;
  std::string password;
};

class RedisStore : public KvStore {
 public:
  // InvalidArgument for unusable options (a user without a password). Tries one
  // connection; if Redis is unreachable it logs that and still returns a store (see the
  // file comment). A Redis that answers but refuses the connection's credentials fails
  // the opening instead, naming its address: Unauthenticated when the password is wrong,
  // missing (NOAUTH) or given to a Redis that has none; PermissionDenied when the user
  // may not run commands (NOPERM). Later (a password changed under a running store) the
  // same refusal is UNAVAILABLE, like any Redis that cannot be used.
  static absl::StatusOr<std::unique_ptr<RedisStore>> Open(const RedisStoreOptions& options);
  ~RedisStore() override;

  absl::StatusOr<engine::KvCache> Get(const BlockKey& key) override;
  // Pipelined GETs on one connection, each reply decoded as soon as it arrives; at most
  // ~16 MB of replies are requested ahead, so Redis streams block i+1 while block i is
  // decoded instead of buffering a whole batch of multi-MB values.
  std::vector<absl::StatusOr<engine::KvCache>> GetMany(absl::Span<const BlockKey> keys) override;
  // InvalidArgument when kv's shape differs from options.codec.shape.
  absl::StatusOr<uint64_t> Put(const BlockKey& key, const engine::KvCache& kv) override;
  uint64_t ValueBytes(const engine::KvCache& kv) const override;
  bool Contains(const BlockKey& key) override;
  absl::Status Remove(const BlockKey& key) override;
  absl::Status Ping() override;
  absl::Status PutPassage(std::string_view passage_id, const BlockKey& key) override;
  absl::StatusOr<BlockKey> LookupPassage(std::string_view passage_id) override;
  // NotFound when absent, corrupt, or Redis is unreachable.
  absl::Status PutSource(const BlockKey& key, absl::Span<const int32_t> tokens) override;
  absl::StatusOr<std::vector<int32_t>> GetSource(const BlockKey& key) override;
  // `puts`/`dropped_puts` count block and catalog writes; the rest count blocks only.
  StoreMetrics metrics() const override;

  std::string BlockRedisKey(const BlockKey& key) const;            // "<prefix>blk:<hex>"
  std::string PassageRedisKey(std::string_view passage_id) const;  // "<prefix>pid:<id>"
  std::string SourceRedisKey(const BlockKey& key) const;            // "<prefix>src:<hex>"

 private:
  struct Lease;

  explicit RedisStore(RedisStoreOptions options);

  // Open's one connection: dials (and authenticates), PINGs, and pools the connection.
  // Unavailable when Redis cannot be reached; the refusals Open fails on otherwise.
  absl::Status FirstContact();

  // Runs `exchange` on a pooled connection. `exchange` returns false when the connection
  // broke (it must be safe to run again from the start); a connection that was reused
  // from the pool gets one retry on a freshly dialled one, since a Redis restart breaks
  // every pooled connection without anyone noticing until they are used. Unavailable
  // when Redis cannot be reached.
  template <typename Exchange>
  absl::Status WithConnection(Exchange&& exchange);
  // Takes a pool slot (waiting for one) and its idle connection, or dials a new one
  // unless a dial failed less than retry_backoff ago.
  absl::StatusOr<Lease> Acquire(bool force_dial);
  void Release(Lease lease, bool healthy);
  // After a call timed out: no calls reach Redis for the back-off (they fail at once),
  // and the idle connections are dropped.
  void BackOff();
  // Starts a back-off after a failure and doubles the next one (up to the maximum).
  void BlockDialsLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(pool_mu_);
  // A call got through: the next failure backs off from retry_backoff again.
  void ResetBackOff();
  bool SlotFree() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(pool_mu_) {
    return leased_ < options_.pool_size;
  }

  absl::StatusOr<engine::KvCache> DecodeReply(const BlockKey& key, const redis::BulkReply& reply,
                                              bool& corrupt);
  // Sends a SET. An unreachable Redis or an error reply (e.g. OOM under maxmemory)
  // drops the write: counted, logged, UNAVAILABLE.
  absl::Status Set(const redis::Args& args, std::string_view what);
  absl::Status DropWrite(std::string_view what, const absl::Status& cause);
  // One stderr line per topic per 10 s; the next line says how many were suppressed.
  enum class LogTopic { kOutage, kBadData };
  void LogRateLimited(LogTopic topic, const std::string& message);

  const RedisStoreOptions options_;

  mutable absl::Mutex pool_mu_;
  std::vector<std::unique_ptr<redis::Connection>> idle_ ABSL_GUARDED_BY(pool_mu_);
  int leased_ ABSL_GUARDED_BY(pool_mu_) = 0;
  absl::Time dial_blocked_until_ ABSL_GUARDED_BY(pool_mu_) = absl::InfinitePast();
  // The back-off the next failure starts (see the file comment).
  absl::Duration next_backoff_ ABSL_GUARDED_BY(pool_mu_);

  mutable absl::Mutex metrics_mu_;
  StoreMetrics metrics_ ABSL_GUARDED_BY(metrics_mu_);
  struct LogLimit {
    absl::Time last = absl::InfinitePast();
    int64_t suppressed = 0;
  };
  LogLimit log_limits_[2] ABSL_GUARDED_BY(metrics_mu_);
};

}  // namespace blockserve::kv_store

#endif  // BLOCKSERVE_KV_STORE_REDIS_REDIS_STORE_H_
