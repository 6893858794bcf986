#include "query_prefill/testing/fake_decoder.h"

#include "absl/strings/str_cat.h"

namespace blockserve::query_prefill {

FakeDecoder::FakeDecoder(handoff::SequenceAssembler::Expect expect) : expect_(std::move(expect)) {
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(this);
  server_ = builder.BuildAndStart();
  address_ = absl::StrCat("127.0.0.1:", port);
}

FakeDecoder::~FakeDecoder() {
  if (server_ != nullptr) server_->Shutdown();
}

void FakeDecoder::RefuseWith(grpc::Status status) {
  absl::MutexLock lock(&mu_);
  refusal_ = std::move(status);
}

std::vector<FakeDecoder::Received> FakeDecoder::received() {
  absl::MutexLock lock(&mu_);
  return received_;
}

grpc::Status FakeDecoder::AcceptSequence(grpc::ServerContext* /*context*/,
                                         grpc::ServerReader<v1::KvChunk>* reader,
                                         v1::AcceptSequenceResponse* response) {
  handoff::SequenceAssembler assembler(expect_);
  v1::KvChunk chunk;
  int chunks = 0;
  while (reader->Read(&chunk)) {
    ++chunks;
    absl::Status s = assembler.AddChunk(chunk);
    if (!s.ok()) {
      return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
    }
    absl::MutexLock lock(&mu_);
    if (refusal_) return *refusal_;
  }
  absl::StatusOr<engine::KvCache> kv = assembler.Finish();
  if (!kv.ok()) {
    return grpc::Status(static_cast<grpc::StatusCode>(kv.status().code()),
                        std::string(kv.status().message()));
  }
  response->set_sequence_id(assembler.header().sequence_id());
  response->set_token_count(assembler.header().token_count());
  response->set_bytes_received(assembler.bytes_received());
  absl::MutexLock lock(&mu_);
  received_.push_back(Received{assembler.header(), *std::move(kv), chunks});
  return grpc::Status::OK;
}

}  // namespace blockserve::query_prefill
