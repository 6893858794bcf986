// RouterCore: the router's request logic, independent of the server transport.
//
// Generate, per request:
//   1. validate the model-independent request contract (contract/request_contract.h,
//      the checks the prefill runs too) without spending a placement; what needs the
//      model or the KV store (unknown passage, prompt over the context) is the
//      prefill's to answer;
//   2. place it: a decoder (least loaded) and a prefill (cache-aware, see BackendPool);
//   3. pick a random non-zero sequence id, open Decoder.Stream(id) — the decoder waits
//      for the sequence — and call QueryPrefill.Prefill with DecoderTarget{decoder, id};
//   4. send the prefill's first token, then the decoder's tokens, then one summary.
// Prefill failing with UNAVAILABLE / RESOURCE_EXHAUSTED is retried once on other
// backends, but only while no token has been sent. A decoder lost mid-stream ends the
// call with UNAVAILABLE and is marked unhealthy. The client's deadline bounds every
// downstream call; a client that goes away cancels both calls and the sequence.
//
// Thread safety: all methods may be called concurrently; the BackendPool and the
// MetricsRegistry (not null) must outlive the core.
#ifndef BLOCKSERVE_ROUTER_ROUTER_CORE_H_
#define BLOCKSERVE_ROUTER_ROUTER_CORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/metrics.h"
#include "contract/request_contract.h"
#include "proto/blockserve.pb.h"
#include "router/backend_pool.h"
#include "security/tenant_scope.h"

namespace blockserve::router {

struct RouterOptions {
  // KV handoff transport requested from the prefill.
  v1::HandoffTransport handoff = v1::HANDOFF_GRPC_STREAM;
  // Deadline of downstream calls when the client sets none (or a later one).
  absl::Duration max_request_time = absl::Minutes(10);
  // Extra placements tried after a retryable prefill failure (before any token).
  int prefill_retries = 1;
  // How often a waiting request checks whether its client went away.
  absl::Duration cancel_poll = absl::Milliseconds(20);
  // Request limits; must equal the prefills' (flags of the same names), so that the
  // router answers a request as the prefill would.
  contract::Limits limits;
};

// What the transport knows about the calling client.
struct ClientCall {
  absl::Time deadline = absl::InfiniteFuture();
  std::function<bool()> cancelled;  // true once the client went away; may be empty
  // The part of the cache the client's tenant may use (security/tenant_scope.h), sent to
  // the prefill and the encoder with every call made for it.
  security::TenantScope scope;
};

// Receives Generate's events in order; returns false when the client is gone.
using EventSink = std::function<bool(const v1::GenerateEvent&)>;

// Hash of the set of blocks a request names (system prompt and passages, order
// ignored); 0 when it names none. Equal sets give equal keys, in every router
// (StableHash64, router/rendezvous.h).
uint64_t PassageAffinityKey(const v1::GenerateRequest& request);

class RouterCore {
 public:
  RouterCore(BackendPool* pool, RouterOptions options, MetricsRegistry* metrics);
  ~RouterCore();

  // Streams the answer through `sink`; returns the call's final status (OK after the
  // summary was sent). Status codes follow proto/blockserve.proto.
  absl::Status Generate(const v1::GenerateRequest& request, const ClientCall& client,
                        const EventSink& sink);

  // Forwards to PassageEncoder.EncodePassages on a healthy encoder (another one once
  // on UNAVAILABLE / RESOURCE_EXHAUSTED).
  absl::StatusOr<v1::IngestResponse> Ingest(const v1::IngestRequest& request,
                                            const ClientCall& client);

  v1::StatsResponse GetStats(const v1::StatsRequest& request) const;

  // The router's readiness (ServerOptions::readiness): OK while at least one prefill
  // and one decoder are healthy, what every Generate needs; Unavailable naming the
  // missing role otherwise, so that load balancers send clients to another router.
  // Encoders do not count: without one only Ingest fails, Generate still works.
  absl::Status Ready() const;

 private:
  class GenerateRun;

  void RecordOutcome(const absl::Status& status);
  void RecordSummary(const v1::GenerateSummary& summary);

  BackendPool* const pool_;
  const RouterOptions options_;
  const absl::Time started_ = absl::Now();

  struct Instruments;
  std::unique_ptr<Instruments> instruments_;

  mutable absl::Mutex mu_;
  v1::StatsResponse totals_ ABSL_GUARDED_BY(mu_);  // counters only; percentiles at read
  std::vector<double> ttft_window_ ABSL_GUARDED_BY(mu_);  // ring of the last 1024
  size_t ttft_next_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace blockserve::router

#endif  // BLOCKSERVE_ROUTER_ROUTER_CORE_H_
