#include "router/backend_pool.h"

#include <algorithm>
#include <limits>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/grpc_status.h"
#include "contract/request_contract.h"
#include "common/log.h"
#include "router/health.grpc.pb.h"
#include "router/rendezvous.h"

namespace blockserve::router {
namespace {

using HealthResponse = grpc::health::v1::HealthCheckResponse;

const char* RoleName(Role role) {
  switch (role) {
    case v1::BACKEND_ROLE_PREFILL: return "prefill";
    case v1::BACKEND_ROLE_DECODER: return "decoder";
    case v1::BACKEND_ROLE_ENCODER: return "encoder";
    default: return "unknown";
  }
}

// One in-flight asynchronous health probe.
struct ProbeCall {
  std::unique_ptr<grpc::health::v1::Health::Stub> stub;
  grpc::ClientContext context;
  grpc::health::v1::HealthCheckRequest request;
  HealthResponse response;
  grpc::Status status;
  absl::Time started;
};

}  // namespace

std::shared_ptr<grpc::Channel> MakeBackendChannel(
    const std::string& address, std::shared_ptr<grpc::ChannelCredentials> credentials) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(contract::kMaxMessageBytes);
  args.SetMaxSendMessageSize(contract::kMaxMessageBytes);
  // A backend that restarts should be reachable again within a health interval or two,
  // not after gRPC's default exponential backoff (up to two minutes).
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  return grpc::CreateCustomChannel(
      address, credentials != nullptr ? credentials : grpc::InsecureChannelCredentials(), args);
}

absl::StatusOr<bool> ProbeHealth(const std::shared_ptr<grpc::Channel>& channel,
                                 absl::Duration timeout) {
  grpc::health::v1::Health::Stub stub(channel);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
  grpc::health::v1::HealthCheckRequest request;
  HealthResponse response;
  const grpc::Status status = stub.Check(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response.status() == HealthResponse::SERVING;
}

// ───────────────────────────────── Lease ─────────────────────────────────────

BackendPool::Lease::Lease(Lease&& other) noexcept
    : pool_(other.pool_), backend_(std::move(other.backend_)), finished_(other.finished_) {
  other.pool_ = nullptr;
  other.backend_ = nullptr;
}

BackendPool::Lease& BackendPool::Lease::operator=(Lease&& other) noexcept {
  if (this != &other) {
    Release();
    pool_ = other.pool_;
    backend_ = std::move(other.backend_);
    finished_ = other.finished_;
    other.pool_ = nullptr;
    other.backend_ = nullptr;
  }
  return *this;
}

BackendPool::Lease::~Lease() { Release(); }

const std::string& BackendPool::Lease::address() const { return backend_->address; }

const std::shared_ptr<grpc::Channel>& BackendPool::Lease::channel() const {
  return backend_->channel;
}

void BackendPool::Lease::Finish(const absl::Status& outcome) {
  if (backend_ == nullptr || finished_) return;
  finished_ = true;
  if (outcome.ok()) return;
  absl::MutexLock lock(&pool_->mu_);
  ++backend_->requests_failed;
  backend_->last_error = outcome.ToString();
}

void BackendPool::Lease::Release() {
  if (backend_ == nullptr) return;
  {
    absl::MutexLock lock(&pool_->mu_);
    --backend_->in_flight;
  }
  backend_ = nullptr;  // a removed backend (and its channel) goes with its last lease
  pool_ = nullptr;
}

// ─────────────────────────────── BackendPool ─────────────────────────────────

BackendPool::BackendPool(BackendPoolOptions options, MetricsRegistry* metrics)
    : options_(std::move(options)), metrics_(metrics) {
  credentials_[v1::BACKEND_ROLE_PREFILL] =
      security::ChannelCredentialsTo(options_.transport, security::Role::kPrefill);
  credentials_[v1::BACKEND_ROLE_DECODER] =
      security::ChannelCredentialsTo(options_.transport, security::Role::kDecoder);
  credentials_[v1::BACKEND_ROLE_ENCODER] =
      security::ChannelCredentialsTo(options_.transport, security::Role::kEncoder);
  absl::MutexLock lock(&mu_);
  for (auto [addresses, role] : {std::pair{&options_.prefill, v1::BACKEND_ROLE_PREFILL},
                                 std::pair{&options_.decoder, v1::BACKEND_ROLE_DECODER},
                                 std::pair{&options_.encoder, v1::BACKEND_ROLE_ENCODER}}) {
    for (const std::string& address : *addresses) backends_.push_back(NewBackend(role, address));
  }
  UpdateGaugesLocked();
}

BackendPool::BackendPtr BackendPool::NewBackend(Role role, const std::string& address) const {
  auto b = std::make_shared<Backend>();
  b->address = address;
  b->role = role;
  b->address_hash = StableHash64(address);
  b->channel = MakeBackendChannel(address, credentials_[role]);
  return b;
}

void BackendPool::SetBackends(Role role, const std::vector<std::string>& addresses) {
  const absl::flat_hash_set<std::string> wanted(addresses.begin(), addresses.end());
  absl::MutexLock lock(&mu_);
  absl::flat_hash_set<std::string> have;
  std::vector<BackendPtr> kept;
  for (BackendPtr& b : backends_) {
    if (b->role != role || wanted.contains(b->address)) {
      if (b->role == role) have.insert(b->address);
      kept.push_back(std::move(b));
      continue;
    }
    b->removed = true;
    b->healthy = false;
    check_soon_.erase(b);
    LogEvent("backend_removed", {{"address", b->address},
                                 {"role", RoleName(role)},
                                 {"in_flight", absl::StrCat(b->in_flight)}});
  }
  backends_ = std::move(kept);
  for (const std::string& address : addresses) {
    if (!have.insert(address).second) continue;
    BackendPtr b = NewBackend(role, address);
    LogEvent("backend_added", {{"address", address}, {"role", RoleName(role)}});
    check_soon_.insert(b);  // probed before it is used
    backends_.push_back(std::move(b));
  }
  UpdateGaugesLocked();
}

BackendPool::~BackendPool() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (health_thread_.joinable()) health_thread_.join();
}

void BackendPool::Start() {
  CheckAllNow();
  health_thread_ = std::thread([this] { HealthLoop(); });
}

void BackendPool::CheckAllNow() {
  std::vector<BackendPtr> all;
  {
    absl::MutexLock lock(&mu_);
    all = backends_;
  }
  Probe(all);
}

void BackendPool::CheckSoon(const std::string& address) {
  absl::MutexLock lock(&mu_);
  for (const BackendPtr& b : backends_) {
    if (b->address == address) check_soon_.insert(b);
  }
}

void BackendPool::MarkUnhealthy(const std::string& address, const std::string& reason) {
  absl::MutexLock lock(&mu_);
  for (const BackendPtr& b : backends_) {
    if (b->address != address) continue;
    if (b->healthy) {
      LogEvent("backend_unhealthy",
               {{"address", address}, {"role", RoleName(b->role)}, {"reason", reason}});
    }
    b->healthy = false;
    b->last_error = reason;
    // A probe already in flight must not bring it straight back: only probes started
    // after now count (see Probe).
    b->marked_unhealthy = absl::Now();
    check_soon_.insert(b);
  }
  UpdateGaugesLocked();
}

void BackendPool::Probe(const std::vector<BackendPtr>& backends) {
  if (backends.empty()) return;
  // Shared with the callbacks, so it outlives the last one even after Probe returns.
  struct Round {
    absl::Mutex mu;
    size_t pending = 0;
    std::vector<ProbeCall> calls;
  };
  auto round = std::make_shared<Round>();
  round->pending = backends.size();
  round->calls = std::vector<ProbeCall>(backends.size());
  for (size_t i = 0; i < backends.size(); ++i) {
    ProbeCall& c = round->calls[i];
    c.started = absl::Now();
    c.context.set_deadline(absl::ToChronoTime(c.started + options_.health_timeout));
    c.stub = grpc::health::v1::Health::NewStub(backends[i]->channel);
    c.stub->async()->Check(&c.context, &c.request, &c.response,
                           [round, &c](grpc::Status status) {
                             absl::MutexLock lock(&round->mu);
                             c.status = std::move(status);
                             --round->pending;
                           });
  }
  {
    absl::MutexLock lock(&round->mu);
    round->mu.Await(absl::Condition(+[](size_t* p) { return *p == 0; }, &round->pending));
  }
  const std::vector<ProbeCall>& calls = round->calls;
  absl::MutexLock lock(&mu_);
  for (size_t i = 0; i < backends.size(); ++i) {
    Backend* b = backends[i].get();
    if (b->removed) continue;  // dropped by SetBackends while the probe ran
    const ProbeCall& c = calls[i];
    const bool serving = c.status.ok() && c.response.status() == HealthResponse::SERVING;
    if (serving) {
      if (c.started < b->marked_unhealthy) continue;  // sent before the router saw it break
      b->last_healthy = absl::Now();
    }
    if (serving != b->healthy || !b->probed) {
      const std::string why =
          c.status.ok() ? absl::StrCat("health status ",
                                       HealthResponse::ServingStatus_Name(c.response.status()))
                        : absl::StrCat("health check failed: ", c.status.error_message());
      LogEvent(serving ? "backend_healthy" : "backend_unhealthy",
               {{"address", b->address}, {"role", RoleName(b->role)}, {"reason", why}});
      if (!serving) b->last_error = why;
    }
    b->healthy = serving;
    b->probed = true;
  }
  UpdateGaugesLocked();
}

void BackendPool::HealthLoop() {
  absl::Time next_round = absl::Now() + options_.health_interval;
  while (true) {
    std::vector<BackendPtr> targets;
    {
      absl::MutexLock lock(&mu_);
      auto wake = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || !check_soon_.empty();
      };
      mu_.AwaitWithDeadline(absl::Condition(&wake), next_round);
      if (stopping_) return;
      if (absl::Now() >= next_round) {
        targets = backends_;
        next_round = absl::Now() + options_.health_interval;
      } else {
        targets.assign(check_soon_.begin(), check_soon_.end());
      }
      check_soon_.clear();
    }
    Probe(targets);
    // Requests that keep failing must not turn the loop into a busy probe storm.
    absl::SleepFor(absl::Milliseconds(50));
  }
}

std::vector<BackendPool::Backend*> BackendPool::CandidatesLocked(
    Role role, const absl::flat_hash_set<std::string>& exclude) const {
  std::vector<Backend*> candidates;
  for (const BackendPtr& b : backends_) {
    if (b->role == role && b->healthy && !exclude.contains(b->address)) {
      candidates.push_back(b.get());
    }
  }
  return candidates;
}

BackendPool::Backend* BackendPool::PickLocked(Role role,
                                              const absl::flat_hash_set<std::string>& exclude) {
  const std::vector<Backend*> candidates = CandidatesLocked(role, exclude);
  if (candidates.empty()) return nullptr;
  // Least loaded; among equals, rotate so that idle backends share the work.
  const size_t start = rotation_++ % candidates.size();
  Backend* best = nullptr;
  for (size_t i = 0; i < candidates.size(); ++i) {
    Backend* b = candidates[(start + i) % candidates.size()];
    if (best == nullptr || b->in_flight < best->in_flight) best = b;
  }
  return best;
}

BackendPool::Lease BackendPool::LeaseLocked(Backend* b) {
  ++b->in_flight;
  ++b->requests_total;
  return Lease(this, b->shared_from_this());
}

absl::StatusOr<BackendPool::Lease> BackendPool::Acquire(
    Role role, const absl::flat_hash_set<std::string>& exclude) {
  absl::MutexLock lock(&mu_);
  Backend* b = PickLocked(role, exclude);
  if (b == nullptr) {
    return absl::UnavailableError(absl::StrCat("no healthy ", RoleName(role), " backend",
                                               exclude.empty() ? "" : " left to try"));
  }
  return LeaseLocked(b);
}

absl::StatusOr<BackendPool::Lease> BackendPool::AcquirePrefill(
    uint64_t affinity_key, const absl::flat_hash_set<std::string>& exclude) {
  absl::MutexLock lock(&mu_);
  Backend* least = PickLocked(v1::BACKEND_ROLE_PREFILL, exclude);
  if (least == nullptr) {
    return absl::UnavailableError(absl::StrCat("no healthy prefill backend",
                                               exclude.empty() ? "" : " left to try"));
  }
  if (affinity_key == 0) return LeaseLocked(least);
  // Rendezvous order; the first within the load bound (the least loaded always is).
  std::vector<Backend*> candidates = CandidatesLocked(v1::BACKEND_ROLE_PREFILL, exclude);
  std::vector<std::pair<uint64_t, Backend*>> scored;
  scored.reserve(candidates.size());
  for (Backend* b : candidates) scored.emplace_back(RendezvousScore(b->address_hash, affinity_key), b);
  std::sort(scored.begin(), scored.end(), [](const auto& x, const auto& y) {
    return x.first != y.first ? x.first > y.first : x.second->address < y.second->address;
  });
  const uint64_t bound = uint64_t{least->in_flight} + std::max(options_.affinity_slack, 0);
  for (const auto& [score, b] : scored) {
    if (b->in_flight <= bound) return LeaseLocked(b);
  }
  return LeaseLocked(least);
}

std::vector<std::string> BackendPool::PrefillOrder(uint64_t affinity_key) const {
  std::vector<std::string> healthy;
  {
    absl::MutexLock lock(&mu_);
    for (Backend* b : CandidatesLocked(v1::BACKEND_ROLE_PREFILL, {})) healthy.push_back(b->address);
  }
  return RendezvousOrder(std::move(healthy), affinity_key);
}

int BackendPool::HealthyCount(Role role) const {
  absl::MutexLock lock(&mu_);
  int n = 0;
  for (const auto& b : backends_) n += b->role == role && b->healthy;
  return n;
}

int BackendPool::BackendCount(Role role) const {
  absl::MutexLock lock(&mu_);
  int n = 0;
  for (const auto& b : backends_) n += b->role == role;
  return n;
}

std::vector<v1::BackendStatus> BackendPool::Snapshot() const {
  absl::MutexLock lock(&mu_);
  const absl::Time now = absl::Now();
  std::vector<v1::BackendStatus> out;
  for (const auto& b : backends_) {
    v1::BackendStatus s;
    s.set_address(b->address);
    s.set_role(b->role);
    s.set_healthy(b->healthy);
    s.set_in_flight(b->in_flight);
    s.set_requests_total(b->requests_total);
    s.set_requests_failed(b->requests_failed);
    s.set_last_error(b->last_error);
    s.set_last_healthy_ago_ms(b->last_healthy == absl::InfinitePast()
                                  ? -1
                                  : absl::ToDoubleMilliseconds(now - b->last_healthy));
    out.push_back(std::move(s));
  }
  return out;
}

void BackendPool::UpdateGaugesLocked() {
  if (metrics_ == nullptr) return;
  int healthy[4] = {0, 0, 0, 0};
  int known[4] = {0, 0, 0, 0};
  for (const auto& b : backends_) {
    healthy[b->role] += b->healthy;
    ++known[b->role];
  }
  metrics_->GetGauge("blockserve_router_discovered_prefills", "prefill backends known (healthy or not)")
      ->Set(known[v1::BACKEND_ROLE_PREFILL]);
  metrics_->GetGauge("blockserve_router_discovered_decoders", "decoder backends known (healthy or not)")
      ->Set(known[v1::BACKEND_ROLE_DECODER]);
  metrics_->GetGauge("blockserve_router_discovered_encoders", "encoder backends known (healthy or not)")
      ->Set(known[v1::BACKEND_ROLE_ENCODER]);
  metrics_->GetGauge("blockserve_router_healthy_prefills", "prefill backends answering SERVING")
      ->Set(healthy[v1::BACKEND_ROLE_PREFILL]);
  metrics_->GetGauge("blockserve_router_healthy_decoders", "decoder backends answering SERVING")
      ->Set(healthy[v1::BACKEND_ROLE_DECODER]);
  metrics_->GetGauge("blockserve_router_healthy_encoders", "encoder backends answering SERVING")
      ->Set(healthy[v1::BACKEND_ROLE_ENCODER]);
}

}  // namespace blockserve::router
