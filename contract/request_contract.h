// The request contract of proto/blockserve.proto, defined once: the checks of a
// Router.Generate / QueryPrefill.Prefill request that need neither the model nor the
// KV store. The router and the prefill both call these, so one input gets one answer
// wherever it is checked.
//
// Split of the checks:
//   here (model-independent): request id; UTF-8 and emptiness of the query, system
//     prompt, passage text and stop strings; PassageRef shape (exactly one of
//     passage_id / text / token_ids, non-empty, a passage_id that could name a
//     passage, token ids >= 0); passage count; enum values; global_blocks; sampling
//     ranges; stop string and stop token id counts and sizes; max_new_tokens against
//     the server's limit. Every failure is InvalidArgument.
//   in the services (model- or deployment-dependent): token ids (passage, stop) below
//     vocab_size; tokenized lengths against the context length (a passage, the whole
//     prompt); a query that tokenizes to nothing; whether a passage_id is known
//     (NotFound); whether the requested handoff transport is available
//     (FailedPrecondition).
// A service runs these checks first, so a request with several faults gets the same
// InvalidArgument from the router and the prefill, before any NotFound.
#ifndef BLOCKSERVE_CONTRACT_REQUEST_CONTRACT_H_
#define BLOCKSERVE_CONTRACT_REQUEST_CONTRACT_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "proto/blockserve.pb.h"

namespace blockserve::contract {

// Limits the proto fixes for every server.
inline constexpr size_t kMaxRequestIdBytes = 128;
inline constexpr size_t kMaxPassageIdBytes = 256;
inline constexpr size_t kMaxStopStrings = 16;
inline constexpr size_t kMaxStopStringBytes = 256;
inline constexpr size_t kMaxStopTokenIds = 16;
inline constexpr float kMaxTemperature = 100;
// Text a server tokenizes is bounded in bytes before it is tokenized, so an oversized
// field costs a length check, not a tokenizer pass. A token is at least one byte, and no
// served model's context comes near these: 64 Ki query/system bytes, 1 MiB of passage
// text, 256 Ki passage token ids.
inline constexpr size_t kMaxQueryBytes = 64 << 10;
inline constexpr size_t kMaxSystemPromptBytes = 64 << 10;
inline constexpr size_t kMaxPassageTextBytes = 1 << 20;
inline constexpr size_t kMaxPassageTokenIds = 256 << 10;
// The largest gRPC message a server accepts: the largest prompt the limits above allow
// (kMaxPassageTextBytes for each of 64 passages would be larger, but a prompt must fit
// the model's context, so 32 MiB is far above any servable prompt or ingest batch).
// Bigger messages are refused by gRPC before they are parsed (RESOURCE_EXHAUSTED).
inline constexpr int kMaxMessageBytes = 32 << 20;

// Limits a server is configured with (flags of the same names). The router and the
// prefills of one deployment must be given equal values, or the router would answer
// differently from the prefill it forwards to.
struct Limits {
  // Most passages one request may reference (--max_passages).
  int max_passages = 64;
  // Largest SamplingParams.max_new_tokens accepted (--max_new_tokens_limit).
  int64_t max_new_tokens_limit = 4096;
};

// PrefillRequest.request_id: 0..kMaxRequestIdBytes bytes of printable ASCII.
absl::Status ValidateRequestId(absl::string_view request_id);

// Passage.id: 0..kMaxPassageIdBytes bytes of UTF-8 without control characters. Empty
// is valid: an anonymous passage, cached under its content key only.
absl::Status ValidatePassageId(absl::string_view id);

// PrefillRequest.query: non-empty valid UTF-8 of at most kMaxQueryBytes bytes. The
// prompt's length in tokens is checked against the model's context by the prefill.
absl::Status ValidateQuery(absl::string_view query);

// PrefillRequest.system_prompt: valid UTF-8 of at most kMaxSystemPromptBytes bytes;
// empty is valid (a BOS-only block).
absl::Status ValidateSystemPrompt(absl::string_view system_prompt);

// Passage text (ingested or inline in a prompt; `field` names it in messages):
// non-empty valid UTF-8 of at most kMaxPassageTextBytes bytes.
absl::Status ValidatePassageText(absl::string_view text, absl::string_view field);

// An ingested Passage: its id as ValidatePassageId; its content set, text as
// ValidatePassageText, or 1..kMaxPassageTokenIds token ids, each >= 0.
absl::Status ValidatePassage(const v1::Passage& passage);

// passages[index] of a request: exactly one of passage_id / text / token_ids set;
// passage_id non-empty (an empty name can only be an anonymous passage, which cannot
// be referenced by name) and otherwise as ValidatePassageId; text non-empty valid
// UTF-8 of at most kMaxPassageTextBytes; 1..kMaxPassageTokenIds token_ids, each >= 0.
absl::Status ValidatePassageRef(const v1::PassageRef& ref, int index);

// BlockOptions of a request with `num_passages` passages: known mode and cache_policy
// values, global_blocks <= num_passages in every mode (ATTENTION_MODE_FULL ignores a
// global_blocks within that range but does not excuse one over it).
absl::Status ValidateBlockOptions(const v1::BlockOptions& options, int num_passages);

// The sampler's fields of SamplingParams: temperature 0 or finite in
// (0, kMaxTemperature]; top_p 0 (unset) or in (0, 1]; top_k >= 0.
absl::Status ValidateSamplingValues(const v1::SamplingParams& sampling);

// The stop fields of SamplingParams: max_new_tokens <= max_new_tokens_limit (0 = the
// server's default); at most kMaxStopStrings stop strings of 1..kMaxStopStringBytes bytes
// of UTF-8; at most kMaxStopTokenIds stop token ids, each >= 0.
absl::Status ValidateStopFields(const v1::SamplingParams& sampling, int64_t max_new_tokens_limit);

// ValidateSamplingValues and ValidateStopFields.
absl::Status ValidateSampling(const v1::SamplingParams& sampling,
                              int64_t max_new_tokens_limit);

// Every model-independent check of a request, in field order (request_id,
// system_prompt, query, passages, block_options, sampling; for a prefill also
// decoder.transport). OK or InvalidArgument naming the first bad field, what was
// expected and what was found.
absl::Status ValidateGenerateRequest(const v1::GenerateRequest& request, const Limits& limits);
absl::Status ValidatePrefillRequest(const v1::PrefillRequest& request, const Limits& limits);

// The PrefillRequest the router sends for `request`: the shared fields (request_id,
// system_prompt, passages, query, sampling, block_options) copied, decoder unset (the
// router sets it after placement). ValidatePrefillRequest of the result answers as
// ValidateGenerateRequest of `request`.
v1::PrefillRequest ToPrefillRequest(const v1::GenerateRequest& request);

}  // namespace blockserve::contract

#endif  // BLOCKSERVE_CONTRACT_REQUEST_CONTRACT_H_
