#include "query_prefill/prefill_core.h"

#include <chrono>
#include <optional>

#include "absl/random/random.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/log.h"
#include "contract/request_contract.h"
#include "engine/prompt.h"
#include "engine/sampling.h"
#include "engine/sequence_end.h"
#include "engine/stopwatch.h"

namespace blockserve::query_prefill {
namespace {

// The decoder address is the caller's text: the log keeps this much of it.
constexpr size_t kMaxLoggedAddressBytes = 256;

// The caller's answer when a decoder is not allowed, cannot be reached or does not take
// the sequence (see the file comment): UNAVAILABLE, retryable (the router places the
// request again), with a fixed message; `detail` is logged. A decoder's own refusal
// (full, another model, an id in use) is folded in too: an address that is no decoder
// could answer with any of those codes.
absl::Status DecoderUnavailable(const std::string& request_id, const std::string& address,
                                const absl::Status& detail) {
  LogEvent("decoder_unavailable", {{"request_id", request_id},
                                   {"decoder", address.substr(0, kMaxLoggedAddressBytes)},
                                   {"code", absl::StatusCodeToString(detail.code())},
                                   {"error", std::string(detail.message())}});
  return absl::UnavailableError("decoder unavailable");
}

}  // namespace

// What Validate made of a request: resolved options, ready to run.
struct PrefillCore::Plan {
  std::string request_id;
  engine::PrefillOptions prefill;
  v1::CachePolicy policy = v1::CACHE_POLICY_READ_WRITE;
  engine::SamplingParams sampling;  // seed resolved
  v1::SamplingParams wire_sampling;  // seed and max_new_tokens resolved, for the decoder
  engine::StopRules stop;
  std::vector<int32_t> query;
  std::string decoder_address;  // empty: no handoff
  uint64_t sequence_id = 0;
};

PrefillCore::PrefillCore(blocks::BlockCache& cache, KvHandoff& handoff, MetricsRegistry& metrics,
                         PrefillCoreOptions options)
    : cache_(cache),
      engine_(cache.engine()),
      handoff_(handoff),
      options_(options),
      fingerprint_hex_(handoff::FingerprintHex(cache.keys().model_fingerprint())),
      requests_(metrics.GetCounter("blockserve_prefill_requests_total", "Prefill calls")),
      requests_failed_(metrics.GetCounter("blockserve_prefill_requests_failed_total",
                                          "Prefill calls that ended with a non-OK status")),
      cache_hits_(metrics.GetCounter("blockserve_prefill_cache_hits_total",
                                     "Blocks whose KV came from the KV store")),
      cache_misses_(metrics.GetCounter("blockserve_prefill_cache_misses_total",
                                       "Blocks missing from the KV store (encoded by a prefill)")),
      cache_hit_ratio_(metrics.GetGauge("blockserve_prefill_cache_hit_ratio",
                                        "cache hits / (hits + misses) since start")),
      passage_reencodes_(metrics.GetCounter(
          "blockserve_prefill_passage_reencodes_total",
          "Passages named by id whose evicted block was encoded again from its stored source")),
      corrupt_blocks_(metrics.GetCounter(
          "blockserve_prefill_corrupt_blocks_total",
          "Stored values (blocks, sources) that were not their key's: removed, recomputed")),
      load_failures_(metrics.GetCounter(
          "blockserve_prefill_kv_load_failures_total",
          "Blocks whose cached KV the store should have supplied and did not (store error, "
          "foreign value, evicted named passage); see kv_load_failure_policy")),
      kv_bytes_fetched_(metrics.GetCounter("blockserve_prefill_kv_bytes_fetched_total",
                                           "Bytes of block values read from the KV store")),
      kv_bytes_written_(metrics.GetCounter("blockserve_prefill_kv_bytes_written_total",
                                           "Bytes of block values written back to the KV store")),
      tokens_reused_(metrics.GetCounter("blockserve_prefill_tokens_reused_total",
                                        "Prompt tokens whose KV came from the KV store")),
      tokens_computed_(metrics.GetCounter("blockserve_prefill_tokens_computed_total",
                                          "Prompt tokens computed by prefills")),
      prefill_ms_(metrics.GetHistogram(
          "blockserve_prefill_ms",
          "Wall time of a successful Prefill call, handoff included (the prefill's share of TTFT)",
          LatencyBucketsMs())),
      handoff_ms_(metrics.GetHistogram("blockserve_prefill_handoff_ms",
                                       "Wall time of the KV handoff to a decoder",
                                       LatencyBucketsMs())) {}

void PrefillCore::set_served_by(std::string served_by) {
  absl::MutexLock lock(&mu_);
  served_by_ = std::move(served_by);
}

absl::StatusOr<PrefillCore::Plan> PrefillCore::Validate(const v1::PrefillRequest& request) const {
  // The model-independent rules first, as the router runs them (one answer per input);
  // then what needs the model: tokenization, vocabulary, the stop rules' defaults.
  if (absl::Status s = contract::ValidatePrefillRequest(
          request, {.max_passages = options_.max_passages,
                    .max_new_tokens_limit = options_.max_new_tokens.max_new_tokens_limit});
      !s.ok()) {
    return s;
  }
  Plan plan;
  plan.request_id = request.request_id();
  if (plan.request_id.empty()) {
    absl::BitGen gen;
    plan.request_id = absl::StrFormat("%016x", absl::Uniform<uint64_t>(gen));
  }
  plan.query = engine::QueryBlockTokens(engine_.tokenizer(), request.query());
  if (plan.query.empty()) return absl::InvalidArgumentError("query tokenizes to no tokens");

  const v1::BlockOptions& bo = request.block_options();
  const bool full = bo.mode() == v1::ATTENTION_MODE_FULL;
  plan.prefill.mode = full ? engine::AttentionMode::kFull : engine::AttentionMode::kBlock;
  plan.prefill.global_blocks = full ? 0 : bo.global_blocks();
  plan.prefill.reencode_positions = !bo.disable_position_reencoding();
  if (bo.cache_policy() != v1::CACHE_POLICY_UNSPECIFIED) plan.policy = bo.cache_policy();

  plan.wire_sampling = request.sampling();
  if (!plan.wire_sampling.has_seed()) {
    absl::BitGen gen;
    plan.wire_sampling.set_seed(absl::Uniform<uint64_t>(gen));
  }
  absl::StatusOr<engine::SamplingParams> sampling = handoff::FromProto(plan.wire_sampling);
  if (!sampling.ok()) return sampling.status();
  plan.sampling = *sampling;
  absl::StatusOr<engine::StopRules> stop = handoff::DecodeLimitsFromProto(
      plan.wire_sampling, engine_.config().vocab_size, options_.max_new_tokens);
  if (!stop.ok()) return stop.status();
  plan.stop = *std::move(stop);
  plan.wire_sampling.set_max_new_tokens(plan.stop.max_new_tokens);

  const v1::DecoderTarget& target = request.decoder();
  plan.decoder_address = target.address();
  if (!plan.decoder_address.empty() && target.transport() == v1::HANDOFF_NCCL) {
    return absl::FailedPreconditionError(
        "HANDOFF_NCCL is not available on this prefill yet; use HANDOFF_GRPC_STREAM");
  }
  if (!plan.decoder_address.empty() && options_.allowed_decoders != nullptr &&
      !options_.allowed_decoders->Contains(plan.decoder_address)) {
    return DecoderUnavailable(plan.request_id, plan.decoder_address,
                              absl::PermissionDeniedError("not in --allowed_decoders"));
  }
  plan.sequence_id = target.sequence_id();
  while (plan.sequence_id == 0) {
    absl::BitGen gen;
    plan.sequence_id = absl::Uniform<uint64_t>(gen);
  }
  return plan;
}

absl::StatusOr<std::vector<blocks::PromptBlock>> PrefillCore::ResolveBlocks(
    const v1::PrefillRequest& request, const security::TenantScope& scope) const {
  std::vector<blocks::PromptBlock> blocks;
  if (std::optional<blocks::PromptBlock> system =
          cache_.SystemBlock(scope, request.system_prompt())) {
    blocks.push_back(*std::move(system));
  }
  for (int i = 0; i < request.passages_size(); ++i) {
    absl::StatusOr<blocks::PromptBlock> b = cache_.Resolve(scope, request.passages(i));
    if (!b.ok()) {
      return absl::Status(b.status().code(),
                          absl::StrCat("passages[", i, "]: ", b.status().message()));
    }
    blocks.push_back(*std::move(b));
  }
  return blocks;
}

// Which blocks attend to their cached position-0 KV: in block mode, all but the global
// blocks at the end, unless the request bypasses the cache.
void PrefillCore::MarkCachedBlocks(const Plan& plan, std::vector<blocks::PromptBlock>& blocks) {
  const bool block_mode = plan.prefill.mode == engine::AttentionMode::kBlock;
  const size_t local = blocks.size() - plan.prefill.global_blocks;
  for (size_t i = 0; i < blocks.size(); ++i) {
    blocks[i].want_kv = block_mode && plan.policy != v1::CACHE_POLICY_BYPASS && i < local;
  }
}

absl::StatusOr<v1::PrefillResponse> PrefillCore::Run(const v1::PrefillRequest& request,
                                                     absl::Time deadline,
                                                     const security::TenantScope& scope) {
  absl::StatusOr<Plan> plan = Validate(request);
  if (!plan.ok()) return plan.status();
  v1::PrefillResponse response;
  response.set_request_id(plan->request_id);
  response.set_model_fingerprint(fingerprint_hex_);
  {
    absl::MutexLock lock(&mu_);
    response.set_served_by(served_by_);
  }
  v1::PrefillStats& stats = *response.mutable_stats();

  // Resolve and fetch.
  Stopwatch fetch;
  absl::StatusOr<std::vector<blocks::PromptBlock>> prompt = ResolveBlocks(request, scope);
  if (!prompt.ok()) return prompt.status();
  MarkCachedBlocks(*plan, *prompt);
  blocks::CacheStats cache_stats;
  const absl::Status fetched = cache_.Fetch(
      absl::MakeSpan(*prompt), cache_stats,
      request.block_options().kv_load_failure_policy() == v1::KV_LOAD_FAILURE_POLICY_FAIL
          ? blocks::LoadFailurePolicy::kFail
          : blocks::LoadFailurePolicy::kRecompute);
  load_failures_->Add(cache_stats.load_failures);
  corrupt_blocks_->Add(cache_stats.corrupt_values);
  if (!fetched.ok()) return fetched;
  stats.set_fetch_ms(fetch.ElapsedMs());
  int64_t total = plan->query.size();
  for (const blocks::PromptBlock& b : *prompt) total += b.tokens.size();
  const int64_t context = engine_.config().max_position_embeddings;
  if (total >= context) {
    return absl::InvalidArgumentError(absl::StrCat("the prompt has ", total,
                                                   " tokens; the model's context length is ",
                                                   context, " (the prompt must be shorter)"));
  }

  // Compute: encode misses, then the query (and global blocks) over everything.
  Stopwatch compute;
  if (absl::Status s = cache_.EncodeMisses(absl::MakeSpan(*prompt),
                                           plan->policy == v1::CACHE_POLICY_READ_WRITE,
                                           cache_stats);
      !s.ok()) {
    return s;
  }
  const double encode_ms = compute.ElapsedMs();
  stats.set_kv_bytes_fetched(cache_stats.kv_bytes_fetched);
  stats.set_kv_bytes_written(cache_stats.kv_bytes_written);
  stats.set_passages_reencoded(cache_stats.passages_reencoded);
  std::vector<engine::BlockInput> inputs;
  for (const blocks::PromptBlock& b : *prompt) {
    inputs.push_back({b.tokens, b.kv ? &*b.kv : nullptr});
    if (b.want_kv && b.hit) {
      stats.set_cache_hits(stats.cache_hits() + 1);
      stats.set_tokens_reused(stats.tokens_reused() + b.tokens.size());
    } else if (b.want_kv) {
      stats.set_cache_misses(stats.cache_misses() + 1);
    }
  }
  absl::StatusOr<engine::PrefillResult> prefill =
      engine_.PrefillLast(inputs, plan->query, plan->prefill);
  if (!prefill.ok()) return prefill.status();
  Stopwatch sample;
  engine::Sampler sampler(plan->sampling);
  const int32_t token = sampler.Sample(prefill->logits_last);
  stats.set_compute_ms(encode_ms + prefill->stats.compute_ms + sample.ElapsedMs());
  stats.set_shift_ms(prefill->stats.shift_ms);
  stats.set_prompt_tokens(total);
  stats.set_tokens_computed(total - stats.tokens_reused());
  stats.set_flops_to_first_token(
      static_cast<uint64_t>(cache_stats.encode_flops + prefill->stats.flops_to_first_token));
  stats.set_flops_full_prefill(static_cast<uint64_t>(prefill->stats.flops_full_prefill));
  response.set_first_token_id(token);

  // Does generation end with the first token? (The first-token text contract:
  // engine/sequence_end.h; the decoder replays this step.)
  engine::SequenceEnd end(engine_.tokenizer(), engine_.eos_ids(), plan->stop, total, context);
  engine::SequenceEnd::Step first = end.Next(token);
  response.set_first_token_text(std::move(first.text_delta));
  if (first.finish) {
    response.set_finish_reason(handoff::ToProto(*first.finish));
    return response;
  }
  // No decoder: generation ends here, so nothing may stay held back.
  if (plan->decoder_address.empty()) {
    response.set_first_token_text(response.first_token_text() + end.Flush());
    return response;
  }

  // Hand the sequence to the decoder.
  if (absl::Now() >= deadline) {
    return absl::DeadlineExceededError("the deadline passed before the KV handoff");
  }
  v1::SequenceHeader header;
  header.set_sequence_id(plan->sequence_id);
  header.set_model_fingerprint(fingerprint_hex_);
  header.set_first_token_id(token);
  *header.mutable_sampling() = plan->wire_sampling;
  header.set_request_id(plan->request_id);
  Stopwatch handoff;
  if (absl::Status s = handoff_.Send(plan->decoder_address, header, prefill->cache, deadline);
      !s.ok()) {
    return DecoderUnavailable(plan->request_id, plan->decoder_address, s);
  }
  stats.set_handoff_ms(handoff.ElapsedMs());
  stats.set_kv_bytes_handed_off(prefill->cache.bytes());
  handoff_ms_->Observe(stats.handoff_ms());
  response.set_sequence_id(plan->sequence_id);
  return response;
}

absl::StatusOr<v1::PrefillResponse> PrefillCore::Prefill(const v1::PrefillRequest& request,
                                                         absl::Time deadline,
                                                         const security::TenantScope& scope) {
  Stopwatch total;
  absl::StatusOr<v1::PrefillResponse> result = Run(request, deadline, scope);
  const double ms = total.ElapsedMs();
  if (result.ok()) result->mutable_stats()->set_total_ms(ms);
  Record(result, ms);
  return result;
}

void PrefillCore::Record(const absl::StatusOr<v1::PrefillResponse>& result, double ms) {
  requests_->Add();
  if (!result.ok()) {
    requests_failed_->Add();
    LogEvent("prefill_failed", {{"code", absl::StatusCodeToString(result.status().code())},
                                {"error", std::string(result.status().message())}});
    return;
  }
  const v1::PrefillStats& s = result->stats();
  LogEvent("prefill", {{"request_id", result->request_id()},
                       {"ms", absl::StrFormat("%.3f", ms)},
                       {"prompt_tokens", absl::StrCat(s.prompt_tokens())},
                       {"tokens_reused", absl::StrCat(s.tokens_reused())},
                       {"cache_hits", absl::StrCat(s.cache_hits())},
                       {"cache_misses", absl::StrCat(s.cache_misses())},
                       {"sequence_id", absl::StrCat(result->sequence_id())}});
  prefill_ms_->Observe(ms);
  cache_hits_->Add(s.cache_hits());
  cache_misses_->Add(s.cache_misses());
  const double looked_up = cache_hits_->value() + cache_misses_->value();
  cache_hit_ratio_->Set(looked_up > 0 ? cache_hits_->value() / looked_up : 0);
  passage_reencodes_->Add(s.passages_reencoded());
  kv_bytes_fetched_->Add(s.kv_bytes_fetched());
  kv_bytes_written_->Add(s.kv_bytes_written());
  tokens_reused_->Add(s.tokens_reused());
  tokens_computed_->Add(s.tokens_computed());
}

}  // namespace blockserve::query_prefill
