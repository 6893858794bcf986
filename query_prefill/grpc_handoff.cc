#include "query_prefill/grpc_handoff.h"

#include "common/grpc_status.h"

namespace blockserve::query_prefill {

std::shared_ptr<grpc::Channel> GrpcKvHandoff::Channel(const std::string& address) {
  absl::MutexLock lock(&mu_);
  std::shared_ptr<grpc::Channel>& channel = channels_[address];
  if (channel == nullptr) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS,
                absl::ToInt64Milliseconds(options_.max_reconnect_backoff));
    channel = grpc::CreateCustomChannel(address,
                                        options_.credentials != nullptr
                                            ? options_.credentials
                                            : grpc::InsecureChannelCredentials(),
                                        args);
  }
  return channel;
}

absl::Status GrpcKvHandoff::Send(const std::string& decoder_address,
                                 const v1::SequenceHeader& header, const engine::KvCache& kv,
                                 absl::Time deadline) {
  std::unique_ptr<v1::Decoder::Stub> stub = v1::Decoder::NewStub(Channel(decoder_address));
  grpc::ClientContext context;
  if (deadline != absl::InfiniteFuture()) context.set_deadline(absl::ToChronoTime(deadline));
  v1::AcceptSequenceResponse response;
  std::unique_ptr<grpc::ClientWriter<v1::KvChunk>> writer =
      stub->AcceptSequence(&context, &response);
  const bool sent_all = handoff::ForEachChunk(
      header, kv, handoff::ToWireDType(kv.dtype()), options_.max_chunk_bytes,
      [&](const v1::KvChunk& chunk) { return writer->Write(chunk); });
  if (sent_all) writer->WritesDone();
  const grpc::Status status = writer->Finish();
  if (!status.ok()) return FromGrpcStatus(status);
  if (!sent_all) return absl::UnavailableError("the decoder ended the stream early");
  return absl::OkStatus();
}

}  // namespace blockserve::query_prefill
