// A KvStore in Redis, through hiredis: the store that nodes share. One Redis (the
// default), or a Redis Cluster: Redis's own sharding over 16384 hash slots, each served
// by one master and copied to its replicas.
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
// about `connect_timeout` + `op_timeout` per socket read or write. After a dial failed or
// a call timed out (a Redis that accepts connections and never answers) the node is
// *down*: calls to it fail at once, without touching it, until a background probe (a
// dial and a PING, off the callers' threads) gets an answer; so a stuck Redis costs only
// the call that found it stuck its op_timeout. The probes come after a back-off that
// starts at `retry_backoff` and doubles with each failure in a row, up to
// `max_retry_backoff`; the first call that gets through resets it. Open() succeeds while
// Redis is down; connections broken by a Redis restart are discarded and re-dialled on
// their next use, so the store recovers without being reopened (kv_store/redis/node_pool.h).
//
// Redis Cluster (`cluster_seeds`): the store fetches the slot map (CLUSTER SLOTS) from
// any seed, keeps a connection pool per node, and sends each key's command to the
// master of its slot (CRC16 of the key mod 16384). It follows redirections: MOVED (the
// slot has moved: the map is updated and refreshed, the command sent there) and ASK (a
// slot being migrated: ASKING then the command, on that node, once, the map unchanged),
// at most 5 in a row per command, then UNAVAILABLE. The map is refreshed every
// `cluster_refresh_interval` and soon after a MOVED or a failed node. GetMany groups its
// keys per node and pipelines each group (in the order of the nodes, one after the other)
// with the same streaming decode as for one Redis; the results keep the keys' order.
// Replicas are never read (no READONLY): a read sees its master's writes.
// A master that dies costs only the keys of its slots, as a Redis outage costs all keys:
// reads miss (UNAVAILABLE), writes drop, catalog lookups are UNAVAILABLE, never a wrong
// value; the pool of the dead node is down, so these fail at once; once its replica is
// promoted (after cluster-node-timeout), the refreshed map sends the slots there, with
// no reopening. Writes acknowledged by the dead master but not yet replicated are lost
// (Redis replicates asynchronously): a lost block is a miss, recomputed; a lost catalog
// entry or source makes its passage NOT_FOUND until it is ingested again.
//
// Hash tags: none; every key is placed by its whole name, which is the same as for one
// Redis. No operation needs two keys on one node: every command names one key (GET, SET,
// EXISTS, DEL; GetMany pipelines single-key GETs, never MGET; no MULTI, no scripts), and
// a lookup by passage id reads the catalog entry and then the block in two calls anyway.
// A catalog entry (`pid:`) could not share its block's slot: it is found by passage id,
// before the content key is known. A block (`blk:`) and its source (`src:`) could (a
// `{<hex>}` tag), but apart is better: a master's loss then takes a block and its source
// together only when both happen to live there (1 in N masters instead of always), and a
// lost block is recomputed from its source on another node. A `key_prefix` with a '{'
// would put every key into one slot: Open refuses it for a cluster. (A passage id with a
// "{tag}" in it places its entry by the tag: harmless, catalog entries are small.)
//
// Large values: Get (a GetMany of one key, and each key of a GetMany once the store has
// read a value larger than one chunk) asks STRLEN and the first GETRANGE chunk in
// one round trip, then the other chunks pipelined over up to `get_connections` pooled
// connections in parallel, each straight into its place in one buffer; the assembled
// value is then checksum-verified while it is decoded. Each of those connections is
// taken on its own (no call holds one while waiting for another), so concurrent Gets
// cannot deadlock on a small pool. A redirection or error reply on the way falls back
// to the plain GET path above. A value replaced between chunks (a chunk of the wrong
// length, or a checksum mismatch) is read again once; replaced again it is a corrupt
// miss. Redis failing mid-read is UNAVAILABLE; a value deleted mid-read is NOT_FOUND.
//
// Safe to call from several threads; at most `pool_size` calls talk to each node at
// once, the others wait for a connection.
#ifndef BLOCKSERVE_KV_STORE_REDIS_REDIS_STORE_H_
#define BLOCKSERVE_KV_STORE_REDIS_REDIS_STORE_H_

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "kv_store/codec.h"
#include "kv_store/kv_store.h"

struct redisReply;

namespace blockserve::kv_store {
namespace redis {
class Args;
class NodePool;
class Topology;
struct BulkReply;
struct ReplyDeleter;
}  // namespace redis

struct RedisStoreOptions {
  std::string host = "127.0.0.1";  // the single Redis (unused with cluster_seeds)
  int port = 6379;
  // Non-empty: a Redis Cluster, and these "host:port" are some of its nodes (any one
  // that answers gives the slot map); host and port are then unused.
  std::vector<std::string> cluster_seeds;
  absl::Duration cluster_refresh_interval = absl::Seconds(10);
  int pool_size = 4;  // connections per node, dialled lazily
  absl::Duration connect_timeout = absl::Milliseconds(500);
  absl::Duration op_timeout = absl::Seconds(2);  // per socket read/write, not per call
  std::optional<absl::Duration> ttl;             // blocks only; at least 1 ms
  std::string key_prefix = "bs:v1:";
  CodecOptions codec;  // what Put encodes with and what Get expects
  absl::Duration retry_backoff = absl::Milliseconds(500);  // after a first failure
  absl::Duration max_retry_backoff = absl::Seconds(8);     // the most it grows to
  // AUTH on every new connection (to every node of a cluster), before any other
  // command, when `password` is set: `AUTH <password>` (requirepass, the default user)
  // or, with a `user`, `AUTH <user> <password>` (an ACL user). The password is never
  // logged nor put into an error.
  std::string user;
  std::string password;

  // Get of a large block: the value is read in GETRANGE chunks of `get_chunk_bytes`,
  // pipelined over up to `get_connections` pooled connections at once (bounded by
  // pool_size), straight into one buffer, then decoded and checksum-verified in one
  // pass. One round trip (STRLEN + the first chunk) when the value fits one chunk. A
  // GetMany of several keys uses as many connections per node (see GetMany).
  size_t get_chunk_bytes = 2 << 20;
  int get_connections = 4;
  // Test-only: called at points of a chunked Get ("after_first_chunk": the length is
  // known and the first chunk read, the other chunks not yet asked for).
  std::function<void(std::string_view point)> test_hook;
};

class RedisStore : public KvStore {
 public:
  // InvalidArgument for unusable options (a user without a password, a cluster seed
  // that is not host:port, a cluster key_prefix with '{'). Tries one connection (a
  // cluster: the seeds in turn, for the slot map); if Redis is unreachable it logs that
  // and still returns a store (see the file comment). A Redis that answers but refuses
  // the connection's credentials fails the opening instead, naming its address:
  // Unauthenticated when the password is wrong, missing (NOAUTH) or given to a Redis
  // that has none; PermissionDenied when the user may not run commands (NOPERM). Later
  // (a password changed under a running store) the same refusal is UNAVAILABLE, like
  // any Redis that cannot be used. FailedPrecondition for a cluster node given as the
  // single Redis, or a seed that is not a cluster node.
  static absl::StatusOr<std::unique_ptr<RedisStore>> Open(const RedisStoreOptions& options);
  ~RedisStore() override;

  absl::StatusOr<engine::KvCache> Get(const BlockKey& key) override;
  // One key: a chunked Get (RedisStoreOptions::get_chunk_bytes). Several, while the
  // last block value this store read was larger than one chunk: each key in turn as a
  // chunked Get (multi-MB values come in faster in parallel GETRANGE chunks than as
  // pipelined GETs: bench/results/kv_store_bench.md); the first UNAVAILABLE answers for
  // the keys after it, and keys a chunked Get cannot read (a redirection) go the
  // pipelined way. Otherwise (small blocks, or nothing read yet): each node's keys in up
  // to `get_connections` contiguous shares, each share's GETs pipelined on a connection
  // of its own and each reply decoded, in that share's thread, as soon as it arrives; at
  // most ~16 MB of replies are requested ahead per share, so Redis streams block i+1
  // while block i is decoded instead of buffering a batch of multi-MB values.
  std::vector<absl::StatusOr<engine::KvCache>> GetMany(absl::Span<const BlockKey> keys) override;
  // InvalidArgument when kv's shape differs from options.codec.shape.
  absl::StatusOr<uint64_t> Put(const BlockKey& key, const engine::KvCache& kv) override;
  uint64_t ValueBytes(const engine::KvCache& kv) const override;
  bool Contains(const BlockKey& key) override;
  absl::Status Remove(const BlockKey& key) override;
  // A cluster: OK when every slot has a master and each answers PING.
  absl::Status Ping() override;
  absl::Status PutPassage(std::string_view passage_id, const BlockKey& key) override;
  absl::StatusOr<BlockKey> LookupPassage(std::string_view passage_id) override;
  // NotFound when absent, corrupt, or Redis is unreachable.
  absl::Status PutSource(const BlockKey& key, absl::Span<const int32_t> tokens) override;
  absl::StatusOr<std::vector<int32_t>> GetSource(const BlockKey& key) override;
  // `puts`/`dropped_puts` count block and catalog writes; the rest count blocks only.
  StoreMetrics metrics() const override;

  // How the store found its way (for tests and diagnostics).
  struct RoutingCounters {
    int64_t moved = 0;      // MOVED redirections followed
    int64_t ask = 0;        // ASK redirections followed
    int64_t slot_maps = 0;  // slot maps installed
    int64_t probes = 0;     // background probes of down nodes
  };
  RoutingCounters routing() const;

  std::string BlockRedisKey(const BlockKey& key) const;            // "<prefix>blk:<hex>"
  std::string PassageRedisKey(std::string_view passage_id) const;  // "<prefix>pid:<id>"
  std::string SourceRedisKey(const BlockKey& key) const;            // "<prefix>src:<hex>"

 private:
  struct Item;
  explicit RedisStore(RedisStoreOptions options);

  // Sends one command about `redis_key` to the node serving it and returns the reply
  // in `reply`, following redirections (a cluster). UNAVAILABLE when no node could
  // answer: unreachable, down, no node for the slot, too many redirections, or a node
  // that cannot serve now (CLUSTERDOWN, LOADING, ...). Other error replies are the
  // caller's to read.
  absl::Status Run(std::string_view redis_key, const redis::Args& args,
                   std::unique_ptr<redisReply, redis::ReplyDeleter>& reply);
  // GETs of `items` (indices into `keys`) on one node, pipelined: results[index] gets
  // the block or a miss; items redirected elsewhere are appended to `redirected`.
  void GetOnNode(redis::NodePool& node, absl::Span<const Item> items,
                 absl::Span<const BlockKey> keys, absl::Span<const std::string> redis_keys,
                 std::vector<absl::StatusOr<engine::KvCache>>& results,
                 std::vector<int64_t>& value_bytes, std::vector<char>& corrupt,
                 std::vector<Item>& redirected);

  // Get of one block in chunks over parallel connections (see get_chunk_bytes). nullopt
  // when the node answered something the plain GET path must handle (a redirection,
  // an error reply): Get then falls back to it.
  std::optional<absl::StatusOr<engine::KvCache>> ChunkedGet(const BlockKey& key);
  void CountGets(int64_t gets, int64_t hits, int64_t corrupt, int64_t bytes, absl::Time start);
  // GetMany's pipelined way (see GetMany), for any number of keys.
  std::vector<absl::StatusOr<engine::KvCache>> PipelinedGetMany(absl::Span<const BlockKey> keys);
  // GetMany's chunked way: ChunkedGet key after key; the keys it cannot read so go through
  // PipelinedGetMany.
  std::vector<absl::StatusOr<engine::KvCache>> ChunkedGetMany(absl::Span<const BlockKey> keys);

  absl::StatusOr<engine::KvCache> DecodeReply(const BlockKey& key, const redis::BulkReply& reply,
                                              bool& corrupt);
  // Sends a SET. An unreachable Redis or an error reply (e.g. OOM under maxmemory)
  // drops the write: counted, logged, UNAVAILABLE.
  absl::Status Set(std::string_view redis_key, const redis::Args& args, std::string_view what);
  absl::Status DropWrite(std::string_view what, const absl::Status& cause);
  // One stderr line per topic per 10 s; the next line says how many were suppressed.
  enum class LogTopic { kOutage, kBadData, kTopology };
  void LogRateLimited(LogTopic topic, const std::string& message);

  const RedisStoreOptions options_;
  std::unique_ptr<redis::Topology> topology_;
  std::atomic<int64_t> moved_{0};
  std::atomic<int64_t> ask_{0};
  // Size of the last block value read (either way): GetMany's choice between them.
  std::atomic<uint64_t> last_value_bytes_{0};

  mutable absl::Mutex metrics_mu_;
  StoreMetrics metrics_ ABSL_GUARDED_BY(metrics_mu_);
  struct LogLimit {
    absl::Time last = absl::InfinitePast();
    int64_t suppressed = 0;
  };
  LogLimit log_limits_[3] ABSL_GUARDED_BY(metrics_mu_);
};

}  // namespace blockserve::kv_store

#endif  // BLOCKSERVE_KV_STORE_REDIS_REDIS_STORE_H_
