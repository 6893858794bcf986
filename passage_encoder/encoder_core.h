// The passage encoder's logic, without the network: a passage (text or token ids)
// becomes a block (engine/prompt.h), its content key is MakeBlockKey(model fingerprint,
// tokens), and unless the store already holds that key its position-0 KV is computed
// with Engine::EncodeBlock and written to the store. A named passage is then recorded in
// the store's catalog (id -> content key), so prefills can refer to it by id.
//
// Every passage gets its own result: a bad passage (INVALID_ARGUMENT) or a failed store
// write (the store's code: RESOURCE_EXHAUSTED, UNAVAILABLE) fails only that item.
// Thread-safe: batches may run concurrently (the engine serializes its compute).
#ifndef BLOCKSERVE_PASSAGE_ENCODER_ENCODER_CORE_H_
#define BLOCKSERVE_PASSAGE_ENCODER_ENCODER_CORE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "common/metrics.h"
#include "engine/dtype.h"
#include "engine/engine.h"
#include "kv_store/block_store.h"
#include "proto/blockserve.pb.h"

namespace blockserve::passage_encoder {

struct EncoderOptions {
  // Passages per EncodePassages call; more -> INVALID_ARGUMENT for the whole call.
  int max_batch_passages = 1024;
  // Element type the store writes; used to report kv_bytes_written.
  engine::DType store_dtype = engine::DType::kBF16;
};

class EncoderCore {
 public:
  // `engine`, `store` and `metrics` must outlive the core.
  EncoderCore(engine::Engine& engine, kv_store::BlockStore& store, MetricsRegistry& metrics,
              EncoderOptions options);

  // Encodes (or finds cached) one passage; `index` is echoed in the result. Never fails
  // as a whole: errors are in result.status. With `force_reencode` the KV is computed
  // and written even when the store holds the key.
  v1::EncodeResult Encode(const v1::Passage& passage, uint32_t index, bool force_reencode);

  // One result per passage, in order, plus totals. InvalidArgument only when the batch
  // is larger than max_batch_passages.
  absl::StatusOr<v1::EncodePassagesResponse> EncodeBatch(const v1::EncodePassagesRequest& request);

  // The served model's fingerprint, lowercase hex.
  const std::string& fingerprint_hex() const { return fingerprint_hex_; }

 private:
  // The passage's block tokens, or InvalidArgument saying what is wrong with it.
  absl::StatusOr<std::vector<int32_t>> PassageTokens(const v1::Passage& passage) const;

  engine::Engine& engine_;
  kv_store::BlockStore& store_;
  const EncoderOptions options_;
  const std::string fingerprint_hex_;

  Counter* passages_;
  Counter* passages_failed_;
  Counter* cache_hit_skips_;
  Counter* tokens_encoded_;
  Counter* kv_bytes_written_;
  Histogram* encode_ms_;
};

}  // namespace blockserve::passage_encoder

#endif  // BLOCKSERVE_PASSAGE_ENCODER_ENCODER_CORE_H_
