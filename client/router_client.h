// A small client library for blockserve.v1.Router: reading a passage file, ingesting
// it in batches with progress, asking a question with the answer streamed back, and
// reading the router's stats. The `blockserve` CLI (cli.h) is built on it.
#ifndef BLOCKSERVE_CLIENT_ROUTER_CLIENT_H_
#define BLOCKSERVE_CLIENT_ROUTER_CLIENT_H_

#include <cstdint>
#include <functional>
#include <istream>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "proto/blockserve.grpc.pb.h"

namespace blockserve::client {

// Passages from JSONL: one object per line, {"id": "...", "text": "..."} ("id" may be
// a number or absent; "text" is required). Blank lines are skipped. InvalidArgument
// naming `source` and the line for anything else, invalid UTF-8 included.
absl::StatusOr<std::vector<v1::Passage>> ParsePassagesJsonl(std::istream& in,
                                                            std::string_view source);
absl::StatusOr<std::vector<v1::Passage>> ReadPassagesJsonl(const std::string& path);

// Sharding a corpus across N ingest processes (e.g. the pods of an indexed Kubernetes
// Job): passage p belongs to shard ShardOf(p, count), a function of its id alone (of its
// text when it has no id), so the split does not depend on the order of the files or
// lines, every passage lands in exactly one shard, and a rerun of a shard sends the same
// passages again (the store reports them as already cached). The hash is FNV-1a 64 of
// the key, fixed here, not std::hash, which differs between standard libraries.
uint64_t ShardKeyHash(const v1::Passage& p);
int ShardOf(const v1::Passage& p, int count);  // in [0, count); count >= 1
// The passages of `all` in shard `index` of `count`, in their original order.
std::vector<v1::Passage> PassagesOfShard(const std::vector<v1::Passage>& all, int index,
                                         int count);

// True when `text` is well-formed UTF-8 (no overlong forms, surrogates or values past
// U+10FFFF): what the servers accept in string fields.
bool IsValidUtf8(std::string_view text);

// Where an ingest stands, after each batch.
struct IngestProgress {
  size_t total = 0;       // passages in the file
  size_t done = 0;        // passages answered so far
  size_t encoded = 0;     // newly encoded
  size_t cached = 0;      // already in the store, skipped
  size_t failed = 0;      // rejected (see failures)
  uint64_t tokens_encoded = 0;
  uint64_t tokens_cached = 0;
  double elapsed_s = 0;
  std::string encoder;    // the encoder that served the last batch
  std::vector<std::string> failures;  // "id: CODE: message", in file order
};

struct IngestOptions {
  int batch = 32;
  bool force_reencode = false;
  absl::Duration batch_timeout = absl::Minutes(5);
};

// The outcome of one Generate call.
struct Answer {
  std::string text;
  std::vector<int32_t> token_ids;
  v1::GenerateSummary summary;
};

// How a client reaches the router: over TLS, checking the router's certificate against
// `ca_file` (and the host name dialled), with `token` sent as "authorization: Bearer"
// on every call; or, with an empty `ca_file`, in plaintext without a token (a local
// --insecure router).
struct RouterCredentials {
  std::string ca_file;
  std::string token;
};

// The token in `path`: its first line, without surrounding whitespace; InvalidArgument
// when the file cannot be read or holds no token.
absl::StatusOr<std::string> ReadTokenFile(const std::string& path);

class RouterClient {
 public:
  explicit RouterClient(std::shared_ptr<grpc::ChannelInterface> channel);
  // Channel to "host:port" with large message limits, in plaintext.
  static std::shared_ptr<grpc::Channel> Connect(const std::string& address);
  // The same with `credentials`; InvalidArgument for a token without TLS (a bearer
  // token is never sent in plaintext).
  static absl::StatusOr<std::shared_ptr<grpc::Channel>> Connect(
      const std::string& address, const RouterCredentials& credentials);

  // Sends `passages` in batches; `progress` (may be empty) is called after each. A
  // failed RPC stops the ingest and returns its status (passages answered so far stay
  // stored); per-passage failures are collected in the result instead.
  absl::StatusOr<IngestProgress> Ingest(const std::vector<v1::Passage>& passages,
                                        const IngestOptions& options,
                                        const std::function<void(const IngestProgress&)>& progress);

  // Calls Generate; `on_chunk` (may be empty) sees every token chunk as it arrives.
  // The call's status when it fails, including after some chunks.
  absl::StatusOr<Answer> Ask(const v1::GenerateRequest& request, absl::Duration timeout,
                             const std::function<void(const v1::TokenChunk&)>& on_chunk);

  absl::StatusOr<v1::StatsResponse> Stats(bool include_backends, absl::Duration timeout);

 private:
  std::unique_ptr<v1::Router::Stub> stub_;
};

}  // namespace blockserve::client

#endif  // BLOCKSERVE_CLIENT_ROUTER_CLIENT_H_
