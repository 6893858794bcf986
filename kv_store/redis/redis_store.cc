#include "kv_store/redis/redis_store.h"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <cstdio>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "kv_store/catalog_value.h"
#include "kv_store/redis/connection.h"
#include "kv_store/source.h"

namespace blockserve::kv_store {
namespace {

using redis::Args;
using redis::BulkReply;
using redis::Connection;
using redis::ReplyPtr;

std::string_view ReplyText(const redisReply& r) { return std::string_view(r.str, r.len); }

}  // namespace

struct RedisStore::Lease {
  std::unique_ptr<Connection> connection;
  bool fresh = false;  // dialled for this call rather than reused from the pool
};

RedisStore::RedisStore(RedisStoreOptions options)
    : options_(std::move(options)), next_backoff_(options_.retry_backoff) {}

RedisStore::~RedisStore() = default;

std::string RedisStore::BlockRedisKey(const BlockKey& key) const {
  return absl::StrCat(options_.key_prefix, "blk:", key.Hex());
}

std::string RedisStore::SourceRedisKey(const BlockKey& key) const {
  return absl::StrCat(options_.key_prefix, "src:", key.Hex());
}

std::string RedisStore::PassageRedisKey(std::string_view passage_id) const {
  return absl::StrCat(options_.key_prefix, "pid:", std::string(passage_id));
}

absl::StatusOr<RedisStore::Lease> RedisStore::Acquire(bool force_dial) {
  Lease lease;
  {
    absl::MutexLock lock(&pool_mu_);
    pool_mu_.Await(absl::Condition(this, &RedisStore::SlotFree));
    ++leased_;
    if (!force_dial && !idle_.empty()) {
      lease.connection = std::move(idle_.back());
      idle_.pop_back();
      return lease;
    }
    if (absl::Now() < dial_blocked_until_) {
      --leased_;
      return absl::UnavailableError(absl::StrCat(
          "redis at ", options_.host, ":", options_.port,
          " is down or not answering (a dial failed or a call timed out; the next try is "
          "in ",
          absl::FormatDuration(dial_blocked_until_ - absl::Now()), ")"));
    }
  }
  // Dial outside the lock so that a slow connect does not stall the other threads.
  absl::StatusOr<std::unique_ptr<Connection>> dialled =
      Connection::Dial(options_.host, options_.port, {options_.user, options_.password},
                       options_.connect_timeout, options_.op_timeout);
  absl::MutexLock lock(&pool_mu_);
  if (!dialled.ok()) {
    BlockDialsLocked();
    --leased_;
    // Refused credentials after Open (a password changed under a running store) make
    // Redis unusable like an outage: UNAVAILABLE to the callers, whose status codes say
    // "a dependency is down", not "you are not authenticated".
    return absl::IsUnavailable(dialled.status())
               ? dialled.status()
               : absl::UnavailableError(dialled.status().message());
  }
  lease.connection = *std::move(dialled);
  lease.fresh = true;
  return lease;
}

void RedisStore::BackOff() {
  absl::MutexLock lock(&pool_mu_);
  BlockDialsLocked();
  idle_.clear();
}

void RedisStore::BlockDialsLocked() {
  dial_blocked_until_ = absl::Now() + next_backoff_;
  next_backoff_ = std::min(next_backoff_ * 2, options_.max_retry_backoff);
}

void RedisStore::ResetBackOff() {
  absl::MutexLock lock(&pool_mu_);
  next_backoff_ = options_.retry_backoff;
}

void RedisStore::Release(Lease lease, bool healthy) {
  absl::MutexLock lock(&pool_mu_);
  --leased_;
  if (healthy && lease.connection != nullptr) idle_.push_back(std::move(lease.connection));
}

template <typename Exchange>
absl::Status RedisStore::WithConnection(Exchange&& exchange) {
  redis::ScopedSigpipeBlock no_sigpipe;
  bool force_dial = false;
  for (;;) {
    absl::StatusOr<Lease> lease = Acquire(force_dial);
    if (!lease.ok()) return lease.status();
    if (exchange(*lease->connection) && lease->connection->drained()) {
      const bool fresh = lease->fresh;
      Release(*std::move(lease), /*healthy=*/true);
      if (fresh) ResetBackOff();  // only a new connection can follow a failure
      return absl::OkStatus();
    }
    const std::string error = lease->connection->error();
    const bool timed_out = lease->connection->timed_out();
    const bool retry = !lease->fresh && !timed_out;
    Release(*std::move(lease), /*healthy=*/false);
    // A Redis that accepts connections but does not answer would cost every call its
    // op_timeout: after one timeout, calls fail at once for retry_backoff instead (the
    // idle connections lead to the same Redis), then one dial tries again.
    if (timed_out) BackOff();
    if (!retry) {
      return absl::UnavailableError(
          absl::StrCat("redis at ", options_.host, ":", options_.port, ": ", error));
    }
    force_dial = true;
  }
}

absl::StatusOr<std::unique_ptr<RedisStore>> RedisStore::Open(const RedisStoreOptions& options) {
  if (options.host.empty()) return absl::InvalidArgumentError("redis store: host is empty");
  if (options.port < 1 || options.port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("redis store: port must be in [1, 65535], found ", options.port));
  }
  if (options.pool_size < 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("redis store: pool_size must be >= 1, found ", options.pool_size));
  }
  if (options.connect_timeout <= absl::ZeroDuration() ||
      options.op_timeout <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError(
        "redis store: connect_timeout and op_timeout must be positive");
  }
  if (options.ttl.has_value() && *options.ttl < absl::Milliseconds(1)) {
    return absl::InvalidArgumentError(absl::StrCat("redis store: ttl must be at least 1ms, found ",
                                                   absl::FormatDuration(*options.ttl)));
  }
  if (options.retry_backoff < absl::ZeroDuration() ||
      options.max_retry_backoff < options.retry_backoff) {
    return absl::InvalidArgumentError(
        "redis store: retry_backoff must not be negative nor over max_retry_backoff");
  }
  if (!options.user.empty() && options.password.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("redis store: user \"", options.user,
                                                   "\" is given without a password"));
  }
  std::unique_ptr<RedisStore> store(new RedisStore(options));
  const absl::Status reachable = store->FirstContact();
  if (absl::IsUnauthenticated(reachable) || absl::IsPermissionDenied(reachable)) {
    return reachable;
  }
  if (!reachable.ok()) {
    store->LogRateLimited(
        LogTopic::kOutage,
        absl::StrCat(
            "redis at ", options.host, ":", options.port,
            " is unreachable; starting anyway (reads miss, writes drop until it is back): ",
            reachable.message()));
  }
  return store;
}

absl::Status RedisStore::FirstContact() {
  redis::ScopedSigpipeBlock no_sigpipe;
  const std::string where = absl::StrCat("redis at ", options_.host, ":", options_.port);
  absl::StatusOr<std::unique_ptr<Connection>> c =
      Connection::Dial(options_.host, options_.port, {options_.user, options_.password},
                       options_.connect_timeout, options_.op_timeout);
  if (!c.ok()) {
    if (absl::IsUnavailable(c.status())) {
      absl::MutexLock lock(&pool_mu_);
      BlockDialsLocked();
    }
    return c.status();
  }
  const ReplyPtr pong = (*c)->Command({"PING"});
  if (pong == nullptr) return absl::UnavailableError(absl::StrCat(where, ": ", (*c)->error()));
  if (pong->type == REDIS_REPLY_ERROR) {
    const std::string said = std::string(ReplyText(*pong));
    // Without a password every command but AUTH gets NOAUTH: the store would run and
    // every read would miss, every write be dropped. Say so at start-up instead.
    if (absl::StartsWith(said, "NOAUTH")) {
      return absl::UnauthenticatedError(
          absl::StrCat(where, " requires a password and none is configured: ", said));
    }
    if (absl::StartsWith(said, "NOPERM")) {
      return absl::PermissionDeniedError(absl::StrCat(where, " refused PING: ", said));
    }
    return absl::UnavailableError(absl::StrCat(where, " answered PING with: ", said));
  }
  if ((*c)->drained()) {
    absl::MutexLock lock(&pool_mu_);
    idle_.push_back(*std::move(c));
  }
  return absl::OkStatus();
}

void RedisStore::LogRateLimited(LogTopic topic, const std::string& message) {
  static constexpr absl::Duration kInterval = absl::Seconds(10);
  int64_t suppressed = 0;
  {
    absl::MutexLock lock(&metrics_mu_);
    LogLimit& limit = log_limits_[static_cast<int>(topic)];
    const absl::Time now = absl::Now();
    if (now - limit.last < kInterval) {
      ++limit.suppressed;
      return;
    }
    limit.last = now;
    suppressed = std::exchange(limit.suppressed, 0);
  }
  if (suppressed > 0) {
    std::fprintf(stderr, "W kv_store/redis: %s (%lld similar messages suppressed)\n",
                 message.c_str(), static_cast<long long>(suppressed));
  } else {
    std::fprintf(stderr, "W kv_store/redis: %s\n", message.c_str());
  }
}

absl::Status RedisStore::DropWrite(std::string_view what, const absl::Status& cause) {
  {
    absl::MutexLock lock(&metrics_mu_);
    ++metrics_.dropped_puts;
  }
  const std::string message =
      absl::StrCat("redis store: dropped ", std::string(what), ": ", cause.message());
  LogRateLimited(LogTopic::kOutage, message);
  return absl::UnavailableError(message);
}

// Turns one GET reply into a block or a miss. `corrupt` is set when a value was present
// but failed validation.
absl::StatusOr<engine::KvCache> RedisStore::DecodeReply(const BlockKey& key, const BulkReply& reply,
                                                        bool& corrupt) {
  corrupt = false;
  switch (reply.kind) {
    case BulkReply::Kind::kNil:
      return absl::NotFoundError(absl::StrCat("block ", key.Hex(), " is not in redis"));
    case BulkReply::Kind::kError:
      LogRateLimited(LogTopic::kBadData, absl::StrCat("GET of block ", key.Hex(),
                                                      " failed: ", std::string(reply.bytes())));
      return absl::NotFoundError(
          absl::StrCat("block ", key.Hex(), ": redis answered ", std::string(reply.bytes())));
    case BulkReply::Kind::kValue:
      break;
  }
  absl::StatusOr<engine::KvCache> kv = DecodeBlockValue(reply.bytes(), options_.codec);
  if (!kv.ok()) {
    corrupt = true;
    LogRateLimited(LogTopic::kBadData,
                   absl::StrCat("block ", key.Hex(), " in redis is unusable, treated as a miss: ",
                                kv.status().message()));
    return absl::NotFoundError(
        absl::StrCat("block ", key.Hex(), " is corrupt: ", kv.status().message()));
  }
  return kv;
}

absl::StatusOr<engine::KvCache> RedisStore::Get(const BlockKey& key) {
  std::vector<absl::StatusOr<engine::KvCache>> results = GetMany(absl::MakeConstSpan(&key, 1));
  return std::move(results.front());
}

std::vector<absl::StatusOr<engine::KvCache>> RedisStore::GetMany(absl::Span<const BlockKey> keys) {
  if (keys.empty()) return {};
  const absl::Time start = absl::Now();
  std::vector<std::string> redis_keys;
  redis_keys.reserve(keys.size());
  for (const BlockKey& key : keys) redis_keys.push_back(BlockRedisKey(key));

  std::vector<absl::StatusOr<engine::KvCache>> results;
  int64_t corrupt = 0, bytes = 0;
  // Pipelined with a window sized by bytes: small blocks all go out in one burst after
  // the first reply, while for multi-MB blocks the next GET is sent just before the
  // current reply is decoded, so Redis streams block i+1 while this thread decodes block
  // i, and Redis never buffers a whole batch of large replies at once.
  constexpr size_t kBytesInFlight = 16 << 20;
  const absl::Status status = WithConnection([&](Connection& c) {
    results.clear();
    corrupt = bytes = 0;
    size_t sent = 0, largest = 0;
    auto request_up_to = [&](size_t end) {  // GETs for keys [sent, end) go out now
      end = std::min(end, keys.size());
      if (sent >= end) return true;
      for (; sent < end; ++sent) {
        if (!c.Append({"GET", redis_keys[sent]})) return false;
      }
      return c.Flush();
    };
    BulkReply reply;
    for (size_t i = 0; i < keys.size(); ++i) {
      if (!request_up_to(i + 1) || !c.ReadBulk(reply)) return false;
      largest = std::max(largest, reply.size);
      const size_t window = std::max<size_t>(1, kBytesInFlight / std::max<size_t>(largest, 1));
      if (!request_up_to(i + 1 + window)) return false;
      bool bad = false;
      results.push_back(DecodeReply(keys[i], reply, bad));
      corrupt += bad ? 1 : 0;
      if (results.back().ok()) bytes += static_cast<int64_t>(reply.size);
    }
    return true;
  });
  if (!status.ok()) {
    LogRateLimited(LogTopic::kOutage,
                   absl::StrCat("reads are misses while redis is unavailable: ", status.message()));
    results.assign(keys.size(),
                   absl::UnavailableError(absl::StrCat("redis unavailable: ", status.message())));
    corrupt = bytes = 0;
  }
  int64_t hits = 0;
  for (const auto& r : results) hits += r.ok() ? 1 : 0;
  absl::MutexLock lock(&metrics_mu_);
  metrics_.hits += hits;
  metrics_.misses += static_cast<int64_t>(results.size()) - hits;
  metrics_.corrupt += corrupt;
  metrics_.bytes_read += bytes;
  metrics_.get_seconds += absl::ToDoubleSeconds(absl::Now() - start);
  return results;
}

absl::Status RedisStore::Set(const Args& args, std::string_view what) {
  ReplyPtr reply;
  absl::Status status = WithConnection([&](Connection& c) {
    reply = c.Command(args);
    return reply != nullptr;
  });
  if (status.ok() && reply->type == REDIS_REPLY_ERROR) {
    status = absl::UnavailableError(std::string(ReplyText(*reply)));
  }
  if (!status.ok()) return DropWrite(what, status);
  return absl::OkStatus();
}

absl::StatusOr<uint64_t> RedisStore::Put(const BlockKey& key, const engine::KvCache& kv) {
  if (!(kv.shape() == options_.codec.shape)) {
    return absl::InvalidArgumentError(
        absl::StrCat("redis store: block shape [layers ", kv.shape().num_layers, ", kv heads ",
                     kv.shape().num_kv_heads, ", head dim ", kv.shape().head_dim,
                     "] differs from the store's [", options_.codec.shape.num_layers, ", ",
                     options_.codec.shape.num_kv_heads, ", ", options_.codec.shape.head_dim, "]"));
  }
  const absl::Time start = absl::Now();
  const std::string value = EncodeBlockValue(kv, options_.codec);
  const std::string redis_key = BlockRedisKey(key);
  std::string ttl_ms;
  Args args{"SET", redis_key, value};
  if (options_.ttl.has_value()) {
    ttl_ms = absl::StrCat(absl::ToInt64Milliseconds(*options_.ttl));
    args.Add("PX");
    args.Add(ttl_ms);
  }
  const absl::Status status = Set(args, absl::StrCat("block ", key.Hex()));
  if (!status.ok()) return status;
  absl::MutexLock lock(&metrics_mu_);
  ++metrics_.puts;
  metrics_.bytes_written += static_cast<int64_t>(value.size());
  metrics_.put_seconds += absl::ToDoubleSeconds(absl::Now() - start);
  return uint64_t{value.size()};
}

uint64_t RedisStore::ValueBytes(const engine::KvCache& kv) const {
  return EncodedValueBytes(kv.shape(), kv.num_tokens(), options_.codec.dtype);
}

absl::Status RedisStore::Ping() {
  ReplyPtr reply;
  return WithConnection([&](Connection& c) {
    reply = c.Command({"PING"});
    return reply != nullptr;
  });
}

absl::Status RedisStore::Remove(const BlockKey& key) {
  ReplyPtr reply;
  return WithConnection([&](Connection& c) {
    reply = c.Command({"DEL", BlockRedisKey(key)});
    return reply != nullptr;
  });
}

bool RedisStore::Contains(const BlockKey& key) {
  ReplyPtr reply;
  const absl::Status status = WithConnection([&](Connection& c) {
    reply = c.Command({"EXISTS", BlockRedisKey(key)});
    return reply != nullptr;
  });
  return status.ok() && reply->type == REDIS_REPLY_INTEGER && reply->integer == 1;
}

absl::Status RedisStore::PutPassage(std::string_view passage_id, const BlockKey& key) {
  const std::string redis_key = PassageRedisKey(passage_id);
  const std::string value = EncodeCatalogValue(passage_id, key);
  const absl::Status status = Set({"SET", redis_key, value},
                                  absl::StrCat("catalog entry '", std::string(passage_id), "'"));
  if (!status.ok()) return status;
  absl::MutexLock lock(&metrics_mu_);
  ++metrics_.puts;
  return absl::OkStatus();
}

absl::StatusOr<BlockKey> RedisStore::LookupPassage(std::string_view passage_id) {
  const std::string redis_key = PassageRedisKey(passage_id);
  ReplyPtr reply;
  const absl::Status status = WithConnection([&](Connection& c) {
    reply = c.Command({"GET", redis_key});
    return reply != nullptr;
  });
  if (!status.ok()) return status;
  if (reply->type != REDIS_REPLY_STRING) return absl::NotFoundError("no catalog entry");
  absl::StatusOr<BlockKey> key = DecodeCatalogValue(ReplyText(*reply), passage_id);
  if (!key.ok()) {
    {
      absl::MutexLock lock(&metrics_mu_);
      ++metrics_.corrupt;
    }
    LogRateLimited(LogTopic::kBadData,
                   absl::StrCat("catalog entry '", std::string(passage_id),
                                "' is unusable, treated as absent: ", key.status().message()));
    return absl::NotFoundError(absl::StrCat("unusable catalog entry: ", key.status().message()));
  }
  return *key;
}

absl::Status RedisStore::PutSource(const BlockKey& key, absl::Span<const int32_t> tokens) {
  const absl::Status status = Set({"SET", SourceRedisKey(key), EncodeSourceValue(tokens)},
                                  absl::StrCat("source of block ", key.Hex()));
  if (!status.ok()) return status;
  absl::MutexLock lock(&metrics_mu_);
  ++metrics_.puts;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> RedisStore::GetSource(const BlockKey& key) {
  ReplyPtr reply;
  const absl::Status status = WithConnection([&](Connection& c) {
    reply = c.Command({"GET", SourceRedisKey(key)});
    return reply != nullptr;
  });
  if (!status.ok() || reply->type != REDIS_REPLY_STRING) {
    return absl::NotFoundError(absl::StrCat("no source of block ", key.Hex(), " in redis",
                                            status.ok() ? "" : " (unreachable)"));
  }
  absl::StatusOr<std::vector<int32_t>> tokens = DecodeSourceValue(ReplyText(*reply));
  if (!tokens.ok()) {
    LogRateLimited(LogTopic::kBadData, absl::StrCat("source of block ", key.Hex(),
                                                    " is unusable, treated as absent: ",
                                                    tokens.status().message()));
    return absl::NotFoundError(absl::StrCat("the source of block ", key.Hex(),
                                            " in redis is corrupt: ", tokens.status().message()));
  }
  return tokens;
}

StoreMetrics RedisStore::metrics() const {
  absl::MutexLock lock(&metrics_mu_);
  return metrics_;
}

}  // namespace blockserve::kv_store
