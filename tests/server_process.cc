#include "tests/server_process.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace blockserve::testing {
namespace {

// The port of a {"event":"listening","port":N|"N",...} line, or 0.
int ListeningPort(const std::string& line) {
  if (line.find("\"listening\"") == std::string::npos) return 0;
  const nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || j.value("event", "") != "listening" || !j.contains("port")) return 0;
  const nlohmann::json& port = j["port"];
  if (port.is_number_integer()) return port.get<int>();
  if (port.is_string()) return std::atoi(port.get<std::string>().c_str());
  return 0;
}

}  // namespace

std::string RunfilePath(const std::string& path) {
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  if (srcdir == nullptr) return path;
  return absl::StrCat(srcdir, "/", workspace != nullptr ? workspace : "blockserve", "/", path);
}

absl::StatusOr<std::unique_ptr<ServerProcess>> ServerProcess::Start(ProcessOptions options) {
  std::unique_ptr<ServerProcess> p(new ServerProcess(std::move(options)));
  if (absl::Status s = p->Launch(); !s.ok()) return s;
  const absl::Time give_up = absl::Now() + p->options_.start_timeout;
  while (true) {
    {
      absl::MutexLock lock(&p->mu_);
      auto ready = [&p]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) {
        return p->listening_port_ != 0 || p->eof_;
      };
      p->mu_.AwaitWithTimeout(absl::Condition(&ready), absl::Milliseconds(50));
      if (p->listening_port_ != 0) {
        p->port_ = p->listening_port_;
        return p;
      }
    }
    if (p->Reap(/*block=*/false) >= 0 || absl::Now() > give_up) break;
  }
  const bool exited = p->exit_code_ >= 0;
  p->Kill();
  return absl::UnavailableError(absl::StrCat(
      p->options_.name, exited ? absl::StrCat(" exited with ", p->exit_code_) : " timed out",
      " before listening; command: ", p->options_.binary, " ",
      absl::StrJoin(p->options_.args, " "), "\n--- log tail ---\n", p->LogTail()));
}

absl::Status ServerProcess::Launch() {
  if (access(options_.binary.c_str(), X_OK) != 0) {
    return absl::NotFoundError(absl::StrCat("no executable at ", options_.binary));
  }
  std::vector<std::string> args = {options_.binary, "--host=127.0.0.1", "--port=0"};
  args.insert(args.end(), options_.args.begin(), options_.args.end());
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return absl::InternalError("pipe2 failed");
  const pid_t parent = getpid();
  pid_ = fork();
  if (pid_ < 0) return absl::InternalError("fork failed");
  if (pid_ == 0) {
    // Only async-signal-safe calls until exec.
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(126);
    dup2(fds[1], STDOUT_FILENO);
    dup2(fds[1], STDERR_FILENO);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, nullptr);
    execv(argv[0], argv.data());
    _exit(127);
  }
  close(fds[1]);
  reader_ = std::thread([this, fd = fds[0]] { ReadOutput(fd); });
  return absl::OkStatus();
}

void ServerProcess::ReadOutput(int fd) {
  FILE* log = nullptr;
  if (const char* dir = std::getenv("TEST_UNDECLARED_OUTPUTS_DIR")) {
    log = std::fopen(absl::StrCat(dir, "/", options_.name, ".log").c_str(), "a");
  }
  std::string pending;
  char buf[4096];
  while (true) {
    const ssize_t n = read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (log != nullptr) std::fwrite(buf, 1, n, log);
    pending.append(buf, n);
    size_t nl;
    while ((nl = pending.find('\n')) != std::string::npos) {
      std::string line = pending.substr(0, nl);
      pending.erase(0, nl + 1);
      const int port = ListeningPort(line);
      absl::MutexLock lock(&mu_);
      if (port != 0 && listening_port_ == 0) listening_port_ = port;
      lines_.push_back(std::move(line));
    }
  }
  if (log != nullptr) std::fclose(log);
  close(fd);
  absl::MutexLock lock(&mu_);
  if (!pending.empty()) lines_.push_back(pending);
  eof_ = true;
}

int ServerProcess::Reap(bool block) {
  if (exit_code_ >= 0 || pid_ <= 0) return exit_code_;
  int status = 0;
  const pid_t r = waitpid(pid_, &status, block ? 0 : WNOHANG);
  if (r == pid_) {
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }
  return exit_code_;
}

std::string ServerProcess::address() const { return absl::StrCat("127.0.0.1:", port_); }

bool ServerProcess::Running() { return Reap(/*block=*/false) < 0; }

int ServerProcess::Terminate(absl::Duration grace) {
  if (!Running()) return exit_code_;
  kill(pid_, SIGTERM);
  const absl::Time give_up = absl::Now() + grace;
  while (Running() && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(10));
  if (Running()) Kill();
  return exit_code_;
}

void ServerProcess::Kill() {
  if (!Running()) return;
  kill(pid_, SIGKILL);
  Reap(/*block=*/true);
}

ServerProcess::~ServerProcess() {
  Kill();
  if (reader_.joinable()) reader_.join();
}

std::string ServerProcess::LogTail(int lines) const {
  absl::MutexLock lock(&mu_);
  const size_t from = lines_.size() > static_cast<size_t>(lines) ? lines_.size() - lines : 0;
  return absl::StrJoin(lines_.begin() + from, lines_.end(), "\n");
}

bool ServerProcess::LogContains(const std::string& needle) const {
  absl::MutexLock lock(&mu_);
  for (const std::string& line : lines_) {
    if (line.find(needle) != std::string::npos) return true;
  }
  return false;
}

}  // namespace blockserve::testing
