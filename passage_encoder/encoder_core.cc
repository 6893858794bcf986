#include "passage_encoder/encoder_core.h"

#include "absl/strings/str_cat.h"
#include "contract/request_contract.h"
#include "engine/stopwatch.h"
#include "handoff/kv_chunks.h"

namespace blockserve::passage_encoder {

EncoderCore::EncoderCore(blocks::BlockCache& cache, MetricsRegistry& metrics,
                         EncoderOptions options)
    : cache_(cache),
      options_(options),
      fingerprint_hex_(handoff::FingerprintHex(cache.keys().model_fingerprint())),
      passages_(metrics.GetCounter("blockserve_encoder_passages_total",
                                   "Passages received (encoded, cached or failed)")),
      passages_failed_(metrics.GetCounter("blockserve_encoder_passages_failed_total",
                                          "Passages that ended with a non-OK status")),
      cache_hit_skips_(metrics.GetCounter(
          "blockserve_encoder_cache_hit_skips_total",
          "Passages not encoded because the store already held their block")),
      corrupt_blocks_(metrics.GetCounter(
          "blockserve_encoder_corrupt_blocks_total",
          "Stored values under a passage's key that were another block's, replaced on ingest")),
      tokens_encoded_(metrics.GetCounter("blockserve_encoder_tokens_encoded_total",
                                         "Tokens run through the model")),
      kv_bytes_written_(metrics.GetCounter("blockserve_encoder_kv_bytes_written_total",
                                           "Bytes of block values written to the KV store")),
      encode_ms_(metrics.GetHistogram("blockserve_encoder_encode_ms",
                                      "Model compute time of one passage, ms",
                                      LatencyBucketsMs())) {}

absl::StatusOr<blocks::Ingested> EncoderCore::Ingest(const v1::Passage& passage,
                                                     bool force_reencode, std::string_view ns) {
  if (absl::Status s = contract::ValidatePassage(passage); !s.ok()) return s;
  absl::StatusOr<std::vector<int32_t>> tokens = cache_.PassageTokens(passage);
  if (!tokens.ok()) return tokens.status();
  return cache_.Ingest(ns, passage.id(), *tokens, force_reencode);
}

v1::EncodeResult EncoderCore::Encode(const v1::Passage& passage, uint32_t index,
                                     bool force_reencode, std::string_view ns) {
  passages_->Add();
  v1::EncodeResult r;
  r.set_id(passage.id());
  r.set_index(index);
  absl::StatusOr<blocks::Ingested> done = Ingest(passage, force_reencode, ns);
  if (!done.ok()) {
    passages_failed_->Add();
    r.mutable_status()->set_code(static_cast<int32_t>(done.status().code()));
    r.mutable_status()->set_message(std::string(done.status().message()));
    return r;
  }
  if (done->repaired) corrupt_blocks_->Add();
  if (done->already_cached) {
    cache_hit_skips_->Add();
  } else {
    encode_ms_->Observe(done->encode_ms);
    tokens_encoded_->Add(done->token_count);
    kv_bytes_written_->Add(done->kv_bytes_written);
  }
  r.set_already_cached(done->already_cached);
  r.set_encode_ms(done->encode_ms);
  r.set_kv_bytes_written(done->kv_bytes_written);
  r.set_content_key(done->key.Hex());
  r.set_token_count(done->token_count);
  return r;
}

absl::Status EncoderCore::StoreFailure(const v1::EncodeResult& result) {
  const auto code = static_cast<absl::StatusCode>(result.status().code());
  if (code != absl::StatusCode::kUnavailable && code != absl::StatusCode::kResourceExhausted) {
    return absl::OkStatus();
  }
  return absl::Status(code, absl::StrCat("passage ", result.index(), " (\"", result.id(),
                                         "\"): the KV store did not take it: ",
                                         result.status().message(),
                                         "; retry (stored passages answer already_cached)"));
}

absl::StatusOr<v1::EncodePassagesResponse> EncoderCore::EncodeBatch(
    const v1::EncodePassagesRequest& request, std::string_view ns) {
  if (request.passages_size() > options_.max_batch_passages) {
    return absl::InvalidArgumentError(
        absl::StrCat("batch of ", request.passages_size(),
                     " passages is over the limit of ", options_.max_batch_passages,
                     " (--max_batch_passages); split it or use EncodePassageStream"));
  }
  const Stopwatch total;
  v1::EncodePassagesResponse response;
  response.set_model_fingerprint(fingerprint_hex_);
  v1::EncodeStats& stats = *response.mutable_stats();
  for (int i = 0; i < request.passages_size(); ++i) {
    v1::EncodeResult& r = *response.add_results();
    r = Encode(request.passages(i), i, request.force_reencode(), ns);
    if (absl::Status s = StoreFailure(r); !s.ok()) {
      return absl::Status(s.code(), absl::StrCat(s.message(), "; ", stats.passages_ok(),
                                                 " passages before it were stored"));
    }
    if (r.status().code() != 0) {
      stats.set_passages_failed(stats.passages_failed() + 1);
      continue;
    }
    stats.set_passages_ok(stats.passages_ok() + 1);
    if (r.already_cached()) {
      stats.set_tokens_cached(stats.tokens_cached() + r.token_count());
    } else {
      stats.set_tokens_encoded(stats.tokens_encoded() + r.token_count());
    }
    stats.set_encode_ms(stats.encode_ms() + r.encode_ms());
    stats.set_kv_bytes_written(stats.kv_bytes_written() + r.kv_bytes_written());
  }
  stats.set_total_ms(total.ElapsedMs());
  return response;
}

}  // namespace blockserve::passage_encoder
