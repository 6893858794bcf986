// ServerProcess: a BlockServe server binary run as a child process for end-to-end
// tests. Start() launches it with --port=0 (the caller adds the other flags), reads
// its stdout/stderr line by line, and returns once the JSON "listening" line (see
// common/server.h) names the bound port. The log is kept for failure messages and
// written to $TEST_UNDECLARED_OUTPUTS_DIR/<name>.log when Bazel sets it.
//
// The child gets SIGKILL if the thread that started it exits (PR_SET_PDEATHSIG), so a
// crashed test leaves nothing behind: start processes from the test's main thread.
#ifndef BLOCKSERVE_TESTS_SERVER_PROCESS_H_
#define BLOCKSERVE_TESTS_SERVER_PROCESS_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace blockserve::testing {

// Path of a runfile given relative to the workspace root, e.g. "router/router".
std::string RunfilePath(const std::string& path);

struct ProcessOptions {
  std::string name;    // for logs, e.g. "decoder-1"
  std::string binary;  // absolute path, e.g. RunfilePath("decoder/decoder")
  std::vector<std::string> args;  // --port=0 and --host=127.0.0.1 are added
  absl::Duration start_timeout = absl::Seconds(60);
};

class ServerProcess {
 public:
  // Launches the binary and waits for its "listening" line. Fails with the log tail when
  // the process exits first or the timeout passes (the process is then killed).
  static absl::StatusOr<std::unique_ptr<ServerProcess>> Start(ProcessOptions options);

  ~ServerProcess();  // Kill() if still running
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  int port() const { return port_; }
  std::string address() const;  // "127.0.0.1:<port>"
  pid_t pid() const { return pid_; }
  const std::string& name() const { return options_.name; }

  // SIGTERM, then waits up to `grace` for the exit (SIGKILL after that). Returns the
  // exit code (0 = clean), or 128 + signal number when a signal ended it.
  int Terminate(absl::Duration grace = absl::Seconds(15));
  // SIGKILL, the way a crash ends a process, and reaps it.
  void Kill();
  bool Running();

  // The last `lines` lines of the process's output.
  std::string LogTail(int lines = 30) const;
  // True once a log line contains `needle`.
  bool LogContains(const std::string& needle) const;

 private:
  explicit ServerProcess(ProcessOptions options) : options_(std::move(options)) {}
  absl::Status Launch();
  void ReadOutput(int fd);
  int Reap(bool block);

  const ProcessOptions options_;
  pid_t pid_ = -1;
  int exit_code_ = -1;  // set once reaped
  int port_ = 0;
  std::thread reader_;
  mutable absl::Mutex mu_;
  std::vector<std::string> lines_ ABSL_GUARDED_BY(mu_);
  int listening_port_ ABSL_GUARDED_BY(mu_) = 0;
  bool eof_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace blockserve::testing

#endif  // BLOCKSERVE_TESTS_SERVER_PROCESS_H_
