#include "tests/blockserve_system.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "client/router_client.h"
#include "common/testing/sockets.h"
#include "nlohmann/json.hpp"
#include "security/tenants.h"

namespace blockserve::testing {
namespace {

std::string TmpDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr ? dir : "/tmp";
}

}  // namespace

absl::StatusOr<std::string> TinyModelDir(const engine::TinyModelOptions& o) {
  const std::string dir =
      absl::StrCat(TmpDir(), "/model-", o.seed, "-", o.model_type, "-", o.hidden_size, "x",
                   o.num_layers, "-", o.max_position_embeddings);
  if (std::filesystem::exists(dir + "/config.json")) return dir;
  if (absl::Status s = engine::WriteTinyModel(dir, o); !s.ok()) return s;
  return dir;
}

absl::StatusOr<std::vector<v1::Passage>> TestPassages() {
  return client::ReadPassagesJsonl(RunfilePath("tests/testdata/passages.jsonl"));
}

absl::StatusOr<std::unique_ptr<BlockServeSystem>> BlockServeSystem::Start(SystemOptions options) {
  static std::atomic<int> counter{0};
  std::unique_ptr<BlockServeSystem> sys(new BlockServeSystem());
  sys->options_ = std::move(options);
  const int instance = counter++;
  sys->shm_name_ = absl::StrCat("/bs-test-", getpid(), "-", instance);
  if (sys->options_.tls) {
    if (absl::Status s = sys->MakePki(); !s.ok()) return s;
  }
  if (sys->options_.discovery_files) {
    sys->discovery_dir_ = absl::StrCat(TmpDir(), "/discovery-", getpid(), "-", instance);
    std::filesystem::create_directories(sys->discovery_dir_);
  }
  for (int i = 0; i < sys->options_.encoders; ++i) {
    const std::string name = sys->options_.encoders == 1
                                 ? "passage_encoder"
                                 : absl::StrCat("passage_encoder-", i);
    auto e = sys->StartProcess(name, "passage_encoder/passage_encoder", security::Role::kEncoder,
                               sys->StoreArgs(name), sys->options_.encoder_args);
    if (!e.ok()) return e.status();
    sys->encoders_.push_back(*std::move(e));
  }
  for (int i = 0; i < sys->options_.decoders; ++i) {
    auto d = sys->StartProcess(absl::StrCat("decoder-", i), "decoder/decoder",
                               security::Role::kDecoder, {}, sys->options_.decoder_args);
    if (!d.ok()) return d.status();
    sys->decoders_.push_back(*std::move(d));
  }
  if (absl::Status s = sys->WriteDiscoveryFiles(); !s.ok()) return s;
  for (int i = 0; i < sys->options_.prefills; ++i) {
    if (absl::StatusOr<int> p = sys->StartPrefill(); !p.ok()) return p.status();
  }
  if (absl::Status s = sys->WriteDiscoveryFiles(); !s.ok()) return s;
  std::vector<std::string> router_args = {"--prefill=" + sys->BackendSpec(sys->prefills_, "prefills"),
                                          "--decoder=" + sys->BackendSpec(sys->decoders_, "decoders"),
                                          "--encoder=" + sys->BackendSpec(sys->encoders_, "encoders"),
                                          "--health_interval_ms=200"};
  if (sys->options_.discovery_files) router_args.push_back("--discovery_interval_ms=200");
  if (sys->options_.tls) router_args.push_back("--tenants_file=" + sys->tenants_file_);
  client::RouterCredentials credentials;
  if (sys->options_.tls) {
    credentials.ca_file = sys->pki_->ca_file();
    if (!sys->options_.tenants.empty()) credentials.token = sys->options_.tenants[0].token;
  }
  for (int i = 0; i < sys->options_.routers; ++i) {
    auto router = sys->StartProcess(sys->options_.routers == 1 ? "router" : absl::StrCat("router-", i),
                                    "router/router", security::Role::kRouter, router_args,
                                    sys->options_.router_args);
    if (!router.ok()) return router.status();
    RouterHandle handle{.process = *std::move(router)};
    absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
        client::RouterClient::Connect(handle.process->address(), credentials);
    if (!channel.ok()) return channel.status();
    handle.channel = *std::move(channel);
    handle.stub = v1::Router::NewStub(handle.channel);
    sys->routers_.push_back(std::move(handle));
  }
  if (absl::Status s = sys->WaitHealthy(absl::Seconds(30)); !s.ok()) return s;
  return sys;
}

absl::StatusOr<std::unique_ptr<ServerProcess>> BlockServeSystem::StartProcess(
    const std::string& name, const std::string& binary, security::Role role,
    std::vector<std::string> args, const std::vector<std::string>& extra) {
  if (role != security::Role::kRouter) {
    args.push_back("--model_dir=" + options_.model_dir);
    args.push_back("--kv_dtype=" + options_.kv_dtype);
  }
  for (std::string& a : SecurityArgs(role)) args.push_back(std::move(a));
  args.insert(args.end(), extra.begin(), extra.end());
  if (options_.metrics) {
    const int port = FreeLoopbackPort();
    metrics_ports_[name] = port;
    args.push_back(absl::StrCat("--metrics_port=", port));
  }
  return ServerProcess::Start({.name = name, .binary = RunfilePath(binary), .args = args});
}

absl::StatusOr<int> BlockServeSystem::StartPrefill() {
  const int index = static_cast<int>(prefills_.size());
  const std::string name = absl::StrCat("query_prefill-", index);
  std::vector<std::string> args = StoreArgs(name);
  if (options_.discovery_files) {
    args.push_back(absl::StrCat("--allowed_decoders=file://", discovery_dir_, "/decoders"));
    args.push_back("--discovery_interval_ms=200");
  }
  auto p = StartProcess(name, "query_prefill/query_prefill", security::Role::kPrefill,
                        std::move(args), options_.prefill_args);
  if (!p.ok()) return p.status();
  prefills_.push_back(*std::move(p));
  return index;
}

absl::StatusOr<int> BlockServeSystem::AddPrefill() {
  if (!options_.discovery_files) {
    return absl::FailedPreconditionError("AddPrefill needs SystemOptions.discovery_files");
  }
  absl::StatusOr<int> index = StartPrefill();
  if (!index.ok()) return index.status();
  if (absl::Status s = WriteDiscoveryFiles(); !s.ok()) return s;
  return index;
}

std::string BlockServeSystem::BackendSpec(const std::vector<std::unique_ptr<ServerProcess>>& ps,
                                          const std::string& file) const {
  if (options_.discovery_files) return absl::StrCat("file://", discovery_dir_, "/", file);
  std::vector<std::string> a;
  for (const auto& p : ps) a.push_back(p->address());
  return absl::StrJoin(a, ",");
}

absl::Status BlockServeSystem::WriteDiscoveryFiles() const {
  if (!options_.discovery_files) return absl::OkStatus();
  for (const auto& [file, ps] : {std::pair{"prefills", &prefills_}, std::pair{"decoders", &decoders_},
                                 std::pair{"encoders", &encoders_}}) {
    // Written whole under another name, then renamed: a reader never sees half a list.
    const std::string path = absl::StrCat(discovery_dir_, "/", file);
    std::ofstream out(path + ".new");
    for (const auto& p : *ps) out << p->address() << "\n";
    out.close();
    if (!out || std::rename((path + ".new").c_str(), path.c_str()) != 0) {
      return absl::InternalError(absl::StrCat("cannot write ", path));
    }
  }
  return absl::OkStatus();
}

absl::Status BlockServeSystem::MakePki() {
  static std::atomic<int> pkis{0};
  const std::string dir = absl::StrCat(TmpDir(), "/pki-", getpid(), "-", pkis++);
  std::filesystem::create_directories(dir);
  absl::StatusOr<security::testing::TestPki> pki = security::testing::TestPki::Create(dir);
  if (!pki.ok()) return pki.status();
  pki_ = std::make_unique<security::testing::TestPki>(*std::move(pki));
  for (security::Role role : {security::Role::kRouter, security::Role::kPrefill,
                              security::Role::kDecoder, security::Role::kEncoder}) {
    absl::StatusOr<security::TransportSecurity> identity =
        security::testing::RoleSecurity(*pki_, role);
    if (!identity.ok()) return identity.status();
    identities_[role] = *std::move(identity);
  }
  nlohmann::json tenants = nlohmann::json::array();
  for (const TestTenant& t : options_.tenants) {
    nlohmann::json j = {{"name", t.name},
                        {"token_sha256", {security::Sha256Hex(t.token)}},
                        {"read_namespaces", t.read_namespaces},
                        {"may_ingest", t.may_ingest},
                        {"max_concurrent_requests", t.max_concurrent_requests}};
    if (!t.ns.empty()) j["namespace"] = t.ns;
    tenants.push_back(std::move(j));
  }
  tenants_file_ = dir + "/tenants.json";
  std::ofstream(tenants_file_) << nlohmann::json{{"tenants", tenants}}.dump(2);
  return absl::OkStatus();
}

std::vector<std::string> BlockServeSystem::SecurityArgs(security::Role role) const {
  if (!options_.tls) return {"--insecure"};
  const security::TransportSecurity& id = identities_.at(role);
  return {"--tls_cert=" + id.files.cert, "--tls_key=" + id.files.key,
          "--tls_ca=" + id.files.ca};
}

int BlockServeSystem::metrics_port(const ServerProcess& process) const {
  auto it = metrics_ports_.find(process.name());
  return it == metrics_ports_.end() ? 0 : it->second;
}

security::TransportSecurity BlockServeSystem::Identity(security::Role role) const {
  if (!options_.tls) return {.insecure = true};
  return identities_.at(role);
}

std::shared_ptr<grpc::Channel> BlockServeSystem::InternalChannel(
    security::Role caller, security::Role peer, const std::string& address) const {
  return grpc::CreateChannel(address, security::ChannelCredentialsTo(Identity(caller), peer));
}

std::unique_ptr<v1::Router::Stub> BlockServeSystem::RouterAs(const std::string& token,
                                                            int i) const {
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel = client::RouterClient::Connect(
      routers_[i].process->address(), {.ca_file = pki_ != nullptr ? pki_->ca_file() : "", .token = token});
  return v1::Router::NewStub(channel.ok() ? *channel : nullptr);
}

std::vector<std::string> BlockServeSystem::StoreArgs(const std::string& process) {
  std::vector<std::string> args;
  if (options_.store == "redis" || options_.store == "tiered") {
    args.push_back("--kv_store=" + options_.store);
    if (!options_.redis_cluster.empty()) {
      args.push_back("--redis_cluster=" + absl::StrJoin(options_.redis_cluster, ","));
    } else {
      args.push_back("--redis_host=127.0.0.1");
      args.push_back(absl::StrCat("--redis_port=", options_.redis_port));
    }
  } else {
    args.push_back("--kv_store=shm");
  }
  if (options_.store == "shm" || options_.store == "tiered") {
    // shm: one segment, the node's; tiered: one per process, as if each ran on a node
    // of its own in front of the shared Redis.
    const std::string name = options_.store == "shm" ? shm_name_ : shm_name_ + "-" + process;
    if (std::find(shm_names_.begin(), shm_names_.end(), name) == shm_names_.end()) {
      shm_names_.push_back(name);
    }
    args.push_back("--shm_name=" + name);
    args.push_back("--shm_capacity_bytes=268435456");
  }
  return args;
}

absl::StatusOr<v1::StatsResponse> BlockServeSystem::Stats(int i) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::StatsRequest request;
  request.set_include_backends(true);
  v1::StatsResponse response;
  const grpc::Status s = routers_[i].stub->GetStats(&context, request, &response);
  if (!s.ok()) return absl::UnavailableError(s.error_message());
  return response;
}

absl::Status BlockServeSystem::WaitHealthy(absl::Duration timeout) {
  const absl::Time give_up = absl::Now() + timeout;
  std::string why = "no answer";
  for (int i = 0; i < router_count(); ++i) {
    while (true) {
      absl::StatusOr<v1::StatsResponse> stats = Stats(i);
      if (stats.ok()) {
        why.clear();
        for (const v1::BackendStatus& b : stats->backends()) {
          if (!b.healthy()) absl::StrAppend(&why, b.address(), " unhealthy: ", b.last_error(), "; ");
        }
        if (why.empty()) break;
      } else {
        why = std::string(stats.status().message());
      }
      if (absl::Now() >= give_up) {
        return absl::UnavailableError(absl::StrCat("router ", i, ": backends not healthy: ", why));
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<v1::IngestResponse> BlockServeSystem::Ingest(
    const std::vector<v1::Passage>& passages) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
  v1::IngestRequest request;
  for (const v1::Passage& p : passages) *request.add_passages() = p;
  v1::IngestResponse response;
  const grpc::Status s = router().Ingest(&context, request, &response);
  if (!s.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
  }
  return response;
}

absl::Status BlockServeSystem::Shutdown() {
  if (shut_down_) return absl::OkStatus();
  shut_down_ = true;
  // gRPC servers drain open client connections for their whole shutdown grace; closing
  // ours first lets the router stop at once.
  for (RouterHandle& r : routers_) {
    r.stub.reset();
    r.channel.reset();
  }
  std::vector<std::string> bad;
  auto stop = [&bad](ServerProcess* p) {
    if (p == nullptr || !p->Running()) return;  // never started, or killed by the test
    if (const int code = p->Terminate(); code != 0) {
      bad.push_back(absl::StrCat(p->name(), " exited with ", code, "\n", p->LogTail(10)));
    }
  };
  for (RouterHandle& r : routers_) stop(r.process.get());
  for (auto& p : prefills_) stop(p.get());
  for (auto& d : decoders_) stop(d.get());
  for (auto& e : encoders_) stop(e.get());
  for (const std::string& name : shm_names_) shm_unlink(name.c_str());
  if (!bad.empty()) return absl::InternalError(absl::StrJoin(bad, "\n"));
  return absl::OkStatus();
}

BlockServeSystem::~BlockServeSystem() { (void)Shutdown(); }

GenerateResult Generate(v1::Router::Stub& router, const v1::GenerateRequest& request,
                        absl::Duration timeout) {
  GenerateResult r;
  const absl::Time start = absl::Now();
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(start + timeout));
  std::unique_ptr<grpc::ClientReader<v1::GenerateEvent>> reader = router.Generate(&context, request);
  v1::GenerateEvent event;
  while (reader->Read(&event)) {
    if (event.has_summary()) {
      r.summary = event.summary();
      continue;
    }
    r.chunks.push_back(event.tokens());
    r.tokens.insert(r.tokens.end(), event.tokens().token_ids().begin(),
                    event.tokens().token_ids().end());
    r.text += event.tokens().text();
  }
  r.status = reader->Finish();
  r.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  return r;
}

}  // namespace blockserve::testing
