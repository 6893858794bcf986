// RedisCluster (declared in redis_server.h): a Redis Cluster of RedisServer nodes.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "kv_store/redis/testing/redis_server.h"
#include "kv_store/redis/testing/redis_server_internal.h"

namespace blockserve::kv_store::testing {
namespace {

constexpr int kSlots = 16384;

// Runs `argv` to its end (at most `timeout`) with stdout and stderr into `log`.
absl::Status RunToEnd(std::vector<std::string> argv, const std::string& log,
                      absl::Duration timeout) {
  std::vector<char*> args;
  for (std::string& a : argv) args.push_back(a.data());
  args.push_back(nullptr);
  // Everything the child needs is prepared before fork().
  const int out = open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  const int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    const std::string error = strerror(errno);
    if (out >= 0) close(out);
    if (devnull >= 0) close(devnull);
    return absl::InternalError(absl::StrCat("fork: ", error));
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    if (devnull >= 0) dup2(devnull, STDIN_FILENO);
    if (out >= 0) {
      dup2(out, STDOUT_FILENO);
      dup2(out, STDERR_FILENO);
    }
    execv(args[0], args.data());
    _exit(127);
  }
  if (out >= 0) close(out);
  if (devnull >= 0) close(devnull);
  const absl::Time deadline = absl::Now() + timeout;
  int wstatus = 0;
  for (;;) {
    const pid_t done = waitpid(pid, &wstatus, WNOHANG);
    if (done == pid) break;
    if (done < 0 && errno != EINTR) {
      return absl::InternalError(absl::StrCat("waitpid: ", strerror(errno)));
    }
    if (absl::Now() > deadline) {
      kill(pid, SIGKILL);
      while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
      }
      return absl::DeadlineExceededError(
          absl::StrCat(argv[0], " did not finish within ", absl::FormatDuration(timeout)));
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  if (WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0) return absl::OkStatus();
  std::ifstream in(log);
  std::stringstream text;
  text << in.rdbuf();
  return absl::InternalError(
      absl::StrCat(argv[0], " failed (wait status ", wstatus, "): ", text.str()));
}

// "0-5460" or "5461"; false for "[5461->-<id>]" (a migration mark) and garbage.
bool ParseSlotRange(absl::string_view text, int& first, int& last) {
  const std::vector<absl::string_view> ends = absl::StrSplit(text, '-');
  if (ends.size() == 1) {
    if (!absl::SimpleAtoi(ends[0], &first)) return false;
    last = first;
    return true;
  }
  return ends.size() == 2 && absl::SimpleAtoi(ends[0], &first) && absl::SimpleAtoi(ends[1], &last);
}

}  // namespace

// One line of CLUSTER NODES.
struct RedisCluster::NodeView {
  std::string id;
  int port = 0;
  int index = -1;  // into nodes_; -1: not one of ours
  bool master = false;
  bool failed = false;  // "fail" or "fail?"
  std::vector<std::pair<int, int>> slots;
};

absl::StatusOr<std::unique_ptr<RedisCluster>> RedisCluster::Start(RedisClusterOptions options) {
  if (options.masters < 1 || options.replicas_per_master < 0) {
    return absl::InvalidArgumentError("a cluster needs a master and no negative replica count");
  }
  absl::StatusOr<std::string> server =
      internal::FindBinary(options.server_binary, "redis-server", "REDIS_SERVER");
  if (!server.ok()) return server.status();
  absl::StatusOr<std::string> cli =
      internal::FindBinary(options.cli_binary, "redis-cli", "REDIS_CLI");
  if (!cli.ok()) return cli.status();
  absl::StatusOr<std::string> dir = internal::MakeTempDir();
  if (!dir.ok()) return dir.status();
  std::unique_ptr<RedisCluster> cluster(new RedisCluster(std::move(options)));
  cluster->dir_ = *std::move(dir);
  const absl::Time deadline = absl::Now() + cluster->options_.start_timeout;
  absl::Status status = cluster->StartNodes(*server);
  if (status.ok()) status = cluster->Create(*cli);
  if (status.ok()) status = cluster->WaitUntilHealthy(deadline - absl::Now());
  if (!status.ok()) return status;
  return cluster;
}

RedisCluster::~RedisCluster() {
  nodes_.clear();
  if (!dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
}

absl::Status RedisCluster::StartNodes(const std::string& server_binary) {
  const int count = options_.masters * (1 + options_.replicas_per_master);
  for (int i = 0; i < count; ++i) {
    absl::Status last = absl::UnavailableError("no two free ports");
    for (int attempt = 0; attempt < 3 && i >= size(); ++attempt) {
      // Two free ports: the clients' and the cluster bus's (by default the bus is the
      // port + 10000, which may be taken, or over 65535).
      absl::StatusOr<int> port = internal::PickFreePort();
      absl::StatusOr<int> bus = internal::PickFreePort();
      if (!port.ok()) return port.status();
      if (!bus.ok()) return bus.status();
      if (*port == *bus) continue;
      RedisServerOptions o;
      o.binary = server_binary;
      o.port = *port;
      o.password = options_.password;
      o.extra_args = {
          "--cluster-enabled", "yes", "--cluster-port", absl::StrCat(*bus),
          "--cluster-node-timeout", absl::StrCat(absl::ToInt64Milliseconds(options_.node_timeout)),
          "--cluster-require-full-coverage", options_.require_full_coverage ? "yes" : "no",
          // A replica's first sync at once, not after the default 5 s.
          "--repl-diskless-sync-delay", "0"};
      if (!options_.password.empty()) {
        o.extra_args.push_back("--masterauth");
        o.extra_args.push_back(options_.password);
      }
      o.extra_args.insert(o.extra_args.end(), options_.extra_args.begin(),
                          options_.extra_args.end());
      absl::StatusOr<std::unique_ptr<RedisServer>> node = RedisServer::Start(std::move(o));
      if (node.ok()) {
        nodes_.push_back(*std::move(node));
      } else {
        last = node.status();
      }
    }
    if (i >= size()) {
      return absl::UnavailableError(
          absl::StrCat("cluster node ", i, " did not start: ", last.message()));
    }
  }
  return absl::OkStatus();
}

absl::Status RedisCluster::Create(const std::string& cli_binary) {
  std::vector<std::string> argv = {cli_binary, "--cluster", "create"};
  for (const std::string& address : SeedAddresses()) argv.push_back(address);
  argv.insert(argv.end(),
              {"--cluster-replicas", absl::StrCat(options_.replicas_per_master), "--cluster-yes"});
  if (!options_.password.empty()) {
    argv.insert(argv.end(), {"-a", options_.password, "--no-auth-warning"});
  }
  return RunToEnd(std::move(argv), dir_ + "/create.log", options_.start_timeout);
}

std::vector<std::string> RedisCluster::SeedAddresses() const {
  std::vector<std::string> addresses;
  for (const auto& node : nodes_) addresses.push_back(absl::StrCat("127.0.0.1:", node->port()));
  return addresses;
}

absl::StatusOr<std::string> RedisCluster::NodeId(int i) const {
  return Call(i, {"CLUSTER", "MYID"});
}

int RedisCluster::IndexOfPort(int port) const {
  for (int i = 0; i < size(); ++i) {
    if (nodes_[i]->port() == port) return i;
  }
  return -1;
}

absl::StatusOr<std::vector<RedisCluster::NodeView>> RedisCluster::View(int from) const {
  absl::Status last = absl::UnavailableError("no cluster node is running");
  for (int i = 0; i < size(); ++i) {
    if ((from >= 0 && i != from) || !nodes_[i]->running()) continue;
    absl::StatusOr<std::string> text = Call(i, {"CLUSTER", "NODES"});
    if (!text.ok()) {
      last = text.status();
      continue;
    }
    std::vector<NodeView> view;
    for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipWhitespace())) {
      // <id> <ip:port@bus[,hostname]> <flags> <master> <ping> <pong> <epoch> <link> <slot>...
      const std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipEmpty());
      if (f.size() < 8) continue;
      NodeView n;
      n.id = std::string(f[0]);
      const absl::string_view address = f[1].substr(0, f[1].find('@'));
      const size_t colon = address.rfind(':');
      if (colon != absl::string_view::npos) {
        (void)absl::SimpleAtoi(address.substr(colon + 1), &n.port);
      }
      n.index = IndexOfPort(n.port);
      for (absl::string_view flag : absl::StrSplit(f[2], ',')) {
        n.master |= flag == "master";
        n.failed |= flag == "fail" || flag == "fail?";
      }
      for (size_t k = 8; k < f.size(); ++k) {
        int first = 0, last_slot = 0;
        if (ParseSlotRange(f[k], first, last_slot)) n.slots.emplace_back(first, last_slot);
      }
      view.push_back(std::move(n));
    }
    return view;
  }
  return last;
}

absl::StatusOr<int> RedisCluster::MasterOfSlot(int slot) const {
  absl::StatusOr<std::vector<NodeView>> view = View();
  if (!view.ok()) return view.status();
  for (const NodeView& n : *view) {
    if (!n.master) continue;
    for (const auto& [first, last] : n.slots) {
      if (slot < first || slot > last) continue;
      if (n.index < 0) return absl::InternalError("a node that is not ours serves the slot");
      return n.index;
    }
  }
  return absl::NotFoundError(absl::StrCat("no master serves slot ", slot));
}

absl::StatusOr<int> RedisCluster::MasterOfKey(std::string_view key) const {
  for (int i = 0; i < size(); ++i) {
    if (!nodes_[i]->running()) continue;
    absl::StatusOr<std::string> slot = Call(i, {"CLUSTER", "KEYSLOT", std::string(key)});
    if (!slot.ok()) return slot.status();
    int n = 0;
    if (!absl::SimpleAtoi(*slot, &n)) return absl::InternalError("CLUSTER KEYSLOT: " + *slot);
    return MasterOfSlot(n);
  }
  return absl::UnavailableError("no cluster node is running");
}

absl::StatusOr<std::vector<int>> RedisCluster::Masters() const {
  absl::StatusOr<std::vector<NodeView>> view = View();
  if (!view.ok()) return view.status();
  std::vector<std::pair<int, int>> by_first_slot;
  for (const NodeView& n : *view) {
    if (n.master && !n.slots.empty() && n.index >= 0) {
      by_first_slot.emplace_back(n.slots.front().first, n.index);
    }
  }
  std::sort(by_first_slot.begin(), by_first_slot.end());
  std::vector<int> masters;
  for (const auto& [slot, index] : by_first_slot) masters.push_back(index);
  return masters;
}

absl::StatusOr<int> RedisCluster::KillMaster(int i) {
  absl::StatusOr<std::vector<int>> masters = Masters();
  if (!masters.ok()) return masters.status();
  if (i < 0 || i >= static_cast<int>(masters->size())) {
    return absl::OutOfRangeError(absl::StrCat("there are ", masters->size(), " masters"));
  }
  Kill((*masters)[i]);
  return (*masters)[i];
}

absl::StatusOr<int> RedisCluster::KillMasterOfSlot(int slot) {
  absl::StatusOr<int> master = MasterOfSlot(slot);
  if (!master.ok()) return master.status();
  Kill(*master);
  return *master;
}

absl::Status RedisCluster::RestartNode(int i) { return nodes_[i]->Restart(); }

std::string RedisCluster::Unhealthy() const {
  std::vector<int> reference;  // the slot owners as the first running node sees them
  for (int i = 0; i < size(); ++i) {
    if (!nodes_[i]->running()) continue;
    absl::StatusOr<std::string> info = Call(i, {"CLUSTER", "INFO"});
    if (!info.ok()) return absl::StrCat("node ", i, ": ", info.status().message());
    if (!absl::StrContains(*info, "cluster_state:ok")) {
      return absl::StrCat("node ", i, " does not say cluster_state:ok");
    }
    absl::StatusOr<std::vector<NodeView>> view = View(i);
    if (!view.ok()) return absl::StrCat("node ", i, ": ", view.status().message());
    std::vector<int> owner(kSlots, -1);
    bool replica = false;
    for (const NodeView& n : *view) {
      if (n.index == i && !n.master) replica = true;
      if (!n.master || n.failed) continue;
      for (const auto& [first, last] : n.slots) {
        for (int slot = std::max(first, 0); slot <= last && slot < kSlots; ++slot) {
          owner[slot] = n.index;
        }
      }
    }
    for (int slot = 0; slot < kSlots; ++slot) {
      if (owner[slot] < 0 || !nodes_[owner[slot]]->running()) {
        return absl::StrCat("node ", i, " sees no running master for slot ", slot);
      }
    }
    if (reference.empty()) {
      reference = owner;
    } else if (owner != reference) {
      return absl::StrCat("node ", i, " sees other slot owners than the first running node");
    }
    if (replica) {
      absl::StatusOr<std::string> replication = Call(i, {"INFO", "replication"});
      if (!replication.ok() || !absl::StrContains(*replication, "master_link_status:up")) {
        return absl::StrCat("replica ", i, "'s link to its master is not up");
      }
    }
  }
  if (reference.empty()) return "no cluster node is running";
  return "";
}

absl::Status RedisCluster::WaitUntilHealthy(absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  std::string why = Unhealthy();
  while (!why.empty()) {
    if (absl::Now() > deadline) {
      return absl::UnavailableError(absl::StrCat("the redis cluster is not healthy after ",
                                                 absl::FormatDuration(timeout), ": ", why));
    }
    absl::SleepFor(absl::Milliseconds(50));
    why = Unhealthy();
  }
  return absl::OkStatus();
}

absl::Status RedisCluster::BeginMigration(int slot, int to) {
  absl::StatusOr<int> from = MasterOfSlot(slot);
  if (!from.ok()) return from.status();
  if (*from == to) return absl::InvalidArgumentError("the slot is served there already");
  absl::StatusOr<std::string> from_id = NodeId(*from);
  absl::StatusOr<std::string> to_id = NodeId(to);
  if (!from_id.ok()) return from_id.status();
  if (!to_id.ok()) return to_id.status();
  const std::string s = absl::StrCat(slot);
  absl::StatusOr<std::string> done = Call(to, {"CLUSTER", "SETSLOT", s, "IMPORTING", *from_id});
  if (done.ok()) done = Call(*from, {"CLUSTER", "SETSLOT", s, "MIGRATING", *to_id});
  return done.status();
}

absl::Status RedisCluster::MigrateKeys(int slot, int to, const std::vector<std::string>& keys) {
  absl::StatusOr<int> from = MasterOfSlot(slot);
  if (!from.ok()) return from.status();
  std::vector<std::string> moving = keys;
  if (moving.empty()) {
    absl::StatusOr<std::string> listed =
        Call(*from, {"CLUSTER", "GETKEYSINSLOT", absl::StrCat(slot), "100000"});
    if (!listed.ok()) return listed.status();
    moving = absl::StrSplit(*listed, '\n', absl::SkipEmpty());
  }
  if (moving.empty()) return absl::OkStatus();
  std::vector<std::string> argv = {"MIGRATE", "127.0.0.1", absl::StrCat(nodes_[to]->port()),
                                   "",        "0",         "5000"};
  if (!options_.password.empty()) argv.insert(argv.end(), {"AUTH", options_.password});
  argv.push_back("KEYS");
  argv.insert(argv.end(), moving.begin(), moving.end());
  return Call(*from, argv).status();
}

absl::Status RedisCluster::FinishMigration(int slot, int to) {
  absl::StatusOr<int> from = MasterOfSlot(slot);
  if (!from.ok()) return from.status();
  absl::StatusOr<std::string> to_id = NodeId(to);
  if (!to_id.ok()) return to_id.status();
  absl::StatusOr<std::vector<int>> masters = Masters();
  if (!masters.ok()) return masters.status();
  // The target first, then the old owner, then the other masters (as redis-cli does).
  std::vector<int> order = {to};
  if (*from != to) order.push_back(*from);
  for (int m : *masters) {
    if (m != to && m != *from) order.push_back(m);
  }
  for (int m : order) {
    absl::StatusOr<std::string> done =
        Call(m, {"CLUSTER", "SETSLOT", absl::StrCat(slot), "NODE", *to_id});
    if (!done.ok()) return done.status();
  }
  return absl::OkStatus();
}

absl::Status RedisCluster::MoveSlot(int slot, int to) {
  absl::Status status = BeginMigration(slot, to);
  if (status.ok()) status = MigrateKeys(slot, to);
  if (status.ok()) status = FinishMigration(slot, to);
  return status;
}

}  // namespace blockserve::kv_store::testing
