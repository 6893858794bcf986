// KV store throughput: how fast one block's KV goes into and comes out of each store.
//
// For each block size (--tokens, of a --layers x --kv_heads x --head_dim model; the
// default is Llama-3-8B's KV shape) and each dtype (bf16, f32) it times:
//   memcpy         a copy of the encoded value's size: the machine's ceiling;
//   streaming copy the same copy with streaming stores (engine::CopyBypassingCache), as
//                  a decode of a value of at least kv_store::kBypassCacheMinBytes does;
//   checksum       the value checksum alone: format 1's Hash64 (old) and XXH3-64 (new);
//   codec          EncodeBlockValue / DecodeBlockValue alone (no store);
//   shm            ShmStore Put / Get (codec included: the Get's value is verified and
//                  decoded into a new KvCache of the same dtype, what a service with
//                  that --kv_dtype gets);
//   shm GetInto    ShmStore::GetInto a caller-owned destination of the stored dtype,
//                  allocated once (no allocation per get);
//   redis          RedisStore Put / Get on loopback (codec included; the Get verified
//                  and decoded into a KvCache), and a GetMany of 8 blocks;
//   redis-benchmark  redis-benchmark's own SET/GET of a value of the same size, 1 and
//                  4 clients: the anchor for what this Redis serves on this machine;
//   tiered         TieredStore(shm, redis): write-through Put / Get that hits shm;
//   tiered remote  Get of a block only Redis has: local miss, remote hit, promotion.
// GB/s = encoded bytes moved by one call / its wall time; each cell is the median over
// --reps repetitions (after untimed warm-ups) with min and max. Stores run in steady
// state: every repetition uses a new key, the shared-memory segments hold only a few
// blocks (so Puts recycle pages through eviction, as on a full node), and each block is
// deleted from Redis after its repetition. Writes the Markdown table and a CSV to --out.
// Redis is a redis-server this program starts on a free loopback port unless
// --redis_port names one (then blocks get a 2-minute TTL instead of being deleted).
#include <stdio.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "engine/memory.h"
#include "absl/flags/usage.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "engine/dtype.h"
#include "engine/kv_cache.h"
#include "kv_store/block_store.h"
#include "kv_store/codec.h"
#include "kv_store/hash.h"
#include "kv_store/redis/redis_store.h"
#include "kv_store/redis/testing/redis_server.h"
#include "kv_store/shm_store.h"
#include "kv_store/tiered/tiered_store.h"

ABSL_FLAG(std::string, out, "bench/results",
          "folder for kv_store_bench.md and kv_store_bench.csv; relative paths are taken from the "
          "workspace root under `bazel run`");
ABSL_FLAG(int, reps, 10, "timed repetitions per measurement (after 3 untimed warm-ups)");
ABSL_FLAG(std::string, tokens, "16,148,512", "comma-separated block lengths in tokens");
ABSL_FLAG(int, layers, 32, "model layers (Llama-3-8B: 32)");
ABSL_FLAG(int, kv_heads, 8, "KV heads (Llama-3-8B: 8)");
ABSL_FLAG(int, head_dim, 128, "head dimension (Llama-3-8B: 128)");
ABSL_FLAG(std::string, redis_host, "127.0.0.1", "Redis host when --redis_port is given");
ABSL_FLAG(int, redis_port, 0,
          "an existing Redis to use; 0 starts a redis-server on a free loopback port");
ABSL_FLAG(int, redis_get_chunk_kib, 2048,
          "RedisStoreOptions::get_chunk_bytes, in KiB: GETRANGE chunk of a large get");
ABSL_FLAG(int, redis_get_connections, 4,
          "RedisStoreOptions::get_connections: parallel connections of a large get");
ABSL_FLAG(bool, quick, false, "smoke run: a tiny model shape, 8 tokens, 2 repetitions");

namespace blockserve::bench {
namespace {

using kv_store::BlockKey;
using kv_store::BlockStore;
using kv_store::CodecOptions;

constexpr uint64_t kFingerprint = 0xbe9c'0000'0000'0001ULL;

struct Config {
  engine::KvShape shape;
  std::vector<int64_t> tokens;
  int reps = 0;
  std::string redis_host;
  int redis_port = 0;
  size_t get_chunk_bytes = 0;
  int get_connections = 0;
  bool own_redis = false;
  std::filesystem::path out;
};

// GB/s samples of one operation.
struct Series {
  std::vector<double> gbps;
  double Median() const {
    std::vector<double> s = gbps;
    std::sort(s.begin(), s.end());
    const size_t n = s.size();
    return n == 0 ? 0 : (n % 2 == 1 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]));
  }
  double Min() const { return gbps.empty() ? 0 : *std::min_element(gbps.begin(), gbps.end()); }
  double Max() const { return gbps.empty() ? 0 : *std::max_element(gbps.begin(), gbps.end()); }
};

struct Row {
  std::string store;
  std::string dtype;
  int64_t tokens = 0;
  size_t value_bytes = 0;
  std::optional<Series> put;  // "put" is encode for the codec row
  std::optional<Series> get;  // "get" is decode for the codec row
  int blocks_per_call = 1;    // GetMany rows move several blocks per call
};

Row NewRow(std::string store, std::string_view dtype, int64_t tokens, size_t value_bytes) {
  Row row;
  row.store = std::move(store);
  row.dtype = std::string(dtype);
  row.tokens = tokens;
  row.value_bytes = value_bytes;
  return row;
}

double GBps(size_t bytes, absl::Duration d) {
  return static_cast<double>(bytes) / 1e9 / absl::ToDoubleSeconds(d);
}

// Untimed repetitions before the timed ones. Three also fill the shared-memory tiers
// (kShmBlocks values), so timed Puts recycle pages through eviction as a full node does.
constexpr int kWarmups = 3;
constexpr size_t kShmBlocks = 3;
constexpr size_t kShmPageBytes = 16 << 10;

// Times `op` once; aborts the benchmark when the store fails, since a number for a
// failed call would be meaningless.
absl::Duration Time(const std::function<absl::Status()>& op, std::string_view what) {
  const absl::Time start = absl::Now();
  const absl::Status status = op();
  const absl::Duration d = absl::Now() - start;
  if (!status.ok()) {
    std::cerr << "kv_store_bench: " << what << " failed: " << status << "\n";
    std::exit(1);
  }
  return d;
}

// Everything the measurements of one (block size, dtype) share.
struct Case {
  const Config* config = nullptr;
  std::string dtype;
  CodecOptions codec;
  engine::KvCache kv;
  size_t bytes = 0;  // encoded value size
  // Drops a block from Redis after its repetition, so Redis does not grow across
  // repetitions (a no-op for an external Redis, whose keys expire instead).
  std::function<void(const BlockKey&)> forget;
};

// Runs `op(rep)` kWarmups times untimed and then --reps times, collecting GB/s for
// `bytes` moved per call.
Series Measure(const Case& c, size_t bytes, const std::function<absl::Duration(int rep)>& op) {
  for (int rep = -kWarmups; rep < 0; ++rep) op(rep);
  Series s;
  for (int rep = 0; rep < c.config->reps; ++rep) s.gbps.push_back(GBps(bytes, op(rep)));
  return s;
}

engine::KvCache MakeBlock(const engine::KvShape& shape, int64_t num_tokens) {
  engine::KvCache kv(shape);
  std::vector<int32_t> tokens(num_tokens);
  for (int64_t t = 0; t < num_tokens; ++t) tokens[t] = static_cast<int32_t>(t * 37 % 128000);
  kv.Append(tokens);
  uint32_t state = 12345;
  for (int64_t l = 0; l < shape.num_layers; ++l) {
    for (int64_t i = 0; i < num_tokens * shape.row(); ++i) {
      state = state * 1664525u + 1013904223u;  // values in [-2, 2): realistic exponents for bf16
      kv.k(l)[i] = static_cast<float>(state >> 8) / static_cast<float>(1 << 22) - 2.0f;
      kv.v(l)[i] = -kv.k(l)[i] * 0.5f;
    }
  }
  return kv;
}

// Distinct keys per (operation, repetition): the stores are content-addressed, and the
// shared-memory store does not rewrite a key it already holds.
BlockKey RepKey(const Case& c, int op, int rep) {
  const int32_t ids[] = {static_cast<int32_t>(c.kv.num_tokens()),
                         static_cast<int32_t>(c.codec.dtype), op, rep,
                         static_cast<int32_t>(getpid())};
  return kv_store::MakeBlockKey(kFingerprint, ids);
}

std::unique_ptr<kv_store::RedisStore> OpenRedis(const Case& c) {
  kv_store::RedisStoreOptions o;
  o.host = c.config->redis_host;
  o.port = c.config->redis_port;
  o.op_timeout = absl::Seconds(30);
  o.get_chunk_bytes = c.config->get_chunk_bytes;
  o.get_connections = c.config->get_connections;
  o.codec = c.codec;
  o.key_prefix = absl::StrCat("bench:", getpid(), ":");
  if (!c.config->own_redis) o.ttl = absl::Minutes(2);  // leave nothing behind in someone's Redis
  absl::StatusOr<std::unique_ptr<kv_store::RedisStore>> store = kv_store::RedisStore::Open(o);
  if (!store.ok()) {
    std::cerr << "kv_store_bench: " << store.status() << "\n";
    std::exit(1);
  }
  return *std::move(store);
}

// A fresh segment that holds kShmBlocks values.
std::unique_ptr<kv_store::ShmStore> OpenShm(const Case& c, const std::string& name) {
  kv_store::ShmStore::Remove(name).IgnoreError();
  kv_store::ShmStoreOptions o;
  o.name = name;
  o.page_bytes = kShmPageBytes;
  o.capacity_bytes = kShmBlocks * (c.bytes + 2 * kShmPageBytes);
  o.max_entries = 16;
  o.max_passages = 16;
  o.codec = c.codec;
  absl::StatusOr<std::unique_ptr<kv_store::ShmStore>> store = kv_store::ShmStore::Open(o);
  if (!store.ok()) {
    std::cerr << "kv_store_bench: shared memory '" << name << "': " << store.status() << "\n";
    std::exit(1);
  }
  return *std::move(store);
}

// One copy of the value's size: memcpy, or with streaming stores (what a decode of a
// large same-dtype value does: kv_store::kBypassCacheMinBytes).
Row CopyRow(const Case& c, const char* name, void (*copy)(void*, const void*, size_t)) {
  std::vector<char> src(c.bytes, 1), dst(c.bytes, 0);
  Row row = NewRow(name, c.dtype, c.kv.num_tokens(), c.bytes);
  row.put = row.get = Measure(c, c.bytes, [&](int) {
    const absl::Time start = absl::Now();
    copy(dst.data(), src.data(), c.bytes);
    const absl::Duration d = absl::Now() - start;
    src[c.bytes / 2] = dst[c.bytes / 3];  // keep the copy observable
    return d;
  });
  return row;
}

void Memcpy(void* dst, const void* src, size_t n) { std::memcpy(dst, src, n); }
void StreamingCopy(void* dst, const void* src, size_t n) {
  engine::CopyBypassingCache(dst, src, n);
  engine::StreamingStoreFence();
}

Row CodecRow(const Case& c) {
  const std::string value = kv_store::EncodeBlockValue(c.kv, c.codec);
  Row row = NewRow("codec only (encode / decode)", c.dtype, c.kv.num_tokens(), c.bytes);
  row.put = Measure(c, c.bytes, [&](int) {
    return Time(
        [&] {
          return kv_store::EncodeBlockValue(c.kv, c.codec).size() == c.bytes
                     ? absl::OkStatus()
                     : absl::InternalError("encoded size differs from EncodedValueBytes");
        },
        "encode");
  });
  row.get = Measure(c, c.bytes, [&](int) {
    return Time([&] { return kv_store::DecodeBlockValue(value, c.codec).status(); }, "decode");
  });
  return row;
}

// The value checksum alone over an encoded value: format 1's (Hash64 with its seed, as
// Checksum64 was) in the put column, format 2's XXH3-64 in the get column.
Row ChecksumRow(const Case& c) {
  const std::string value = kv_store::EncodeBlockValue(c.kv, c.codec);
  Row row = NewRow("checksum only (old Hash64 as put / new XXH3 as get)", c.dtype,
                   c.kv.num_tokens(), c.bytes);
  uint64_t sink = 0;
  row.put = Measure(c, c.bytes, [&](int) {
    const absl::Time start = absl::Now();
    sink ^= kv_store::Hash64(value.data(), value.size(), 0x6368656b73756d31ULL);
    return absl::Now() - start;
  });
  row.get = Measure(c, c.bytes, [&](int) {
    const absl::Time start = absl::Now();
    sink ^= kv_store::Checksum64(value.data(), value.size());
    return absl::Now() - start;
  });
  if (sink == 1) std::cerr << "";  // keeps the hashes from being optimized away
  return row;
}

// ShmStore::GetInto a destination of the stored dtype that the caller allocated once:
// a stored bf16 block into bf16 rows is one copy out of shared memory, checksummed on
// the way, without the new KvCache's allocation that the "shm" get row pays.
Row ShmGetIntoRow(const Case& c, kv_store::ShmStore& shm, int op_id) {
  Row row = NewRow("shm GetInto stored-dtype buffer (one copy)", c.dtype, c.kv.num_tokens(),
                   c.bytes);
  const size_t elements = static_cast<size_t>(c.kv.num_tokens() * c.config->shape.row());
  const size_t bytes = elements * engine::DTypeSize(c.codec.dtype);
  std::vector<std::vector<char>> k(c.config->shape.num_layers, std::vector<char>(bytes, 1));
  std::vector<std::vector<char>> v(c.config->shape.num_layers, std::vector<char>(bytes, 1));
  kv_store::KvDestination dest{.dtype = c.codec.dtype};
  for (int64_t l = 0; l < c.config->shape.num_layers; ++l) {
    dest.k.push_back(k[l].data());
    dest.v.push_back(v[l].data());
  }
  Series get;
  for (int rep = -kWarmups; rep < c.config->reps; ++rep) {
    const BlockKey key = RepKey(c, op_id, rep);
    Time([&] { return shm.Put(key, c.kv).status(); }, "shm seed put");
    const absl::Duration g = Time(
        [&] {
          return shm.GetInto(key, [&](const kv_store::ValueHeader&, absl::Span<const int32_t>) {
            return absl::StatusOr<kv_store::KvDestination>(dest);
          });
        },
        "shm GetInto");
    if (rep >= 0) get.gbps.push_back(GBps(c.bytes, g));
  }
  row.get = get;
  return row;
}

// redis-benchmark's own GET (and SET) of a value of c.bytes, `clients` connections,
// --reps runs of about 200 MB each: what this Redis serves to its own client on this
// machine, the anchor for the redis rows. Empty when redis-benchmark is not installed.
std::optional<Row> RedisBenchmarkRow(const Case& c, int clients) {
  Row row = NewRow(absl::StrCat("redis-benchmark -c ", clients, " (anchor; GB/s of all clients)"),
                   c.dtype, c.kv.num_tokens(), c.bytes);
  // About 200 MB per run (10 GETs of a 19 MB value), at least 4 per client; tiny values
  // (--quick) get enough requests that the run lasts long enough to be timed.
  const int requests = static_cast<int>(std::clamp<size_t>((200u << 20) / std::max<size_t>(c.bytes, 1),
                                                           4 * clients, 2000));
  const std::string command = absl::StrCat(
      "redis-benchmark -h ", c.config->redis_host, " -p ", c.config->redis_port, " -c ", clients,
      " -n ", requests, " -d ", c.bytes, " -t set,get --csv 2>/dev/null");
  Series put, get;
  for (int rep = 0; rep < c.config->reps; ++rep) {
    FILE* pipe = popen(command.c_str(), "r");
    if (pipe == nullptr) return std::nullopt;
    std::string out;
    char buf[4096];
    for (size_t got; (got = fread(buf, 1, sizeof(buf), pipe)) > 0;) out.append(buf, got);
    if (pclose(pipe) != 0) return std::nullopt;
    // --csv lines: "SET","<requests per second>",... and "GET",...
    for (absl::string_view line : absl::StrSplit(out, '\n')) {
      std::vector<std::string> fields = absl::StrSplit(line, ',');
      if (fields.size() < 2) continue;
      absl::string_view rps_text = absl::StripAsciiWhitespace(fields[1]);
      absl::ConsumePrefix(&rps_text, "\"");
      absl::ConsumeSuffix(&rps_text, "\"");
      double rps = 0;
      if (!absl::SimpleAtod(rps_text, &rps) || !std::isfinite(rps) || rps <= 0) continue;
      const double gbps = rps * static_cast<double>(c.bytes) / 1e9;
      if (fields[0] == "\"SET\"") put.gbps.push_back(gbps);
      if (fields[0] == "\"GET\"") get.gbps.push_back(gbps);
    }
  }
  if (get.gbps.empty()) return std::nullopt;
  row.put = put;
  row.get = get;
  return row;
}

// Per repetition: Put of a new key, then Get of it, timed separately.
Row PutGetRow(const Case& c, std::string name, BlockStore& store, int op_id) {
  Row row = NewRow(std::move(name), c.dtype, c.kv.num_tokens(), c.bytes);
  Series put, get;
  for (int rep = -kWarmups; rep < c.config->reps; ++rep) {
    const BlockKey key = RepKey(c, op_id, rep);
    const absl::Duration p = Time([&] { return store.Put(key, c.kv).status(); }, row.store + " put");
    const absl::Duration g = Time([&] { return store.Get(key).status(); }, row.store + " get");
    c.forget(key);
    if (rep < 0) continue;
    put.gbps.push_back(GBps(c.bytes, p));
    get.gbps.push_back(GBps(c.bytes, g));
  }
  row.put = put;
  row.get = get;
  return row;
}

// One GetMany of kBatch blocks per repetition (pipelined GETs, or each block in GETRANGE
// chunks once the store has seen values of several chunks: the warm-ups have); GB/s
// counts all their bytes.
Row GetManyRow(const Case& c, kv_store::RedisStore& redis, int op_id) {
  constexpr int kBatch = 8;
  Row row = NewRow(absl::StrCat("redis GetMany x", kBatch), c.dtype,
                   c.kv.num_tokens(), c.bytes);
  row.blocks_per_call = kBatch;
  std::vector<BlockKey> keys;
  for (int i = 0; i < kBatch; ++i) {
    keys.push_back(RepKey(c, op_id, i));
    Time([&] { return redis.Put(keys.back(), c.kv).status(); }, "redis seed put");
  }
  row.get = Measure(c, kBatch * c.bytes, [&](int) {
    return Time(
        [&] {
          for (const auto& got : redis.GetMany(keys)) {
            if (!got.ok()) return got.status();
          }
          return absl::OkStatus();
        },
        "redis GetMany");
  });
  for (const BlockKey& key : keys) c.forget(key);
  return row;
}

// Get of a block only Redis holds, through the tiered store: the path a node takes for
// a passage another node encoded (local miss, remote hit, promotion into shm).
Row TieredRemoteRow(const Case& c, BlockStore& tiered, BlockStore& redis_peer, int op_id) {
  Row row = NewRow("tiered (remote hit + promote)", c.dtype, c.kv.num_tokens(), c.bytes);
  row.get = Measure(c, c.bytes, [&](int rep) {
    const BlockKey key = RepKey(c, op_id, rep);
    Time([&] { return redis_peer.Put(key, c.kv).status(); }, "redis seed put");
    const absl::Duration d = Time([&] { return tiered.Get(key).status(); }, "tiered remote get");
    c.forget(key);
    return d;
  });
  return row;
}

std::vector<Row> RunCase(const Config& config, int64_t tokens, engine::DType dtype,
                         kv_store::testing::RedisServer* server) {
  Case c;
  c.config = &config;
  c.dtype = dtype == engine::DType::kBF16 ? "bf16" : "f32";
  // As a service with --kv_dtype=<dtype> runs: the engine's caches and the stored values
  // share the dtype, so a get of a bf16 value decodes into a bf16 KvCache (one copy).
  c.codec = {.model_fingerprint = kFingerprint, .shape = config.shape, .dtype = dtype,
             .cache_dtype = dtype};
  engine::KvCache f32 = MakeBlock(config.shape, tokens);
  c.kv = engine::KvCache(config.shape, dtype);
  c.kv.AppendCopy(f32);
  c.bytes = kv_store::EncodedValueBytes(config.shape, tokens, dtype);
  std::unique_ptr<kv_store::RedisStore> peer = OpenRedis(c);  // another node's client
  c.forget = [&](const BlockKey& key) {
    if (server != nullptr) server->Call({"DEL", peer->BlockRedisKey(key)}).IgnoreError();
  };

  std::vector<Row> rows;
  rows.push_back(CopyRow(c, "memcpy (ceiling)", Memcpy));
  rows.push_back(
      CopyRow(c, "streaming-store copy (engine::CopyBypassingCache)", StreamingCopy));
  rows.push_back(ChecksumRow(c));
  rows.push_back(CodecRow(c));
  const std::string shm_name = absl::StrCat("/blockserve-bench-", getpid());
  rows.push_back(PutGetRow(c, "shm", *OpenShm(c, shm_name), 1));
  rows.push_back(ShmGetIntoRow(c, *OpenShm(c, shm_name), 6));
  {
    std::unique_ptr<kv_store::RedisStore> redis = OpenRedis(c);
    rows.push_back(PutGetRow(c, "redis", *redis, 2));
    rows.push_back(GetManyRow(c, *redis, 3));
  }
  for (int clients : {1, 4}) {
    if (std::optional<Row> anchor = RedisBenchmarkRow(c, clients); anchor.has_value()) {
      rows.push_back(*std::move(anchor));
    } else {
      std::cerr << "kv_store_bench: no redis-benchmark row (is redis-tools installed?)\n";
    }
  }
  {
    kv_store::TieredStore tiered(OpenShm(c, shm_name), OpenRedis(c));
    rows.push_back(PutGetRow(c, "tiered (write-through put, local-hit get)", tiered, 4));
    rows.push_back(TieredRemoteRow(c, tiered, *peer, 5));
  }
  kv_store::ShmStore::Remove(shm_name).IgnoreError();

  return rows;
}

// Median milliseconds per call of `s` for a row moving `call_bytes` per call.
double MedianMs(const Series& s, double call_bytes) {
  const double median = s.Median();
  return median > 0 ? call_bytes / 1e6 / median : 0.0;
}

// "median | min–max | ms" cells of one operation, or dashes.
std::string Cells(const Row& r, const std::optional<Series>& s) {
  if (!s.has_value()) return "— | — | —";
  return absl::StrFormat("%.2f | %.2f–%.2f | %.2f", s->Median(), s->Min(), s->Max(),
                         MedianMs(*s, static_cast<double>(r.value_bytes) * r.blocks_per_call));
}

std::string MarkdownTable(const std::vector<Row>& rows) {
  std::string out =
      "| store | dtype | tokens | value MB | put GB/s | put min–max | put ms | get GB/s | "
      "get min–max | get ms |\n"
      "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
  for (const Row& r : rows) {
    absl::StrAppendFormat(&out, "| %s | %s | %d | %.2f | %s | %s |\n", r.store, r.dtype, r.tokens,
                          static_cast<double>(r.value_bytes) / 1e6, Cells(r, r.put),
                          Cells(r, r.get));
  }
  return out;
}

std::string Csv(const std::vector<Row>& rows) {
  std::string out =
      "store,dtype,tokens,value_bytes,blocks_per_call,op,reps,median_gbps,min_gbps,max_gbps,"
      "median_ms\n";
  for (const Row& r : rows) {
    for (const auto& [op, s] : {std::pair{"put", &r.put}, std::pair{"get", &r.get}}) {
      if (!s->has_value()) continue;
      absl::StrAppendFormat(&out, "\"%s\",%s,%d,%d,%d,%s,%d,%.4f,%.4f,%.4f,%.4f\n", r.store,
                            r.dtype, r.tokens, r.value_bytes, r.blocks_per_call, op,
                            (*s)->gbps.size(), (*s)->Median(), (*s)->Min(), (*s)->Max(),
                            MedianMs(**s, static_cast<double>(r.value_bytes) * r.blocks_per_call));
    }
  }
  return out;
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos) return line.substr(colon + 2);
    }
  }
  return "unknown CPU";
}

// The 1-minute load average: other work on the machine shows up as spread in the table.
std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string load;
  in >> load;
  return load.empty() ? "unknown" : load;
}

std::string Preamble(const Config& c, const std::string& redis_version,
                     const std::string& load_before) {
  return absl::StrFormat(
      "# KV store throughput\n\n"
      "Run %s on %s (%d hardware threads; load average %s before, %s after), Redis %s on "
      "loopback%s.\n"
      "Model KV shape: %d layers x %d KV heads x head_dim %d; %d repetitions per cell after %d "
      "warm-ups.\n"
      "GB/s = encoded bytes moved by one call / its wall time (median, then min–max); ms = median "
      "wall time of one call.\n"
      "Store rows include encode (put) or decode (get); \"codec only\" times EncodeBlockValue and "
      "DecodeBlockValue alone, \"memcpy\" one copy of the value's size, \"streaming-store copy\" "
      "the same with non-temporal stores (what a decode of a same-dtype value of at least "
      "%d MiB does). Store gets are what a "
      "caller gets: the value checksum-verified and decoded into a new KvCache of the same "
      "dtype (as the services run with --kv_dtype bf16 or f32), except \"shm GetInto\", which "
      "decodes into caller-owned buffers allocated once. redis-benchmark rows: its own SET (put) / GET (get) of a value of the same size.\n"
      "Redis gets of a large value: GETRANGE chunks of %d KiB over up to %d connections, "
      "decoded as they land.\n\n",
      absl::FormatTime("%Y-%m-%d %H:%M UTC", absl::Now(), absl::UTCTimeZone()), CpuModel(),
      static_cast<int>(std::thread::hardware_concurrency()), load_before, LoadAverage(),
      redis_version, c.own_redis ? " (redis-server started by the benchmark)" : "",
      c.shape.num_layers, c.shape.num_kv_heads, c.shape.head_dim, c.reps, kWarmups,
      static_cast<int>(kv_store::kBypassCacheMinBytes >> 20),
      static_cast<int>(c.get_chunk_bytes / 1024), c.get_connections);
}

absl::StatusOr<Config> ConfigFromFlags() {
  Config c;
  const bool quick = absl::GetFlag(FLAGS_quick);
  c.shape = quick ? engine::KvShape{.num_layers = 2, .num_kv_heads = 2, .head_dim = 16}
                  : engine::KvShape{.num_layers = absl::GetFlag(FLAGS_layers),
                                    .num_kv_heads = absl::GetFlag(FLAGS_kv_heads),
                                    .head_dim = absl::GetFlag(FLAGS_head_dim)};
  c.reps = quick ? 2 : absl::GetFlag(FLAGS_reps);
  if (quick) {
    c.tokens = {8};
  } else {
    for (absl::string_view t :
         absl::StrSplit(absl::GetFlag(FLAGS_tokens), ',', absl::SkipEmpty())) {
      int64_t n = 0;
      if (!absl::SimpleAtoi(t, &n) || n <= 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("--tokens: expected positive integers, found '", std::string(t), "'"));
      }
      c.tokens.push_back(n);
    }
  }
  if (c.reps < 1 || c.tokens.empty() || c.shape.num_layers < 1 || c.shape.num_kv_heads < 1 ||
      c.shape.head_dim < 1) {
    return absl::InvalidArgumentError("--reps, --tokens and the model shape must be positive");
  }
  c.redis_host = absl::GetFlag(FLAGS_redis_host);
  c.redis_port = absl::GetFlag(FLAGS_redis_port);
  if (absl::GetFlag(FLAGS_redis_get_chunk_kib) < 1 || absl::GetFlag(FLAGS_redis_get_connections) < 1) {
    return absl::InvalidArgumentError("--redis_get_chunk_kib and --redis_get_connections must be positive");
  }
  c.get_chunk_bytes = size_t{1024} * absl::GetFlag(FLAGS_redis_get_chunk_kib);
  c.get_connections = absl::GetFlag(FLAGS_redis_get_connections);
  c.out = absl::GetFlag(FLAGS_out);
  if (c.out.is_relative()) {
    if (const char* root = std::getenv("BUILD_WORKSPACE_DIRECTORY"); root != nullptr)
      c.out = std::filesystem::path(root) / c.out;
  }
  return c;
}

// A redis-server for this run on a free loopback port; points `c` at it.
absl::StatusOr<std::unique_ptr<kv_store::testing::RedisServer>> StartRedis(Config& c) {
  absl::StatusOr<std::unique_ptr<kv_store::testing::RedisServer>> server =
      kv_store::testing::RedisServer::Start();
  if (!server.ok()) return server.status();
  c.redis_host = "127.0.0.1";
  c.redis_port = (*server)->port();
  c.own_redis = true;
  return server;
}

std::string RedisVersion(const kv_store::testing::RedisServer& server) {
  absl::StatusOr<std::string> info = server.Call({"INFO", "server"});
  if (info.ok()) {
    for (absl::string_view line : absl::StrSplit(*info, "\r\n")) {
      if (absl::ConsumePrefix(&line, "redis_version:")) return std::string(line);
    }
  }
  return "unknown";
}

int Main() {
  absl::StatusOr<Config> config = ConfigFromFlags();
  if (!config.ok()) {
    std::cerr << "kv_store_bench: " << config.status() << "\n";
    return 2;
  }
  Config& c = *config;
  std::unique_ptr<kv_store::testing::RedisServer> server;
  std::string redis_version = "(external)";
  if (c.redis_port == 0) {
    absl::StatusOr<std::unique_ptr<kv_store::testing::RedisServer>> started = StartRedis(c);
    if (!started.ok()) {
      std::cerr << "kv_store_bench: cannot start redis-server: " << started.status() << "\n";
      return 1;
    }
    server = *std::move(started);
    redis_version = RedisVersion(*server);
  }

  const std::string load_before = LoadAverage();
  std::vector<Row> rows;
  for (int64_t tokens : c.tokens) {
    for (engine::DType dtype : {engine::DType::kBF16, engine::DType::kF32}) {
      std::vector<Row> some = RunCase(c, tokens, dtype, server.get());
      rows.insert(rows.end(), some.begin(), some.end());
    }
  }

  const std::string markdown = Preamble(c, redis_version, load_before) + MarkdownTable(rows);
  std::cout << markdown;
  std::error_code ec;
  std::filesystem::create_directories(c.out, ec);
  std::ofstream md(c.out / "kv_store_bench.md"), csv(c.out / "kv_store_bench.csv");
  md << markdown;
  csv << Csv(rows);
  if (!md || !csv) {
    std::cerr << "kv_store_bench: cannot write results to " << c.out << "\n";
    return 1;
  }
  std::cerr << "kv_store_bench: wrote " << (c.out / "kv_store_bench.md") << " and "
            << (c.out / "kv_store_bench.csv") << "\n";
  return 0;
}

}  // namespace
}  // namespace blockserve::bench

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "Measures put/get throughput of the KV stores (shm, redis, tiered) in GB/s.");
  absl::ParseCommandLine(argc, argv);
  blockserve::KeepFreedMemoryForReuse();
  return blockserve::bench::Main();
}
