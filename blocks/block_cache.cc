#include "blocks/block_cache.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "blocks/passage_ref.h"
#include "common/log.h"
#include "engine/flops.h"
#include "engine/prompt.h"
#include "engine/stopwatch.h"

namespace blockserve::blocks {

BlockCache::BlockCache(engine::Engine& engine, kv_store::KvStore& store)
    : engine_(engine), store_(store), keys_(engine.model_fingerprint()) {}

std::optional<PromptBlock> BlockCache::SystemBlock(const security::TenantScope& scope,
                                                   std::string_view system_prompt) const {
  std::vector<int32_t> tokens = engine::SystemBlockTokens(engine_.tokenizer(), system_prompt);
  if (tokens.empty()) return std::nullopt;
  PromptBlock b;
  b.ns = scope.ns;
  b.key = keys_.BlockKeyOf(b.ns, tokens);
  b.tokens = std::move(tokens);
  return b;
}

absl::StatusOr<PromptBlock> BlockCache::Resolve(const security::TenantScope& scope,
                                                const v1::PassageRef& ref) const {
  PromptBlock b;
  b.ns = scope.ns;
  absl::StatusOr<std::vector<int32_t>> tokens;
  switch (ref.passage_case()) {
    case v1::PassageRef::kPassageId: {
      std::vector<std::string_view> spaces = {scope.ns};
      spaces.insert(spaces.end(), scope.reads.begin(), scope.reads.end());
      for (std::string_view ns : spaces) {
        absl::StatusOr<kv_store::BlockKey> key =
            store_.LookupPassage(KeySpace::StoredPassageId(ns, ref.passage_id()));
        if (absl::IsNotFound(key.status())) continue;
        if (!key.ok()) {
          return absl::UnavailableError(absl::StrCat("the passage catalog cannot be read: ",
                                                     key.status().message()));
        }
        b.ns = std::string(ns);
        b.key = *key;
        b.passage_id = ref.passage_id();
        return b;
      }
      return absl::NotFoundError(absl::StrCat("unknown passage id \"", ref.passage_id(), "\""));
    }
    case v1::PassageRef::kText:
      tokens = TextPassageTokens(engine_.tokenizer(), engine_.config(), ref.text());
      break;
    case v1::PassageRef::kTokenIds:
      tokens = TokenIdPassageTokens(engine_.config(), ref.token_ids());
      break;
    case v1::PassageRef::PASSAGE_NOT_SET:
      return absl::InvalidArgumentError("set passage_id, text or token_ids");
  }
  if (!tokens.ok()) return tokens.status();
  b.tokens = *std::move(tokens);
  b.key = keys_.BlockKeyOf(b.ns, b.tokens);
  return b;
}

absl::StatusOr<std::vector<int32_t>> BlockCache::PassageTokens(const v1::Passage& passage) const {
  return PassageContentTokens(engine_.tokenizer(), engine_.config(), passage);
}

absl::Status BlockCache::Fetch(absl::Span<PromptBlock> blocks, CacheStats& stats,
                               LoadFailurePolicy on_load_failure) {
  std::vector<kv_store::BlockKey> keys;
  std::vector<PromptBlock*> fetched;  // the block of keys[i]
  for (PromptBlock& b : blocks) {
    if (b.want_kv || !b.passage_id.empty()) {
      keys.push_back(b.key);
      fetched.push_back(&b);
    }
  }
  if (keys.empty()) return absl::OkStatus();
  std::vector<absl::StatusOr<engine::KvCache>> values = store_.GetMany(keys);
  for (size_t i = 0; i < fetched.size(); ++i) {
    if (absl::Status s = Take(*fetched[i], std::move(values[i]), stats, on_load_failure);
        !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::Status BlockCache::Take(PromptBlock& b, absl::StatusOr<engine::KvCache> value,
                              CacheStats& stats, LoadFailurePolicy on_load_failure) {
  std::string failure;  // why a value the store should have supplied is not here
  if (!value.ok() && !absl::IsNotFound(value.status())) {
    failure = absl::StrCat("the KV store failed: ", value.status().message());
  } else if (!value.ok() && !b.passage_id.empty()) {
    failure = "its block is no longer in the KV store";
  }
  if (value.ok()) {
    // The stored value must be this key's block: for an inline block its tokens are the
    // block's; for a named passage (tokens unknown yet) they must hash to the key.
    const bool ours = b.passage_id.empty() ? value->tokens() == b.tokens
                                           : keys_.BlockKeyOf(b.ns, value->tokens()) == b.key;
    if (ours) {
      stats.kv_bytes_fetched += store_.ValueBytes(*value);
    } else {
      ++stats.corrupt_values;
      DropForeign(b.key);
      value = absl::NotFoundError("another block's value");
      failure = "the stored value was another block's (removed)";
    }
  }
  if (!failure.empty() && b.want_kv) {
    ++stats.load_failures;
    if (on_load_failure == LoadFailurePolicy::kFail) {
      const std::string block = b.passage_id.empty()
                                    ? absl::StrCat("inline block ", b.key.Hex())
                                    : absl::StrCat("passage \"", b.passage_id, "\"");
      return absl::UnavailableError(absl::StrCat(
          "the KV of ", block, " could not be loaded: ", failure,
          " (kv_load_failure_policy FAIL; RECOMPUTE would encode it again)"));
    }
  }
  if (!b.passage_id.empty()) {
    absl::StatusOr<std::vector<int32_t>> tokens =
        value.ok() ? absl::StatusOr<std::vector<int32_t>>(value->tokens()) : SourceOf(b, stats);
    if (!tokens.ok()) return tokens.status();
    b.tokens = *std::move(tokens);
    if (!value.ok()) ++stats.passages_reencoded;
  }
  if (value.ok() && b.want_kv) {
    b.kv = *std::move(value);
    b.hit = true;
  }
  return absl::OkStatus();
}

void BlockCache::DropForeign(const kv_store::BlockKey& key) {
  const absl::Status removed = store_.Remove(key);
  LogEvent("kv_store_foreign_block",
           {{"key", key.Hex()}, {"removed", removed.ok() ? "yes" : removed.ToString()}});
}

absl::StatusOr<std::vector<int32_t>> BlockCache::SourceOf(const PromptBlock& b,
                                                          CacheStats& stats) {
  absl::StatusOr<std::vector<int32_t>> tokens = store_.GetSource(b.key);
  if (tokens.ok() && !(keys_.BlockKeyOf(b.ns, *tokens) == b.key)) {
    ++stats.corrupt_values;
    LogEvent("kv_store_foreign_source", {{"key", b.key.Hex()}, {"passage_id", b.passage_id}});
    tokens = absl::NotFoundError("another block's source");
  }
  if (!tokens.ok()) {
    return absl::NotFoundError(absl::StrCat(
        "passage \"", b.passage_id, "\" is in the catalog but neither its block nor its "
        "source (token ids) is in the KV store any more; ingest the passage again"));
  }
  return tokens;
}

absl::Status BlockCache::EncodeMisses(absl::Span<PromptBlock> blocks, bool write_back,
                                      CacheStats& stats) {
  for (PromptBlock& b : blocks) {
    if (!b.want_kv || b.hit) continue;
    absl::StatusOr<engine::KvCache> kv = engine_.EncodeBlock(b.tokens);
    if (!kv.ok()) return kv.status();
    stats.encode_flops += engine::ForwardFlops(engine_.config(), b.tokens.size(), 0,
                                               /*logits=*/false);
    if (write_back) {
      if (absl::StatusOr<uint64_t> bytes = store_.Put(b.key, *kv); bytes.ok()) {
        stats.kv_bytes_written += *bytes;
      } else {
        LogEvent("kv_store_write_failed",
                 {{"key", b.key.Hex()}, {"error", bytes.status().ToString()}});
      }
    }
    b.kv = *std::move(kv);
  }
  return absl::OkStatus();
}

absl::StatusOr<Ingested> BlockCache::Ingest(std::string_view ns, std::string_view passage_id,
                                            absl::Span<const int32_t> tokens, bool force_reencode) {
  Ingested r;
  r.key = keys_.BlockKeyOf(ns, tokens);
  r.token_count = static_cast<int64_t>(tokens.size());
  if (force_reencode) {
    // Content addressing makes Put of a present key a no-op: take the old value out.
    if (absl::Status s = store_.Remove(r.key); !s.ok()) return s;
  } else if (absl::StatusOr<engine::KvCache> stored = store_.Get(r.key); stored.ok()) {
    // Read, not just Contains: a value under this key that is not this block (written
    // behind the store's back) is replaced here instead of being served for ever.
    if (absl::MakeConstSpan(stored->tokens()) == tokens) {
      r.already_cached = true;
    } else {
      DropForeign(r.key);
      r.repaired = true;
    }
  }
  if (!r.already_cached) {
    const Stopwatch clock;
    absl::StatusOr<engine::KvCache> kv = engine_.EncodeBlock(tokens);
    r.encode_ms = clock.ElapsedMs();
    if (!kv.ok()) return kv.status();
    absl::StatusOr<uint64_t> bytes = store_.Put(r.key, *kv);
    if (!bytes.ok()) {
      // The shape is the engine's own, so a store that rejects it as an argument is a bug.
      return absl::IsInvalidArgument(bytes.status())
                 ? absl::InternalError(
                       absl::StrCat("store rejected the block: ", bytes.status().message()))
                 : bytes.status();
    }
    r.kv_bytes_written = *bytes;
  }
  if (!passage_id.empty()) {
    // The source first: a catalog entry is only ever visible with its source stored, so a
    // prefill can encode the block again once the store evicted it.
    if (absl::Status s = store_.PutSource(r.key, tokens); !s.ok()) return s;
    if (absl::Status s = store_.PutPassage(KeySpace::StoredPassageId(ns, passage_id), r.key);
        !s.ok()) {
      return s;
    }
  }
  return r;
}

}  // namespace blockserve::blocks
