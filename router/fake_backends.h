// In-process fakes of the router's backends (QueryPrefill, Decoder, PassageEncoder)
// served on loopback ports, so router tests exercise real gRPC calls without a model.
//
// The fakes follow the proto's contract where the router depends on it: the prefill
// hands the sequence to the decoder named in DecoderTarget with AcceptSequence (header
// only), the decoder's Stream waits for its sequence and emits tokens first+1,
// first+2, ... with text "<id>", ending with FINISH_REASON_LENGTH after
// max_new_tokens (default 4) tokens in all. Knobs inject failures.
#ifndef BLOCKSERVE_ROUTER_FAKE_BACKENDS_H_
#define BLOCKSERVE_ROUTER_FAKE_BACKENDS_H_

#include <atomic>
#include <deque>
#include <memory>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/blockserve.grpc.pb.h"

namespace blockserve::router::testing {

// A gRPC server on 127.0.0.1 (free port) with the standard health service.
class FakeServer {
 public:
  explicit FakeServer(const std::vector<grpc::Service*>& services);
  ~FakeServer();
  const std::string& address() const { return address_; }
  void SetServing(bool serving);
  // Stops the server now (in-flight calls are cancelled), like a crashed process.
  void Kill();

 private:
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
};

class FakeDecoder final : public v1::Decoder::Service {
 public:
  void set_address(std::string address) { address_ = std::move(address); }
  // Stream ends with UNAVAILABLE after sending this many events (-1: never).
  std::atomic<int> fail_after_events{-1};
  std::atomic<int> token_delay_ms{0};

  int streams() const { return streams_.load(); }
  int cancel_calls() const { return cancel_calls_.load(); }
  int cancelled_streams() const { return cancelled_streams_.load(); }

  grpc::Status AcceptSequence(grpc::ServerContext* context,
                              grpc::ServerReader<v1::KvChunk>* reader,
                              v1::AcceptSequenceResponse* response) override;
  grpc::Status Stream(grpc::ServerContext* context, const v1::StreamRequest* request,
                      grpc::ServerWriter<v1::TokenEvent>* writer) override;
  grpc::Status Cancel(grpc::ServerContext* context, const v1::CancelRequest* request,
                      v1::CancelResponse* response) override;

 private:
  std::string address_;
  absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, v1::SequenceHeader> sequences_ ABSL_GUARDED_BY(mu_);
  std::atomic<int> streams_{0};
  std::atomic<int> cancel_calls_{0};
  std::atomic<int> cancelled_streams_{0};
};

class FakePrefill final : public v1::QueryPrefill::Service {
 public:
  void set_address(std::string address) { address_ = std::move(address); }
  // The next calls fail with these codes, in order, before doing anything.
  void FailNext(grpc::StatusCode code);
  std::atomic<int> delay_ms{0};

  int calls() const { return calls_.load(); }
  v1::PrefillRequest last_request();

  grpc::Status Prefill(grpc::ServerContext* context, const v1::PrefillRequest* request,
                       v1::PrefillResponse* response) override;

 private:
  std::string address_;
  std::atomic<int> calls_{0};
  absl::Mutex mu_;
  std::deque<grpc::StatusCode> failures_ ABSL_GUARDED_BY(mu_);
  v1::PrefillRequest last_request_ ABSL_GUARDED_BY(mu_);
};

class FakeEncoder final : public v1::PassageEncoder::Service {
 public:
  grpc::Status EncodePassages(grpc::ServerContext* context,
                              const v1::EncodePassagesRequest* request,
                              v1::EncodePassagesResponse* response) override;

 private:
  absl::Mutex mu_;
  absl::flat_hash_set<std::string> stored_ ABSL_GUARDED_BY(mu_);
};

}  // namespace blockserve::router::testing

#endif  // BLOCKSERVE_ROUTER_FAKE_BACKENDS_H_
