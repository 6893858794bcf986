#include "router/router_core.h"

#include <algorithm>
#include <deque>
#include <optional>
#include <string>
#include <thread>

#include "absl/random/random.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/notification.h"
#include "common/grpc_status.h"
#include "common/log.h"
#include "contract/request_contract.h"
#include "proto/blockserve.grpc.pb.h"
#include "router/rendezvous.h"

namespace blockserve::router {
namespace {

constexpr size_t kTtftWindow = 1024;

bool Retryable(absl::StatusCode code) {
  return code == absl::StatusCode::kUnavailable || code == absl::StatusCode::kResourceExhausted;
}

double MsSince(absl::Time t) { return absl::ToDoubleMilliseconds(absl::Now() - t); }

uint64_t RandomNonZero() {
  thread_local absl::BitGen gen;
  uint64_t v = 0;
  while (v == 0) v = absl::Uniform<uint64_t>(gen);
  return v;
}

// Keeps the code, says which backend answered.
absl::Status FromBackend(const grpc::Status& status, absl::string_view what,
                         const std::string& address) {
  const absl::Status s = FromGrpcStatus(status);
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat(what, " ", address, ": ", s.message()));
}

// Mail from the downstream calls of one Generate to the thread coordinating it.
struct Mail {
  enum class Kind { kPrefillDone, kDecoderEvent, kDecoderEnd };
  Kind kind;
  int tag = 0;  // which call sent it: mail of a replaced decoder stream is ignored
  v1::TokenEvent event;  // kDecoderEvent
  grpc::Status status;   // kPrefillDone, kDecoderEnd
};

class Inbox {
 public:
  void Push(Mail m) {
    absl::MutexLock lock(&mu_);
    queue_.push_back(std::move(m));
  }
  // The oldest mail, waiting up to `timeout` for one; nullopt when none came.
  std::optional<Mail> Pop(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(this, &Inbox::HasMail), timeout);
    if (queue_.empty()) return std::nullopt;
    Mail m = std::move(queue_.front());
    queue_.pop_front();
    return m;
  }

 private:
  bool HasMail() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !queue_.empty(); }
  absl::Mutex mu_;
  std::deque<Mail> queue_ ABSL_GUARDED_BY(mu_);
};

// Decoder.Stream(sequence_id) read on its own thread into an Inbox. Destruction
// cancels the call (if still open) and joins.
class DecoderStream {
 public:
  DecoderStream(const std::shared_ptr<grpc::Channel>& channel, uint64_t sequence_id,
                absl::Time deadline, Inbox* inbox, int tag)
      : stub_(v1::Decoder::NewStub(channel)) {
    context_.set_deadline(absl::ToChronoTime(deadline));
    thread_ = std::thread([this, sequence_id, inbox, tag] {
      v1::StreamRequest request;
      request.set_sequence_id(sequence_id);
      std::unique_ptr<grpc::ClientReader<v1::TokenEvent>> reader =
          stub_->Stream(&context_, request);
      Mail mail{.kind = Mail::Kind::kDecoderEvent, .tag = tag};
      while (reader->Read(&mail.event)) inbox->Push(mail);
      inbox->Push({.kind = Mail::Kind::kDecoderEnd, .tag = tag, .status = reader->Finish()});
    });
  }
  ~DecoderStream() {
    Cancel();
    thread_.join();
  }
  void Cancel() { context_.TryCancel(); }

 private:
  std::unique_ptr<v1::Decoder::Stub> stub_;
  grpc::ClientContext context_;
  std::thread thread_;
};

// QueryPrefill.Prefill as an asynchronous call that posts its end to an Inbox.
// Destruction cancels the call (if still open) and waits for its callback.
class PrefillCall {
 public:
  PrefillCall(const std::shared_ptr<grpc::Channel>& channel, v1::PrefillRequest request,
              absl::Time deadline, const security::TenantScope& scope, Inbox* inbox)
      : stub_(v1::QueryPrefill::NewStub(channel)), request_(std::move(request)) {
    context_.set_deadline(absl::ToChronoTime(deadline));
    security::AttachScope(scope, context_);
    stub_->async()->Prefill(&context_, &request_, &response_, [this, inbox](grpc::Status s) {
      inbox->Push({.kind = Mail::Kind::kPrefillDone, .status = std::move(s)});
      done_.Notify();
    });
  }
  ~PrefillCall() {
    Cancel();
    done_.WaitForNotification();
  }
  void Cancel() { context_.TryCancel(); }
  // Valid once the call's kPrefillDone mail arrived.
  const v1::PrefillResponse& response() const { return response_; }

 private:
  std::unique_ptr<v1::QueryPrefill::Stub> stub_;
  grpc::ClientContext context_;
  v1::PrefillRequest request_;
  v1::PrefillResponse response_;
  absl::Notification done_;
};

}  // namespace

uint64_t PassageAffinityKey(const v1::GenerateRequest& r) {
  std::vector<std::string> blocks;
  if (!r.system_prompt().empty()) blocks.push_back(absl::StrCat("s:", r.system_prompt()));
  for (const v1::PassageRef& p : r.passages()) {
    switch (p.passage_case()) {
      case v1::PassageRef::kPassageId: blocks.push_back(absl::StrCat("i:", p.passage_id())); break;
      case v1::PassageRef::kText: blocks.push_back(absl::StrCat("t:", p.text())); break;
      case v1::PassageRef::kTokenIds:
        blocks.push_back(absl::StrCat("k:", absl::StrJoin(p.token_ids().ids(), ",")));
        break;
      default: break;
    }
  }
  if (blocks.empty()) return 0;
  std::sort(blocks.begin(), blocks.end());
  // A stable hash: every router must compute the same key for the same passages.
  const uint64_t h = StableHash64(absl::StrJoin(blocks, std::string(1, '\0')));
  return h == 0 ? 1 : h;
}

// ───────────────────────────────── metrics ───────────────────────────────────

struct RouterCore::Instruments {
  explicit Instruments(MetricsRegistry* m)
      : registry(m),
        requests(m->GetCounter("blockserve_router_generate_requests_total", "Generate calls received")),
        active(m->GetGauge("blockserve_router_generate_active", "Generate calls in progress")),
        ttft(m->GetHistogram("blockserve_router_ttft_ms", "time to first token at the router, ms",
                             LatencyBucketsMs())),
        total(m->GetHistogram("blockserve_router_generate_ms", "Generate call duration, ms",
                              LatencyBucketsMs())),
        tokens(m->GetCounter("blockserve_router_tokens_streamed_total", "tokens sent to clients")),
        hits(m->GetCounter("blockserve_router_cache_hits_total", "blocks found in the KV store")),
        misses(m->GetCounter("blockserve_router_cache_misses_total", "blocks missed and encoded")),
        hit_ratio(m->GetGauge("blockserve_router_cache_hit_ratio", "cache hits / (hits + misses)")),
        retries(m->GetCounter("blockserve_router_prefill_retries_total",
                              "placements retried after a retryable prefill failure")),
        ingested(m->GetCounter("blockserve_router_passages_ingested_total", "passages ingested (OK)")) {}

  // Requests by final status code, e.g. blockserve_router_generate_invalid_argument_total.
  Counter* ByCode(absl::StatusCode code) {
    return registry->GetCounter(
        absl::StrCat("blockserve_router_generate_", absl::AsciiStrToLower(absl::StatusCodeToString(code)),
                     "_total"),
        "Generate calls that ended with this status code");
  }

  MetricsRegistry* registry;
  Counter* requests;
  Gauge* active;
  Histogram* ttft;
  Histogram* total;
  Counter* tokens;
  Counter* hits;
  Counter* misses;
  Gauge* hit_ratio;
  Counter* retries;
  Counter* ingested;
};

// ──────────────────────────────── Generate ───────────────────────────────────

// The state of one Generate call, coordinated on the caller's thread.
class RouterCore::GenerateRun {
 public:
  GenerateRun(RouterCore* core, const v1::GenerateRequest& request, const ClientCall& client,
              const EventSink& sink)
      : core_(core), pool_(core->pool_), request_(request), client_(client), sink_(sink) {}

  absl::Status Run() {
    if (absl::Status s = contract::ValidateGenerateRequest(request_, core_->options_.limits);
        !s.ok()) {
      return s;
    }
    request_id_ = request_.request_id().empty()
                      ? absl::StrFormat("router-%016x", RandomNonZero())
                      : request_.request_id();
    deadline_ = std::min(client_.deadline, start_ + core_->options_.max_request_time);
    affinity_ = PassageAffinityKey(request_);
    absl::Status last;
    for (int attempt = 0; attempt <= core_->options_.prefill_retries; ++attempt) {
      absl::StatusOr<std::unique_ptr<Placement>> placed = Place();
      if (!placed.ok()) return attempt == 0 ? placed.status() : last;
      if (attempt > 0) core_->instruments_->retries->Add();
      Placement& p = **placed;
      absl::Status s = StartAndPrefill(p);
      if (s.ok()) return StreamAnswer(p);
      if (!Retryable(s.code()) || ClientGone()) return s;
      last = s;
    }
    return last;
  }

 private:
  // A prefill and a decoder chosen for one attempt, and the calls made to them.
  // Declaration order is destruction order reversed: the calls end before the
  // leases are returned and before the inbox they post to goes away.
  struct Placement {
    Placement(BackendPool::Lease p, BackendPool::Lease d)
        : prefill(std::move(p)), decoder(std::move(d)) {}
    Inbox inbox;
    BackendPool::Lease prefill;
    BackendPool::Lease decoder;
    uint64_t sequence_id = 0;
    std::unique_ptr<PrefillCall> prefill_call;
    std::unique_ptr<DecoderStream> stream;
    int stream_tag = 0;
    std::deque<Mail> early;  // decoder mail that came before the prefill's answer
  };

  bool ClientGone() const { return client_.cancelled && client_.cancelled(); }

  // Least-loaded decoder and cache-aware prefill, avoiding the ones that already
  // failed this request when others are available. Unavailable when nothing new is
  // left to try.
  absl::StatusOr<std::unique_ptr<Placement>> Place() {
    absl::StatusOr<BackendPool::Lease> d = pool_->Acquire(v1::BACKEND_ROLE_DECODER, tried_decoders_);
    if (!d.ok() && !tried_decoders_.empty()) d = pool_->Acquire(v1::BACKEND_ROLE_DECODER);
    if (!d.ok()) return d.status();
    absl::StatusOr<BackendPool::Lease> p = pool_->AcquirePrefill(affinity_, tried_prefills_);
    if (!p.ok() && !tried_prefills_.empty()) p = pool_->AcquirePrefill(affinity_);
    if (!p.ok()) return p.status();
    if (tried_prefills_.contains(p->address()) && tried_decoders_.contains(d->address())) {
      return absl::UnavailableError("no other backends to retry on");
    }
    return std::make_unique<Placement>(*std::move(p), *std::move(d));
  }

  v1::PrefillRequest MakePrefillRequest(const Placement& p) const {
    v1::PrefillRequest r = contract::ToPrefillRequest(request_);
    r.set_request_id(request_id_);
    v1::DecoderTarget* target = r.mutable_decoder();
    target->set_address(p.decoder.address());
    target->set_transport(core_->options_.handoff);
    target->set_sequence_id(p.sequence_id);
    return r;
  }

  // Opens Decoder.Stream and calls Prefill; returns once the prefill answered. OK means
  // the first token is in p.prefill_call->response() and the decoder has the sequence.
  absl::Status StartAndPrefill(Placement& p) {
    p.sequence_id = RandomNonZero();
    p.stream = std::make_unique<DecoderStream>(p.decoder.channel(), p.sequence_id, deadline_,
                                               &p.inbox, p.stream_tag);
    p.prefill_call = std::make_unique<PrefillCall>(p.prefill.channel(), MakePrefillRequest(p),
                                                   deadline_, client_.scope, &p.inbox);
    grpc::Status answer;
    while (true) {
      if (ClientGone()) return Abandon(p);
      std::optional<Mail> m = p.inbox.Pop(core_->options_.cancel_poll);
      if (!m) continue;
      if (m->kind != Mail::Kind::kPrefillDone) {
        p.early.push_back(std::move(*m));
        continue;
      }
      answer = m->status;
      break;
    }
    absl::Status s = FromBackend(answer, "prefill", p.prefill.address());
    p.prefill.Finish(s);
    if (!s.ok()) {
      p.stream->Cancel();
      if (s.code() == absl::StatusCode::kUnavailable) {
        pool_->CheckSoon(p.prefill.address());
        pool_->CheckSoon(p.decoder.address());
      }
      tried_prefills_.insert(p.prefill.address());
      tried_decoders_.insert(p.decoder.address());
      return s;
    }
    // A decoder that broke before anything was sent to the client can still be
    // replaced: the request is retried like a failed prefill.
    if (p.prefill_call->response().finish_reason() == v1::FINISH_REASON_UNSPECIFIED) {
      for (const Mail& m : p.early) {
        if (m.kind == Mail::Kind::kDecoderEvent) break;
        if (m.kind == Mail::Kind::kDecoderEnd &&
            m.status.error_code() == grpc::StatusCode::UNAVAILABLE) {
          absl::Status lost = FromBackend(m.status, "decoder", p.decoder.address());
          pool_->MarkUnhealthy(p.decoder.address(), std::string(lost.message()));
          p.decoder.Finish(lost);
          tried_prefills_.insert(p.prefill.address());
          tried_decoders_.insert(p.decoder.address());
          return lost;
        }
      }
    }
    return absl::OkStatus();
  }

  // Sends the first token, then relays the decoder's events, then the summary.
  absl::Status StreamAnswer(Placement& p) {
    const v1::PrefillResponse& r = p.prefill_call->response();
    v1::GenerateEvent first;
    first.mutable_tokens()->add_token_ids(r.first_token_id());
    first.mutable_tokens()->set_text(r.first_token_text());
    first.mutable_tokens()->set_index(0);
    ttft_ms_ = MsSince(start_);
    core_->instruments_->ttft->Observe(ttft_ms_);
    if (!Send(first, 1)) return Abandon(p);
    if (r.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
      p.stream->Cancel();  // no sequence was handed off
      return SendSummary(p, r.finish_reason(), nullptr);
    }
    bool got_event = false;
    bool reattached = false;
    std::deque<Mail> pending = std::move(p.early);
    while (true) {
      if (ClientGone()) return Abandon(p);
      std::optional<Mail> m;
      if (!pending.empty()) {
        m = std::move(pending.front());
        pending.pop_front();
      } else {
        m = p.inbox.Pop(core_->options_.cancel_poll);
      }
      if (!m || m->tag != p.stream_tag) continue;
      if (m->kind == Mail::Kind::kDecoderEvent) {
        got_event = true;
        const v1::TokenEvent& e = m->event;
        if (e.token_ids_size() > 0 || !e.text().empty()) {
          v1::GenerateEvent out;
          *out.mutable_tokens()->mutable_token_ids() = e.token_ids();
          out.mutable_tokens()->set_text(e.text());
          out.mutable_tokens()->set_index(e.index());
          if (!Send(out, e.token_ids_size())) return Abandon(p);
        }
        if (e.finish_reason() != v1::FINISH_REASON_UNSPECIFIED) {
          p.decoder.Finish(absl::OkStatus());
          return SendSummary(p, e.finish_reason(), &e.stats());
        }
        continue;
      }
      if (m->kind != Mail::Kind::kDecoderEnd) continue;
      if (m->status.error_code() == grpc::StatusCode::NOT_FOUND && !got_event && !reattached) {
        // The decoder's attach wait ran out while the prefill was still queued; the
        // prefill has handed the sequence over since, so attaching again finds it.
        reattached = true;
        p.stream = std::make_unique<DecoderStream>(p.decoder.channel(), p.sequence_id, deadline_,
                                                   &p.inbox, ++p.stream_tag);
        continue;
      }
      return DecoderLost(p, m->status);
    }
  }

  bool Send(const v1::GenerateEvent& event, int tokens) {
    if (!sink_(event)) return false;
    completion_tokens_ += tokens;
    core_->instruments_->tokens->Add(tokens);
    return true;
  }

  // The decoder stream ended without a final event, after tokens were sent.
  absl::Status DecoderLost(Placement& p, const grpc::Status& status) {
    if (absl::Now() >= deadline_ || status.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      p.decoder.Finish(absl::DeadlineExceededError("deadline exceeded"));
      return absl::DeadlineExceededError(absl::StrCat("deadline exceeded after ",
                                                      completion_tokens_, " tokens"));
    }
    const absl::Status why =
        status.ok() ? absl::UnavailableError(absl::StrCat("decoder ", p.decoder.address(),
                                                          ": stream ended without a final event"))
                    : FromBackend(status, "decoder", p.decoder.address());
    p.decoder.Finish(why);
    if (why.code() == absl::StatusCode::kUnavailable) {
      pool_->MarkUnhealthy(p.decoder.address(), std::string(why.message()));
    }
    return absl::UnavailableError(
        absl::StrCat("decoding stopped after ", completion_tokens_, " tokens: ", why.message()));
  }

  // The client went away (or the request is being given up): stop both calls and the
  // sequence on the decoder.
  absl::Status Abandon(Placement& p) {
    p.prefill_call->Cancel();
    p.stream->Cancel();
    p.prefill_call.reset();  // waits for the prefill call to end
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Milliseconds(500)));
    v1::CancelRequest cancel;
    cancel.set_sequence_id(p.sequence_id);
    cancel.set_reason("client cancelled");
    v1::CancelResponse ignored;
    (void)v1::Decoder::NewStub(p.decoder.channel())->Cancel(&context, cancel, &ignored);
    return absl::CancelledError("the client cancelled the request");
  }

  absl::Status SendSummary(Placement& p, v1::FinishReason finish, const v1::DecodeStats* decode) {
    const v1::PrefillResponse& r = p.prefill_call->response();
    const v1::PrefillStats& ps = r.stats();
    v1::GenerateEvent event;
    v1::GenerateSummary* s = event.mutable_summary();
    s->set_finish_reason(finish);
    s->set_ttft_ms(ttft_ms_);
    s->set_tokens_reused(ps.tokens_reused());
    s->set_tokens_computed(ps.tokens_computed());
    s->set_flops_to_first_token(ps.flops_to_first_token());
    s->set_flops_full_prefill(ps.flops_full_prefill());
    s->set_cache_hits(ps.cache_hits());
    s->set_cache_misses(ps.cache_misses());
    // The addresses the router dialed, as in GetStats (served_by may be a pod name).
    s->set_prefill_server(p.prefill.address());
    s->set_request_id(r.request_id().empty() ? request_id_ : r.request_id());
    s->set_prompt_tokens(ps.prompt_tokens());
    s->set_completion_tokens(completion_tokens_);
    *s->mutable_prefill_stats() = ps;
    if (decode != nullptr) {
      s->set_decoder_server(p.decoder.address());
      s->set_handoff(core_->options_.handoff);
      *s->mutable_decode_stats() = *decode;
    }
    s->set_total_ms(MsSince(start_));
    core_->RecordSummary(*s);
    if (!sink_(event)) return absl::CancelledError("the client went away before the summary");
    return absl::OkStatus();
  }

  RouterCore* const core_;
  BackendPool* const pool_;
  const v1::GenerateRequest& request_;
  const ClientCall& client_;
  const EventSink& sink_;
  const absl::Time start_ = absl::Now();
  std::string request_id_;
  absl::Time deadline_;
  uint64_t affinity_ = 0;
  absl::flat_hash_set<std::string> tried_prefills_;
  absl::flat_hash_set<std::string> tried_decoders_;
  double ttft_ms_ = 0;
  uint32_t completion_tokens_ = 0;
};

// ──────────────────────────────── RouterCore ─────────────────────────────────

RouterCore::RouterCore(BackendPool* pool, RouterOptions options, MetricsRegistry* metrics)
    : pool_(pool),
      options_(std::move(options)),
      instruments_(std::make_unique<Instruments>(metrics)) {}

RouterCore::~RouterCore() = default;

absl::Status RouterCore::Generate(const v1::GenerateRequest& request, const ClientCall& client,
                                  const EventSink& sink) {
  const absl::Time start = absl::Now();
  instruments_->requests->Add();
  {
    absl::MutexLock lock(&mu_);
    totals_.set_requests_total(totals_.requests_total() + 1);
    totals_.set_requests_active(totals_.requests_active() + 1);
    instruments_->active->Set(totals_.requests_active());
  }
  const absl::Status status = GenerateRun(this, request, client, sink).Run();
  instruments_->total->Observe(MsSince(start));
  RecordOutcome(status);
  if (!status.ok()) {
    LogEvent("generate_failed", {{"request_id", request.request_id()},
                                 {"code", absl::StatusCodeToString(status.code())},
                                 {"message", std::string(status.message())}});
  }
  return status;
}

void RouterCore::RecordOutcome(const absl::Status& status) {
  instruments_->ByCode(status.code())->Add();
  absl::MutexLock lock(&mu_);
  totals_.set_requests_active(totals_.requests_active() - 1);
  instruments_->active->Set(totals_.requests_active());
  if (!status.ok()) totals_.set_requests_failed(totals_.requests_failed() + 1);
}

void RouterCore::RecordSummary(const v1::GenerateSummary& s) {
  instruments_->hits->Add(s.cache_hits());
  instruments_->misses->Add(s.cache_misses());
  absl::MutexLock lock(&mu_);
  if (ttft_window_.size() < kTtftWindow) {
    ttft_window_.push_back(s.ttft_ms());
  } else {
    ttft_window_[ttft_next_] = s.ttft_ms();
  }
  ttft_next_ = (ttft_next_ + 1) % kTtftWindow;
  v1::StatsResponse& t = totals_;
  t.set_tokens_reused_total(t.tokens_reused_total() + s.tokens_reused());
  t.set_tokens_computed_total(t.tokens_computed_total() + s.tokens_computed());
  t.set_cache_hits_total(t.cache_hits_total() + s.cache_hits());
  t.set_cache_misses_total(t.cache_misses_total() + s.cache_misses());
  t.set_kv_bytes_fetched_total(t.kv_bytes_fetched_total() + s.prefill_stats().kv_bytes_fetched());
  t.set_tokens_generated_total(t.tokens_generated_total() + s.completion_tokens());
  t.set_flops_to_first_token_total(t.flops_to_first_token_total() + s.flops_to_first_token());
  t.set_flops_full_prefill_total(t.flops_full_prefill_total() + s.flops_full_prefill());
  const uint64_t blocks = t.cache_hits_total() + t.cache_misses_total();
  t.set_cache_hit_ratio(blocks == 0 ? 0 : static_cast<double>(t.cache_hits_total()) / blocks);
  instruments_->hit_ratio->Set(t.cache_hit_ratio());
}

absl::StatusOr<v1::IngestResponse> RouterCore::Ingest(const v1::IngestRequest& request,
                                                      const ClientCall& client) {
  v1::EncodePassagesRequest encode;
  *encode.mutable_passages() = request.passages();
  encode.set_force_reencode(request.force_reencode());
  const absl::Time deadline = std::min(client.deadline, absl::Now() + options_.max_request_time);
  absl::flat_hash_set<std::string> tried;
  absl::Status last;
  for (int attempt = 0; attempt <= options_.prefill_retries; ++attempt) {
    absl::StatusOr<BackendPool::Lease> lease = pool_->Acquire(v1::BACKEND_ROLE_ENCODER, tried);
    if (!lease.ok()) return attempt == 0 ? lease.status() : last;
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(deadline));
    security::AttachScope(client.scope, context);
    v1::EncodePassagesResponse response;
    const absl::Status s =
        FromBackend(v1::PassageEncoder::NewStub(lease->channel())->EncodePassages(&context, encode, &response),
                    "encoder", lease->address());
    lease->Finish(s);
    if (s.ok()) {
      v1::IngestResponse out;
      out.mutable_results()->Swap(response.mutable_results());
      *out.mutable_stats() = response.stats();
      out.set_encoder_server(lease->address());
      uint64_t ok = 0;
      for (const v1::EncodeResult& r : out.results()) ok += r.status().code() == 0;
      instruments_->ingested->Add(ok);
      absl::MutexLock lock(&mu_);
      totals_.set_passages_ingested_total(totals_.passages_ingested_total() + ok);
      return out;
    }
    if (s.code() == absl::StatusCode::kUnavailable) pool_->CheckSoon(lease->address());
    if (!Retryable(s.code())) return s;
    tried.insert(lease->address());
    last = s;
  }
  return last;
}

absl::Status RouterCore::Ready() const {
  if (pool_->HealthyCount(v1::BACKEND_ROLE_PREFILL) == 0) {
    return absl::UnavailableError("no healthy prefill");
  }
  if (pool_->HealthyCount(v1::BACKEND_ROLE_DECODER) == 0) {
    return absl::UnavailableError("no healthy decoder");
  }
  return absl::OkStatus();
}

v1::StatsResponse RouterCore::GetStats(const v1::StatsRequest& request) const {
  v1::StatsResponse out;
  std::vector<double> ttft;
  {
    absl::MutexLock lock(&mu_);
    out = totals_;
    ttft = ttft_window_;
  }
  out.set_uptime_s(absl::ToDoubleSeconds(absl::Now() - started_));
  if (!ttft.empty()) {
    std::sort(ttft.begin(), ttft.end());
    auto pct = [&](double q) {
      return ttft[std::min(ttft.size() - 1, static_cast<size_t>(q * ttft.size()))];
    };
    out.set_ttft_p50_ms(pct(0.5));
    out.set_ttft_p90_ms(pct(0.9));
    out.set_ttft_p99_ms(pct(0.99));
  }
  if (request.include_backends()) {
    for (v1::BackendStatus& b : pool_->Snapshot()) *out.add_backends() = std::move(b);
  }
  return out;
}

}  // namespace blockserve::router
