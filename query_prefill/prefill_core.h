// The query prefill's logic, without the network: one PrefillRequest in, the first
// token (and the KV handed to a decoder) out.
//
//   1. Validate: contract::ValidatePrefillRequest (the rules the router applies too),
//      then what needs the model (the query's tokens, stop token ids against the
//      vocabulary) -> INVALID_ARGUMENT; NCCL asked of a CPU prefill -> FAILED_PRECONDITION.
//   2. Resolve blocks through blocks::BlockCache: the system block, then each passage
//      by catalog id (unknown -> NOT_FOUND), inline text or inline token ids.
//   3. BlockCache::Fetch the cached position-0 KV of the block-attended blocks in one
//      GetMany; BlockCache::EncodeMisses computes a miss (or a corrupt/foreign entry) now
//      and writes it back unless the cache policy says not to. A passage referenced by id
//      takes its tokens from its stored block, so it is fetched in every mode.
//   4. Engine::PrefillLast: block mode re-encodes the cached blocks to their offsets and
//      computes global blocks + query; full mode computes everything causally.
//   5. Sample the first token with the request's sampling (an unset seed is resolved
//      here and handed on, so decoder + prefill equal one sampler). engine::SequenceEnd
//      decides whether generation ends with it (EOS, stop token/string, max_new_tokens
//      == 1, context full): then answer with finish_reason and make no handoff.
//   6. Otherwise hand the sequence (header + KV) to the request's decoder via KvHandoff.
//
// Decoders: a request may name only a decoder in PrefillCoreOptions::allowed_decoders
// (when set: a discovery set, so a dns:/// name follows a scaled decoder StatefulSet);
// another address is refused in step 1, before anything is computed or dialled. Every failure to reach a decoder or hand it the sequence, and
// that refusal, answer the caller UNAVAILABLE "decoder unavailable" and nothing else;
// the address and the transport's error go to the log ("decoder_unavailable"). Echoed
// back, they would let a caller tell a closed port from another kind of server or an
// unreachable host: the prefill would be a port scanner of its network.
//
// Thread-safe: requests may run concurrently (the engine serializes its compute).
#ifndef BLOCKSERVE_QUERY_PREFILL_PREFILL_CORE_H_
#define BLOCKSERVE_QUERY_PREFILL_PREFILL_CORE_H_

#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "blocks/block_cache.h"
#include "common/metrics.h"
#include "discovery/discovery.h"
#include "engine/engine.h"
#include "handoff/kv_chunks.h"
#include "proto/blockserve.pb.h"
#include "security/tenant_scope.h"
#include "query_prefill/grpc_handoff.h"

namespace blockserve::query_prefill {

struct PrefillCoreOptions {
  // Most passages one request may reference (flag --max_passages).
  int max_passages = 64;
  // Default and limit of SamplingParams.max_new_tokens (same flags as the decoder's).
  handoff::MaxNewTokensPolicy max_new_tokens;
  // The decoders requests may name, as "host:port" exactly as they name them (flag
  // --allowed_decoders: fixed addresses and/or dns:/// names, discovery/discovery.h).
  // Null: any address; which decoders are the deployment's can then only be told by
  // their TLS certificates (docs/SECURITY.md).
  std::shared_ptr<discovery::Discovery> allowed_decoders;
};

class PrefillCore {
 public:
  // `cache`, `handoff` and `metrics` must outlive the core.
  PrefillCore(blocks::BlockCache& cache, KvHandoff& handoff, MetricsRegistry& metrics,
              PrefillCoreOptions options);

  // Serves one request within the tenant's `scope` (its namespaces; set by the router);
  // `deadline` bounds the handoff (the caller's gRPC deadline). Error codes follow
  // proto/blockserve.proto (see the file comment for the steps).
  absl::StatusOr<v1::PrefillResponse> Prefill(const v1::PrefillRequest& request,
                                              absl::Time deadline = absl::InfiniteFuture(),
                                              const security::TenantScope& scope = {});

  // This instance's advertised "host:port", returned as served_by (known only once the
  // server listens, hence settable).
  void set_served_by(std::string served_by);

  const std::string& fingerprint_hex() const { return fingerprint_hex_; }

 private:
  struct Plan;

  absl::StatusOr<Plan> Validate(const v1::PrefillRequest& request) const;
  absl::StatusOr<std::vector<blocks::PromptBlock>> ResolveBlocks(
      const v1::PrefillRequest& request, const security::TenantScope& scope) const;
  static void MarkCachedBlocks(const Plan& plan, std::vector<blocks::PromptBlock>& blocks);
  absl::StatusOr<v1::PrefillResponse> Run(const v1::PrefillRequest& request, absl::Time deadline,
                                          const security::TenantScope& scope);
  void Record(const absl::StatusOr<v1::PrefillResponse>& result, double ms);

  blocks::BlockCache& cache_;
  engine::Engine& engine_;
  KvHandoff& handoff_;
  const PrefillCoreOptions options_;
  const std::string fingerprint_hex_;

  absl::Mutex mu_;
  std::string served_by_ ABSL_GUARDED_BY(mu_);

  Counter* requests_;
  Counter* requests_failed_;
  Counter* cache_hits_;
  Counter* cache_misses_;
  Gauge* cache_hit_ratio_;
  Counter* passage_reencodes_;
  Counter* corrupt_blocks_;
  Counter* load_failures_;
  Counter* kv_bytes_fetched_;
  Counter* kv_bytes_written_;
  Counter* tokens_reused_;
  Counter* tokens_computed_;
  Histogram* prefill_ms_;
  Histogram* handoff_ms_;
};

}  // namespace blockserve::query_prefill

#endif  // BLOCKSERVE_QUERY_PREFILL_PREFILL_CORE_H_
