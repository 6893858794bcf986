// The KV handoff between a prefill (sender) and a decoder (receiver), and the pieces of
// a sequence's generation policy both sides must apply identically.
//
// Wire: Decoder.AcceptSequence is a client stream of KvChunk: one SequenceHeader, then
// KvSlices covering every (layer, K|V, token) of the prompt exactly once, in any order
// (see proto/blockserve.proto). SequenceToChunks / ForEachChunk produce that stream;
// SequenceAssembler validates and reassembles it into an engine::KvCache.
//
// Generation policy shared by both sides: SamplingParams (FromProto), the stop rules
// (DecodeLimitsFromProto), a token's text (TokenText) and the streamed text deltas
// (TextStream).
//
// First-token text contract. The prefill samples the first generated token (index 0)
// and returns PrefillResponse.first_token_text; the decoder streams every later text
// delta. Both derive the text with one TextStream built from the request's stop
// strings, so the client's concatenation has no gap and no overlap:
//   prefill:  TextStream ts(limits.stop_strings);
//             TextStream::Update u = ts.Append(*TokenText(tokenizer, first_token_id));
//             first_token_text = u.delta;                  // what the prefill emits
//             if generation ends here for another reason (EOS is not appended; max_new_tokens
//             == 1, a stop token id), first_token_text += ts.Flush().
//   decoder:  TextStream ts(limits.stop_strings);
//             ts.Append(*TokenText(tokenizer, first_token_id));  // delta already emitted
//             ... then Append each later token; its deltas go into TokenEvent.text.
// So the prefill emits the complete-UTF-8 prefix of the first token's bytes, minus any
// tail that could start a stop string; the held-back bytes arrive in the decoder's first
// delta. The sampler's random stream continues too: see engine::Sampler and the
// decoder's README.
#ifndef BLOCKSERVE_HANDOFF_KV_CHUNKS_H_
#define BLOCKSERVE_HANDOFF_KV_CHUNKS_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/dtype.h"
#include "engine/kv_cache.h"
#include "engine/sampling.h"
#include "engine/tokenizer.h"
#include "proto/blockserve.pb.h"

namespace blockserve::handoff {

// Senders keep a chunk at or under this (the proto's advice; gRPC's default limit is 4 MiB).
inline constexpr size_t kDefaultMaxChunkBytes = 1 << 20;

// ─────────────────────────────── KV chunks ───────────────────────────────

// Maps the wire dtype to the engine's. InvalidArgument for UNSPECIFIED or unknown values.
absl::StatusOr<engine::DType> ToEngineDType(blockserve::v1::DType dtype);

// Calls `sink` with the AcceptSequence stream of `kv`: the header chunk, then for each
// layer K then V in token slices whose data is at most `max_chunk_bytes` (a slice holds
// at least one token, so a token row larger than the limit gets a chunk of its own).
// Elements are converted from fp32 to `dtype` (F32 exact; F16/BF16 round to nearest even).
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

// ─────────────────────────── generation policy ───────────────────────────

// Server-side bounds on SamplingParams.max_new_tokens (flags --default_max_new_tokens and
// --max_new_tokens_limit of the prefill and the decoder).
struct MaxNewTokensPolicy {
  int64_t default_max_new_tokens = 256;  // used when the request leaves it 0
  int64_t max_new_tokens_limit = 4096;   // larger requests are INVALID_ARGUMENT
};

// When generation ends besides sampling: the stop rules of one sequence.
struct DecodeLimits {
  int64_t max_new_tokens = 0;  // >= 1; counts the prefill's first token
  bool ignore_eos = false;     // EOS ids do not end generation
  std::vector<std::string> stop_strings;
  std::vector<int32_t> stop_token_ids;
};

// SamplingParams → engine sampling: temperature in [0, 100] (0 greedy), top_p in (0, 1]
// (0 = unset = 1), top_k >= 0, seed (0 when unset: the prefill resolves an unset seed
// before calling this). InvalidArgument naming the field otherwise.
absl::StatusOr<engine::SamplingParams> FromProto(const blockserve::v1::SamplingParams& params);

// SamplingParams → stop rules: max_new_tokens (0 → policy default; over the limit →
// InvalidArgument), at most 16 stop strings of 1..256 bytes of valid UTF-8, at most 16
// stop_token_ids in [0, vocab_size), ignore_eos.
absl::StatusOr<DecodeLimits> DecodeLimitsFromProto(const blockserve::v1::SamplingParams& params,
                                                   int64_t vocab_size,
                                                   const MaxNewTokensPolicy& policy);

// The text a generated token contributes: its bytes, or nothing for a special token (as
// engine::Generate, which decodes with skip_special). InvalidArgument for an unknown id.
absl::StatusOr<std::string> TokenText(const engine::Tokenizer& tokenizer, int32_t token);

// Turns the bytes of generated tokens into text deltas that are safe to send: valid
// UTF-8, never a prefix of a stop string that may still complete, and cut before the
// earliest stop string (as engine::Generate cuts its text). Concatenating every delta
// and Flush() gives the generated text with ill-formed bytes replaced by U+FFFD.
class TextStream {
 public:
  explicit TextStream(std::vector<std::string> stop_strings);

  struct Update {
    std::string delta;     // text that became final
    bool stopped = false;  // a stop string completed; the text ends before it
  };
  // Appends one token's bytes (TokenText). After a stop, further appends return nothing.
  Update Append(std::string_view bytes);
  // Ends the text: returns everything still held back (incomplete UTF-8 included).
  std::string Flush();

  // All bytes appended so far, cut before a stop string once one matched.
  const std::string& text() const { return text_; }

 private:
  std::vector<std::string> stops_;
  size_t longest_stop_ = 0;
  std::string text_;
  size_t emitted_ = 0;  // text_[0, emitted_) has been returned in deltas
  bool stopped_ = false;
};

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
