#include "passage_encoder/encoder_core.h"

#include <chrono>

#include "absl/strings/str_cat.h"
#include "engine/stopwatch.h"
#include "handoff/kv_chunks.h"
#include "kv_store/codec.h"
#include "passage_encoder/passage_tokens.h"

namespace blockserve::passage_encoder {
namespace {


void SetError(v1::EncodeResult& r, const absl::Status& s) {
  r.mutable_status()->set_code(static_cast<int32_t>(s.code()));
  r.mutable_status()->set_message(std::string(s.message()));
}

}  // namespace

EncoderCore::EncoderCore(engine::Engine& engine, kv_store::BlockStore& store,
                         MetricsRegistry& metrics, EncoderOptions options)
    : engine_(engine),
      store_(store),
      options_(options),
      fingerprint_hex_(handoff::FingerprintHex(engine.model_fingerprint())),
      passages_(metrics.GetCounter("blockserve_encoder_passages_total",
                                   "Passages received (encoded, cached or failed)")),
      passages_failed_(metrics.GetCounter("blockserve_encoder_passages_failed_total",
                                          "Passages that ended with a non-OK status")),
      cache_hit_skips_(metrics.GetCounter(
          "blockserve_encoder_cache_hit_skips_total",
          "Passages not encoded because the store already held their block")),
      tokens_encoded_(metrics.GetCounter("blockserve_encoder_tokens_encoded_total",
                                         "Tokens run through the model")),
      kv_bytes_written_(metrics.GetCounter("blockserve_encoder_kv_bytes_written_total",
                                           "Bytes of block values written to the KV store")),
      encode_ms_(metrics.GetHistogram("blockserve_encoder_encode_ms",
                                      "Model compute time of one passage, ms",
                                      LatencyBucketsMs())) {}

absl::StatusOr<std::vector<int32_t>> EncoderCore::PassageTokens(const v1::Passage& passage) const {
  if (absl::Status s = ValidatePassageId(passage.id()); !s.ok()) return s;
  return PassageContentTokens(engine_.tokenizer(), engine_.config(), passage);
}

v1::EncodeResult EncoderCore::Encode(const v1::Passage& passage, uint32_t index,
                                     bool force_reencode) {
  passages_->Add();
  v1::EncodeResult r;
  r.set_id(passage.id());
  r.set_index(index);
  auto fail = [&](const absl::Status& s) {
    passages_failed_->Add();
    SetError(r, s);
    return r;
  };
  absl::StatusOr<std::vector<int32_t>> tokens = PassageTokens(passage);
  if (!tokens.ok()) return fail(tokens.status());
  const kv_store::BlockKey key = kv_store::MakeBlockKey(engine_.model_fingerprint(), *tokens);

  if (!force_reencode && store_.Contains(key)) {
    r.set_already_cached(true);
    cache_hit_skips_->Add();
  } else {
    const Stopwatch clock;
    absl::StatusOr<engine::KvCache> kv = engine_.EncodeBlock(*tokens);
    const double ms = clock.ElapsedMs();
    if (!kv.ok()) return fail(kv.status());
    encode_ms_->Observe(ms);
    tokens_encoded_->Add(tokens->size());
    r.set_encode_ms(ms);
    if (absl::Status s = store_.Put(key, *kv); !s.ok()) {
      // The shape is the engine's own, so a store that rejects it as an argument is a bug.
      return fail(s.code() == absl::StatusCode::kInvalidArgument
                      ? absl::InternalError(absl::StrCat("store rejected the block: ", s.message()))
                      : s);
    }
    const uint64_t bytes =
        kv_store::EncodedValueBytes(kv->shape(), kv->num_tokens(), options_.store_dtype);
    r.set_kv_bytes_written(bytes);
    kv_bytes_written_->Add(bytes);
  }
  if (!passage.id().empty()) {
    // The source first: a catalog entry is only ever visible with its source stored, so a
    // prefill can encode the block again once the store evicted it.
    if (absl::Status s = store_.PutSource(key, *tokens); !s.ok()) return fail(s);
    if (absl::Status s = store_.PutPassage(passage.id(), key); !s.ok()) return fail(s);
  }
  r.set_content_key(key.Hex());
  r.set_token_count(tokens->size());
  return r;
}

absl::StatusOr<v1::EncodePassagesResponse> EncoderCore::EncodeBatch(
    const v1::EncodePassagesRequest& request) {
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
    r = Encode(request.passages(i), i, request.force_reencode());
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
