#include "common/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <functional>
#include <memory>
#include <thread>
#include <utility>

#include <grpcpp/health_check_service_interface.h>

#include "absl/flags/usage_config.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/log.h"

namespace blockserve {
namespace {

sigset_t ShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

// A minimal HTTP/1.0 responder: every GET gets the registry's text. Enough for a
// Prometheus scraper or curl; it serves one connection at a time.
class MetricsHttpServer {
 public:
  MetricsHttpServer(MetricsRegistry* metrics, int port) : metrics_(metrics) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    addr.sin_port = htons(port);
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd_, 16) != 0) {
      LogEvent("metrics_bind_failed", {{"port", absl::StrCat(port)}});
      close(fd_);
      fd_ = -1;
      return;
    }
    thread_ = std::thread([this] { Loop(); });
  }
  ~MetricsHttpServer() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) close(fd_);
  }

 private:
  void Loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (poll(&p, 1, 200) <= 0) continue;
      const int c = accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      char buf[1024];
      (void)!read(c, buf, sizeof(buf));  // the request line is not needed
      const std::string body = metrics_->RenderText();
      const std::string resp = absl::StrCat(
          "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: ",
          body.size(), "\r\n\r\n", body);
      (void)!write(c, resp.data(), resp.size());
      close(c);
    }
  }
  MetricsRegistry* metrics_;
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// A shutdown signal that reached a thread not blocking it (one started before main,
// e.g. a BLAS pool) while no thread was in sigwait: counted here instead of killing.
std::atomic<int> stray_signals{0};
std::atomic<int> last_stray_signal{0};
void CountStraySignal(int sig) {
  last_stray_signal.store(sig);
  stray_signals.fetch_add(1);
}

// Waits up to `timeout` for one of `set`; true (and *sig set) when one arrived.
bool WaitForSignal(const sigset_t& set, absl::Duration timeout, int* sig) {
  const absl::Time deadline = absl::Now() + timeout;
  for (absl::Duration left = timeout; left > absl::ZeroDuration();
       left = deadline - absl::Now()) {
    if (stray_signals.load() > 0) {
      stray_signals.fetch_sub(1);
      *sig = last_stray_signal.load();
      return true;
    }
    left = std::min(left, absl::Milliseconds(50));  // to see stray signals soon
    const timespec ts = absl::ToTimespec(left);
    const int got = sigtimedwait(&set, nullptr, &ts);
    if (got > 0) {
      *sig = got;
      return true;
    }
    if (errno != EINTR && errno != EAGAIN) return false;
  }
  return false;
}

// Keeps the health of "" and of every registered service name equal to what
// `readiness` says: polls it once when constructed, then every `interval` on its own
// thread until Stop().
class ReadinessPoller {
 public:
  ReadinessPoller(grpc::HealthCheckServiceInterface* health,
                  std::function<absl::Status()> readiness, absl::Duration interval)
      : health_(health), readiness_(std::move(readiness)) {
    Poll();
    thread_ = std::thread([this, interval] {
      while (!stop_.WaitForNotificationWithTimeout(interval)) Poll();
    });
  }
  ~ReadinessPoller() { Stop(); }

  // Returns once no poll runs or will run, so that a later status (SIGTERM's
  // NOT_SERVING) is not overwritten.
  void Stop() {
    if (!thread_.joinable()) return;
    stop_.Notify();
    thread_.join();
  }

 private:
  void Poll() {
    const absl::Status ready = readiness_();
    if (ready.ok() == serving_) return;
    serving_ = ready.ok();
    health_->SetServingStatus(serving_);
    LogFields fields = {{"status", serving_ ? "SERVING" : "NOT_SERVING"}};
    if (!serving_) fields.push_back({"why", std::string(ready.message())});
    LogEvent("health", fields);
  }

  grpc::HealthCheckServiceInterface* const health_;
  const std::function<absl::Status()> readiness_;
  bool serving_ = true;  // gRPC's first answer for every registered name
  absl::Notification stop_;
  std::thread thread_;
};

// Builds and starts the gRPC server with the health service; sets *port to the bound
// port. Null when the address cannot be bound.
std::unique_ptr<grpc::Server> StartGrpcServer(const ServerOptions& options,
                                              const std::vector<ServedService>& services,
                                              int* port) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen_address,
                           options.credentials != nullptr ? options.credentials
                                                          : grpc::InsecureServerCredentials(),
                           port);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  for (const ServedService& s : services) builder.RegisterService(s.service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || *port == 0) return nullptr;
  // The default health service knows only ""; the proto promises every service's name.
  for (const ServedService& s : services) {
    server->GetHealthCheckService()->SetServingStatus(s.full_name, true);
  }
  return server;
}

}  // namespace

std::string DefaultAdvertiseAddress(int port) {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0) return absl::StrCat("localhost:", port);
  return absl::StrCat(host, ":", port);
}

void ShowFlagsFromDirectories(std::vector<std::string> dirs) {
  absl::FlagsUsageConfig usage;
  usage.contains_help_flags = [dirs = std::move(dirs)](absl::string_view file) {
    for (const std::string& d : dirs) {
      if (absl::StrContains(file, d)) return true;
    }
    return false;
  };
  usage.contains_helpshort_flags = usage.contains_help_flags;
  absl::SetFlagsUsageConfig(usage);
}

void BlockShutdownSignals() {
  sigset_t set = ShutdownSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

absl::Status RunServer(const ServerOptions& options, const std::vector<ServedService>& services,
                       MetricsRegistry* metrics) {
  SetLogServiceName(options.service_name);
  BlockShutdownSignals();  // in case main() did not; threads started below inherit it
  int port = 0;
  std::unique_ptr<grpc::Server> server = StartGrpcServer(options, services, &port);
  if (server == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen_address));
  }
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  std::unique_ptr<ReadinessPoller> readiness;
  if (options.readiness) {
    readiness = std::make_unique<ReadinessPoller>(health, options.readiness,
                                                  options.readiness_interval);
  }
  std::unique_ptr<MetricsHttpServer> http;
  if (metrics != nullptr && options.metrics_port > 0) {
    http = std::make_unique<MetricsHttpServer>(metrics, options.metrics_port);
  }
  LogEvent("listening", {{"address", options.listen_address}, {"port", absl::StrCat(port)}});
  if (options.on_listening) options.on_listening(port);

  sigset_t set = ShutdownSignals();
  int sig = 0;
  sigwait(&set, &sig);
  // From now on the signal thread is not always inside a wait: catch the others.
  struct sigaction count = {};
  count.sa_handler = CountStraySignal;
  sigaction(SIGTERM, &count, nullptr);
  sigaction(SIGINT, &count, nullptr);
  // NOT_SERVING first: whoever health-checks this server stops picking it while it
  // still answers the calls that arrive before they notice. Readiness no longer counts.
  if (readiness != nullptr) readiness->Stop();
  health->SetServingStatus(false);
  LogEvent("shutting_down", {{"signal", absl::StrCat(sig)},
                             {"health", "NOT_SERVING"},
                             {"drain_delay_ms", absl::StrCat(absl::ToInt64Milliseconds(
                                                    options.drain_delay))}});
  // The signal thread keeps waiting for signals until the end: a signal that no
  // thread waits for goes to a thread that does not block it (a BLAS pool started
  // before main), whose default action kills the process mid-drain.
  if (WaitForSignal(set, options.drain_delay, &sig)) {
    LogEvent("drain_delay_cut_short", {{"signal", absl::StrCat(sig)}});
  }
  if (options.on_shutdown) options.on_shutdown();
  absl::Notification stopped;
  std::thread stopper([&] {
    server->Shutdown(std::chrono::system_clock::now() +
                     absl::ToChronoMilliseconds(options.shutdown_grace));
    server->Wait();
    stopped.Notify();
  });
  while (!stopped.HasBeenNotified()) {
    if (WaitForSignal(set, absl::Milliseconds(100), &sig)) {
      LogEvent("already_shutting_down", {{"signal", absl::StrCat(sig)}});
    }
  }
  stopper.join();
  LogEvent("stopped");
  return absl::OkStatus();
}

}  // namespace blockserve
