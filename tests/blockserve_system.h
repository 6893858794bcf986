// BlockServeSystem: the four services as real processes on loopback ports, for
// end-to-end tests — `encoders` passage encoders, `prefills` query prefills, `decoders`
// decoders and `routers` interchangeable routers in front of them (each knowing every
// backend), sharing one KV store (a shared-memory
// segment with a unique name, or a Redis server the test runs). Secure as deployed by
// default: a throwaway CA issues each role's certificate, services talk mTLS, and the
// router authenticates bearer tokens of the test's tenants. Also the helpers the tests
// share: a tiny model on disk, the sample corpus, and a Generate call that collects the
// stream.
#ifndef BLOCKSERVE_TESTS_BLOCKSERVE_SYSTEM_H_
#define BLOCKSERVE_TESTS_BLOCKSERVE_SYSTEM_H_

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "engine/tiny_model.h"
#include "proto/blockserve.grpc.pb.h"
#include "security/testing/test_pki.h"
#include "security/tls.h"
#include "tests/server_process.h"

namespace blockserve::testing {

// Writes a random-weight model under $TEST_TMPDIR once per options (by seed and
// shape) and returns its folder.
absl::StatusOr<std::string> TinyModelDir(const engine::TinyModelOptions& options);

// tests/testdata/passages.jsonl (the end-to-end tests' own corpus: invented facts about an
// invented island, ids such as "tall-ember"), parsed.
absl::StatusOr<std::vector<v1::Passage>> TestPassages();

// A tenant of the router's tenants file (security/tenants.h).
struct TestTenant {
  std::string name;
  std::string token;
  std::vector<std::string> read_namespaces = {};
  bool may_ingest = true;
  int max_concurrent_requests = 0;
  std::string ns = "";  // empty: the name
};

struct SystemOptions {
  std::string model_dir;
  // shm | redis | tiered (a shared-memory tier per process in front of the Redis)
  std::string store = "shm";
  int redis_port = 0;  // store = redis, tiered
  // store = redis, tiered: a Redis Cluster given by these "host:port" nodes instead of
  // redis_port (--redis_cluster).
  std::vector<std::string> redis_cluster;
  int prefills = 1;
  int decoders = 1;
  int encoders = 1;
  int routers = 1;
  // mTLS between services, TLS and bearer tokens at the router; false: every process
  // with --insecure (plaintext on loopback, one anonymous tenant).
  bool tls = true;
  // The router's tenants (tls only); router() calls as the first.
  std::vector<TestTenant> tenants = {{.name = "tenant-a", .token = "token-a"},
                                     {.name = "tenant-b", .token = "token-b"}};
  // Every process serves /metrics on a port of its own (metrics_port()).
  bool metrics = false;
  // The routers (and the prefills' --allowed_decoders) find the backends through
  // file:/// discovery, files this object rewrites and the services re-read every
  // 200 ms; AddPrefill() then joins a running system. False: static address lists.
  bool discovery_files = false;
  // --kv_dtype of every model-serving process. f32: cached blocks and handed-off KV then
  // equal what a single process computes, bit for bit (the services' default is bf16).
  std::string kv_dtype = "f32";
  // Appended to each kind's command line (e.g. {"--sequence_wait_ms=2000"}).
  std::vector<std::string> encoder_args, prefill_args, decoder_args, router_args;
};

class BlockServeSystem {
 public:
  // Starts the backends, then the router, and waits until the router reports every
  // backend healthy.
  static absl::StatusOr<std::unique_ptr<BlockServeSystem>> Start(SystemOptions options);
  ~BlockServeSystem();  // Shutdown() if not done

  // Router `i` (0: the first), calling as the first tenant.
  v1::Router::Stub& router(int i = 0) { return *routers_[i].stub; }
  int router_count() const { return static_cast<int>(routers_.size()); }
  // A channel to the first router as the first tenant (plaintext without tls).
  std::shared_ptr<grpc::Channel> RouterChannel() const { return routers_[0].channel; }
  // A stub of router `i` calling with `token` (empty: none); tls only.
  std::unique_ptr<v1::Router::Stub> RouterAs(const std::string& token, int i = 0) const;
  // The test CA (null without tls) and the identity of a role it issued.
  const security::testing::TestPki* pki() const { return pki_.get(); }
  security::TransportSecurity Identity(security::Role role) const;
  // A channel to a service at `address` of role `peer`, as a service of role `caller`
  // would dial it (its certificate, the peer's role checked).
  std::shared_ptr<grpc::Channel> InternalChannel(security::Role caller, security::Role peer,
                                                 const std::string& address) const;
  ServerProcess& router_process(int i = 0) { return *routers_[i].process; }
  ServerProcess& decoder(int i) { return *decoders_[i]; }
  ServerProcess& prefill(int i) { return *prefills_[i]; }
  ServerProcess& encoder(int i = 0) { return *encoders_[i]; }
  // Starts one more prefill and lists it in the discovery file (discovery_files only);
  // the routers take it up on their own. Returns its index for prefill(i).
  absl::StatusOr<int> AddPrefill();
  int prefill_count() const { return static_cast<int>(prefills_.size()); }
  // The /metrics port of a process (options.metrics); 0 when it has none.
  int metrics_port(const ServerProcess& process) const;

  // Polls Router.GetStats of every router until each reports every backend healthy (or
  // the timeout passes).
  absl::Status WaitHealthy(absl::Duration timeout);
  // GetStats with backends, of router `i`.
  absl::StatusOr<v1::StatsResponse> Stats(int i = 0);
  // Router.Ingest of `passages` in one call.
  absl::StatusOr<v1::IngestResponse> Ingest(const std::vector<v1::Passage>& passages);

  // SIGTERM to the routers, then to the backends; removes the shared-memory segment.
  // Error naming the processes that did not exit with code 0 (killed ones excluded).
  absl::Status Shutdown();

 private:
  BlockServeSystem() = default;
  // The store flags of the process named `process` (its shared-memory segment: the
  // system's one for shm, its own for tiered).
  std::vector<std::string> StoreArgs(const std::string& process);
  // Starts a service of `role` with the model (not the router's), its security flags,
  // `args`, then `extra`.
  absl::StatusOr<std::unique_ptr<ServerProcess>> StartProcess(const std::string& name,
                                                              const std::string& binary,
                                                              security::Role role,
                                                              std::vector<std::string> args,
                                                              const std::vector<std::string>& extra);
  absl::StatusOr<int> StartPrefill();
  // What the routers are given for `ps`: their addresses, or the discovery file `file`.
  std::string BackendSpec(const std::vector<std::unique_ptr<ServerProcess>>& ps,
                          const std::string& file) const;
  absl::Status WriteDiscoveryFiles() const;
  // --tls_cert/--tls_key/--tls_ca of `role`, or --insecure.
  std::vector<std::string> SecurityArgs(security::Role role) const;
  absl::Status MakePki();

  struct RouterHandle {
    std::unique_ptr<ServerProcess> process;
    std::shared_ptr<grpc::Channel> channel;  // as the first tenant
    std::unique_ptr<v1::Router::Stub> stub;
  };

  SystemOptions options_;
  std::string shm_name_;
  std::vector<std::string> shm_names_;  // segments to remove at shutdown
  std::map<std::string, int> metrics_ports_;  // process name → its /metrics port
  std::string discovery_dir_;                 // discovery_files: the lists live here
  std::vector<std::unique_ptr<ServerProcess>> encoders_;
  std::vector<std::unique_ptr<ServerProcess>> prefills_;
  std::vector<std::unique_ptr<ServerProcess>> decoders_;
  std::vector<RouterHandle> routers_;
  std::unique_ptr<security::testing::TestPki> pki_;
  std::map<security::Role, security::TransportSecurity> identities_;
  std::string tenants_file_;
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
