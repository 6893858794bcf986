// BlockServeSystem: the four services as real processes on loopback ports, for
// end-to-end tests — one passage encoder, `prefills` query prefills, `decoders`
// decoders and a router in front of them, sharing one KV store (a shared-memory
// segment with a unique name, or a Redis server the test runs). Also the helpers the
// tests share: a tiny model on disk, the sample corpus, and a Generate call that
// collects the stream.
#ifndef BLOCKSERVE_TESTS_BLOCKSERVE_SYSTEM_H_
#define BLOCKSERVE_TESTS_BLOCKSERVE_SYSTEM_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/tiny_model.h"
#include "proto/blockserve.grpc.pb.h"
#include "tests/server_process.h"

namespace blockserve::testing {

// Writes a random-weight model under $TEST_TMPDIR once per options (by seed and
// shape) and returns its folder.
absl::StatusOr<std::string> TinyModelDir(const engine::TinyModelOptions& options);

// tests/testdata/passages.jsonl (the end-to-end tests' own corpus: invented facts about an
// invented island, ids such as "tall-ember"), parsed.
absl::StatusOr<std::vector<v1::Passage>> TestPassages();

struct SystemOptions {
  std::string model_dir;
  std::string store = "shm";  // shm | redis
  int redis_port = 0;         // store = redis
  int prefills = 1;
  int decoders = 1;
  // Appended to each kind's command line (e.g. {"--sequence_wait_ms=2000"}).
  std::vector<std::string> encoder_args, prefill_args, decoder_args, router_args;
};

class BlockServeSystem {
 public:
  // Starts the backends, then the router, and waits until the router reports every
  // backend healthy.
  static absl::StatusOr<std::unique_ptr<BlockServeSystem>> Start(SystemOptions options);
  ~BlockServeSystem();  // Shutdown() if not done

  v1::Router::Stub& router() { return *router_stub_; }
  ServerProcess& router_process() { return *router_; }
  ServerProcess& decoder(int i) { return *decoders_[i]; }
  ServerProcess& prefill(int i) { return *prefills_[i]; }
  ServerProcess& encoder() { return *encoder_; }

  // Polls Router.GetStats until every backend is healthy (or the timeout passes).
  absl::Status WaitHealthy(absl::Duration timeout);
  // GetStats with backends.
  absl::StatusOr<v1::StatsResponse> Stats();
  // Router.Ingest of `passages` in one call.
  absl::StatusOr<v1::IngestResponse> Ingest(const std::vector<v1::Passage>& passages);

  // SIGTERM to the router, then to the backends; removes the shared-memory segment.
  // Error naming the processes that did not exit with code 0 (killed ones excluded).
  absl::Status Shutdown();

 private:
  BlockServeSystem() = default;
  std::vector<std::string> StoreArgs() const;

  SystemOptions options_;
  std::string shm_name_;
  std::unique_ptr<ServerProcess> encoder_;
  std::vector<std::unique_ptr<ServerProcess>> prefills_;
  std::vector<std::unique_ptr<ServerProcess>> decoders_;
  std::unique_ptr<ServerProcess> router_;
  std::unique_ptr<v1::Router::Stub> router_stub_;
  bool shut_down_ = false;
};

// One Generate call, collected.
struct GenerateResult {
  grpc::Status status;
  std::vector<int32_t> tokens;
  std::string text;
  std::vector<v1::TokenChunk> chunks;
  std::optional<v1::GenerateSummary> summary;
  double seconds = 0;
};
GenerateResult Generate(v1::Router::Stub& router, const v1::GenerateRequest& request,
                        absl::Duration timeout = absl::Seconds(120));

}  // namespace blockserve::testing

#endif  // BLOCKSERVE_TESTS_BLOCKSERVE_SYSTEM_H_
