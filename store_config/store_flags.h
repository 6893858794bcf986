// The KV store a service uses, chosen by command-line flags that passage_encoder and
// query_prefill share, so that both processes open (and encode into) the same store:
//
//   --kv_store=shm|redis|tiered   shared memory on this node (default), Redis across
//                                 nodes, or shared memory in front of Redis
//   --shm_name, --shm_capacity_bytes   the POSIX shared-memory segment (shm, tiered)
//   --redis_host, --redis_port         the Redis server (redis, tiered)
//   --redis_cluster=host:port[,...]    instead: a Redis Cluster, given by some of its
//                                      nodes (redis, tiered)
//   --redis_block_ttl_s                TTL of the blocks written to Redis (redis, tiered)
//   --redis_password_file, --redis_user   AUTH on every Redis connection, to every node
//                                      of a cluster (redis, tiered)
//   --kv_dtype=bf16|f16|f32            element type of KV (common/model_flags.h: the engine's too)
//
// The flags are defined in store_flags.cc; a binary that links this library has them.
#ifndef BLOCKSERVE_STORE_CONFIG_STORE_FLAGS_H_
#define BLOCKSERVE_STORE_CONFIG_STORE_FLAGS_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/dtype.h"
#include "engine/kv_cache.h"
#include "kv_store/kv_store.h"

namespace blockserve::store_config {

enum class StoreKind { kShm, kRedis, kTiered };

struct StoreConfig {
  StoreKind kind = StoreKind::kShm;
  std::string shm_name = "/blockserve-kv";
  uint64_t shm_capacity_bytes = uint64_t{1} << 30;
  std::string redis_host = "127.0.0.1";
  int redis_port = 6379;
  // Non-empty: a Redis Cluster, whose slot map comes from any of these "host:port"
  // nodes; redis_host and redis_port are then unused.
  std::vector<std::string> redis_cluster_seeds;
  // AUTH as redis_user (empty: the default user) with redis_password (empty: no AUTH).
  // The password is read from --redis_password_file; it is never logged or described.
  std::string redis_user;
  std::string redis_password;
  // --redis_block_ttl_s: the TTL of blocks written to Redis; nullopt: none.
  std::optional<absl::Duration> redis_block_ttl;
  engine::DType dtype = engine::DType::kBF16;
};

// Reads the flags, and the password file when one is given. InvalidArgument (naming the
// flag and the value) for an unknown store kind or dtype, a zero capacity, a port
// outside 1..65535, a password file that cannot be read or is empty (its name is in the
// error, never its content), --redis_user without a password file, a --redis_cluster
// entry that is not host:port, --redis_cluster with --redis_host or --redis_port (set to
// other than their defaults), or --redis_cluster with --kv_store=shm.
absl::StatusOr<StoreConfig> StoreConfigFromFlags();

// Opens the configured store for a model (its fingerprint and KV shape go into every
// value's header and are checked on every read); gets return KV in `cache_dtype`, the
// engine's (Engine::kv_dtype). Errors are the backends' (a shared
// memory segment of another layout, bad options, a Redis that refuses the credentials:
// Unauthenticated or PermissionDenied, naming its address; FailedPrecondition for a
// cluster node given as --redis_host, or a --redis_cluster seed that is not a cluster
// node); an unreachable Redis is not an error here: RedisStore treats it as misses and
// dropped writes until it comes back.
absl::StatusOr<std::unique_ptr<kv_store::KvStore>> OpenStore(const StoreConfig& config,
                                                                uint64_t model_fingerprint,
                                                                const engine::KvShape& shape,
                                                                engine::DType cache_dtype =
                                                                    engine::DType::kF32);

// A store opened from the flags, with DescribeStore of its configuration.
struct FlagStore {
  std::unique_ptr<kv_store::KvStore> store;
  std::string description;
};
// StoreConfigFromFlags then OpenStore: what a service's main() calls.
absl::StatusOr<FlagStore> OpenStoreFromFlags(uint64_t model_fingerprint,
                                             const engine::KvShape& shape,
                                             engine::DType cache_dtype = engine::DType::kF32);

// A one-line description for start-up logs, e.g. "shm /blockserve-kv (1073741824 bytes, bf16)".
std::string DescribeStore(const StoreConfig& config);

}  // namespace blockserve::store_config

#endif  // BLOCKSERVE_STORE_CONFIG_STORE_FLAGS_H_
