#include "decoder/decoder_service.h"

#include <string_view>
#include <utility>

#include <grpcpp/alarm.h>

#include "absl/strings/str_cat.h"
#include "common/grpc_status.h"
#include "common/log.h"

namespace blockserve::decoder {

namespace v1 = ::blockserve::v1;

namespace {

constexpr size_t kMaxCancelReasonBytes = 256;
// How often a Stream re-checks for client cancellation while no token is ready.
constexpr absl::Duration kStreamPoll = absl::Milliseconds(100);

handoff::SequenceAssembler::Expect ExpectFor(const engine::Engine& engine,
                                             const handoff::MaxNewTokensPolicy& policy) {
  return {handoff::FingerprintHex(engine.model_fingerprint()), engine.kv_shape(),
          engine.config().vocab_size, engine.config().max_position_embeddings, policy,
          engine.kv_dtype()};
}

}  // namespace

DecoderService::DecoderService(engine::Engine& engine, DecoderCore& core,
                               DecoderServiceOptions options)
    : core_(core),
      options_(std::move(options)),
      expect_(ExpectFor(engine, options_.max_new_tokens)) {
  MetricsRegistry* metrics = options_.metrics;
  if (metrics == nullptr) {
    own_metrics_ = std::make_unique<MetricsRegistry>();
    metrics = own_metrics_.get();
  }
  kv_bytes_received_ = metrics->GetCounter("blockserve_decoder_kv_bytes_received_total",
                                           "KV payload bytes received by AcceptSequence.");
  handoffs_failed_ = metrics->GetCounter("blockserve_decoder_handoffs_failed_total",
                                         "AcceptSequence calls that ended with an error.");
  leases_expired_ = metrics->GetCounter(
      "blockserve_decoder_handoff_lease_expired_total",
      "AcceptSequence calls whose KV did not all arrive within --handoff_lease_ms (dropped).");
  receive_ms_ = metrics->GetHistogram("blockserve_decoder_kv_receive_ms",
                                      "AcceptSequence time from the call's start to admission, ms.",
                                      LatencyBucketsMs());
}

// One AcceptSequence call. The first chunk's header is checked and capacity reserved
// before any KV arrives, so a full decoder stops the sender early; each later chunk is
// checked as it arrives; the end of the stream admits the sequence. The call ends once
// (End): by the stream's end, an error, or the lease.
//
// Lifetime: gRPC calls OnDone after the end; the lease alarm's callback may come before
// or after it (OnDone cancels a pending alarm, and its callback still runs). The object
// deletes itself once both have run. Reactions run on gRPC's threads, never inside
// StartRead, Finish or Alarm::Cancel, so calling those under mu_ cannot deadlock.
class DecoderService::Receiver final : public grpc::ServerReadReactor<v1::KvChunk> {
 public:
  Receiver(DecoderService& service, grpc::CallbackServerContext* context,
           v1::AcceptSequenceResponse* response)
      : service_(service), context_(context), response_(response), assembler_(service.expect_) {
    absl::MutexLock lock(&mu_);
    StartRead(&chunk_);
    lease_.Set(absl::ToChronoTime(start_ + service_.options_.handoff_lease),
               [this](bool expired) { OnLease(expired); });
  }

  void OnReadDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    if (ended_) return;  // the lease ended the call while this read was pending
    if (!ok) return EndOfStream();
    const absl::Status s = assembler_.has_header() ? assembler_.AddChunk(chunk_) : TakeHeader();
    if (!s.ok()) return End(s);
    StartRead(&chunk_);
  }

  void OnDone() override {
    {
      absl::MutexLock lock(&mu_);
      call_done_ = true;
      if (!lease_done_) {
        lease_.Cancel();  // its callback deletes this
        return;
      }
    }
    delete this;
  }

 private:
  void OnLease(bool expired) {
    {
      absl::MutexLock lock(&mu_);
      lease_done_ = true;
      if (expired && !ended_) {
        service_.leases_expired_->Add();
        End(absl::DeadlineExceededError(absl::StrCat(
                "the KV did not arrive within the handoff lease (",
                absl::FormatDuration(service_.options_.handoff_lease),
                " from the start of the AcceptSequence call); the sequence was dropped")),
            "handoff_lease_expired");
      }
      if (!call_done_) return;
    }
    delete this;
  }

  // Validates the first chunk, which must be the header, and reserves the sequence's
  // capacity.
  absl::Status TakeHeader() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (absl::Status s = assembler_.AddChunk(chunk_); !s.ok()) return s;
    const v1::SequenceHeader& header = assembler_.header();
    sequence_id_ = header.sequence_id();
    absl::StatusOr<engine::StopRules> stop = handoff::DecodeLimitsFromProto(
        header.sampling(), service_.expect_.vocab_size, service_.options_.max_new_tokens);
    absl::StatusOr<engine::SamplingParams> sampling = handoff::FromProto(header.sampling());
    if (!stop.ok()) return stop.status();
    if (!sampling.ok()) return sampling.status();
    absl::StatusOr<DecoderCore::Reservation> reservation =
        service_.core_.Reserve(sequence_id_, header.token_count(), stop->max_new_tokens);
    if (!reservation.ok()) return reservation.status();
    reservation_ = *std::move(reservation);
    stop_ = *std::move(stop);
    sampling_ = *sampling;
    return absl::OkStatus();
  }

  // The sender closed its side (or the call broke): admit the sequence.
  void EndOfStream() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (context_->IsCancelled()) {
      return End(absl::UnavailableError("the KV stream broke before its end"));
    }
    if (!assembler_.has_header()) {
      return End(
          absl::InvalidArgumentError("empty stream: the first chunk must carry a SequenceHeader"));
    }
    absl::StatusOr<engine::KvCache> kv = assembler_.Finish();
    if (!kv.ok()) return End(kv.status());
    const v1::SequenceHeader& header = assembler_.header();
    SequenceInput input;
    input.sequence_id = sequence_id_;
    input.request_id = header.request_id();
    input.kv = *std::move(kv);
    input.first_token = header.first_token_id();
    input.sampling = sampling_;
    input.stop = std::move(stop_);
    if (absl::Status s = service_.core_.Admit(std::move(reservation_), std::move(input)); !s.ok()) {
      return End(s);
    }
    const double receive_ms = absl::ToDoubleMilliseconds(absl::Now() - start_);
    service_.kv_bytes_received_->Add(static_cast<double>(assembler_.bytes_received()));
    service_.receive_ms_->Observe(receive_ms);
    response_->set_sequence_id(sequence_id_);
    response_->set_token_count(header.token_count());
    response_->set_bytes_received(static_cast<uint64_t>(assembler_.bytes_received()));
    response_->set_receive_ms(receive_ms);
    LogEvent("sequence_received", {{"sequence_id", absl::StrCat(sequence_id_)},
                                   {"request_id", header.request_id()},
                                   {"tokens", absl::StrCat(header.token_count())},
                                   {"bytes", absl::StrCat(assembler_.bytes_received())},
                                   {"dtype", v1::DType_Name(header.dtype())},
                                   {"receive_ms", absl::StrCat(receive_ms)}});
    End(absl::OkStatus());
  }

  // Ends the call. An error is counted and logged, and frees the reserved capacity (a
  // Stream already waiting for the sequence gets UNAVAILABLE).
  void End(const absl::Status& status, std::string_view event = "accept_sequence_failed")
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ended_ = true;
    if (!status.ok()) {
      reservation_ = DecoderCore::Reservation();
      service_.handoffs_failed_->Add();
      LogEvent(event, {{"sequence_id", absl::StrCat(sequence_id_)},
                       {"request_id", assembler_.header().request_id()},
                       {"code", absl::StatusCodeToString(status.code())},
                       {"error", std::string(status.message())}});
    }
    Finish(ToGrpcStatus(status));
  }

  DecoderService& service_;
  grpc::CallbackServerContext* const context_;
  v1::AcceptSequenceResponse* const response_;
  const absl::Time start_ = absl::Now();  // the lease runs from here

  absl::Mutex mu_;
  grpc::Alarm lease_ ABSL_GUARDED_BY(mu_);
  bool ended_ ABSL_GUARDED_BY(mu_) = false;      // Finish was called
  bool call_done_ ABSL_GUARDED_BY(mu_) = false;  // OnDone ran
  bool lease_done_ ABSL_GUARDED_BY(mu_) = false;  // the alarm's callback ran
  v1::KvChunk chunk_ ABSL_GUARDED_BY(mu_);
  handoff::SequenceAssembler assembler_ ABSL_GUARDED_BY(mu_);
  uint64_t sequence_id_ ABSL_GUARDED_BY(mu_) = 0;
  DecoderCore::Reservation reservation_ ABSL_GUARDED_BY(mu_);
  engine::StopRules stop_ ABSL_GUARDED_BY(mu_);
  engine::SamplingParams sampling_ ABSL_GUARDED_BY(mu_);
};

grpc::ServerReadReactor<v1::KvChunk>* DecoderService::AcceptSequence(
    grpc::CallbackServerContext* context, v1::AcceptSequenceResponse* response) {
  return new Receiver(*this, context, response);
}

grpc::Status DecoderService::PrepareNccl(grpc::ServerContext*, const v1::NcclHandshake*,
                                         v1::NcclHandshakeResponse*) {
  return ToGrpcStatus(absl::FailedPreconditionError(
      "this decoder has no NCCL/GPU; use the AcceptSequence stream (HANDOFF_GRPC_STREAM)"));
}

grpc::Status DecoderService::Stream(grpc::ServerContext* context, const v1::StreamRequest* request,
                                    grpc::ServerWriter<v1::TokenEvent>* writer) {
  absl::StatusOr<std::unique_ptr<StreamHandle>> handle = core_.Attach(
      request->sequence_id(), options_.sequence_wait, [context] { return context->IsCancelled(); });
  if (!handle.ok()) return ToGrpcStatus(handle.status());
  // Returning before the final event destroys the handle, which cancels the sequence.
  while (!(*handle)->done()) {
    if (context->IsCancelled())
      return grpc::Status(grpc::StatusCode::CANCELLED, "Stream cancelled");
    absl::StatusOr<std::optional<v1::TokenEvent>> event = (*handle)->Next(kStreamPoll);
    if (!event.ok()) return ToGrpcStatus(event.status());
    if (!event->has_value()) continue;
    if (!writer->Write(**event)) {
      return grpc::Status(grpc::StatusCode::CANCELLED, "the client stopped reading");
    }
  }
  return grpc::Status::OK;
}

grpc::Status DecoderService::Cancel(grpc::ServerContext*, const v1::CancelRequest* request,
                                    v1::CancelResponse* response) {
  if (request->sequence_id() == 0) {
    return ToGrpcStatus(absl::InvalidArgumentError("sequence_id must be non-zero"));
  }
  std::string_view reason = request->reason();
  reason = reason.substr(0, kMaxCancelReasonBytes);
  const DecoderCore::CancelResult result = core_.Cancel(request->sequence_id(), reason);
  response->set_was_active(result.was_active);
  response->set_tokens_generated(static_cast<uint32_t>(result.tokens_generated));
  return grpc::Status::OK;
}

}  // namespace blockserve::decoder
