#include "decoder/decoder_core.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "handoff/kv_chunks.h"

namespace blockserve::decoder {

namespace v1 = ::blockserve::v1;

namespace {

// How often waiting threads re-check cancellation and the decode loop re-checks claim
// deadlines while idle.
constexpr absl::Duration kPollInterval = absl::Milliseconds(50);

double MsBetween(absl::Time a, absl::Time b) { return absl::ToDoubleMilliseconds(b - a); }

}  // namespace

// ─────────────────────────────── state ───────────────────────────────

// The shared state of one sequence id: where it is in its life and the output buffered
// for its consumer. Guarded by DecoderCore::mu_.
struct DecoderCore::Channel {
  enum class Stage {
    kPlaceholder,  // a consumer is waiting; nothing has arrived
    kReceiving,    // reserved: its KV is arriving
    kDecoding,     // admitted: in (or joining) the running batch
    kDone,         // final event (or error) buffered; its KV is released
  };
  explicit Channel(uint64_t sequence_id) : id(sequence_id) {}
  const uint64_t id;
  Stage stage = Stage::kPlaceholder;
  bool attached = false;
  // An unclaimed sequence is dropped after this.
  absl::Time claim_deadline = absl::InfiniteFuture();
  uint64_t serial = 0;  // which admission of this id (ids may be reused after the end)
  bool holds_capacity = false;
  int64_t kv_bytes = 0;
  std::string request_id;
  absl::Time admitted;
  int64_t tokens_generated = 0;  // by this decoder

  // Output not yet popped.
  std::vector<int32_t> tokens;
  std::string text;
  uint32_t next_index = 1;  // index 0 is the prefill's token
  bool final_ready = false;
  v1::FinishReason finish_reason = v1::FINISH_REASON_UNSPECIFIED;
  v1::DecodeStats stats;
  absl::Status error;  // set instead of a final event when the sequence broke
};

// A sequence in the running batch. Owned by the decode thread (or incoming_).
struct DecoderCore::Running {
  Running(SequenceInput in, const engine::Engine& engine)
      : id(in.sequence_id),
        request_id(std::move(in.request_id)),
        kv(std::move(in.kv)),
        sampler(in.sampling),
        end(engine.tokenizer(), engine.eos_ids(), std::move(in.stop), kv.num_tokens(),
            engine.config().max_position_embeddings),
        token(in.first_token),
        position(kv.num_tokens()) {}

  uint64_t id;
  uint64_t serial = 0;
  std::string request_id;
  engine::KvCache kv;
  engine::Sampler sampler;
  engine::SequenceEnd end;
  int32_t token;        // the latest accepted token: fed to the next DecodeStep
  int64_t position;     // its position
  int64_t decoded = 0;  // tokens sampled by this decoder
  bool finished = false;
};

struct DecoderCore::Metrics {
  explicit Metrics(MetricsRegistry* registry) {
    if (registry == nullptr) {
      own = std::make_unique<MetricsRegistry>();
      registry = own.get();
    }
    admitted =
        registry->GetCounter("blockserve_decoder_sequences_admitted_total", "Sequences admitted to decoding.");
    finished = registry->GetCounter("blockserve_decoder_sequences_finished_total",
                                    "Sequences that finished (stop, EOS or length).");
    cancelled = registry->GetCounter(
        "blockserve_decoder_sequences_cancelled_total",
        "Sequences cancelled (Cancel, Stream cancelled, drain, or dropped unclaimed).");
    dropped = registry->GetCounter(
        "blockserve_decoder_sequences_dropped_total",
        "Sequences (or final events) dropped because no Stream claimed them within the claim "
        "timeout.");
    tokens =
        registry->GetCounter("blockserve_decoder_tokens_generated_total", "Tokens sampled by this decoder.");
    active = registry->GetGauge("blockserve_decoder_active_sequences", "Sequences receiving KV or decoding.");
    kv_bytes =
        registry->GetGauge("blockserve_decoder_kv_bytes_reserved", "KV bytes reserved for active sequences.");
    batch_size = registry->GetHistogram("blockserve_decoder_batch_size", "Sequences per decode step.",
                                        {1, 2, 4, 8, 16, 32, 64, 128, 256, 512});
    tpot_ms =
        registry->GetHistogram("blockserve_decoder_time_per_output_token_ms",
                               "Decode step time per generated token, ms.", LatencyBucketsMs());
  }
  std::unique_ptr<MetricsRegistry> own;
  Counter *admitted, *finished, *cancelled, *dropped, *tokens;
  Gauge *active, *kv_bytes;
  Histogram *batch_size, *tpot_ms;
};

// ─────────────────────────────── handles ───────────────────────────────

StreamHandle::~StreamHandle() {
  if (!done_) core_->Detach(id_);
}

absl::StatusOr<std::optional<v1::TokenEvent>> StreamHandle::Next(absl::Duration timeout) {
  if (done_) return std::nullopt;
  return core_->Pop(id_, timeout, &done_);
}

DecoderCore::Reservation& DecoderCore::Reservation::operator=(Reservation&& other) noexcept {
  if (this != &other) {
    if (core_ != nullptr) core_->Release(id_);
    core_ = std::exchange(other.core_, nullptr);
    id_ = std::exchange(other.id_, 0);
  }
  return *this;
}

DecoderCore::Reservation::~Reservation() {
  if (core_ != nullptr) core_->Release(id_);
}

// ─────────────────────────────── core ───────────────────────────────

DecoderCore::DecoderCore(engine::Engine& engine, DecoderOptions options)
    : engine_(engine),
      options_(std::move(options)),
      served_by_(options_.served_by),
      metrics_(std::make_unique<Metrics>(options_.metrics)) {
  thread_ = std::thread([this] { Loop(); });
}

DecoderCore::~DecoderCore() {
  CancelAll("decoder shutting down");
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  thread_.join();
}

int64_t DecoderCore::KvBytesFor(int64_t prompt_tokens, int64_t max_new_tokens) const {
  const int64_t context = engine_.config().max_position_embeddings;
  const int64_t rows = std::min(prompt_tokens + std::max<int64_t>(max_new_tokens, 1) - 1, context);
  const engine::KvShape shape = engine_.kv_shape();
  return 2 * shape.num_layers * rows * shape.row() *
         static_cast<int64_t>(engine::DTypeSize(engine_.kv_dtype()));
}

absl::StatusOr<DecoderCore::Reservation> DecoderCore::Reserve(uint64_t sequence_id,
                                                              int64_t prompt_tokens,
                                                              int64_t max_new_tokens) {
  if (sequence_id == 0) return absl::InvalidArgumentError("sequence_id must be non-zero");
  const int64_t bytes = KvBytesFor(prompt_tokens, max_new_tokens);
  absl::MutexLock lock(&mu_);
  auto it = channels_.find(sequence_id);
  if (it != channels_.end() && it->second->stage != Channel::Stage::kPlaceholder) {
    return absl::AlreadyExistsError(absl::StrCat("sequence ", sequence_id, " is already in use"));
  }
  if (active_ >= options_.max_active_sequences) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "decoder is full: ", active_, " of ", options_.max_active_sequences, " sequences active"));
  }
  if (reserved_bytes_ + bytes > options_.max_kv_bytes) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "decoder KV memory is full: the sequence needs up to ", bytes, " bytes, ",
        options_.max_kv_bytes - reserved_bytes_, " of ", options_.max_kv_bytes, " are free"));
  }
  if (it == channels_.end())
    it = channels_.emplace(sequence_id, std::make_unique<Channel>(sequence_id)).first;
  Channel& ch = *it->second;
  ch.stage = Channel::Stage::kReceiving;
  ch.holds_capacity = true;
  ch.kv_bytes = bytes;
  ++active_;
  reserved_bytes_ += bytes;
  UpdateGauges();
  return Reservation(this, sequence_id);
}

void DecoderCore::Release(uint64_t sequence_id) {
  absl::MutexLock lock(&mu_);
  auto it = channels_.find(sequence_id);
  if (it == channels_.end() || it->second->stage != Channel::Stage::kReceiving) return;
  Channel& ch = *it->second;
  active_ -= 1;
  reserved_bytes_ -= ch.kv_bytes;
  ch.holds_capacity = false;
  UpdateGauges();
  if (ch.attached) {
    ch.stage = Channel::Stage::kDone;
    ch.error = absl::UnavailableError(
        absl::StrCat("the KV handoff of sequence ", sequence_id, " broke before it was admitted"));
  } else {
    channels_.erase(it);
  }
}

absl::Status DecoderCore::Admit(SequenceInput input) {
  absl::StatusOr<Reservation> r =
      Reserve(input.sequence_id, input.kv.num_tokens(), input.stop.max_new_tokens);
  if (!r.ok()) return r.status();
  return Admit(*std::move(r), std::move(input));
}

absl::Status DecoderCore::Admit(Reservation reservation, SequenceInput input) {
  const engine::ModelConfig& config = engine_.config();
  if (reservation.core_ != this || reservation.id_ != input.sequence_id) {
    return absl::InvalidArgumentError(
        absl::StrCat("sequence ", input.sequence_id, " has no reservation"));
  }
  if (!(input.kv.shape() == engine_.kv_shape()) || input.kv.num_tokens() < 1 ||
      input.kv.num_tokens() >= config.max_position_embeddings) {
    return absl::InvalidArgumentError(absl::StrCat(
        "sequence ", input.sequence_id, ": prompt KV of ", input.kv.num_tokens(),
        " tokens does not fit this model (context ", config.max_position_embeddings, ")"));
  }
  if (input.first_token < 0 || input.first_token >= config.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("first token must be in [0, ", config.vocab_size,
                                                   "), got ", input.first_token));
  }
  if (absl::Status s = engine::ValidateSamplingParams(input.sampling); !s.ok()) return s;
  if (absl::Status s = engine::ValidateStopRules(input.stop); !s.ok()) return s;
  const uint64_t id = input.sequence_id;
  const int64_t prompt_tokens = input.kv.num_tokens();
  auto run = std::make_unique<Running>(std::move(input), engine_);
  // Continue the prefill's sequence (engine/sequence_end.h): skip the sample it took for
  // the first token and replay that token, whose text the prefill already emitted. A
  // first token that ends the sequence (the prefill would not hand it off) ends it here.
  run->sampler.SkipSamples(1);
  const std::optional<engine::FinishReason> finish = run->end.Next(run->token).finish;

  const absl::Time now = absl::Now();
  absl::MutexLock lock(&mu_);
  reservation.core_ = nullptr;  // consumed: from here on the channel's stage tells
  auto it = channels_.find(id);
  if (it == channels_.end()) return absl::InternalError(absl::StrCat("sequence ", id, " vanished"));
  Channel& ch = *it->second;
  if (ch.stage != Channel::Stage::kReceiving) {
    return absl::CancelledError(absl::StrCat("sequence ", id, " was cancelled during its handoff"));
  }
  ch.stage = Channel::Stage::kDecoding;
  ch.serial = run->serial = ++admissions_;
  ch.request_id = run->request_id;
  ch.admitted = now;
  if (!ch.attached) ch.claim_deadline = now + options_.claim_timeout;
  metrics_->admitted->Add();
  LogEvent("sequence_admitted", {{"sequence_id", absl::StrCat(id)},
                                 {"request_id", ch.request_id},
                                 {"prompt_tokens", absl::StrCat(prompt_tokens)}});
  if (finish) {
    Finish(ch, handoff::ToProto(*finish), 0, now);
    return absl::OkStatus();
  }
  (ch.attached ? incoming_ : unclaimed_).push_back(std::move(run));
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<StreamHandle>> DecoderCore::Attach(uint64_t sequence_id,
                                                                  absl::Duration wait,
                                                                  std::function<bool()> cancelled) {
  if (sequence_id == 0) return absl::InvalidArgumentError("sequence_id must be non-zero");
  const absl::Time deadline = absl::Now() + wait;
  absl::MutexLock lock(&mu_);
  auto it = channels_.find(sequence_id);
  if (it == channels_.end()) {
    it = channels_.emplace(sequence_id, std::make_unique<Channel>(sequence_id)).first;
  } else if (it->second->attached) {
    return absl::AlreadyExistsError(
        absl::StrCat("sequence ", sequence_id, " already has a Stream attached"));
  }
  Channel* ch = it->second.get();
  ch->attached = true;
  ch->claim_deadline = absl::InfiniteFuture();
  const auto arrived = [ch] {
    return ch->stage == Channel::Stage::kDecoding || ch->stage == Channel::Stage::kDone;
  };
  while (!arrived()) {
    const bool expired = ch->stage == Channel::Stage::kPlaceholder && absl::Now() >= deadline;
    const bool gave_up = cancelled && cancelled();
    if (expired || gave_up) {
      if (ch->stage == Channel::Stage::kPlaceholder) {
        channels_.erase(sequence_id);
      } else {
        ch->attached = false;
      }
      if (gave_up) return absl::CancelledError("the Stream call was cancelled");
      return absl::NotFoundError(absl::StrCat("sequence ", sequence_id, " did not arrive within ",
                                              absl::FormatDuration(wait)));
    }
    absl::Duration slice = kPollInterval;
    if (ch->stage == Channel::Stage::kPlaceholder) slice = std::min(slice, deadline - absl::Now());
    mu_.AwaitWithTimeout(absl::Condition(&arrived), std::max(slice, absl::ZeroDuration()));
  }
  if (!ch->error.ok()) {
    absl::Status error = ch->error;
    channels_.erase(sequence_id);
    return error;
  }
  // Claimed: an admitted sequence that was waiting for its consumer starts decoding.
  const auto waiting = std::find_if(
      unclaimed_.begin(), unclaimed_.end(), [ch](const std::unique_ptr<Running>& r) {
        return r->id == ch->id && r->serial == ch->serial;
      });
  if (waiting != unclaimed_.end()) {
    incoming_.push_back(std::move(*waiting));
    unclaimed_.erase(waiting);
  }
  return std::unique_ptr<StreamHandle>(new StreamHandle(this, sequence_id));
}

absl::StatusOr<std::optional<v1::TokenEvent>> DecoderCore::Pop(uint64_t sequence_id,
                                                               absl::Duration timeout, bool* done) {
  absl::MutexLock lock(&mu_);
  auto it = channels_.find(sequence_id);
  if (it == channels_.end()) {
    *done = true;
    return absl::InternalError(absl::StrCat("sequence ", sequence_id, " lost its channel"));
  }
  Channel* ch = it->second.get();
  const auto ready = [ch] {
    return !ch->tokens.empty() || !ch->text.empty() || ch->final_ready || !ch->error.ok();
  };
  mu_.AwaitWithTimeout(absl::Condition(&ready), timeout);
  if (!ch->error.ok()) {
    absl::Status error = ch->error;
    channels_.erase(it);
    *done = true;
    return error;
  }
  if (!ready()) return std::nullopt;
  v1::TokenEvent event;
  event.mutable_token_ids()->Assign(ch->tokens.begin(), ch->tokens.end());
  event.set_text(std::move(ch->text));
  event.set_index(ch->next_index);
  ch->next_index += static_cast<uint32_t>(ch->tokens.size());
  ch->tokens.clear();
  ch->text.clear();
  if (ch->final_ready) {
    event.set_finish_reason(ch->finish_reason);
    *event.mutable_stats() = ch->stats;
    channels_.erase(it);
    *done = true;
  }
  return event;
}

void DecoderCore::Detach(uint64_t sequence_id) {
  absl::MutexLock lock(&mu_);
  auto it = channels_.find(sequence_id);
  if (it == channels_.end()) return;
  Channel& ch = *it->second;
  if (ch.stage == Channel::Stage::kDecoding) {
    LogEvent("stream_cancelled",
             {{"sequence_id", absl::StrCat(sequence_id)}, {"request_id", ch.request_id}});
    Finish(ch, v1::FINISH_REASON_CANCELLED, ch.tokens_generated, ch.admitted);
  }
  channels_.erase(it);  // the decode thread drops the sequence and its KV
}

DecoderCore::CancelResult DecoderCore::Cancel(uint64_t sequence_id, std::string_view reason) {
  absl::MutexLock lock(&mu_);
  auto it = channels_.find(sequence_id);
  if (it == channels_.end()) return {};
  Channel& ch = *it->second;
  if (ch.stage != Channel::Stage::kReceiving && ch.stage != Channel::Stage::kDecoding) return {};
  LogEvent("sequence_cancel", {{"sequence_id", absl::StrCat(sequence_id)},
                               {"request_id", ch.request_id},
                               {"reason", std::string(reason)}});
  const int64_t tokens = ch.tokens_generated;
  Finish(ch, v1::FINISH_REASON_CANCELLED, tokens,
         ch.stage == Channel::Stage::kDecoding ? ch.admitted : absl::Now());
  return {true, tokens};
}

void DecoderCore::CancelAll(std::string_view reason) {
  std::vector<uint64_t> ids;
  {
    absl::MutexLock lock(&mu_);
    for (const auto& [id, ch] : channels_) ids.push_back(id);
  }
  for (uint64_t id : ids) Cancel(id, reason);
}

void DecoderCore::set_served_by(std::string served_by) {
  absl::MutexLock lock(&mu_);
  served_by_ = std::move(served_by);
}

int64_t DecoderCore::active_sequences() const {
  absl::MutexLock lock(&mu_);
  return active_;
}

int64_t DecoderCore::reserved_kv_bytes() const {
  absl::MutexLock lock(&mu_);
  return reserved_bytes_;
}

void DecoderCore::Finish(Channel& ch, v1::FinishReason reason, int64_t tokens_generated,
                         absl::Time admitted) {
  const absl::Time now = absl::Now();
  ch.stage = Channel::Stage::kDone;
  ch.final_ready = true;
  ch.finish_reason = reason;
  ch.tokens_generated = tokens_generated;
  const double decode_ms = MsBetween(admitted, now);
  ch.stats.set_tokens_generated(static_cast<uint32_t>(tokens_generated));
  ch.stats.set_decode_ms(decode_ms);
  ch.stats.set_mean_tpot_ms(tokens_generated > 0 ? decode_ms / tokens_generated : 0);
  ch.stats.set_served_by(served_by_);
  if (ch.holds_capacity) {
    ch.holds_capacity = false;
    active_ -= 1;
    reserved_bytes_ -= ch.kv_bytes;
    UpdateGauges();
  }
  if (!ch.attached) ch.claim_deadline = std::min(ch.claim_deadline, now + options_.claim_timeout);
  (reason == v1::FINISH_REASON_CANCELLED ? metrics_->cancelled : metrics_->finished)->Add();
  LogEvent("sequence_finished", {{"sequence_id", absl::StrCat(ch.id)},
                                 {"request_id", ch.request_id},
                                 {"finish_reason", v1::FinishReason_Name(reason)},
                                 {"tokens_generated", absl::StrCat(tokens_generated)},
                                 {"decode_ms", absl::StrCat(decode_ms)}});
}

DecoderCore::Channel* DecoderCore::LiveChannel(const Running& r) {
  auto it = channels_.find(r.id);
  if (it == channels_.end()) return nullptr;
  Channel* ch = it->second.get();
  return ch->stage == Channel::Stage::kDecoding && ch->serial == r.serial ? ch : nullptr;
}

void DecoderCore::UpdateGauges() {
  metrics_->active->Set(static_cast<double>(active_));
  metrics_->kv_bytes->Set(static_cast<double>(reserved_bytes_));
}

void DecoderCore::DropUnclaimed() {
  const absl::Time now = absl::Now();
  for (auto it = channels_.begin(); it != channels_.end();) {
    Channel& ch = *it->second;
    if (ch.attached || now < ch.claim_deadline) {
      ++it;
      continue;
    }
    if (ch.stage == Channel::Stage::kDecoding) {
      Finish(ch, v1::FINISH_REASON_CANCELLED, ch.tokens_generated, ch.admitted);
    }
    metrics_->dropped->Add();
    LogEvent("sequence_dropped",
             {{"sequence_id", absl::StrCat(it->first)},
              {"request_id", ch.request_id},
              {"reason", "no Stream claimed it within the claim timeout"},
              {"claim_timeout_ms", absl::StrCat(absl::ToInt64Milliseconds(options_.claim_timeout))}});
    it = channels_.erase(it);
  }
}

// ─────────────────────────────── the decode loop ───────────────────────────────

void DecoderCore::Loop() {
  std::vector<std::unique_ptr<Running>> batch;
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (stop_) return;
    }
    TakeIncoming(batch);
    if (batch.empty()) {
      absl::MutexLock lock(&mu_);
      const auto woken = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stop_ || !incoming_.empty();
      };
      mu_.AwaitWithTimeout(absl::Condition(&woken), kPollInterval);
      continue;
    }
    Step(batch);
    std::erase_if(batch, [](const std::unique_ptr<Running>& r) { return r->finished; });
  }
}

// Between steps: newly claimed sequences join, cancelled or collected ones leave (their
// KV is freed here, after the lock), and unclaimed ones past their deadline are dropped.
void DecoderCore::TakeIncoming(std::vector<std::unique_ptr<Running>>& batch) {
  std::vector<std::unique_ptr<Running>> leaving;
  absl::MutexLock lock(&mu_);
  DropUnclaimed();
  for (auto& r : incoming_) batch.push_back(std::move(r));
  incoming_.clear();
  for (std::vector<std::unique_ptr<Running>>* list : {&batch, &unclaimed_}) {
    for (auto& r : *list) {
      if (LiveChannel(*r) == nullptr) leaving.push_back(std::move(r));
    }
    std::erase_if(*list, [](const std::unique_ptr<Running>& r) { return r == nullptr; });
  }
}

void DecoderCore::Step(std::vector<std::unique_ptr<Running>>& batch) {
  std::vector<engine::DecodeInput> inputs;
  inputs.reserve(batch.size());
  for (const auto& r : batch) inputs.push_back({&r->kv, r->token, r->position});
  const absl::Time t0 = absl::Now();
  absl::StatusOr<std::vector<std::vector<float>>> logits = engine_.DecodeStep(inputs);
  const double step_ms = MsBetween(t0, absl::Now());
  metrics_->batch_size->Observe(static_cast<double>(batch.size()));
  if (!logits.ok()) {
    LogEvent("decode_step_failed",
             {{"error", logits.status().ToString()}, {"batch_size", absl::StrCat(batch.size())}});
    absl::MutexLock lock(&mu_);
    for (auto& r : batch) {
      r->finished = true;
      Channel* live = LiveChannel(*r);
      if (live == nullptr) continue;
      Channel& ch = *live;
      Finish(ch, v1::FINISH_REASON_UNSPECIFIED, r->decoded, ch.admitted);
      ch.final_ready = false;
      ch.error =
          absl::InternalError(absl::StrCat("decode step failed: ", logits.status().message()));
    }
    return;
  }

  // Sample and apply each sequence's SequenceEnd, outside the lock.
  std::vector<engine::SequenceEnd::Step> outcomes(batch.size());
  for (size_t i = 0; i < batch.size(); ++i) {
    Running& r = *batch[i];
    r.token = r.sampler.Sample((*logits)[i]);
    r.position += 1;
    r.decoded += 1;
    outcomes[i] = r.end.Next(r.token);
  }

  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < batch.size(); ++i) {
    Running& r = *batch[i];
    metrics_->tpot_ms->Observe(step_ms);
    Channel* live = LiveChannel(r);
    if (live == nullptr) {
      // Cancelled or collected during the step: its token is thrown away and not
      // counted, so the counter stops moving once no sequence is active.
      r.finished = true;
      continue;
    }
    metrics_->tokens->Add();
    Channel& ch = *live;
    const engine::SequenceEnd::Step& o = outcomes[i];
    if (o.keep) ch.tokens.push_back(r.token);
    ch.text += o.text_delta;
    ch.tokens_generated = r.decoded;
    if (o.finish) {
      Finish(ch, handoff::ToProto(*o.finish), r.decoded, ch.admitted);
      r.finished = true;
    }
  }
}

}  // namespace blockserve::decoder
