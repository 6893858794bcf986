// Continuous batching over engine::Engine::DecodeStep: the decoder's logic, with no gRPC.
//
// A sequence arrives prefilled (prompt KV + the first token the prefill sampled). It is
// reserved (capacity checked), admitted, and joins the running batch between two decode
// steps. Each step decodes one token for every running sequence; each sequence samples
// with its own Sampler and ends by its engine::SequenceEnd, which continues the prefill's
// after the first token (engine/sequence_end.h), so it ends as engine::Generate does.
// Output goes into a per-sequence buffer of TokenEvents that one consumer drains through a
// StreamHandle.
//
// A sequence is decoded only once a consumer has claimed it (Attach): one that nobody
// claims within DecoderOptions::claim_timeout is dropped having used no decode step, so
// a sender that hands off and never streams costs a slot for that long, not a generation.
//
// Ownership: the core owns each sequence's KvCache from Admit until it finishes, is
// cancelled or is dropped, and frees it then. Thread safety: every public method may be
// called from any thread; one internal thread runs the decode loop.
//
// Sampling continuity: the prefill's Sampler sampled token 0 from the seed's stream; the
// decoder's Sampler skips that sample (Sampler::SkipSamples) so that a sampled sequence
// equals engine::Generate's for the same seed, as it does for greedy.
#ifndef BLOCKSERVE_DECODER_DECODER_CORE_H_
#define BLOCKSERVE_DECODER_DECODER_CORE_H_

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/metrics.h"
#include "engine/engine.h"
#include "engine/sampling.h"
#include "engine/sequence_end.h"
#include "proto/blockserve.pb.h"

namespace blockserve::decoder {

struct DecoderOptions {
  int64_t max_active_sequences = 64;        // receiving + decoding
  int64_t max_kv_bytes = int64_t{4} << 30;  // KV a sequence can reach, summed
  // How long an admitted sequence (or the final event of one that ended) waits for a
  // consumer to claim it. An unclaimed sequence is not decoded: it holds its slot and KV
  // but joins the batch only once claimed, and is dropped when this runs out.
  absl::Duration claim_timeout = absl::Seconds(5);
  std::string served_by;               // DecodeStats.served_by
  MetricsRegistry* metrics = nullptr;  // optional
};

// A prefilled sequence, ready to decode.
struct SequenceInput {
  uint64_t sequence_id = 0;
  std::string request_id;           // for logs
  engine::KvCache kv;               // the prompt's KV (tokens = prompt ids, start position 0)
  int32_t first_token = 0;          // sampled by the prefill, at position kv.num_tokens()
  engine::SamplingParams sampling;  // seed resolved
  engine::StopRules stop;
};

class DecoderCore;

// The consumer side of one sequence: returned by DecoderCore::Attach. Destroying the
// handle before the final event cancels the sequence and frees its KV; afterwards the
// sequence is gone (a later Attach → NOT_FOUND).
class StreamHandle {
 public:
  ~StreamHandle();
  StreamHandle(const StreamHandle&) = delete;
  StreamHandle& operator=(const StreamHandle&) = delete;

  // Waits up to `timeout` for output. Returns every token buffered since the last call
  // as one event (the final one carries finish_reason and stats), nullopt on timeout or
  // after the final event, or an error when the sequence broke (UNAVAILABLE / INTERNAL).
  absl::StatusOr<std::optional<blockserve::v1::TokenEvent>> Next(absl::Duration timeout);
  // True once the final event was returned.
  bool done() const { return done_; }
  uint64_t sequence_id() const { return id_; }

 private:
  friend class DecoderCore;
  StreamHandle(DecoderCore* core, uint64_t id) : core_(core), id_(id) {}
  DecoderCore* core_;
  uint64_t id_;
  bool done_ = false;
};

class DecoderCore {
 public:
  // `engine` must outlive the core. Starts the decode thread.
  DecoderCore(engine::Engine& engine, DecoderOptions options);
  // Cancels every sequence and joins the decode thread.
  ~DecoderCore();

  // Capacity held for a sequence while its KV is being received. Movable; destroying an
  // unadmitted reservation releases it (a broken handoff: an attached consumer then gets
  // UNAVAILABLE).
  class Reservation {
   public:
    Reservation() = default;
    Reservation(Reservation&& other) noexcept { *this = std::move(other); }
    Reservation& operator=(Reservation&& other) noexcept;
    ~Reservation();
    uint64_t sequence_id() const { return id_; }

   private:
    friend class DecoderCore;
    Reservation(DecoderCore* core, uint64_t id) : core_(core), id_(id) {}
    DecoderCore* core_ = nullptr;
    uint64_t id_ = 0;
  };

  // Holds room for a sequence of `prompt_tokens` that may generate `max_new_tokens`
  // (its KV can reach min(prompt + max_new_tokens - 1, context) rows).
  // ALREADY_EXISTS for an id in use; RESOURCE_EXHAUSTED over max_active_sequences or
  // max_kv_bytes; INVALID_ARGUMENT for id 0.
  absl::StatusOr<Reservation> Reserve(uint64_t sequence_id, int64_t prompt_tokens,
                                      int64_t max_new_tokens);
  // Admits a reserved sequence: it joins the batch before the next step once it is
  // claimed (at once when a consumer is already attached). `input.sequence_id` must be
  // the reservation's. CANCELLED if it was cancelled while being received;
  // INVALID_ARGUMENT for a first token outside the vocabulary or a prompt KV of the
  // wrong shape.
  absl::Status Admit(Reservation reservation, SequenceInput input);
  // Reserve + Admit.
  absl::Status Admit(SequenceInput input);

  // Claims the output of `sequence_id` (an admitted sequence starts decoding now),
  // waiting up to `wait` for it to arrive (and, once its KV is being received, until it
  // is admitted). NOT_FOUND when it did not arrive or was already collected;
  // ALREADY_EXISTS when another consumer holds it; UNAVAILABLE when its handoff broke;
  // CANCELLED when `cancelled` (polled) returns true.
  absl::StatusOr<std::unique_ptr<StreamHandle>> Attach(uint64_t sequence_id, absl::Duration wait,
                                                       std::function<bool()> cancelled = nullptr);

  struct CancelResult {
    bool was_active = false;
    int64_t tokens_generated = 0;
  };
  // Ends a receiving or decoding sequence with FINISH_REASON_CANCELLED and frees its KV.
  // Unknown or finished sequences: was_active = false.
  CancelResult Cancel(uint64_t sequence_id, std::string_view reason = "");
  // Cancels every sequence (SIGTERM drain).
  void CancelAll(std::string_view reason);

  // DecodeStats.served_by from now on (the bound port may be known only after start).
  void set_served_by(std::string served_by);

  // Sequences receiving or decoding, and the KV bytes reserved for them.
  int64_t active_sequences() const;
  int64_t reserved_kv_bytes() const;

 private:
  friend class StreamHandle;
  struct Channel;
  struct Running;
  struct Metrics;

  int64_t KvBytesFor(int64_t prompt_tokens, int64_t max_new_tokens) const;
  void Release(uint64_t sequence_id) ABSL_LOCKS_EXCLUDED(mu_);
  void Detach(uint64_t sequence_id) ABSL_LOCKS_EXCLUDED(mu_);
  absl::StatusOr<std::optional<blockserve::v1::TokenEvent>> Pop(uint64_t sequence_id,
                                                                absl::Duration timeout, bool* done)
      ABSL_LOCKS_EXCLUDED(mu_);

  void Loop();
  void TakeIncoming(std::vector<std::unique_ptr<Running>>& batch) ABSL_LOCKS_EXCLUDED(mu_);
  void Step(std::vector<std::unique_ptr<Running>>& batch);
  void DropUnclaimed() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void Finish(Channel& channel, blockserve::v1::FinishReason reason, int64_t tokens_generated,
              absl::Time admitted) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void EndChannel(uint64_t sequence_id, Channel& channel) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void UpdateGauges() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The channel `r` writes to, or null when its sequence was cancelled or collected.
  Channel* LiveChannel(const Running& r) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  engine::Engine& engine_;
  const DecoderOptions options_;
  std::string served_by_ ABSL_GUARDED_BY(mu_);
  std::unique_ptr<Metrics> metrics_;

  mutable absl::Mutex mu_;
  std::map<uint64_t, std::unique_ptr<Channel>> channels_ ABSL_GUARDED_BY(mu_);
  // Admitted and claimed, waiting to join the batch.
  std::vector<std::unique_ptr<Running>> incoming_ ABSL_GUARDED_BY(mu_);
  // Admitted but not claimed yet: not decoded (Attach moves one to incoming_).
  std::vector<std::unique_ptr<Running>> unclaimed_ ABSL_GUARDED_BY(mu_);
  int64_t active_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t reserved_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t admissions_ ABSL_GUARDED_BY(mu_) = 0;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

}  // namespace blockserve::decoder

#endif  // BLOCKSERVE_DECODER_DECODER_CORE_H_
