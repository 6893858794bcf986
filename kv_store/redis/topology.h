// Which Redis node serves a key, and the connection pools (node_pool.h) that reach the
// nodes: the one node of a single Redis, or, for a Redis Cluster, the slot map (hash
// slot → the master serving it) with a pool per node. A background thread probes the
// pools that are down (NodePool::Probe) and, for a cluster, refreshes the slot map
// (CLUSTER SLOTS from any node that answers: the map's nodes, then the seeds): every
// `refresh_interval`, and soon (at most every 100 ms) after someone asked for it, i.e.
// after a MOVED, a call that failed on a node, a slot with no node, or a probe that
// brought a node back.
#ifndef BLOCKSERVE_KV_STORE_REDIS_TOPOLOGY_H_
#define BLOCKSERVE_KV_STORE_REDIS_TOPOLOGY_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "kv_store/redis/cluster_protocol.h"
#include "kv_store/redis/node_pool.h"

namespace blockserve::kv_store::redis {

struct TopologyOptions {
  // Every pool's options; `pool.address` is the single Redis (unused for a cluster).
  PoolOptions pool;
  // Non-empty: a Redis Cluster, whose slot map comes from any of these nodes.
  std::vector<HostPort> seeds;
  absl::Duration refresh_interval = absl::Seconds(10);
  // Where slot map changes (`outage` false) and refreshes that found no node to ask
  // (`outage` true) are reported; rate-limiting is the callee's. May be empty.
  std::function<void(const std::string& message, bool outage)> log;
};

class Topology {
 public:
  // Starts the background thread; no I/O before FirstContact().
  explicit Topology(TopologyOptions options);
  // Stops the background thread, waiting for a probe or refresh in progress (each is
  // bounded by connect_timeout + op_timeout).
  ~Topology();
  Topology(const Topology&) = delete;
  Topology& operator=(const Topology&) = delete;

  bool cluster() const { return !options_.seeds.empty(); }

  // The store's first contact. A single Redis: PING, then FAILED_PRECONDITION when it
  // is a cluster node (it would answer MOVED for most keys). A cluster: the slot map from
  // the first seed that gives one; FAILED_PRECONDITION when a seed is not a cluster node.
  // UNAUTHENTICATED / PERMISSION_DENIED as NodePool::Handshake; UNAVAILABLE when no node
  // could be asked (the background thread keeps trying).
  absl::Status FirstContact();

  // The node serving `slot` (a single Redis: the node, whatever the slot); null when no
  // node is known to serve it, which also asks for a refresh.
  std::shared_ptr<NodePool> NodeFor(int slot);
  // NodeFor of each slot, under one lock.
  std::vector<std::shared_ptr<NodePool>> NodesFor(absl::Span<const int> slots);
  // A MOVED: `slot` is served by `target` from now on (and the whole map is refreshed
  // soon, since a slot seldom moves alone). Returns target's pool.
  std::shared_ptr<NodePool> Moved(int slot, const HostPort& target);
  // An ASK: target's pool, the map unchanged.
  std::shared_ptr<NodePool> NodeAt(const HostPort& target);
  // Something failed on a node: refresh the slot map soon (no-op for a single Redis).
  void RequestRefresh();
  // The nodes serving slots; `complete` says whether every slot has one.
  std::vector<std::shared_ptr<NodePool>> Masters(bool& complete);

  struct Counters {
    int64_t refreshes = 0;  // slot maps installed (first contact included)
    int64_t probes = 0;     // NodePool::Probe calls
  };
  Counters counters() const;

 private:
  std::shared_ptr<NodePool> NewPool(const HostPort& address);
  std::shared_ptr<NodePool> PoolAtLocked(const HostPort& address)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(map_mu_);
  // The slot map from one node; false when it could not give one.
  absl::Status FetchSlots(NodePool& node);
  absl::Status InstallSlots(const ReplyPtr& reply, const NodePool& from);
  // The slot map from the first node (of the map, then the seeds) that gives one.
  bool Refresh();
  std::vector<std::shared_ptr<NodePool>> AllPools() const;
  void Kick();
  void Run();
  void Log(const std::string& message, bool outage) const {
    if (options_.log) options_.log(message, outage);
  }

  const TopologyOptions options_;
  std::shared_ptr<NodePool> single_;              // a single Redis
  std::vector<std::shared_ptr<NodePool>> seeds_;  // a cluster

  mutable absl::Mutex map_mu_;
  // A cluster's nodes by address (masters and replicas of the last map, and redirection
  // targets since), and the master of each slot (null: none known).
  std::map<std::string, std::shared_ptr<NodePool>> nodes_ ABSL_GUARDED_BY(map_mu_);
  std::vector<std::shared_ptr<NodePool>> slot_owner_ ABSL_GUARDED_BY(map_mu_);

  absl::Mutex bg_mu_;
  bool kicked_ ABSL_GUARDED_BY(bg_mu_) = false;
  bool stop_ ABSL_GUARDED_BY(bg_mu_) = false;
  bool refresh_requested_ ABSL_GUARDED_BY(bg_mu_) = false;
  absl::Time last_refresh_ ABSL_GUARDED_BY(bg_mu_) = absl::InfinitePast();

  std::atomic<int64_t> refreshes_{0};
  std::atomic<int64_t> probes_{0};
  std::thread thread_;  // last: started once everything above is ready
};

}  // namespace blockserve::kv_store::redis

#endif  // BLOCKSERVE_KV_STORE_REDIS_TOPOLOGY_H_
