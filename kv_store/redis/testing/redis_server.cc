#include "kv_store/redis/testing/redis_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "kv_store/redis/testing/redis_server_internal.h"

namespace blockserve::kv_store::testing {
namespace {

bool IsExecutable(const std::string& path) { return access(path.c_str(), X_OK) == 0; }

}  // namespace

namespace internal {

absl::StatusOr<std::string> FindBinary(const std::string& requested, const std::string& name,
                                       const char* env_name) {
  if (!requested.empty()) {
    if (IsExecutable(requested)) return requested;
    return absl::NotFoundError(
        absl::StrCat(name, " binary '", requested, "' is not executable"));
  }
  if (const char* env = getenv(env_name); env != nullptr && *env != '\0') {
    if (IsExecutable(env)) return std::string(env);
    return absl::NotFoundError(absl::StrCat("$", env_name, "='", env, "' is not executable"));
  }
  std::vector<std::string> dirs;
  if (const char* path = getenv("PATH"); path != nullptr) {
    for (absl::string_view dir : absl::StrSplit(path, ':', absl::SkipEmpty()))
      dirs.emplace_back(dir);
  }
  for (const char* dir : {"/usr/bin", "/usr/local/bin", "/usr/sbin"}) dirs.emplace_back(dir);
  for (const std::string& dir : dirs) {
    std::string candidate = dir + "/" + name;
    if (IsExecutable(candidate)) return candidate;
  }
  return absl::NotFoundError(absl::StrCat(
      name, " not found on $PATH (nor in /usr/bin, /usr/local/bin, /usr/sbin): install the "
      "Debian packages `redis-server` and `redis-tools` (scripts/setup.sh does) or set $",
      env_name));
}

absl::StatusOr<int> PickFreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return absl::InternalError(absl::StrCat("socket: ", strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    const std::string error = strerror(errno);
    close(fd);
    return absl::InternalError(absl::StrCat("cannot pick a free loopback port: ", error));
  }
  close(fd);
  return ntohs(addr.sin_port);
}

absl::StatusOr<std::string> MakeTempDir() {
  const char* base = getenv("TEST_TMPDIR");
  std::string pattern =
      absl::StrCat(base != nullptr && *base != '\0' ? base : "/tmp", "/redis-XXXXXX");
  if (mkdtemp(pattern.data()) == nullptr) {
    return absl::InternalError(absl::StrCat("mkdtemp(", pattern, "): ", strerror(errno)));
  }
  return pattern;
}

}  // namespace internal

namespace {

struct ContextDeleter {
  void operator()(redisContext* c) const { redisFree(c); }
};
using ContextPtr = std::unique_ptr<redisContext, ContextDeleter>;
struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using ReplyPtr = std::unique_ptr<redisReply, ReplyDeleter>;

}  // namespace

RedisServer::RedisServer(std::string binary, int port, std::string dir, RedisServerOptions options)
    : binary_(std::move(binary)), port_(port), dir_(std::move(dir)), options_(std::move(options)) {}

absl::StatusOr<std::unique_ptr<RedisServer>> RedisServer::Start(RedisServerOptions options) {
  absl::StatusOr<std::string> binary =
      internal::FindBinary(options.binary, "redis-server", "REDIS_SERVER");
  if (!binary.ok()) return binary.status();
  const int attempts = options.port == 0 ? 3 : 1;
  absl::Status last;
  for (int attempt = 0; attempt < attempts; ++attempt) {
    int port = options.port;
    if (port == 0) {
      absl::StatusOr<int> picked = internal::PickFreePort();
      if (!picked.ok()) return picked.status();
      port = *picked;
    }
    absl::StatusOr<std::string> dir = internal::MakeTempDir();
    if (!dir.ok()) return dir.status();
    std::unique_ptr<RedisServer> server(new RedisServer(*binary, port, *dir, options));
    last = server->Launch();
    if (last.ok()) last = server->WaitUntilReady();
    if (last.ok()) return server;
  }
  return last;
}

RedisServer::~RedisServer() {
  Stop();
  std::error_code ignored;
  std::filesystem::remove_all(dir_, ignored);
}

absl::Status RedisServer::Launch() {
  const std::vector<std::string> args = {
      binary_,  "--port",    absl::StrCat(port_), "--bind",      "127.0.0.1",
      "--save", "",          "--appendonly",      "no",          "--dir",
      dir_,     "--logfile", dir_ + "/redis.log", "--daemonize", "no"};
  std::vector<std::string> all = args;
  if (!options_.password.empty()) {
    all.push_back("--requirepass");
    all.push_back(options_.password);
  }
  all.insert(all.end(), options_.extra_args.begin(), options_.extra_args.end());
  std::vector<char*> argv;
  for (std::string& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);

  // Everything the child needs is prepared before fork(): after it, only
  // async-signal-safe calls are allowed in a multithreaded parent.
  const int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid < 0) {
    if (devnull >= 0) close(devnull);
    return absl::InternalError(absl::StrCat("fork: ", strerror(errno)));
  }
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    if (devnull >= 0) {
      dup2(devnull, STDIN_FILENO);
      dup2(devnull, STDOUT_FILENO);
      dup2(devnull, STDERR_FILENO);
    }
    execv(argv[0], argv.data());
    _exit(127);
  }
  if (devnull >= 0) close(devnull);
  pid_ = pid;
  return absl::OkStatus();
}

absl::Status RedisServer::WaitUntilReady() {
  const absl::Time deadline = absl::Now() + options_.start_timeout;
  // "process_id:<pid>" in INFO proves the server answering is ours, not another one that
  // happened to hold the port.
  const std::string own_pid = absl::StrCat("process_id:", pid_, "\r\n");
  while (absl::Now() < deadline) {
    int wstatus = 0;
    if (waitpid(pid_, &wstatus, WNOHANG) == pid_) {
      pid_ = -1;
      return absl::UnavailableError(absl::StrCat("redis-server on port ", port_,
                                                 " exited during startup; log tail:\n", LogTail()));
    }
    absl::StatusOr<std::string> info = Call({"INFO", "server"});
    if (info.ok() && absl::StrContains(*info, own_pid)) return absl::OkStatus();
    absl::SleepFor(absl::Milliseconds(10));
  }
  Stop();
  return absl::UnavailableError(
      absl::StrCat("redis-server on port ", port_, " did not answer within ",
                   absl::FormatDuration(options_.start_timeout), "; log tail:\n", LogTail()));
}

void RedisServer::Stop() {
  if (pid_ <= 0) return;
  kill(pid_, SIGKILL);
  int wstatus = 0;
  while (waitpid(pid_, &wstatus, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

void RedisServer::Pause() {
  if (pid_ > 0) kill(pid_, SIGSTOP);
}

void RedisServer::Resume() {
  if (pid_ > 0) kill(pid_, SIGCONT);
}

absl::Status RedisServer::Restart() {
  Stop();
  absl::Status launched = Launch();
  if (!launched.ok()) return launched;
  return WaitUntilReady();
}

absl::StatusOr<std::string> RedisServer::Call(const std::vector<std::string>& argv) const {
  ContextPtr c(
      redisConnectWithTimeout("127.0.0.1", port_, absl::ToTimeval(absl::Milliseconds(500))));
  if (c == nullptr || c->err != 0) {
    return absl::UnavailableError(absl::StrCat("cannot connect to redis on port ", port_, ": ",
                                               c == nullptr ? "out of memory" : c->errstr));
  }
  redisSetTimeout(c.get(), absl::ToTimeval(absl::Seconds(10)));
  if (!options_.password.empty()) {
    const char* auth[] = {"AUTH", options_.password.c_str()};
    const size_t lens[] = {4, options_.password.size()};
    ReplyPtr reply(static_cast<redisReply*>(redisCommandArgv(c.get(), 2, auth, lens)));
    if (reply == nullptr || reply->type == REDIS_REPLY_ERROR) {
      return absl::UnavailableError(absl::StrCat("redis on port ", port_, " refused AUTH"));
    }
  }
  std::vector<const char*> args;
  std::vector<size_t> lens;
  for (const std::string& a : argv) {
    args.push_back(a.data());
    lens.push_back(a.size());
  }
  ReplyPtr reply(static_cast<redisReply*>(
      redisCommandArgv(c.get(), static_cast<int>(args.size()), args.data(), lens.data())));
  if (reply == nullptr) {
    return absl::UnavailableError(absl::StrCat("redis on port ", port_, ": ", c->errstr));
  }
  switch (reply->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
      return std::string(reply->str, reply->len);
    case REDIS_REPLY_INTEGER:
      return absl::StrCat(reply->integer);
    case REDIS_REPLY_NIL:
      return absl::NotFoundError("nil reply");
    case REDIS_REPLY_ERROR:
      return absl::InternalError(std::string(reply->str, reply->len));
    case REDIS_REPLY_ARRAY: {
      std::vector<std::string> lines;
      for (size_t i = 0; i < reply->elements; ++i) {
        const redisReply& e = *reply->element[i];
        if (e.type == REDIS_REPLY_STRING || e.type == REDIS_REPLY_STATUS) {
          lines.emplace_back(e.str, e.len);
        } else if (e.type == REDIS_REPLY_INTEGER) {
          lines.push_back(absl::StrCat(e.integer));
        } else {
          return absl::UnimplementedError("arrays of arrays are not supported");
        }
      }
      return absl::StrJoin(lines, "\n");
    }
    default:
      return absl::UnimplementedError(
          absl::StrCat("reply type ", reply->type, " is not supported"));
  }
}

std::string RedisServer::LogTail() const {
  std::ifstream in(dir_ + "/redis.log");
  std::stringstream buffer;
  buffer << in.rdbuf();
  std::string log = buffer.str();
  constexpr size_t kTail = 2000;
  return log.size() > kTail ? log.substr(log.size() - kTail) : log;
}

}  // namespace blockserve::kv_store::testing
