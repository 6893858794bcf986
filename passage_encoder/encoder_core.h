// The passage encoder's logic, without the network: proto passages in, one result each
// out, over blocks::BlockCache::Ingest (which keys, encodes unless stored, writes the
// block, and for a named passage its source and catalog entry, so prefills can refer
// to it by id). This layer adds the batch rules, the per-item results and the metrics.
//
// Every passage gets its own result: a bad passage (INVALID_ARGUMENT) or a failed store
// write (the store's code: RESOURCE_EXHAUSTED, UNAVAILABLE) fails only that item.
// Thread-safe: batches may run concurrently (the engine serializes its compute).
#ifndef BLOCKSERVE_PASSAGE_ENCODER_ENCODER_CORE_H_
#define BLOCKSERVE_PASSAGE_ENCODER_ENCODER_CORE_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "blocks/block_cache.h"
#include "common/metrics.h"
#include "proto/blockserve.pb.h"

namespace blockserve::passage_encoder {

struct EncoderOptions {
  // Passages per EncodePassages call; more -> INVALID_ARGUMENT for the whole call.
  int max_batch_passages = 1024;
};

class EncoderCore {
 public:
  // `cache` and `metrics` must outlive the core.
  EncoderCore(blocks::BlockCache& cache, MetricsRegistry& metrics, EncoderOptions options);

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
  absl::StatusOr<blocks::Ingested> Ingest(const v1::Passage& passage, bool force_reencode);

  blocks::BlockCache& cache_;
  const EncoderOptions options_;
  const std::string fingerprint_hex_;

  Counter* passages_;
  Counter* passages_failed_;
  Counter* cache_hit_skips_;
  Counter* corrupt_blocks_;
  Counter* tokens_encoded_;
  Counter* kv_bytes_written_;
  Histogram* encode_ms_;
};

}  // namespace blockserve::passage_encoder

#endif  // BLOCKSERVE_PASSAGE_ENCODER_ENCODER_CORE_H_
