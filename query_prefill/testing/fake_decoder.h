// A stand-in blockserve.v1.Decoder for tests of the prefill's handoff: AcceptSequence
// reassembles the stream with handoff::SequenceAssembler (the decoder's own validation)
// and keeps what it received; nothing is decoded. Serves on 127.0.0.1, a free port.
#ifndef BLOCKSERVE_QUERY_PREFILL_TESTING_FAKE_DECODER_H_
#define BLOCKSERVE_QUERY_PREFILL_TESTING_FAKE_DECODER_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "engine/kv_cache.h"
#include "handoff/kv_chunks.h"
#include "proto/blockserve.grpc.pb.h"

namespace blockserve::query_prefill {

class FakeDecoder final : public v1::Decoder::Service {
 public:
  struct Received {
    v1::SequenceHeader header;
    engine::KvCache kv;
    int chunks = 0;  // header included
  };

  // Starts serving; `expect` is what SequenceAssembler checks headers against.
  explicit FakeDecoder(handoff::SequenceAssembler::Expect expect);
  ~FakeDecoder() override;

  std::string address() const { return address_; }
  // From now on, answer every AcceptSequence with `status` right after its header.
  void RefuseWith(grpc::Status status);
  std::vector<Received> received();

  grpc::Status AcceptSequence(grpc::ServerContext* context,
                              grpc::ServerReader<v1::KvChunk>* reader,
                              v1::AcceptSequenceResponse* response) override;

 private:
  const handoff::SequenceAssembler::Expect expect_;
  std::unique_ptr<grpc::Server> server_;
  std::string address_;
  absl::Mutex mu_;
  std::optional<grpc::Status> refusal_ ABSL_GUARDED_BY(mu_);
  std::vector<Received> received_ ABSL_GUARDED_BY(mu_);
};

}  // namespace blockserve::query_prefill

#endif  // BLOCKSERVE_QUERY_PREFILL_TESTING_FAKE_DECODER_H_
