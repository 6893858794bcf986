#include "kv_store/redis/topology.h"

#include <hiredis/hiredis.h>

#include <algorithm>
#include <set>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace blockserve::kv_store::redis {
namespace {

// The most often the slot map is fetched when refreshes are asked for.
constexpr absl::Duration kMinRefreshGap = absl::Milliseconds(100);

std::string ReplyText(const redisReply& r) { return std::string(r.str, r.len); }

}  // namespace

Topology::Topology(TopologyOptions options) : options_(std::move(options)) {
  {
    absl::MutexLock lock(&bg_mu_);
    last_refresh_ = absl::Now();  // FirstContact's, or it asks for one soon
  }
  if (cluster()) {
    slot_owner_.resize(kClusterSlots);
    for (const HostPort& seed : options_.seeds) seeds_.push_back(NewPool(seed));
  } else {
    single_ = NewPool(options_.pool.address);
  }
  thread_ = std::thread(&Topology::Run, this);
}

Topology::~Topology() {
  {
    absl::MutexLock lock(&bg_mu_);
    stop_ = true;
    kicked_ = true;
  }
  thread_.join();
}

std::shared_ptr<NodePool> Topology::NewPool(const HostPort& address) {
  PoolOptions o = options_.pool;
  o.address = address;
  return std::make_shared<NodePool>(std::move(o), [this] { Kick(); });
}

std::shared_ptr<NodePool> Topology::PoolAtLocked(const HostPort& address) {
  std::shared_ptr<NodePool>& pool = nodes_[address.ToString()];
  if (pool == nullptr) pool = NewPool(address);
  return pool;
}

void Topology::Kick() {
  absl::MutexLock lock(&bg_mu_);
  kicked_ = true;
}

void Topology::RequestRefresh() {
  if (!cluster()) return;
  absl::MutexLock lock(&bg_mu_);
  refresh_requested_ = true;
  kicked_ = true;
}

std::shared_ptr<NodePool> Topology::NodeFor(int slot) {
  if (!cluster()) return single_;
  std::shared_ptr<NodePool> node;
  {
    absl::ReaderMutexLock lock(&map_mu_);
    node = slot_owner_[slot];
  }
  if (node == nullptr) RequestRefresh();
  return node;
}

std::vector<std::shared_ptr<NodePool>> Topology::NodesFor(absl::Span<const int> slots) {
  if (!cluster()) return std::vector<std::shared_ptr<NodePool>>(slots.size(), single_);
  std::vector<std::shared_ptr<NodePool>> nodes;
  nodes.reserve(slots.size());
  bool unserved = false;
  {
    absl::ReaderMutexLock lock(&map_mu_);
    for (const int slot : slots) {
      nodes.push_back(slot_owner_[slot]);
      unserved |= nodes.back() == nullptr;
    }
  }
  if (unserved) RequestRefresh();
  return nodes;
}

std::shared_ptr<NodePool> Topology::Moved(int slot, const HostPort& target) {
  std::shared_ptr<NodePool> node;
  {
    absl::MutexLock lock(&map_mu_);
    node = PoolAtLocked(target);
    slot_owner_[slot] = node;
  }
  RequestRefresh();
  return node;
}

std::shared_ptr<NodePool> Topology::NodeAt(const HostPort& target) {
  absl::MutexLock lock(&map_mu_);
  return PoolAtLocked(target);
}

std::vector<std::shared_ptr<NodePool>> Topology::Masters(bool& complete) {
  complete = true;
  if (!cluster()) return {single_};
  std::vector<std::shared_ptr<NodePool>> masters;
  {
    absl::ReaderMutexLock lock(&map_mu_);
    std::set<const NodePool*> seen;
    for (const std::shared_ptr<NodePool>& owner : slot_owner_) {
      if (owner == nullptr) {
        complete = false;
      } else if (seen.insert(owner.get()).second) {
        masters.push_back(owner);
      }
    }
  }
  if (!complete) RequestRefresh();
  return masters;
}

Topology::Counters Topology::counters() const { return {refreshes_.load(), probes_.load()}; }

absl::Status Topology::InstallSlots(const ReplyPtr& reply, const NodePool& from) {
  if (reply->type == REDIS_REPLY_ERROR) {
    return absl::UnavailableError(
        absl::StrCat(from.where(), " answered CLUSTER SLOTS with: ", ReplyText(*reply)));
  }
  absl::StatusOr<std::vector<SlotRange>> ranges = ParseClusterSlots(*reply, from.address().host);
  if (!ranges.ok()) {
    return absl::UnavailableError(absl::StrCat(from.where(), ": ", ranges.status().message()));
  }
  std::vector<std::shared_ptr<NodePool>> owner(kClusterSlots);
  std::string change;
  {
    absl::MutexLock lock(&map_mu_);
    std::map<std::string, std::shared_ptr<NodePool>> nodes;
    for (const SlotRange& range : *ranges) {
      std::shared_ptr<NodePool> master = PoolAtLocked(range.master);
      nodes[range.master.ToString()] = master;
      for (const HostPort& replica : range.replicas) {
        nodes[replica.ToString()] = PoolAtLocked(replica);
      }
      std::fill(owner.begin() + range.first, owner.begin() + range.last + 1, master);
    }
    int moved = 0, unserved = 0;
    for (int slot = 0; slot < kClusterSlots; ++slot) {
      moved += owner[slot] != slot_owner_[slot] ? 1 : 0;
      unserved += owner[slot] == nullptr ? 1 : 0;
    }
    if (moved > 0) {
      std::set<std::string> masters;
      for (const SlotRange& range : *ranges) masters.insert(range.master.ToString());
      change = absl::StrCat(
          "cluster slot map from ", from.address().ToString(), ": ", masters.size(), " masters, ",
          nodes.size(), " nodes, ", moved, " slots changed owner",
          unserved > 0 ? absl::StrCat(", ", unserved, " slots unserved") : std::string());
    }
    slot_owner_ = std::move(owner);
    nodes_ = std::move(nodes);  // pools of nodes gone from the map close when unused
  }
  ++refreshes_;
  if (!change.empty()) Log(change, /*outage=*/false);
  return absl::OkStatus();
}

absl::Status Topology::FetchSlots(NodePool& node) {
  ReplyPtr reply;
  const absl::Status status = node.WithConnection([&](Connection& c) {
    reply = c.Command({"CLUSTER", "SLOTS"});
    return reply != nullptr;
  });
  if (!status.ok()) return status;
  return InstallSlots(reply, node);
}

bool Topology::Refresh() {
  std::vector<std::shared_ptr<NodePool>> candidates;
  {
    absl::ReaderMutexLock lock(&map_mu_);
    for (const auto& [address, pool] : nodes_) candidates.push_back(pool);
  }
  candidates.insert(candidates.end(), seeds_.begin(), seeds_.end());
  absl::Status last = absl::UnavailableError("every known node is down");
  for (const std::shared_ptr<NodePool>& node : candidates) {
    if (node->down()) continue;
    last = FetchSlots(*node);
    if (last.ok()) return true;
  }
  Log(absl::StrCat("cannot refresh the cluster slot map: ", last.message()), /*outage=*/true);
  return false;
}

absl::Status Topology::FirstContact() {
  if (!cluster()) {
    absl::StatusOr<ReplyPtr> pong = single_->Handshake({"PING"});
    if (!pong.ok()) return pong.status();
    if ((*pong)->type == REDIS_REPLY_ERROR) {
      return absl::UnavailableError(
          absl::StrCat(single_->where(), " answered PING with: ", ReplyText(**pong)));
    }
    // A cluster node taken for a single Redis would answer MOVED for most keys: every
    // read of them a miss, every write dropped. (A user who may not run INFO passes.)
    ReplyPtr info;
    const absl::Status asked = single_->WithConnection([&](Connection& c) {
      info = c.Command({"INFO", "cluster"});
      return info != nullptr;
    });
    if (asked.ok() && info->type == REDIS_REPLY_STRING &&
        absl::StrContains(ReplyText(*info), "cluster_enabled:1")) {
      return absl::FailedPreconditionError(
          absl::StrCat(single_->where(),
                       " is a Redis Cluster node: give the cluster's nodes as cluster seeds "
                       "(--redis_cluster), not as a single Redis"));
    }
    return absl::OkStatus();
  }
  absl::Status last;
  for (const std::shared_ptr<NodePool>& seed : seeds_) {
    absl::StatusOr<ReplyPtr> slots = seed->Handshake({"CLUSTER", "SLOTS"});
    if (absl::IsUnauthenticated(slots.status()) || absl::IsPermissionDenied(slots.status())) {
      return slots.status();
    }
    if (!slots.ok()) {
      last = slots.status();
      continue;
    }
    if ((*slots)->type == REDIS_REPLY_ERROR &&
        absl::StrContains(ReplyText(**slots), "cluster support disabled")) {
      return absl::FailedPreconditionError(absl::StrCat(
          seed->where(),
          " is not a Redis Cluster node (cluster support disabled): give it as the single "
          "Redis (--redis_host, --redis_port), not as a cluster seed"));
    }
    last = InstallSlots(*slots, *seed);
    if (last.ok()) {
      absl::MutexLock lock(&bg_mu_);
      last_refresh_ = absl::Now();
      return absl::OkStatus();
    }
  }
  RequestRefresh();
  return last;
}

std::vector<std::shared_ptr<NodePool>> Topology::AllPools() const {
  if (!cluster()) return {single_};
  std::vector<std::shared_ptr<NodePool>> pools(seeds_);
  absl::ReaderMutexLock lock(&map_mu_);
  for (const auto& [address, pool] : nodes_) pools.push_back(pool);
  return pools;
}

void Topology::Run() {
  for (;;) {
    absl::Time wake = absl::InfiniteFuture();
    for (const std::shared_ptr<NodePool>& pool : AllPools()) {
      wake = std::min(wake, pool->probe_due());
    }
    bool refresh = false;
    {
      absl::MutexLock lock(&bg_mu_);
      if (cluster()) {
        absl::Time refresh_at = last_refresh_ + options_.refresh_interval;
        if (refresh_requested_) refresh_at = std::min(refresh_at, last_refresh_ + kMinRefreshGap);
        wake = std::min(wake, refresh_at);
      }
      bg_mu_.AwaitWithDeadline(absl::Condition(&kicked_), wake);
      if (stop_) return;
      kicked_ = false;
      const absl::Time now = absl::Now();
      if (cluster() && (now >= last_refresh_ + options_.refresh_interval ||
                        (refresh_requested_ && now >= last_refresh_ + kMinRefreshGap))) {
        refresh = true;
        refresh_requested_ = false;
        last_refresh_ = now;
      }
    }
    bool back_up = false;
    for (const std::shared_ptr<NodePool>& pool : AllPools()) {
      if (pool->probe_due() > absl::Now()) continue;
      ++probes_;
      back_up |= pool->Probe();
    }
    if (refresh && !Refresh()) RequestRefresh();
    if (back_up) RequestRefresh();  // the topology may have changed while it was down
  }
}

}  // namespace blockserve::kv_store::redis
