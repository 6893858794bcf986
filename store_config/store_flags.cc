#include "store_config/store_flags.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/model_flags.h"
#include "kv_store/codec.h"
#include "kv_store/redis/cluster_protocol.h"
#include "kv_store/redis/redis_store.h"
#include "kv_store/shm_store.h"
#include "kv_store/tiered/tiered_store.h"

namespace {
// --redis_host and --redis_port at their defaults are not "given" (with --redis_cluster).
constexpr char kDefaultRedisHost[] = "127.0.0.1";
constexpr int kDefaultRedisPort = 6379;
}  // namespace

ABSL_FLAG(std::string, kv_store, "shm",
          "KV store backend: shm (POSIX shared memory on this node), redis (shared across "
          "nodes) or tiered (shared memory in front of Redis)");
ABSL_FLAG(std::string, shm_name, "/blockserve-kv",
          "POSIX shared-memory segment name (\"/\" then no other \"/\"); every process on "
          "a node that uses the same name shares one store (shm, tiered)");
ABSL_FLAG(uint64_t, shm_capacity_bytes, uint64_t{1} << 30,
          "data capacity of the shared-memory segment in bytes; only the process that "
          "creates the segment sizes it (shm, tiered)");
ABSL_FLAG(std::string, redis_host, kDefaultRedisHost,
          "Redis host, a single Redis (redis, tiered; not with --redis_cluster)");
ABSL_FLAG(int, redis_port, kDefaultRedisPort,
          "Redis port, a single Redis (redis, tiered; not with --redis_cluster)");
ABSL_FLAG(std::string, redis_cluster, "",
          "a Redis Cluster instead of a single Redis: host:port[,host:port...] of some of "
          "its nodes (any one that answers gives the slot map; list several, or a name that "
          "resolves to any node). Keys are spread over the masters by hash slot, MOVED and "
          "ASK are followed, and a failed master's slots are served again once its replica "
          "is promoted. Not with --redis_host/--redis_port (redis, tiered)");
ABSL_FLAG(int64_t, redis_block_ttl_s, 0,
          "time to live of KV blocks written to Redis, seconds (SET ... PX); 0: none. With "
          "a TTL, run Redis with a volatile-* maxmemory-policy: it then evicts blocks only, "
          "never the sources and catalog entries that have no TTL (a block evicted is "
          "recomputed from its source). Without one, volatile-* evicts nothing and a full "
          "Redis refuses writes (redis, tiered)");
ABSL_FLAG(std::string, redis_password_file, "",
          "file holding the Redis password (a trailing newline is ignored), sent with AUTH "
          "on every connection, to every node of a cluster; empty: no AUTH (redis, "
          "tiered)");
ABSL_FLAG(std::string, redis_user, "",
          "Redis ACL user to AUTH as, with --redis_password_file; empty: the default user "
          "(requirepass) (redis, tiered)");

namespace blockserve::store_config {
namespace {

absl::StatusOr<StoreKind> ParseKind(const std::string& s) {
  if (s == "shm") return StoreKind::kShm;
  if (s == "redis") return StoreKind::kRedis;
  if (s == "tiered") return StoreKind::kTiered;
  return absl::InvalidArgumentError(
      absl::StrCat("--kv_store must be shm, redis or tiered, got \"", s, "\""));
}

// The password in `path`, without the line end an editor or `echo` leaves after it.
// Errors name the file, never its content.
absl::StatusOr<std::string> ReadPasswordFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in.is_open()) {
    return absl::InvalidArgumentError(absl::StrCat("--redis_password_file: cannot open \"",
                                                   path, "\": ", strerror(errno)));
  }
  std::stringstream content;
  content << in.rdbuf();
  std::string password = content.str();
  while (!password.empty() && (password.back() == '\n' || password.back() == '\r')) {
    password.pop_back();
  }
  if (password.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--redis_password_file: \"", path, "\" is empty or cannot be read"));
  }
  return password;
}

}  // namespace

absl::StatusOr<StoreConfig> StoreConfigFromFlags() {
  StoreConfig c;
  absl::StatusOr<StoreKind> kind = ParseKind(absl::GetFlag(FLAGS_kv_store));
  if (!kind.ok()) return kind.status();
  // --kv_dtype is common/model_flags': one element type for the engine and the store.
  absl::StatusOr<engine::DType> dtype = KvDTypeFromFlags();
  if (!dtype.ok()) return dtype.status();
  c.kind = *kind;
  c.dtype = *dtype;
  c.shm_name = absl::GetFlag(FLAGS_shm_name);
  c.shm_capacity_bytes = absl::GetFlag(FLAGS_shm_capacity_bytes);
  c.redis_host = absl::GetFlag(FLAGS_redis_host);
  c.redis_port = absl::GetFlag(FLAGS_redis_port);
  if (c.shm_capacity_bytes == 0) {
    return absl::InvalidArgumentError("--shm_capacity_bytes must be > 0");
  }
  if (c.redis_port < 1 || c.redis_port > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("--redis_port must be in 1..65535, got ", c.redis_port));
  }
  const std::string cluster = absl::GetFlag(FLAGS_redis_cluster);
  if (!cluster.empty()) {
    if (c.kind == StoreKind::kShm) {
      return absl::InvalidArgumentError(
          "--redis_cluster needs --kv_store=redis or --kv_store=tiered");
    }
    if (c.redis_host != kDefaultRedisHost || c.redis_port != kDefaultRedisPort) {
      return absl::InvalidArgumentError(
          "--redis_cluster and --redis_host/--redis_port are exclusive: a cluster's nodes "
          "are given by --redis_cluster alone");
    }
    for (absl::string_view seed : absl::StrSplit(cluster, ',')) {
      const std::string entry(absl::StripAsciiWhitespace(seed));
      const absl::StatusOr<kv_store::redis::HostPort> parsed =
          kv_store::redis::ParseHostPort(entry);
      if (!parsed.ok()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--redis_cluster=", cluster, ": ", parsed.status().message()));
      }
      c.redis_cluster_seeds.push_back(entry);
    }
  }
  const int64_t ttl_s = absl::GetFlag(FLAGS_redis_block_ttl_s);
  if (ttl_s < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("--redis_block_ttl_s must be >= 0 (0: no TTL), got ", ttl_s));
  }
  if (ttl_s > 0) c.redis_block_ttl = absl::Seconds(ttl_s);
  c.redis_user = absl::GetFlag(FLAGS_redis_user);
  const std::string password_file = absl::GetFlag(FLAGS_redis_password_file);
  if (!password_file.empty()) {
    absl::StatusOr<std::string> password = ReadPasswordFile(password_file);
    if (!password.ok()) return password.status();
    c.redis_password = *std::move(password);
  } else if (!c.redis_user.empty()) {
    return absl::InvalidArgumentError("--redis_user needs --redis_password_file");
  }
  return c;
}

absl::StatusOr<std::unique_ptr<kv_store::KvStore>> OpenStore(const StoreConfig& config,
                                                                uint64_t model_fingerprint,
                                                                const engine::KvShape& shape,
                                                                engine::DType cache_dtype) {
  const kv_store::CodecOptions codec{model_fingerprint, shape, config.dtype, cache_dtype};
  auto open_shm = [&]() -> absl::StatusOr<std::unique_ptr<kv_store::KvStore>> {
    kv_store::ShmStoreOptions o;
    o.name = config.shm_name;
    o.capacity_bytes = config.shm_capacity_bytes;
    o.codec = codec;
    absl::StatusOr<std::unique_ptr<kv_store::ShmStore>> s = kv_store::ShmStore::Open(o);
    if (!s.ok()) return s.status();
    return std::unique_ptr<kv_store::KvStore>(*std::move(s));
  };
  auto open_redis = [&]() -> absl::StatusOr<std::unique_ptr<kv_store::KvStore>> {
    kv_store::RedisStoreOptions o;
    o.host = config.redis_host;
    o.port = config.redis_port;
    o.cluster_seeds = config.redis_cluster_seeds;
    o.ttl = config.redis_block_ttl;
    o.user = config.redis_user;
    o.password = config.redis_password;
    o.codec = codec;
    absl::StatusOr<std::unique_ptr<kv_store::RedisStore>> s = kv_store::RedisStore::Open(o);
    if (absl::IsUnauthenticated(s.status()) || absl::IsPermissionDenied(s.status())) {
      return absl::Status(s.status().code(),
                          absl::StrCat(s.status().message(),
                                       " (check --redis_user and --redis_password_file)"));
    }
    if (!s.ok()) return s.status();
    return std::unique_ptr<kv_store::KvStore>(*std::move(s));
  };
  switch (config.kind) {
    case StoreKind::kShm:
      return open_shm();
    case StoreKind::kRedis:
      return open_redis();
    case StoreKind::kTiered: {
      absl::StatusOr<std::unique_ptr<kv_store::KvStore>> local = open_shm();
      if (!local.ok()) return local.status();
      absl::StatusOr<std::unique_ptr<kv_store::KvStore>> remote = open_redis();
      if (!remote.ok()) return remote.status();
      return std::unique_ptr<kv_store::KvStore>(
          std::make_unique<kv_store::TieredStore>(*std::move(local), *std::move(remote)));
    }
  }
  return absl::InternalError("unknown store kind");
}

std::string DescribeStore(const StoreConfig& config) {
  const std::string dtype = absl::AsciiStrToLower(std::string(engine::DTypeName(config.dtype)));
  const std::string shm = absl::StrCat("shm ", config.shm_name, " (", config.shm_capacity_bytes,
                                       " bytes)");
  std::string redis =
      config.redis_cluster_seeds.empty()
          ? absl::StrCat("redis ", config.redis_host, ":", config.redis_port)
          : absl::StrCat("redis cluster (seeds ", absl::StrJoin(config.redis_cluster_seeds, ","),
                         ")");
  if (config.redis_block_ttl.has_value()) {
    absl::StrAppend(&redis, " (block TTL ", absl::FormatDuration(*config.redis_block_ttl), ")");
  }
  if (!config.redis_password.empty()) {
    absl::StrAppend(&redis, " (AUTH as ",
                    config.redis_user.empty() ? "the default user" : config.redis_user, ")");
  }
  switch (config.kind) {
    case StoreKind::kShm:
      return absl::StrCat(shm, ", ", dtype);
    case StoreKind::kRedis:
      return absl::StrCat(redis, ", ", dtype);
    case StoreKind::kTiered:
      return absl::StrCat("tiered: ", shm, " then ", redis, ", ", dtype);
  }
  return "?";
}

absl::StatusOr<FlagStore> OpenStoreFromFlags(uint64_t model_fingerprint,
                                             const engine::KvShape& shape,
                                             engine::DType cache_dtype) {
  absl::StatusOr<StoreConfig> config = StoreConfigFromFlags();
  if (!config.ok()) return config.status();
  absl::StatusOr<std::unique_ptr<kv_store::KvStore>> store =
      OpenStore(*config, model_fingerprint, shape, cache_dtype);
  if (!store.ok()) return store.status();
  return FlagStore{*std::move(store), DescribeStore(*config)};
}

}  // namespace blockserve::store_config
