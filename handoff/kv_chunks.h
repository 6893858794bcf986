// The KV handoff between a prefill (sender) and a decoder (receiver): the wire stream and
// the conversions of its generation fields to the engine's types.
//
// Wire: Decoder.AcceptSequence is a client stream of KvChunk: one SequenceHeader, then
// KvSlices covering every (layer, K|V, token) of the prompt exactly once, in any order
// (see proto/blockserve.proto). SequenceToChunks / ForEachChunk produce that stream;
// SequenceAssembler validates and reassembles it into an engine::KvCache.
//
// Generation fields: SamplingParams → engine::SamplingParams (FromProto) and
// engine::StopRules (DecodeLimitsFromProto); engine::FinishReason → the wire's (ToProto).
// Both sides end a sequence and derive its text with engine::SequenceEnd; its header
// states the first-token text contract between them and how the sampler's stream
// continues.
#ifndef BLOCKSERVE_HANDOFF_KV_CHUNKS_H_
#define BLOCKSERVE_HANDOFF_KV_CHUNKS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/dtype.h"
#include "engine/kv_cache.h"
#include "engine/sampling.h"
#include "engine/sequence_end.h"
#include "proto/blockserve.pb.h"

namespace blockserve::handoff {

// Senders keep a chunk at or under this (the proto's advice; gRPC's default limit is 4 MiB).
inline constexpr size_t kDefaultMaxChunkBytes = 1 << 20;

// ─────────────────────────────── KV chunks ───────────────────────────────

// Maps the wire dtype to the engine's. InvalidArgument for UNSPECIFIED or unknown values.
absl::StatusOr<engine::DType> ToEngineDType(blockserve::v1::DType dtype);
// The wire dtype of an engine dtype (every engine dtype has one).
blockserve::v1::DType ToWireDType(engine::DType dtype);

// Calls `sink` with the AcceptSequence stream of `kv`: the header chunk, then for each
// layer K then V in token slices whose data is at most `max_chunk_bytes` (a slice holds
// at least one token, so a token row larger than the limit gets a chunk of its own).
// Elements are converted from kv's dtype to `dtype` (copied when equal; otherwise through
// fp32, rounding to nearest even).
// The header's num_layers, num_kv_heads, head_dim, dtype, token_count and token_ids are
// set from `kv` and `dtype`; the caller fills the rest (sequence_id, model_fingerprint,
// first_token_id, sampling, request_id). Stops early when `sink` returns false; returns
// false then, true otherwise. `dtype` must be F32, F16 or BF16.
bool ForEachChunk(const blockserve::v1::SequenceHeader& header, const engine::KvCache& kv,
                  blockserve::v1::DType dtype, size_t max_chunk_bytes,
                  absl::FunctionRef<bool(const blockserve::v1::KvChunk&)> sink);

// The whole stream of ForEachChunk as a vector (convenient; holds a copy of the KV).
std::vector<blockserve::v1::KvChunk> SequenceToChunks(
    const blockserve::v1::SequenceHeader& header, const engine::KvCache& kv,
    blockserve::v1::DType dtype, size_t max_chunk_bytes = kDefaultMaxChunkBytes);

// ─────────────────────────── generation fields ───────────────────────────

// Server-side bounds on SamplingParams.max_new_tokens (flags --default_max_new_tokens and
// --max_new_tokens_limit of the prefill and the decoder).
struct MaxNewTokensPolicy {
  int64_t default_max_new_tokens = 256;  // used when the request leaves it 0
  int64_t max_new_tokens_limit = 4096;   // larger requests are INVALID_ARGUMENT
};

// SamplingParams → engine sampling, after contract::ValidateSamplingValues (the request
// contract's ranges; InvalidArgument naming the field). top_p 0 (unset) becomes 1; an
// unset seed becomes 0 (the prefill resolves an unset seed before calling this).
absl::StatusOr<engine::SamplingParams> FromProto(const blockserve::v1::SamplingParams& params);

// SamplingParams → stop rules, after contract::ValidateStopFields (counts, sizes and the
// max_new_tokens limit); then what needs the model: stop_token_ids below vocab_size.
// max_new_tokens 0 → the policy's default.
absl::StatusOr<engine::StopRules> DecodeLimitsFromProto(
    const blockserve::v1::SamplingParams& params, int64_t vocab_size,
    const MaxNewTokensPolicy& policy);

// engine::FinishReason → FINISH_REASON_EOS / _STOP / _LENGTH.
blockserve::v1::FinishReason ToProto(engine::FinishReason reason);

// A model fingerprint as the wire and the KV store spell it: 16 lowercase hex digits.
std::string FingerprintHex(uint64_t fingerprint);

// ───────────────────────────── the receiver ─────────────────────────────

// Reassembles one AcceptSequence stream. Feed every chunk to AddChunk in order; the first
// error is final (the caller ends the call with it). Not thread-safe.
class SequenceAssembler {
 public:
  // What the local model requires of a handed-off sequence.
  struct Expect {
    std::string model_fingerprint_hex;  // FingerprintHex of the local model
    engine::KvShape shape;
    int64_t vocab_size = 0;
    int64_t context_length = 0;  // the model's max_position_embeddings
    MaxNewTokensPolicy max_new_tokens;
    // The decoder engine's KV dtype: Finish returns the KV in it, whatever the wire's.
    engine::DType kv_dtype = engine::DType::kF32;
  };
  explicit SequenceAssembler(Expect expect);

  // The first chunk must be the header. Header errors: sequence_id 0, unknown dtype,
  // empty fingerprint, token_count outside [1, context_length - 1] or different from
  // token_ids, a token or first_token_id outside [0, vocab_size), bad sampling
  // (FromProto, DecodeLimitsFromProto) or an unset sampling seed → InvalidArgument;
  // fingerprint, num_layers, num_kv_heads or head_dim different from Expect →
  // FailedPrecondition. Slice errors (InvalidArgument): layer out of range, tensor
  // unspecified, empty or out-of-range token range, overlap with an earlier slice of the
  // same (layer, tensor), data size different from the range × row × dtype size.
  absl::Status AddChunk(const blockserve::v1::KvChunk& chunk);

  // After the last chunk: InvalidArgument when no header came or some (layer, K|V,
  // token) was not covered; otherwise the prompt's KV (fp32, tokens = header token ids,
  // start_position 0). Call once.
  absl::StatusOr<engine::KvCache> Finish();

  bool has_header() const { return has_header_; }
  // The validated header (empty until AddChunk accepted one).
  const blockserve::v1::SequenceHeader& header() const { return header_; }
  // Sum of the accepted slices' data sizes.
  int64_t bytes_received() const { return bytes_received_; }

 private:
  absl::Status CheckHeader(const blockserve::v1::SequenceHeader& header) const;
  absl::Status AddSlice(const blockserve::v1::KvSlice& slice);

  Expect expect_;
  bool has_header_ = false;
  bool failed_ = false;
  bool finished_ = false;
  blockserve::v1::SequenceHeader header_;
  engine::DType dtype_ = engine::DType::kF32;
  engine::KvCache kv_;
  // Covered token ranges [begin, end) per (layer, tensor): index 2 * layer + (V ? 1 : 0).
  std::vector<std::map<uint32_t, uint32_t>> covered_;
  int64_t bytes_received_ = 0;
};

}  // namespace blockserve::handoff

#endif  // BLOCKSERVE_HANDOFF_KV_CHUNKS_H_
