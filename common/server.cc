#include "common/server.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include <grpc/grpc.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/support/server_interceptor.h>

#include "absl/flags/usage_config.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
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

// "::1" for "[::1]": the brackets belong to "host:port", not to the address.
std::string Unbracketed(std::string host) {
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return host;
}

// "host" of a gRPC listen address "host:port" ("[::1]:0" gives "[::1]").
std::string HostOf(const std::string& listen_address) {
  const size_t colon = listen_address.rfind(':');
  if (colon == std::string::npos || listen_address.find(']', colon) != std::string::npos) {
    return listen_address;
  }
  return listen_address.substr(0, colon);
}

// "a.b.c.d:port" or "[v6]:port" of a bound socket.
std::string SocketAddress(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  char text[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof(text));
    return absl::StrCat("[", text, "]:", ntohs(a->sin6_port));
  }
  const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
  inet_ntop(AF_INET, &a->sin_addr, text, sizeof(text));
  return absl::StrCat(text, ":", ntohs(a->sin_port));
}

// A listening, non-blocking TCP socket on host:port. `host` is an IPv4 or IPv6 literal
// or a name, which binds the first address getaddrinfo gives for it (as a literal, one
// address: the caller's --metrics_host decides exactly what is exposed).
absl::StatusOr<int> ListenTcp(const std::string& host_or_bracketed, int port) {
  const std::string host = Unbracketed(host_or_bracketed);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string service = absl::StrCat(port);
  const int gai = getaddrinfo(host.c_str(), service.c_str(), &hints, &found);
  if (gai != 0) {
    const std::string what =
        absl::StrCat("metrics endpoint: cannot resolve \"", host, "\": ", gai_strerror(gai));
    return gai == EAI_NONAME ? absl::InvalidArgumentError(what) : absl::UnavailableError(what);
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> free_found(found, &freeaddrinfo);
  const int fd = socket(found->ai_family, found->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("metrics endpoint: socket: ", strerror(errno)));
  }
  const int one = 1, zero = 0;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));  // restarts in TIME_WAIT
  // "::" serves IPv4 too, as gRPC's wildcard does; a narrower v6 address is unaffected.
  if (found->ai_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
  if (bind(fd, found->ai_addr, found->ai_addrlen) != 0 || listen(fd, 64) != 0) {
    const int err = errno;
    close(fd);
    return absl::UnavailableError(absl::StrCat("metrics endpoint: cannot listen on ", host, ":",
                                               port, ": ", strerror(err)));
  }
  return fd;
}

// The plain-HTTP side of every server, on --metrics_host:--metrics_port:
//   GET /metrics   the registry's Prometheus text (a query string is ignored)
//   GET /healthz   200 "SERVING" or 503 "NOT_SERVING", as the gRPC health service answers
//                  for "": for probes that cannot present a client certificate (k8s)
// any other path 404, a method other than GET or HEAD 405, a malformed request 400.
// One thread multiplexes the listener and up to kMaxConnections connections with poll():
// a connection that has not sent its request within kRequestTimeout, or not taken its
// answer within kResponseTimeout, is closed. So a client that connects and sends
// nothing holds one slot for 2 s, never the listener, and other scrapes are answered
// meanwhile.
class MetricsHttpServer {
 public:
  static constexpr absl::Duration kRequestTimeout = absl::Seconds(2);
  static constexpr absl::Duration kResponseTimeout = absl::Seconds(10);
  static constexpr int kMaxConnections = 64;
  static constexpr size_t kMaxRequestBytes = 8 << 10;

  // Takes the listening socket `fd`. `metrics` may be null (an empty exposition).
  MetricsHttpServer(int fd, MetricsRegistry* metrics, std::function<bool()> serving)
      : fd_(fd), metrics_(metrics), serving_(std::move(serving)) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~MetricsHttpServer() {
    stop_ = true;
    thread_.join();
    for (const Connection& c : connections_) close(c.fd);
    close(fd_);
  }

 private:
  struct Connection {
    int fd;
    absl::Time deadline;
    std::string request;   // bytes read so far
    std::string response;  // empty until the request is complete
    size_t sent = 0;
  };

  void Loop() {
    std::vector<pollfd> polled;
    while (!stop_) {
      const bool room = connections_.size() < kMaxConnections;
      polled.assign(1, pollfd{fd_, static_cast<short>(room ? POLLIN : 0), 0});
      absl::Time wake = absl::Now() + absl::Milliseconds(200);  // to see stop_
      for (const Connection& c : connections_) {
        polled.push_back({c.fd, static_cast<short>(c.response.empty() ? POLLIN : POLLOUT), 0});
        wake = std::min(wake, c.deadline);
      }
      const int64_t wait_ms =
          std::max<int64_t>(0, absl::ToInt64Milliseconds(wake - absl::Now()) + 1);
      if (poll(polled.data(), polled.size(), static_cast<int>(wait_ms)) < 0 && errno != EINTR) {
        continue;
      }
      const absl::Time now = absl::Now();
      // Connections first (their pollfds follow the listener's), then new ones.
      std::vector<Connection> open;
      for (size_t i = 0; i < connections_.size(); ++i) {
        Connection& c = connections_[i];
        // The deadline holds even for a client that keeps dripping bytes.
        const bool keep = (polled[i + 1].revents == 0 || Advance(c, now)) && now < c.deadline;
        if (keep) {
          open.push_back(std::move(c));
        } else {
          close(c.fd);
        }
      }
      connections_ = std::move(open);
      if (polled[0].revents & POLLIN) Accept(now);
    }
  }

  void Accept(absl::Time now) {
    while (connections_.size() < kMaxConnections) {
      const int c = accept4(fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (c < 0) return;  // EAGAIN: none left (or an aborted one)
      connections_.push_back({c, now + kRequestTimeout, {}, {}, 0});
    }
  }

  // Reads or writes what the socket allows; false when the connection is done.
  bool Advance(Connection& c, absl::Time now) {
    if (c.response.empty()) {
      char buf[2048];
      const ssize_t got = recv(c.fd, buf, sizeof(buf), 0);
      if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) return false;
      if (got > 0) c.request.append(buf, static_cast<size_t>(got));
      // The whole header is read before answering: closing a socket with unread bytes
      // resets the connection, which can lose the answer on the client's side.
      const bool complete = absl::StrContains(c.request, "\r\n\r\n") ||
                            absl::StrContains(c.request, "\n\n");
      if (!complete && c.request.size() <= kMaxRequestBytes) return true;
      c.response = complete ? Respond(c.request) : Response(400, "request too large\n", false);
      c.deadline = now + kResponseTimeout;
    }
    while (c.sent < c.response.size()) {
      const ssize_t put =
          send(c.fd, c.response.data() + c.sent, c.response.size() - c.sent, MSG_NOSIGNAL);
      if (put < 0) return errno == EAGAIN || errno == EINTR;
      c.sent += static_cast<size_t>(put);
    }
    return false;
  }

  std::string Respond(absl::string_view request) const {
    const absl::string_view line = request.substr(0, request.find_first_of("\r\n"));
    const std::vector<absl::string_view> parts = absl::StrSplit(line, ' ');
    if (parts.size() != 3 || !absl::StartsWith(parts[2], "HTTP/") || parts[1].empty()) {
      return Response(400, "bad request\n", false);
    }
    const bool head = parts[0] == "HEAD";
    if (!head && parts[0] != "GET") return Response(405, "method not allowed\n", false);
    const absl::string_view path = parts[1].substr(0, parts[1].find('?'));
    if (path == "/metrics") {
      return Response(200, metrics_ != nullptr ? metrics_->RenderText() : "", head,
                      "text/plain; version=0.0.4");
    }
    if (path == "/healthz") {
      return serving_() ? Response(200, "SERVING\n", head) : Response(503, "NOT_SERVING\n", head);
    }
    return Response(404, "not found\n", head);
  }

  static std::string Response(int code, absl::string_view body, bool head,
                              absl::string_view type = "text/plain") {
    const absl::string_view reason = code == 200   ? "OK"
                                     : code == 400 ? "Bad Request"
                                     : code == 404 ? "Not Found"
                                     : code == 405 ? "Method Not Allowed"
                                                   : "Service Unavailable";
    return absl::StrCat("HTTP/1.0 ", code, " ", reason, "\r\nContent-Type: ", type,
                        "\r\nContent-Length: ", body.size(),
                        code == 405 ? "\r\nAllow: GET, HEAD" : "",
                        "\r\nConnection: close\r\n\r\n", head ? "" : body);
  }

  const int fd_;
  MetricsRegistry* const metrics_;
  const std::function<bool()> serving_;
  std::vector<Connection> connections_;  // only the loop's thread touches them
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

// Keeps the server's health (`set_serving`: "" and every registered service name, and
// /healthz) equal to what `readiness` says: polls it once when constructed, then every
// `interval` on its own thread until Stop().
class ReadinessPoller {
 public:
  ReadinessPoller(std::function<void(bool)> set_serving,
                  std::function<absl::Status()> readiness, absl::Duration interval)
      : set_serving_(std::move(set_serving)), readiness_(std::move(readiness)) {
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
    set_serving_(serving_);
    LogFields fields = {{"status", serving_ ? "SERVING" : "NOT_SERVING"}};
    if (!serving_) fields.push_back({"why", std::string(ready.message())});
    LogEvent("health", fields);
  }

  const std::function<void(bool)> set_serving_;
  const std::function<absl::Status()> readiness_;
  bool serving_ = true;  // gRPC's first answer for every registered name
  absl::Notification stop_;
  std::thread thread_;
};

// Counts the calls a server is running: gRPC creates one interceptor per call and
// destroys it with the call.
class CallCounter final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit CallCounter(std::atomic<int>* in_flight) : in_flight_(in_flight) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo*) override {
    return new Counted(in_flight_);
  }

 private:
  class Counted final : public grpc::experimental::Interceptor {
   public:
    explicit Counted(std::atomic<int>* n) : n_(n) { n_->fetch_add(1); }
    ~Counted() override { n_->fetch_sub(1); }
    void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
      methods->Proceed();
    }

   private:
    std::atomic<int>* const n_;
  };
  std::atomic<int>* const in_flight_;
};

// Builds and starts the gRPC server with the health service; sets *port to the bound
// port and counts its calls in *in_flight (which must outlive it). Null when the
// address cannot be bound.
std::unique_ptr<grpc::Server> StartGrpcServer(const ServerOptions& options,
                                              const std::vector<ServedService>& services,
                                              int* port, std::atomic<int>* in_flight) {
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen_address,
                           options.credentials != nullptr ? options.credentials
                                                          : grpc::InsecureServerCredentials(),
                           port);
  // Without SO_REUSEPORT: with it, gRPC clones the listening socket once per polling
  // completion queue after the first (the default health service adds one), and binds
  // each clone to the requested address, so with port 0 every clone gets a port of its
  // own that serves the whole API and is never reported. It would also let another
  // process of the same user bind this port and take a share of its connections.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> counter;
  counter.push_back(std::make_unique<CallCounter>(in_flight));
  builder.experimental().SetInterceptorCreators(std::move(counter));
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
  // The metrics socket is bound first: a server that cannot serve its metrics and
  // /healthz (a port in use, an address not on this host) does not start at all,
  // rather than run without them and fail its probes.
  int metrics_fd = -1;
  std::string metrics_address;
  if (options.metrics_port > 0) {
    const std::string host =
        options.metrics_host.empty() ? HostOf(options.listen_address) : options.metrics_host;
    absl::StatusOr<int> fd = ListenTcp(host, options.metrics_port);
    if (!fd.ok()) return fd.status();
    metrics_fd = *fd;
    metrics_address = SocketAddress(metrics_fd);
  }
  int port = 0;
  std::atomic<int> in_flight{0};
  std::unique_ptr<grpc::Server> server = StartGrpcServer(options, services, &port, &in_flight);
  if (server == nullptr) {
    if (metrics_fd >= 0) close(metrics_fd);
    return absl::UnavailableError(absl::StrCat("cannot listen on ", options.listen_address));
  }
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  // What /healthz answers; gRPC's health service starts SERVING for every name.
  std::atomic<bool> serving{true};
  auto set_serving = [health, &serving](bool s) {
    health->SetServingStatus(s);
    serving.store(s);
  };
  std::unique_ptr<ReadinessPoller> readiness;
  if (options.readiness) {
    readiness = std::make_unique<ReadinessPoller>(set_serving, options.readiness,
                                                  options.readiness_interval);
  }
  std::unique_ptr<MetricsHttpServer> http;
  if (metrics_fd >= 0) {
    http = std::make_unique<MetricsHttpServer>(metrics_fd, metrics,
                                               [&serving] { return serving.load(); });
    LogEvent("metrics_listening", {{"address", metrics_address}});
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
  set_serving(false);
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
  // gRPC's Shutdown also waits, to the end of the grace period, for every client
  // connection to close, idle ones included (a client process that keeps a channel
  // open). Once no call has been running for two polls in a row, what is left is such
  // connections: close them, so that a drained server stops at once.
  int idle_polls = 0;
  bool closed_idle = false;
  while (!stopped.HasBeenNotified()) {
    if (WaitForSignal(set, absl::Milliseconds(50), &sig)) {
      LogEvent("already_shutting_down", {{"signal", absl::StrCat(sig)}});
    }
    idle_polls = in_flight.load() == 0 ? idle_polls + 1 : 0;
    if (idle_polls >= 2 && !closed_idle) {
      grpc_server_cancel_all_calls(server->c_server());
      closed_idle = true;
    }
  }
  stopper.join();
  LogEvent("stopped");
  return absl::OkStatus();
}

}  // namespace blockserve
