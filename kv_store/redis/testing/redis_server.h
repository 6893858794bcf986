// A real `redis-server` child process on a free loopback port, for tests and benchmarks.
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

  // Kills the server (SIGKILL) and reaps it. No-op when already stopped.
  void Stop();
  // Stop(), then a fresh, empty server on the same port; returns once it answers PING.
  absl::Status Restart();
  // Freezes (SIGSTOP) and thaws (SIGCONT) the server: a Redis that accepts connections
  // but never answers.
  void Pause();
  void Resume();

  // Sends one command (binary-safe arguments) on a short-lived connection and returns
  // the reply as text: a status or bulk string as is, an integer in decimal. A nil reply
  // is NotFound, an error reply is Internal. For tests that poke at raw keys. With
  // options.password, the connection authenticates first.
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

}  // namespace blockserve::kv_store::testing

#endif  // BLOCKSERVE_KV_STORE_REDIS_TESTING_REDIS_SERVER_H_
