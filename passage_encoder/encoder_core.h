// The passage encoder's logic, without the network: proto passages in, one result each
// out, over blocks::BlockCache::Ingest (which keys, encodes unless stored, writes the
// block, and for a named passage its source and catalog entry, so prefills can refer
// to it by id). This layer adds the batch rules, the per-item results and the metrics.
//
// Every passage gets its own result, and a bad passage (INVALID_ARGUMENT) fails only
// its item. A store that does not take a write (RESOURCE_EXHAUSTED, UNAVAILABLE) fails
// the whole call, as the proto says: the caller must not believe the batch ingested.
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
  // Everything is stored in namespace `ns` (security/tenant_scope.h; set by the router).
  v1::EncodeResult Encode(const v1::Passage& passage, uint32_t index, bool force_reencode,
                          std::string_view ns = "");

  // One result per passage, in order, plus totals. InvalidArgument when the batch is
  // larger than max_batch_passages; the store's UNAVAILABLE / RESOURCE_EXHAUSTED (see
  // StoreFailure) at the first passage the store did not take.
  absl::StatusOr<v1::EncodePassagesResponse> EncodeBatch(const v1::EncodePassagesRequest& request,
                                                         std::string_view ns = "");

  // A whole-call error when `result` failed because the store did not take the write
  // (UNAVAILABLE, RESOURCE_EXHAUSTED), naming the passage; OK otherwise.
  static absl::Status StoreFailure(const v1::EncodeResult& result);

  // The served model's fingerprint, lowercase hex.
  const std::string& fingerprint_hex() const { return fingerprint_hex_; }

 private:
  absl::StatusOr<blocks::Ingested> Ingest(const v1::Passage& passage, bool force_reencode,
                                          std::string_view ns);

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
