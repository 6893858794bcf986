// BlockCache: cache-or-compute of passage blocks, the one place that knows how a block's
// position-0 KV gets from a passage to the KV store and back. The passage encoder and the
// query prefill are thin services over it:
//
//   ingest (encoder):   PassageTokens -> Ingest: key, encode unless stored, put, and for
//                       a named passage its source then its catalog entry.
//   prompt (prefill):   SystemBlock / Resolve each reference -> Fetch (one GetMany) ->
//                       EncodeMisses (write back per policy) -> the engine attends.
//
// Every call works within a tenant's scope (security/tenant_scope.h): keys and passage
// ids of its namespace, passage ids of its read namespaces.
//
// A block is identified by its content key (KeySpace::BlockKeyOf(ns, tokens)). A stored
// value is used only when it is that key's block: any other value under a key (another
// block's, written behind the store's back) is a miss that is counted, logged with the
// key and removed, so the block computed in its place is written back and the store
// heals. A named passage whose block is wrong takes its tokens from its source; one whose
// source is wrong too is NOT_FOUND (ingest again). Nothing wrong is ever served.
//
// Thread-safe: requests may run concurrently (the engine serializes its compute; the
// store is thread-safe).
#ifndef BLOCKSERVE_BLOCKS_BLOCK_CACHE_H_
#define BLOCKSERVE_BLOCKS_BLOCK_CACHE_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "blocks/key_space.h"
#include "engine/engine.h"
#include "kv_store/kv_store.h"
#include "proto/blockserve.pb.h"
#include "security/tenant_scope.h"

namespace blockserve::blocks {

// One block of a prompt, in prompt order.
struct PromptBlock {
  std::vector<int32_t> tokens;  // for a passage named by id: filled by Fetch
  kv_store::BlockKey key;
  std::string ns;               // the namespace `key` is in (KeySpace::BlockKeyOf)
  std::string passage_id;       // set when the request named it by catalog id (as named)
  // In: the caller attends to the block's cached position-0 KV (block mode, not a
  // global block, cache not bypassed). Fetch and EncodeMisses fill `kv` only then.
  bool want_kv = false;
  std::optional<engine::KvCache> kv;
  bool hit = false;  // kv came from the store
};

// What Fetch does when a block the store should supply cannot be loaded (the store
// failed, its value is not the block's, a named passage's block was evicted); see
// v1::KvLoadFailurePolicy.
enum class LoadFailurePolicy {
  kRecompute,  // treat it as a miss: EncodeMisses encodes it (named: from its source)
  kFail,       // Fetch returns UNAVAILABLE naming the block and the reason
};

// What fetching and encoding a prompt's blocks cost.
struct CacheStats {
  uint64_t kv_bytes_fetched = 0;  // values read from the store (stored size)
  uint64_t kv_bytes_written = 0;  // values written back (what the store wrote)
  int64_t passages_reencoded = 0; // named passages encoded again from their source
  int64_t corrupt_values = 0;     // stored values that were not their key's (removed)
  int64_t load_failures = 0;      // wanted blocks the store should have supplied and did not
  double encode_flops = 0;        // model FLOPs of the blocks EncodeMisses computed
};

// What ingesting one passage did.
struct Ingested {
  kv_store::BlockKey key;
  int64_t token_count = 0;
  bool already_cached = false;  // the store held the block; nothing was encoded
  bool repaired = false;        // the store held another block's value under the key
  double encode_ms = 0;         // model compute time (0 when already cached)
  uint64_t kv_bytes_written = 0;
};

class BlockCache {
 public:
  // `engine` and `store` must outlive the cache.
  BlockCache(engine::Engine& engine, kv_store::KvStore& store);

  engine::Engine& engine() const { return engine_; }
  const KeySpace& keys() const { return keys_; }

  // ─────────────────────────── resolving references ───────────────────────────

  // The block of a system prompt (engine/prompt.h); nullopt when it has no tokens.
  std::optional<PromptBlock> SystemBlock(const security::TenantScope& scope,
                                         std::string_view system_prompt) const;

  // A prompt's passage reference: by catalog id, looked up in the scope's namespace and
  // then its read namespaces (NotFound when in none, Unavailable when the catalog cannot
  // be read; its tokens come with Fetch), inline text or inline token ids, keyed in the
  // scope's namespace (InvalidArgument saying what is wrong: PassageContentTokens' rules).
  absl::StatusOr<PromptBlock> Resolve(const security::TenantScope& scope,
                                      const v1::PassageRef& ref) const;

  // An ingested passage's block tokens (its text or token ids; InvalidArgument as
  // PassageContentTokens).
  absl::StatusOr<std::vector<int32_t>> PassageTokens(const v1::Passage& passage) const;

  // ──────────────────────────────── get or encode ────────────────────────────────

  // Reads, in one GetMany, every block that wants its KV and every passage named by id
  // (whose tokens are only in the store). A named passage whose block is gone (or wrong)
  // takes its tokens from its stored source (NotFound, saying to ingest again, when that
  // is gone or wrong too; counted in passages_reencoded). Marks the hits and fills their
  // `kv`. A block that wants its KV and whose load failed (see LoadFailurePolicy) is
  // counted in load_failures and, with kFail, ends the fetch with UNAVAILABLE.
  absl::Status Fetch(absl::Span<PromptBlock> blocks, CacheStats& stats,
                     LoadFailurePolicy on_load_failure = LoadFailurePolicy::kRecompute);

  // Encodes every block that wants its KV and was not a hit; with `write_back` stores it
  // (a failed write-back is logged and costs only a later miss).
  absl::Status EncodeMisses(absl::Span<PromptBlock> blocks, bool write_back, CacheStats& stats);

  // ─────────────────────────────────── ingest ───────────────────────────────────

  // Stores the block of `tokens` unless the store holds it already (read and checked:
  // another block's value under the key is replaced, `repaired`); with `force_reencode`
  // always removes, encodes and writes; for a non-empty `passage_id` then stores its source
  // and points the catalog entry at it, in that order, so a catalog entry is never
  // visible without its source. Everything is written in namespace `ns`. Errors: the
  // engine's, the store's (RESOURCE_EXHAUSTED, UNAVAILABLE), INTERNAL when the store
  // rejects the engine's own shape.
  absl::StatusOr<Ingested> Ingest(std::string_view ns, std::string_view passage_id,
                                  absl::Span<const int32_t> tokens, bool force_reencode);

 private:
  // The tokens of named passage `b` whose block is gone, from its stored source.
  absl::StatusOr<std::vector<int32_t>> SourceOf(const PromptBlock& b, CacheStats& stats);
  // A value under `key` that is not its block: logged with the key and removed.
  void DropForeign(const kv_store::BlockKey& key);
  // Takes `value` (the store's answer for `b`) into `b`: its tokens for a named passage,
  // its KV when wanted and it is `b`'s.
  absl::Status Take(PromptBlock& b, absl::StatusOr<engine::KvCache> value, CacheStats& stats,
                    LoadFailurePolicy on_load_failure);

  engine::Engine& engine_;
  kv_store::KvStore& store_;
  const KeySpace keys_;
};

}  // namespace blockserve::blocks

#endif  // BLOCKSERVE_BLOCKS_BLOCK_CACHE_H_
