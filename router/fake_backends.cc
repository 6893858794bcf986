#include "router/fake_backends.h"

#include <grpcpp/health_check_service_interface.h>

#include "absl/strings/str_cat.h"

namespace blockserve::router::testing {

FakeServer::FakeServer(const std::vector<grpc::Service*>& services) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  for (grpc::Service* s : services) builder.RegisterService(s);
  server_ = builder.BuildAndStart();
  address_ = absl::StrCat("127.0.0.1:", port);
}

FakeServer::~FakeServer() { Kill(); }

void FakeServer::SetServing(bool serving) {
  server_->GetHealthCheckService()->SetServingStatus(serving);
}

void FakeServer::Kill() {
  if (server_ == nullptr) return;
  server_->Shutdown(std::chrono::system_clock::now());
  server_->Wait();
  server_.reset();
}

grpc::Status FakeDecoder::AcceptSequence(grpc::ServerContext*,
                                         grpc::ServerReader<v1::KvChunk>* reader,
                                         v1::AcceptSequenceResponse* response) {
  v1::KvChunk chunk;
  if (!reader->Read(&chunk) || !chunk.has_header()) {
    return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "first chunk must be a header");
  }
  const v1::SequenceHeader header = chunk.header();
  while (reader->Read(&chunk)) {  // a real prefill's KV slices: read and dropped
  }
  const uint64_t id = header.sequence_id();
  absl::MutexLock lock(&mu_);
  if (!sequences_.emplace(id, header).second) {
    return grpc::Status(grpc::StatusCode::ALREADY_EXISTS, "sequence in use");
  }
  response->set_sequence_id(id);
  return grpc::Status::OK;
}

grpc::Status FakeDecoder::Stream(grpc::ServerContext* context, const v1::StreamRequest* request,
                                 grpc::ServerWriter<v1::TokenEvent>* writer) {
  ++streams_;
  v1::SequenceHeader header;
  {
    absl::MutexLock lock(&mu_);
    auto arrived = [&]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
      return sequences_.contains(request->sequence_id());
    };
    // Polls for cancellation, which does not wake a mutex condition.
    const absl::Time give_up = absl::Now() + absl::Seconds(5);
    while (!arrived() && !context->IsCancelled() && absl::Now() < give_up) {
      mu_.AwaitWithTimeout(absl::Condition(&arrived), absl::Milliseconds(10));
    }
    auto it = sequences_.find(request->sequence_id());
    if (it == sequences_.end()) {
      if (context->IsCancelled()) ++cancelled_streams_;
      return grpc::Status(grpc::StatusCode::NOT_FOUND, "unknown sequence");
    }
    header = it->second;
  }
  const uint32_t total = header.sampling().max_new_tokens() ? header.sampling().max_new_tokens() : 4;
  int sent = 0;
  for (uint32_t index = 1; index < total; ++index) {
    absl::SleepFor(absl::Milliseconds(token_delay_ms.load()));
    if (context->IsCancelled()) {
      ++cancelled_streams_;
      return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    }
    if (fail_after_events.load() >= 0 && sent >= fail_after_events.load()) {
      return grpc::Status(grpc::StatusCode::UNAVAILABLE, "decoder crashed (injected)");
    }
    v1::TokenEvent event;
    const int32_t id = header.first_token_id() + static_cast<int32_t>(index);
    event.add_token_ids(id);
    event.set_text(absl::StrCat("<", id, ">"));
    event.set_index(index);
    if (index + 1 == total) {
      event.set_finish_reason(v1::FINISH_REASON_LENGTH);
      event.mutable_stats()->set_tokens_generated(total - 1);
      event.mutable_stats()->set_served_by(address_);
    }
    if (!writer->Write(event)) break;
    ++sent;
  }
  return grpc::Status::OK;
}

grpc::Status FakeDecoder::Cancel(grpc::ServerContext*, const v1::CancelRequest* request,
                                 v1::CancelResponse* response) {
  ++cancel_calls_;
  absl::MutexLock lock(&mu_);
  response->set_was_active(sequences_.erase(request->sequence_id()) > 0);
  return grpc::Status::OK;
}

void FakePrefill::FailNext(grpc::StatusCode code) {
  absl::MutexLock lock(&mu_);
  failures_.push_back(code);
}

v1::PrefillRequest FakePrefill::last_request() {
  absl::MutexLock lock(&mu_);
  return last_request_;
}

grpc::Status FakePrefill::Prefill(grpc::ServerContext* context, const v1::PrefillRequest* request,
                                  v1::PrefillResponse* response) {
  ++calls_;
  {
    absl::MutexLock lock(&mu_);
    last_request_ = *request;
    if (!failures_.empty()) {
      const grpc::StatusCode code = failures_.front();
      failures_.pop_front();
      return grpc::Status(code, "injected failure");
    }
  }
  for (int waited = 0; waited < delay_ms.load(); waited += 5) {
    if (context->IsCancelled()) return grpc::Status(grpc::StatusCode::CANCELLED, "cancelled");
    absl::SleepFor(absl::Milliseconds(5));
  }
  const int32_t first = 100;
  const uint32_t passages = request->passages_size();
  response->set_request_id(request->request_id());
  response->set_first_token_id(first);
  response->set_first_token_text(absl::StrCat("<", first, ">"));
  response->set_served_by(address_);
  v1::PrefillStats* stats = response->mutable_stats();
  stats->set_tokens_reused(5 * passages);
  stats->set_tokens_computed(3);
  stats->set_prompt_tokens(5 * passages + 3);
  stats->set_cache_hits(passages);
  stats->set_flops_to_first_token(1000);
  stats->set_flops_full_prefill(1000 + 500 * passages);
  if (request->sampling().max_new_tokens() == 1) {
    response->set_finish_reason(v1::FINISH_REASON_LENGTH);
    return grpc::Status::OK;
  }
  if (request->decoder().address().empty()) return grpc::Status::OK;

  auto stub = v1::Decoder::NewStub(
      grpc::CreateChannel(request->decoder().address(), grpc::InsecureChannelCredentials()));
  grpc::ClientContext handoff;
  handoff.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::AcceptSequenceResponse accepted;
  auto writer = stub->AcceptSequence(&handoff, &accepted);
  v1::KvChunk chunk;
  v1::SequenceHeader* header = chunk.mutable_header();
  header->set_sequence_id(request->decoder().sequence_id());
  header->set_first_token_id(first);
  *header->mutable_sampling() = request->sampling();
  writer->Write(chunk);
  writer->WritesDone();
  const grpc::Status s = writer->Finish();
  if (!s.ok()) {
    return grpc::Status(grpc::StatusCode::UNAVAILABLE, "handoff failed: " + s.error_message());
  }
  response->set_sequence_id(request->decoder().sequence_id());
  return grpc::Status::OK;
}

grpc::Status FakeEncoder::EncodePassages(grpc::ServerContext*,
                                         const v1::EncodePassagesRequest* request,
                                         v1::EncodePassagesResponse* response) {
  absl::MutexLock lock(&mu_);
  uint32_t index = 0;
  for (const v1::Passage& p : request->passages()) {
    v1::EncodeResult* r = response->add_results();
    r->set_id(p.id());
    r->set_index(index++);
    if (p.text().empty()) {
      r->mutable_status()->set_code(static_cast<int>(grpc::StatusCode::INVALID_ARGUMENT));
      r->mutable_status()->set_message("empty passage");
      response->mutable_stats()->set_passages_failed(response->stats().passages_failed() + 1);
      continue;
    }
    r->set_token_count(p.text().size());
    r->set_content_key(absl::StrCat("key-", p.id()));
    r->set_already_cached(!stored_.insert(p.id()).second);
    response->mutable_stats()->set_passages_ok(response->stats().passages_ok() + 1);
  }
  return grpc::Status::OK;
}

}  // namespace blockserve::router::testing
