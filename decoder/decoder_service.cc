#include "decoder/decoder_service.h"

#include <utility>

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
          engine.config().vocab_size, engine.config().max_position_embeddings, policy};
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
  receive_ms_ = metrics->GetHistogram("blockserve_decoder_kv_receive_ms",
                                      "AcceptSequence time from header to admission, ms.",
                                      LatencyBucketsMs());
}

grpc::Status DecoderService::AcceptSequence(grpc::ServerContext* context,
                                            grpc::ServerReader<v1::KvChunk>* reader,
                                            v1::AcceptSequenceResponse* response) {
  handoff::SequenceAssembler assembler(expect_);
  uint64_t sequence_id = 0;
  const auto fail = [&](const absl::Status& status) {
    handoffs_failed_->Add();
    LogEvent("accept_sequence_failed", {{"sequence_id", absl::StrCat(sequence_id)},
                                        {"request_id", assembler.header().request_id()},
                                        {"code", absl::StatusCodeToString(status.code())},
                                        {"error", std::string(status.message())}});
    return ToGrpcStatus(status);
  };
  v1::KvChunk chunk;
  if (!reader->Read(&chunk)) {
    return fail(
        absl::InvalidArgumentError("empty stream: the first chunk must carry a SequenceHeader"));
  }
  const absl::Time start = absl::Now();
  if (absl::Status s = assembler.AddChunk(chunk); !s.ok()) return fail(s);
  const v1::SequenceHeader& header = assembler.header();
  sequence_id = header.sequence_id();
  absl::StatusOr<engine::StopRules> stop = handoff::DecodeLimitsFromProto(
      header.sampling(), expect_.vocab_size, options_.max_new_tokens);
  absl::StatusOr<engine::SamplingParams> sampling = handoff::FromProto(header.sampling());
  if (!stop.ok()) return fail(stop.status());
  if (!sampling.ok()) return fail(sampling.status());
  // Capacity and id are checked before the KV arrives, so a full decoder stops the
  // sender early.
  absl::StatusOr<DecoderCore::Reservation> reservation =
      core_.Reserve(sequence_id, header.token_count(), stop->max_new_tokens);
  if (!reservation.ok()) return fail(reservation.status());

  while (reader->Read(&chunk)) {
    if (absl::Status s = assembler.AddChunk(chunk); !s.ok()) return fail(s);
  }
  if (context->IsCancelled()) {
    return fail(absl::UnavailableError("the KV stream broke before its end"));
  }
  absl::StatusOr<engine::KvCache> kv = assembler.Finish();
  if (!kv.ok()) return fail(kv.status());

  SequenceInput input;
  input.sequence_id = sequence_id;
  input.request_id = header.request_id();
  input.kv = *std::move(kv);
  input.first_token = header.first_token_id();
  input.sampling = *sampling;
  input.stop = *std::move(stop);
  if (absl::Status s = core_.Admit(*std::move(reservation), std::move(input)); !s.ok()) {
    return fail(s);
  }
  const double receive_ms = absl::ToDoubleMilliseconds(absl::Now() - start);
  kv_bytes_received_->Add(static_cast<double>(assembler.bytes_received()));
  receive_ms_->Observe(receive_ms);
  response->set_sequence_id(sequence_id);
  response->set_token_count(header.token_count());
  response->set_bytes_received(static_cast<uint64_t>(assembler.bytes_received()));
  response->set_receive_ms(receive_ms);
  LogEvent("sequence_received", {{"sequence_id", absl::StrCat(sequence_id)},
                                 {"request_id", header.request_id()},
                                 {"tokens", absl::StrCat(header.token_count())},
                                 {"bytes", absl::StrCat(assembler.bytes_received())},
                                 {"dtype", v1::DType_Name(header.dtype())},
                                 {"receive_ms", absl::StrCat(receive_ms)}});
  return grpc::Status::OK;
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
