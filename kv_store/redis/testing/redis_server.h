// A real `redis-server` child process on a free loopback port, for tests and benchmarks;
// and RedisCluster, a Redis Cluster of such processes.
//
// The server binds 127.0.0.1 only, persists nothing (--save "", --appendonly no) and
// keeps its working files in a fresh temporary directory that the destructor removes.
// Start() returns once the server answers PING. Stop() kills it the way a crash would
// (SIGKILL); Restart() starts a new, empty server on the same port. The child is also
// killed if the thread that started it exits (PR_SET_PDEATHSIG), so a crashed test
// leaves no server behind.
#ifndef BLOCKSERVE_KV_STORE_REDIS_TESTING_REDIS_SERVER_H_
#define BLOCKSERVE_KV_STORE_REDIS_TESTING_REDIS_SERVER_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace blockserve::kv_store::testing {

struct RedisServerOptions {
  // Path of the server binary; empty: $REDIS_SERVER, then `redis-server` on $PATH, then
  // /usr/bin, /usr/local/bin, /usr/sbin.
  std::string binary;
  int port = 0;  // 0: pick a free loopback port
  absl::Duration start_timeout = absl::Seconds(10);
  std::vector<std::string> extra_args;  // appended to the command line, e.g. {"--maxmemory", "1mb"}
  // Non-empty: the server requires it (--requirepass, the default user's password), and
  // Call() and the start-up check authenticate with it.
  std::string password;
};

class RedisServer {
 public:
  // Fails (NotFound) with an explanation when no redis-server binary can be found, and
  // (Unavailable) with the tail of the server's log when it does not come up in time.
  static absl::StatusOr<std::unique_ptr<RedisServer>> Start(RedisServerOptions options = {});

  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  int port() const { return port_; }
  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }  // -1 when stopped

  // Kills the server (SIGKILL) and reaps it. No-op when already stopped.
  void Stop();
  // Stop(), then a fresh, empty server on the same port; returns once it answers PING.
  absl::Status Restart();
  // Freezes (SIGSTOP) and thaws (SIGCONT) the server: a Redis that accepts connections
  // but never answers.
  void Pause();
  void Resume();

  // Sends one command (binary-safe arguments) on a short-lived connection and returns
  // the reply as text: a status or bulk string as is, an integer in decimal, an array of
  // those one element a line ("" for an empty one). A nil reply is NotFound, an error
  // reply is Internal. For tests that poke at raw keys. With options.password, the
  // connection authenticates first.
  absl::StatusOr<std::string> Call(const std::vector<std::string>& argv) const;

 private:
  RedisServer(std::string binary, int port, std::string dir, RedisServerOptions options);
  absl::Status Launch();
  absl::Status WaitUntilReady();
  std::string LogTail() const;

  const std::string binary_;
  const int port_;
  const std::string dir_;  // temporary working directory, removed by the destructor
  const RedisServerOptions options_;
  pid_t pid_ = -1;
};

struct RedisClusterOptions {
  int masters = 3;
  int replicas_per_master = 1;
  // cluster-node-timeout: how long a master may not answer before the others mark it
  // failed and one of its replicas takes over (the failover follows within about a
  // second more).
  absl::Duration node_timeout = absl::Milliseconds(1000);
  // cluster-require-full-coverage. False (the setting the docs recommend for
  // BlockServe): while a slot has no master the other masters keep serving theirs. True
  // (Redis's default): every node answers CLUSTERDOWN until every slot is served again.
  bool require_full_coverage = false;
  // Non-empty: every node requires it (--requirepass) and replicas use it towards their
  // masters (--masterauth); Call() and the set-up authenticate with it.
  std::string password;
  std::vector<std::string> extra_args;  // for every node
  // The binaries; empty: $REDIS_SERVER / $REDIS_CLI, then $PATH, /usr/bin, ...
  std::string server_binary;
  std::string cli_binary;
  absl::Duration start_timeout = absl::Seconds(30);  // the whole set-up
};

// A Redis Cluster on loopback for tests: masters × (1 + replicas_per_master) RedisServer
// nodes with --cluster-enabled yes (each with its cluster bus on a second free port,
// --cluster-port), joined by `redis-cli --cluster create ... --cluster-replicas N
// --cluster-yes` (the masters get equal slot ranges). Start() returns once every node
// says cluster_state:ok, they agree on who serves every slot, and every replica's link
// to its master is up. Nodes are numbered 0..size()-1 in start order: redis-cli makes
// the first `masters` of them the masters at first. Node roles change with failovers,
// so the methods that care (MasterOfSlot, Masters) ask the cluster, not the numbering.
class RedisCluster {
 public:
  // NotFound when redis-server or redis-cli cannot be found; Unavailable (with what
  // failed) when the cluster does not come up within start_timeout.
  static absl::StatusOr<std::unique_ptr<RedisCluster>> Start(RedisClusterOptions options = {});
  ~RedisCluster();  // kills every node
  RedisCluster(const RedisCluster&) = delete;
  RedisCluster& operator=(const RedisCluster&) = delete;

  int size() const { return static_cast<int>(nodes_.size()); }
  RedisServer& node(int i) { return *nodes_[i]; }
  const RedisServer& node(int i) const { return *nodes_[i]; }
  // "127.0.0.1:<port>" of every node, in node order: the seeds to give a client.
  std::vector<std::string> SeedAddresses() const;
  // The node's cluster id (CLUSTER MYID).
  absl::StatusOr<std::string> NodeId(int i) const;

  // Who serves what, as a running node sees it: the node serving `slot` (or the slot of
  // `key`) as master; every node that serves slots as master, in slot order.
  absl::StatusOr<int> MasterOfSlot(int slot) const;
  absl::StatusOr<int> MasterOfKey(std::string_view key) const;
  absl::StatusOr<std::vector<int>> Masters() const;

  // SIGKILLs node i, as a crash would (RedisServer::Stop).
  void Kill(int i) { nodes_[i]->Stop(); }
  // Kills the i-th master of Masters() (0: the one serving slot 0), or the node serving
  // `slot`; returns the killed node's index.
  absl::StatusOr<int> KillMaster(int i);
  absl::StatusOr<int> KillMasterOfSlot(int slot);
  // Brings a killed node back on its port, with its nodes.conf: it rejoins the cluster
  // as the same node (a replica, when it was failed over meanwhile). Empty of data.
  absl::Status RestartNode(int i);
  // Waits until the running nodes serve every slot again (after Kill, a replica's
  // promotion) and are healthy as Start() requires: cluster_state:ok on each, the same
  // slot owners on each, every replica's link up. Unavailable, saying what was still
  // wrong, on timeout.
  absl::Status WaitUntilHealthy(absl::Duration timeout = absl::Seconds(15));
  // The same, named for its use after killing a master.
  absl::Status WaitForFailover(absl::Duration timeout = absl::Seconds(15)) {
    return WaitUntilHealthy(timeout);
  }

  // Moving a slot to another master, as `redis-cli --cluster reshard` does, in its
  // three steps (so that a test can act between them):
  //   BeginMigration: the target IMPORTING, the owner MIGRATING. The owner now answers
  //     ASK for the slot's keys it no longer has (and for new keys);
  //   MigrateKeys: MIGRATE the listed keys (all of the slot's, when empty) to the
  //     target;
  //   FinishMigration: CLUSTER SETSLOT <slot> NODE <target> on the target, the old
  //     owner and every other master. Everyone answers MOVED to the target from then on.
  absl::Status BeginMigration(int slot, int to);
  absl::Status MigrateKeys(int slot, int to, const std::vector<std::string>& keys = {});
  absl::Status FinishMigration(int slot, int to);
  // The three at once.
  absl::Status MoveSlot(int slot, int to);

  // RedisServer::Call on node i.
  absl::StatusOr<std::string> Call(int i, const std::vector<std::string>& argv) const {
    return nodes_[i]->Call(argv);
  }

 private:
  struct NodeView;
  explicit RedisCluster(RedisClusterOptions options) : options_(std::move(options)) {}
  absl::Status StartNodes(const std::string& server_binary);
  absl::Status Create(const std::string& cli_binary);
  // CLUSTER NODES of a running node, parsed; `from` -1: the first running node.
  absl::StatusOr<std::vector<NodeView>> View(int from = -1) const;
  int IndexOfPort(int port) const;
  // Why the running nodes are not healthy yet; empty when they are.
  std::string Unhealthy() const;

  const RedisClusterOptions options_;
  std::vector<std::unique_ptr<RedisServer>> nodes_;
  std::string dir_;  // redis-cli's output, removed by the destructor
};

}  // namespace blockserve::kv_store::testing

#endif  // BLOCKSERVE_KV_STORE_REDIS_TESTING_REDIS_SERVER_H_
