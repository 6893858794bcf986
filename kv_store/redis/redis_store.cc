#include "kv_store/redis/redis_store.h"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "kv_store/catalog_value.h"
#include "kv_store/redis/cluster_protocol.h"
#include "kv_store/redis/connection.h"
#include "kv_store/redis/node_pool.h"
#include "kv_store/redis/topology.h"
#include "kv_store/source.h"

namespace blockserve::kv_store {
namespace {

using redis::Args;
using redis::BulkReply;
using redis::Connection;
using redis::ErrorReply;
using redis::HostPort;
using redis::NodePool;
using redis::ReplyPtr;

// Redirections followed for one command before it is given up as UNAVAILABLE.
constexpr int kMaxRedirects = 5;

std::string ReplyText(const redisReply& r) { return std::string(r.str, r.len); }

absl::Status NoNodeForSlot(int slot) {
  return absl::UnavailableError(
      absl::StrCat("redis cluster: no node is known to serve slot ", slot,
                   " (the slot map is not known yet, or the cluster does not cover the slot)"));
}

}  // namespace

// One key of a GetMany on its way to the node that serves it.
struct RedisStore::Item {
  size_t index = 0;  // into the keys
  std::shared_ptr<NodePool> node;
  bool asking = false;  // an ASK redirection brought it here: send ASKING first
  int redirects = 0;
};

RedisStore::RedisStore(RedisStoreOptions options) : options_(std::move(options)) {}

RedisStore::~RedisStore() {
  topology_.reset();  // its thread logs through this store: stop it first
}

std::string RedisStore::BlockRedisKey(const BlockKey& key) const {
  return absl::StrCat(options_.key_prefix, "blk:", key.Hex());
}

std::string RedisStore::SourceRedisKey(const BlockKey& key) const {
  return absl::StrCat(options_.key_prefix, "src:", key.Hex());
}

std::string RedisStore::PassageRedisKey(std::string_view passage_id) const {
  return absl::StrCat(options_.key_prefix, "pid:", std::string(passage_id));
}

absl::StatusOr<std::unique_ptr<RedisStore>> RedisStore::Open(const RedisStoreOptions& options) {
  std::vector<HostPort> seeds;
  for (const std::string& seed : options.cluster_seeds) {
    absl::StatusOr<HostPort> parsed = redis::ParseHostPort(seed);
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("redis store: cluster seed ", parsed.status().message()));
    }
    seeds.push_back(*std::move(parsed));
  }
  if (seeds.empty()) {
    if (options.host.empty()) return absl::InvalidArgumentError("redis store: host is empty");
    if (options.port < 1 || options.port > 65535) {
      return absl::InvalidArgumentError(
          absl::StrCat("redis store: port must be in [1, 65535], found ", options.port));
    }
  } else {
    if (absl::StrContains(options.key_prefix, '{')) {
      return absl::InvalidArgumentError(absl::StrCat(
          "redis store: key_prefix \"", options.key_prefix,
          "\" has a '{': in a cluster it would start a hash tag and put keys into one slot"));
    }
    if (options.cluster_refresh_interval <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError("redis store: cluster_refresh_interval must be positive");
    }
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
  redis::TopologyOptions t;
  t.pool = {.address = {options.host, options.port},
            .credentials = {options.user, options.password},
            .size = options.pool_size,
            .connect_timeout = options.connect_timeout,
            .op_timeout = options.op_timeout,
            .retry_backoff = options.retry_backoff,
            .max_retry_backoff = options.max_retry_backoff};
  t.seeds = std::move(seeds);
  t.refresh_interval = options.cluster_refresh_interval;
  RedisStore* const raw = store.get();
  t.log = [raw](const std::string& message, bool outage) {
    raw->LogRateLimited(outage ? LogTopic::kOutage : LogTopic::kTopology, message);
  };
  store->topology_ = std::make_unique<redis::Topology>(std::move(t));

  const absl::Status reachable = store->topology_->FirstContact();
  if (absl::IsUnauthenticated(reachable) || absl::IsPermissionDenied(reachable) ||
      absl::IsFailedPrecondition(reachable)) {
    return reachable;
  }
  if (!reachable.ok()) {
    const std::string what =
        options.cluster_seeds.empty()
            ? absl::StrCat("redis at ", options.host, ":", options.port, " is unreachable")
            : absl::StrCat("no redis cluster seed (", absl::StrJoin(options.cluster_seeds, ", "),
                           ") gave a slot map");
    store->LogRateLimited(
        LogTopic::kOutage,
        absl::StrCat(what, "; starting anyway (reads miss, writes drop until it is back): ",
                     reachable.message()));
  }
  return store;
}

RedisStore::RoutingCounters RedisStore::routing() const {
  const redis::Topology::Counters t = topology_->counters();
  return {moved_.load(), ask_.load(), t.refreshes, t.probes};
}

absl::Status RedisStore::Run(std::string_view redis_key, const Args& args, ReplyPtr& reply) {
  const bool cluster = topology_->cluster();
  const int slot = cluster ? redis::KeySlot(redis_key) : 0;
  std::shared_ptr<NodePool> node = topology_->NodeFor(slot);
  bool asking = false;
  for (int redirects = 0;; ++redirects) {
    if (node == nullptr) return NoNodeForSlot(slot);
    const absl::Status status = node->WithConnection([&](Connection& c) {
      if (asking && c.Command({"ASKING"}) == nullptr) return false;
      reply = c.Command(args);
      return reply != nullptr;
    });
    if (!status.ok()) {
      topology_->RequestRefresh();
      return status;
    }
    if (reply->type != REDIS_REPLY_ERROR) return absl::OkStatus();
    const ErrorReply error = redis::ClassifyErrorReply(ReplyText(*reply), node->address().host);
    switch (error.kind) {
      case ErrorReply::Kind::kOther:
        return absl::OkStatus();  // the caller's to read
      case ErrorReply::Kind::kUnavailable:
        topology_->RequestRefresh();
        return absl::UnavailableError(
            absl::StrCat(node->where(), " cannot serve now: ", ReplyText(*reply)));
      case ErrorReply::Kind::kMoved:
      case ErrorReply::Kind::kAsk:
        break;
    }
    if (!cluster) {
      return absl::UnavailableError(absl::StrCat(node->where(), " answered \"", ReplyText(*reply),
                                                 "\": it is a Redis Cluster node"));
    }
    if (redirects == kMaxRedirects) {
      return absl::UnavailableError(absl::StrCat("redis cluster: more than ", kMaxRedirects,
                                                 " redirections for one command, the last \"",
                                                 ReplyText(*reply), "\""));
    }
    asking = error.kind == ErrorReply::Kind::kAsk;
    if (asking) {
      ++ask_;
      node = topology_->NodeAt(error.target);
    } else {
      ++moved_;
      node = topology_->Moved(error.slot, error.target);
    }
  }
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
    case BulkReply::Kind::kStatus:
    case BulkReply::Kind::kInteger:  // not an answer to GET; only STRLEN gets one
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

void RedisStore::CountGets(int64_t gets, int64_t hits, int64_t corrupt, int64_t bytes,
                           absl::Time start) {
  absl::MutexLock lock(&metrics_mu_);
  metrics_.hits += hits;
  metrics_.misses += gets - hits;
  metrics_.corrupt += corrupt;
  metrics_.bytes_read += bytes;
  metrics_.get_seconds += absl::ToDoubleSeconds(absl::Now() - start);
}

// Why the chunks of one value are safe to assemble: Redis may replace the value between
// any two of our commands (another writer's SET). A replacement of another length shows
// as a chunk shorter or longer than asked, or a header that disagrees with STRLEN; one
// of the same length shows as a checksum mismatch over the assembled bytes. Either way
// the whole value is read again once; a second failure is treated as a corrupt value (a
// miss, counted and logged), never returned.
std::optional<absl::StatusOr<engine::KvCache>> RedisStore::ChunkedGet(const BlockKey& key) {
  const absl::Time start = absl::Now();
  const std::string redis_key = BlockRedisKey(key);
  const int slot = topology_->cluster() ? redis::KeySlot(redis_key) : 0;
  std::shared_ptr<NodePool> node = topology_->NodeFor(slot);
  if (node == nullptr) return std::nullopt;
  const size_t chunk = std::max<size_t>(options_.get_chunk_bytes, 1);
  auto unavailable = [&](const absl::Status& status) {
    topology_->RequestRefresh();
    LogRateLimited(LogTopic::kOutage,
                   absl::StrCat("reads are misses while redis is unavailable: ", status.message()));
    CountGets(1, 0, 0, 0, start);
    return absl::UnavailableError(absl::StrCat("redis unavailable: ", status.message()));
  };
  absl::Status last_error;
  for (int attempt = 0; attempt < 2; ++attempt) {
    // One round trip: the length and the first chunk.
    std::unique_ptr<char[]> value;
    size_t length = 0, first = 0;
    bool fallback = false, replaced = false;
    absl::Status status = node->WithConnection([&](Connection& c) {
      const std::string end = absl::StrCat(chunk - 1);
      if (!c.Append({"STRLEN", redis_key}) || !c.Append({"GETRANGE", redis_key, "0", end}) ||
          !c.Flush()) {
        return false;
      }
      BulkReply size_reply;
      if (!c.ReadBulk(size_reply)) return false;
      fallback = size_reply.kind != BulkReply::Kind::kInteger || size_reply.integer < 0;
      length = fallback ? 0 : static_cast<size_t>(size_reply.integer);
      // Room for the first chunk even if the value grew since STRLEN.
      value.reset(new char[std::max(length, chunk)]);
      BulkReply first_reply;
      if (!c.ReadBulkInto(first_reply, value.get(), chunk)) return false;
      fallback = fallback || first_reply.kind != BulkReply::Kind::kValue;
      first = first_reply.size;
      return true;
    });
    if (!status.ok()) return unavailable(status);
    if (fallback) return std::nullopt;
    if (length == 0) {  // STRLEN of a missing key
      CountGets(1, 0, 0, 0, start);
      return absl::NotFoundError(absl::StrCat("block ", key.Hex(), " is not in redis"));
    }
    replaced = first != std::min(length, chunk);
    if (options_.test_hook) options_.test_hook("after_first_chunk");
    // Decoding starts with the first chunk and takes each next one as it arrives, so
    // it overlaps the transfer. A header that fails its checks needs no more chunks;
    // one whose token ids do not fit the first chunk is decoded whole at the end.
    std::unique_ptr<BlockValueStream> stream;
    if (!replaced) {
      absl::StatusOr<std::unique_ptr<BlockValueStream>> begun =
          BlockValueStream::Begin(std::string_view(value.get(), first), length, options_.codec);
      if (begun.ok()) {
        stream = *std::move(begun);
      } else if (!absl::IsOutOfRange(begun.status())) {
        last_error = begun.status();
        if (absl::IsDataLoss(last_error)) continue;  // perhaps replaced: read it again
        break;
      }
    }

    // The rest in chunks, round-robin over the workers; each pipelines all of its
    // chunks on one connection and marks each chunk as it lands. Each worker holds one
    // connection at a time (never one while waiting for another), so concurrent Gets
    // cannot deadlock on the pool.
    const size_t chunks = length > chunk ? (length - chunk + chunk - 1) / chunk : 0;
    const size_t workers = std::min<size_t>(
        chunks, static_cast<size_t>(std::max(1, std::min(options_.get_connections,
                                                         options_.pool_size))));
    std::vector<absl::Status> statuses(workers);
    std::vector<char> worker_fallback(workers, 0), worker_replaced(workers, 0);
    enum Landed : char { kNotYet, kWhole, kWrong };
    std::mutex mu;
    std::condition_variable landed_cv;
    std::vector<Landed> landed(chunks, kNotYet);  // guarded by mu
    std::vector<char> done(workers, 0);           // guarded by mu
    auto work = [&](size_t w) {
      statuses[w] = node->WithConnection([&](Connection& c) {
        worker_fallback[w] = worker_replaced[w] = 0;
        for (size_t i = w; i < chunks; i += workers) {
          const size_t from = chunk * (i + 1);
          const size_t to = std::min(length, from + chunk);
          if (!c.Append({"GETRANGE", redis_key, absl::StrCat(from), absl::StrCat(to - 1)})) {
            return false;
          }
        }
        if (!c.Flush()) return false;
        for (size_t i = w; i < chunks; i += workers) {
          const size_t from = chunk * (i + 1);
          const size_t want = std::min(length, from + chunk) - from;
          BulkReply r;
          if (!c.ReadBulkInto(r, value.get() + from, want)) return false;
          if (r.kind != BulkReply::Kind::kValue) worker_fallback[w] = 1;
          if (r.size != want) worker_replaced[w] = 1;
          const bool whole = r.kind == BulkReply::Kind::kValue && r.size == want;
          std::lock_guard<std::mutex> lock(mu);
          landed[i] = whole ? kWhole : kWrong;
          landed_cv.notify_all();
        }
        return true;
      });
      std::lock_guard<std::mutex> lock(mu);
      done[w] = 1;
      landed_cv.notify_all();
    };
    std::vector<std::thread> threads;
    for (size_t w = 0; w < workers; ++w) threads.emplace_back(work, w);
    for (size_t i = 0; stream != nullptr && i < chunks; ++i) {
      bool whole;
      {
        std::unique_lock<std::mutex> lock(mu);
        landed_cv.wait(lock, [&] { return landed[i] != kNotYet || done[i % workers]; });
        whole = landed[i] == kWhole;
      }
      if (!whole) {  // the worker failed, or the value changed: settled below
        stream.reset();
        break;
      }
      const size_t from = chunk * (i + 1);
      stream->Consume(value.get() + from, std::min(length, from + chunk) - from);
    }
    for (std::thread& t : threads) t.join();
    for (size_t w = 0; w < workers; ++w) {
      if (!statuses[w].ok()) return unavailable(statuses[w]);
      if (worker_fallback[w]) return std::nullopt;
      replaced = replaced || worker_replaced[w];
    }
    if (replaced) {
      last_error = absl::DataLossError("block value: replaced while it was read in chunks");
      continue;
    }
    absl::StatusOr<engine::KvCache> kv =
        stream != nullptr ? stream->Finish()
                          : DecodeBlockValue(std::string_view(value.get(), length), options_.codec);
    if (kv.ok()) {
      CountGets(1, 1, 0, static_cast<int64_t>(length), start);
      last_value_bytes_.store(length, std::memory_order_relaxed);
      return kv;
    }
    last_error = kv.status();
    // Another model's or version's value is what it is; reading it again cannot help.
    if (!absl::IsDataLoss(last_error)) break;
  }
  LogRateLimited(LogTopic::kBadData,
                 absl::StrCat("block ", key.Hex(), " in redis is unusable, treated as a miss: ",
                              last_error.message()));
  CountGets(1, 0, 1, 0, start);
  return absl::NotFoundError(
      absl::StrCat("block ", key.Hex(), " is corrupt: ", last_error.message()));
}

std::vector<absl::StatusOr<engine::KvCache>> RedisStore::GetMany(absl::Span<const BlockKey> keys) {
  if (keys.empty()) return {};
  // One block (Get, and the tiered store's and block cache's single misses), or blocks
  // of several chunks each: in chunks over parallel connections. Several small ones:
  // pipelined streams per node over parallel connections, each overlapping its block
  // i+1's transfer with block i's decode.
  if (keys.size() == 1 ||
      last_value_bytes_.load(std::memory_order_relaxed) > options_.get_chunk_bytes) {
    return ChunkedGetMany(keys);
  }
  return PipelinedGetMany(keys);
}

std::vector<absl::StatusOr<engine::KvCache>> RedisStore::ChunkedGetMany(
    absl::Span<const BlockKey> keys) {
  std::vector<absl::StatusOr<engine::KvCache>> results;
  results.reserve(keys.size());
  std::vector<size_t> rest;  // keys for the pipelined way
  for (size_t i = 0; i < keys.size(); ++i) {
    if (!results.empty() && absl::IsUnavailable(results.back().status())) {
      // Redis is down or stuck: the rest are misses now, not one op_timeout each.
      const absl::Status unavailable = results.back().status();
      CountGets(static_cast<int64_t>(keys.size() - i), 0, 0, 0, absl::Now());
      results.resize(keys.size(), unavailable);
      break;
    }
    std::optional<absl::StatusOr<engine::KvCache>> got = ChunkedGet(keys[i]);
    if (got.has_value()) {
      results.push_back(*std::move(got));
    } else {
      rest.push_back(i);
      results.push_back(absl::UnknownError("not read"));
    }
  }
  if (!rest.empty()) {
    std::vector<BlockKey> rest_keys;
    for (size_t i : rest) rest_keys.push_back(keys[i]);
    std::vector<absl::StatusOr<engine::KvCache>> got = PipelinedGetMany(rest_keys);
    for (size_t j = 0; j < rest.size(); ++j) results[rest[j]] = std::move(got[j]);
  }
  return results;
}

std::vector<absl::StatusOr<engine::KvCache>> RedisStore::PipelinedGetMany(
    absl::Span<const BlockKey> keys) {
  const absl::Time start = absl::Now();
  const size_t n = keys.size();
  std::vector<std::string> redis_keys;
  redis_keys.reserve(n);
  for (const BlockKey& key : keys) redis_keys.push_back(BlockRedisKey(key));
  std::vector<int> slots(n, 0);
  if (topology_->cluster()) {
    for (size_t i = 0; i < n; ++i) slots[i] = redis::KeySlot(redis_keys[i]);
  }
  std::vector<std::shared_ptr<NodePool>> nodes = topology_->NodesFor(slots);

  std::vector<absl::StatusOr<engine::KvCache>> results(n, absl::UnknownError("not read"));
  std::vector<int64_t> value_bytes(n, 0);
  std::vector<char> corrupt(n, 0);
  std::vector<Item> pending;
  for (size_t i = 0; i < n; ++i) {
    if (nodes[i] == nullptr) {
      results[i] = NoNodeForSlot(slots[i]);
    } else {
      pending.push_back({.index = i, .node = std::move(nodes[i])});
    }
  }
  // Each round reads every pending key from its node, node after node; the keys
  // redirected elsewhere are the next round's.
  while (!pending.empty()) {
    std::stable_sort(pending.begin(), pending.end(),
                     [](const Item& a, const Item& b) { return a.node < b.node; });
    std::vector<Item> redirected;
    for (size_t begin = 0; begin < pending.size();) {
      size_t end = begin + 1;
      while (end < pending.size() && pending[end].node == pending[begin].node) ++end;
      // A node's keys in up to get_connections contiguous shares, each pipelined on a
      // connection of its own and decoded in its own thread: decoding and checking a
      // large block takes about as long as its transfer, so blocks arrive and decode in
      // parallel. Each share holds one connection (never one while waiting for
      // another), as in ChunkedGet. Shares write disjoint entries of results,
      // value_bytes and corrupt.
      const absl::Span<const Item> group = absl::MakeConstSpan(pending).subspan(begin, end - begin);
      const size_t shares = std::min<size_t>(
          group.size(), static_cast<size_t>(std::max(
                            1, std::min(options_.get_connections, options_.pool_size))));
      std::vector<std::vector<Item>> redirected_by(shares);
      auto share = [&](size_t w) {
        const size_t from = group.size() * w / shares, to = group.size() * (w + 1) / shares;
        GetOnNode(*group[0].node, group.subspan(from, to - from), keys, redis_keys, results,
                  value_bytes, corrupt, redirected_by[w]);
      };
      std::vector<std::thread> threads;
      for (size_t w = 1; w < shares; ++w) threads.emplace_back(share, w);
      share(0);
      for (std::thread& t : threads) t.join();
      for (std::vector<Item>& r : redirected_by) {
        redirected.insert(redirected.end(), std::make_move_iterator(r.begin()),
                          std::make_move_iterator(r.end()));
      }
      begin = end;
    }
    pending = std::move(redirected);
  }

  int64_t hits = 0, bad = 0, bytes = 0;
  for (size_t i = 0; i < n; ++i) {
    hits += results[i].ok() ? 1 : 0;
    bad += corrupt[i];
    bytes += results[i].ok() ? value_bytes[i] : 0;
  }
  absl::MutexLock lock(&metrics_mu_);
  metrics_.hits += hits;
  metrics_.misses += static_cast<int64_t>(n) - hits;
  metrics_.corrupt += bad;
  metrics_.bytes_read += bytes;
  metrics_.get_seconds += absl::ToDoubleSeconds(absl::Now() - start);
  return results;
}

void RedisStore::GetOnNode(NodePool& node, absl::Span<const Item> items,
                           absl::Span<const BlockKey> keys,
                           absl::Span<const std::string> redis_keys,
                           std::vector<absl::StatusOr<engine::KvCache>>& results,
                           std::vector<int64_t>& value_bytes, std::vector<char>& corrupt,
                           std::vector<Item>& redirected) {
  struct Redirection {
    size_t item;
    ErrorReply error;
    std::string text;
  };
  std::vector<Redirection> redirections;
  // Pipelined with a window sized by bytes: small blocks all go out in one burst after
  // the first reply, while for multi-MB blocks the next GET is sent just before the
  // current reply is decoded, so Redis streams block i+1 while this thread decodes block
  // i, and Redis never buffers a whole batch of large replies at once.
  constexpr size_t kBytesInFlight = 16 << 20;
  const absl::Status status = node.WithConnection([&](Connection& c) {
    redirections.clear();
    size_t sent = 0, largest = 0;
    auto request_up_to = [&](size_t end) {  // GETs for items [sent, end) go out now
      end = std::min(end, items.size());
      if (sent >= end) return true;
      for (; sent < end; ++sent) {
        if (items[sent].asking && !c.Append({"ASKING"})) return false;
        if (!c.Append({"GET", redis_keys[items[sent].index]})) return false;
      }
      return c.Flush();
    };
    BulkReply reply;
    for (size_t i = 0; i < items.size(); ++i) {
      // After an ASKING, its "+OK" first (an error instead: the GET says where to go).
      if (!request_up_to(i + 1) || (items[i].asking && !c.ReadBulk(reply)) ||
          !c.ReadBulk(reply)) {
        return false;
      }
      largest = std::max(largest, reply.size);
      const size_t window = std::max<size_t>(1, kBytesInFlight / std::max<size_t>(largest, 1));
      if (!request_up_to(i + 1 + window)) return false;
      const size_t index = items[i].index;
      value_bytes[index] = 0;
      corrupt[index] = 0;
      if (reply.kind == BulkReply::Kind::kError) {
        const ErrorReply error = redis::ClassifyErrorReply(reply.bytes(), node.address().host);
        if (error.kind != ErrorReply::Kind::kOther) {
          redirections.push_back({i, error, std::string(reply.bytes())});
          continue;
        }
      }
      bool bad = false;
      results[index] = DecodeReply(keys[index], reply, bad);
      corrupt[index] = bad ? 1 : 0;
      if (results[index].ok()) {
        value_bytes[index] = static_cast<int64_t>(reply.size);
        last_value_bytes_.store(reply.size, std::memory_order_relaxed);
      }
    }
    return true;
  });
  if (!status.ok()) {
    topology_->RequestRefresh();
    LogRateLimited(LogTopic::kOutage,
                   absl::StrCat("reads are misses while redis is unavailable: ", status.message()));
    for (const Item& item : items) {
      results[item.index] =
          absl::UnavailableError(absl::StrCat("redis unavailable: ", status.message()));
      value_bytes[item.index] = corrupt[item.index] = 0;
    }
    return;
  }
  for (const Redirection& r : redirections) {
    Item next = items[r.item];
    absl::StatusOr<engine::KvCache>& result = results[next.index];
    if (r.error.kind == ErrorReply::Kind::kUnavailable) {
      topology_->RequestRefresh();
      result = absl::UnavailableError(absl::StrCat(node.where(), " cannot serve now: ", r.text));
    } else if (!topology_->cluster()) {
      result = absl::UnavailableError(
          absl::StrCat(node.where(), " answered \"", r.text, "\": it is a Redis Cluster node"));
    } else if (++next.redirects > kMaxRedirects) {
      result = absl::UnavailableError(absl::StrCat("redis cluster: more than ", kMaxRedirects,
                                                   " redirections for one GET, the last \"",
                                                   r.text, "\""));
    } else {
      next.asking = r.error.kind == ErrorReply::Kind::kAsk;
      if (next.asking) {
        ++ask_;
        next.node = topology_->NodeAt(r.error.target);
      } else {
        ++moved_;
        next.node = topology_->Moved(r.error.slot, r.error.target);
      }
      redirected.push_back(std::move(next));
    }
  }
}

absl::Status RedisStore::Set(std::string_view redis_key, const Args& args, std::string_view what) {
  ReplyPtr reply;
  absl::Status status = Run(redis_key, args, reply);
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
  const absl::Status status = Set(redis_key, args, absl::StrCat("block ", key.Hex()));
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
  bool complete = true;
  const std::vector<std::shared_ptr<NodePool>> masters = topology_->Masters(complete);
  if (!complete) {
    return absl::UnavailableError(
        "redis cluster: some slots have no known master (the slot map is not known yet, or "
        "the cluster does not cover every slot)");
  }
  for (const std::shared_ptr<NodePool>& node : masters) {
    ReplyPtr reply;
    const absl::Status status = node->WithConnection([&](Connection& c) {
      reply = c.Command({"PING"});
      return reply != nullptr;
    });
    if (!status.ok()) {
      topology_->RequestRefresh();
      return status;
    }
  }
  return absl::OkStatus();
}

absl::Status RedisStore::Remove(const BlockKey& key) {
  const std::string redis_key = BlockRedisKey(key);
  ReplyPtr reply;
  return Run(redis_key, {"DEL", redis_key}, reply);
}

bool RedisStore::Contains(const BlockKey& key) {
  const std::string redis_key = BlockRedisKey(key);
  ReplyPtr reply;
  const absl::Status status = Run(redis_key, {"EXISTS", redis_key}, reply);
  return status.ok() && reply->type == REDIS_REPLY_INTEGER && reply->integer == 1;
}

absl::Status RedisStore::PutPassage(std::string_view passage_id, const BlockKey& key) {
  const std::string redis_key = PassageRedisKey(passage_id);
  const std::string value = EncodeCatalogValue(passage_id, key);
  const absl::Status status =
      Set(redis_key, {"SET", redis_key, value},
          absl::StrCat("catalog entry '", std::string(passage_id), "'"));
  if (!status.ok()) return status;
  absl::MutexLock lock(&metrics_mu_);
  ++metrics_.puts;
  return absl::OkStatus();
}

absl::StatusOr<BlockKey> RedisStore::LookupPassage(std::string_view passage_id) {
  const std::string redis_key = PassageRedisKey(passage_id);
  ReplyPtr reply;
  const absl::Status status = Run(redis_key, {"GET", redis_key}, reply);
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
  const std::string redis_key = SourceRedisKey(key);
  const absl::Status status = Set(redis_key, {"SET", redis_key, EncodeSourceValue(tokens)},
                                  absl::StrCat("source of block ", key.Hex()));
  if (!status.ok()) return status;
  absl::MutexLock lock(&metrics_mu_);
  ++metrics_.puts;
  return absl::OkStatus();
}

absl::StatusOr<std::vector<int32_t>> RedisStore::GetSource(const BlockKey& key) {
  const std::string redis_key = SourceRedisKey(key);
  ReplyPtr reply;
  const absl::Status status = Run(redis_key, {"GET", redis_key}, reply);
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
