// RunServer's health and shutdown as seen from outside: the whole server and every
// served service name answer alike, as the readiness callback says; after SIGTERM the
// health service answers NOT_SERVING while the server still accepts calls (the drain
// delay), then the server stops and RunServer returns OK. And its sockets: the server
// listens on the ports it logs and no other; the HTTP endpoint binds the server's host
// (or metrics_host), answers /metrics and /healthz and 404 elsewhere, is not held up by
// a silent client, and a metrics address that cannot be bound fails the start.
#include "common/server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include <gtest/gtest.h>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "common/metrics.h"
#include "common/testing/sockets.h"
#include "proto/blockserve.grpc.pb.h"
#include "router/health.grpc.pb.h"

namespace blockserve {
namespace {

using grpc::health::v1::HealthCheckResponse;
using testing::FreeLoopbackPort;
using testing::ListeningSocket;
using testing::ListeningSockets;
using testing::NewListeningPorts;

// SIGTERM must reach RunServer's sigwait, not kill the test: block it before any
// thread exists (static initialization), so that every thread inherits the mask.
const bool kSignalsBlocked = (BlockShutdownSignals(), true);

const std::string kDecoderName = v1::Decoder::service_full_name();

// One health Check of `service` ("": the whole server): its answer, or the RPC's error
// with its code (NOT_FOUND for a name the server does not know).
absl::StatusOr<HealthCheckResponse::ServingStatus> CheckHealth(int port,
                                                               const std::string& service = "") {
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                     grpc::InsecureChannelCredentials());
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
  grpc::health::v1::HealthCheckRequest request;
  request.set_service(service);
  HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()),
                        status.error_message());
  }
  return response.status();
}

// Checks `service` until it answers `want` or 10 s pass; returns the last answer.
absl::StatusOr<HealthCheckResponse::ServingStatus> AwaitHealth(
    int port, const std::string& service, HealthCheckResponse::ServingStatus want) {
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  absl::StatusOr<HealthCheckResponse::ServingStatus> got = CheckHealth(port, service);
  while (!(got.ok() && *got == want) && absl::Now() < give_up) {
    absl::SleepFor(absl::Milliseconds(10));
    got = CheckHealth(port, service);
  }
  return got;
}

// A connected TCP socket to ip:port (IPv4), or -errno (-ETIMEDOUT after 2 s).
int Connect(const std::string& ip, int port) {
  const int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  inet_pton(AF_INET, ip.c_str(), &addr.sin_addr);
  int err = 0;
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    err = errno;
    if (err == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      socklen_t len = sizeof(err);
      err = poll(&p, 1, 2000) == 1 ? 0 : ETIMEDOUT;
      if (err == 0) getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    }
  }
  if (err != 0) {
    close(fd);
    return -err;
  }
  fcntl(fd, F_SETFL, 0);  // blocking again
  return fd;
}

struct HttpAnswer {
  int code = 0;
  std::string headers;
  std::string body;
};

// Sends `request` to ip:port and reads the answer until the server closes the
// connection; an error when it does not within 5 s.
absl::StatusOr<HttpAnswer> Http(int port, const std::string& request,
                                const std::string& ip = "127.0.0.1") {
  const int fd = Connect(ip, port);
  if (fd < 0) return absl::UnavailableError(absl::StrCat("connect: ", strerror(-fd)));
  const timeval five_seconds{5, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &five_seconds, sizeof(five_seconds));
  (void)!send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string answer;
  char buf[4096];
  ssize_t got;
  while ((got = recv(fd, buf, sizeof(buf), 0)) > 0) answer.append(buf, static_cast<size_t>(got));
  const int err = errno;
  close(fd);
  if (got < 0) return absl::DeadlineExceededError(absl::StrCat("recv: ", strerror(err)));
  const size_t blank = answer.find("\r\n\r\n");
  HttpAnswer a;
  if (blank == std::string::npos || answer.size() < 12 ||
      !absl::SimpleAtoi(absl::string_view(answer).substr(9, 3), &a.code)) {
    return absl::InternalError(absl::StrCat("not an HTTP answer: \"", answer, "\""));
  }
  a.headers = answer.substr(0, blank);
  a.body = answer.substr(blank + 4);
  return a;
}

absl::StatusOr<HttpAnswer> Get(int port, const std::string& target) {
  return Http(port, absl::StrCat("GET ", target, " HTTP/1.1\r\nHost: test\r\n\r\n"));
}

// The code /healthz answers, polled until it is `want` or 10 s pass.
int AwaitHealthz(int port, int want) {
  const absl::Time give_up = absl::Now() + absl::Seconds(10);
  int code = 0;
  do {
    absl::StatusOr<HttpAnswer> a = Get(port, "/healthz");
    code = a.ok() ? a->code : 0;
    if (code != want) absl::SleepFor(absl::Milliseconds(10));
  } while (code != want && absl::Now() < give_up);
  return code;
}

// RunServer serving a Decoder service (a sync server needs one besides health) on a
// free loopback port, on its own thread until it returns after SIGTERM.
class RunningServer {
 public:
  explicit RunningServer(ServerOptions options, MetricsRegistry* metrics = nullptr) {
    options.service_name = "server_test";
    options.listen_address = "127.0.0.1:0";
    options.on_listening = [this](int port) {
      port_ = port;
      listening_.Notify();
    };
    thread_ = std::thread([this, metrics, options = std::move(options)] {
      result_ = RunServer(options, {{&service_, kDecoderName}}, metrics);
      returned_.Notify();
    });
  }
  // A test that failed half-way still ends.
  ~RunningServer() {
    if (thread_.joinable()) (void)Stop();
  }

  // SIGTERMs until RunServer returns (the second one ends the drain delay; two sent at
  // once would merge into one pending signal), then what it returned.
  absl::Status Stop() {
    do {
      kill(getpid(), SIGTERM);
    } while (!returned_.WaitForNotificationWithTimeout(absl::Milliseconds(100)));
    return Join();
  }

  bool AwaitListening() { return listening_.WaitForNotificationWithTimeout(absl::Seconds(10)); }
  int port() const { return port_; }
  // Waits for RunServer to return (after SIGTERM) and returns what it returned. A
  // SIGTERM that arrived as it returned stays pending (every thread blocks it): it is
  // consumed here, or the next test's server would take it for its own.
  absl::Status Join() {
    thread_.join();
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    const timespec no_wait{0, 0};
    while (sigtimedwait(&set, nullptr, &no_wait) > 0) {
    }
    return result_;
  }

 private:
  v1::Decoder::Service service_;
  absl::Notification listening_;
  absl::Notification returned_;
  int port_ = 0;
  absl::Status result_ = absl::UnknownError("RunServer did not return");
  std::thread thread_;
};

TEST(RunServerTest, HealthTurnsNotServingOnSigtermBeforeTheServerStops) {
  ASSERT_TRUE(kSignalsBlocked);
  absl::Notification on_shutdown_called;
  ServerOptions options;
  options.drain_delay = absl::Seconds(3);
  options.on_shutdown = [&] { on_shutdown_called.Notify(); };
  RunningServer server(options);
  ASSERT_TRUE(server.AwaitListening());
  const int port = server.port();

  absl::StatusOr<HealthCheckResponse::ServingStatus> before = CheckHealth(port);
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_EQ(*before, HealthCheckResponse::SERVING);

  const absl::Time sigterm = absl::Now();
  ASSERT_EQ(kill(getpid(), SIGTERM), 0);
  // Within the drain delay the server answers, and answers NOT_SERVING.
  absl::StatusOr<HealthCheckResponse::ServingStatus> during = before;
  while (during.ok() && *during == HealthCheckResponse::SERVING &&
         absl::Now() - sigterm < absl::Seconds(2)) {
    absl::SleepFor(absl::Milliseconds(20));
    during = CheckHealth(port);
  }
  ASSERT_TRUE(during.ok()) << "the server stopped answering during the drain delay: "
                           << during.status();
  EXPECT_EQ(*during, HealthCheckResponse::NOT_SERVING);
  EXPECT_FALSE(on_shutdown_called.HasBeenNotified()) << "on_shutdown ran before the delay";

  const absl::Status result = server.Join();
  EXPECT_TRUE(result.ok()) << result;
  EXPECT_TRUE(on_shutdown_called.HasBeenNotified());
  EXPECT_GE(absl::Now() - sigterm, options.drain_delay);
}

TEST(RunServerTest, SecondSigtermEndsTheDrainDelayAndLaterOnesAreIgnored) {
  ASSERT_TRUE(kSignalsBlocked);
  absl::Notification on_shutdown_called;
  ServerOptions options;
  options.drain_delay = absl::Seconds(60);
  options.on_shutdown = [&] { on_shutdown_called.Notify(); };
  RunningServer server(options);
  ASSERT_TRUE(server.AwaitListening());

  const absl::Time start = absl::Now();
  ASSERT_EQ(kill(getpid(), SIGTERM), 0);
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_FALSE(on_shutdown_called.HasBeenNotified());
  ASSERT_EQ(kill(getpid(), SIGTERM), 0);
  ASSERT_TRUE(on_shutdown_called.WaitForNotificationWithTimeout(absl::Seconds(10)));
  ASSERT_EQ(kill(getpid(), SIGINT), 0);  // consumed by RunServer, not by the test
  const absl::Status result = server.Join();
  EXPECT_TRUE(result.ok()) << result;
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
}

TEST(RunServerTest, EveryServedServiceNameAnswersLikeTheWholeServer) {
  ASSERT_TRUE(kSignalsBlocked);
  ServerOptions options;
  options.drain_delay = absl::Seconds(60);  // ended by a second SIGTERM below
  RunningServer server(options);
  ASSERT_TRUE(server.AwaitListening());

  for (const std::string& name : {std::string(), kDecoderName}) {
    EXPECT_EQ(CheckHealth(server.port(), name).value_or(HealthCheckResponse::UNKNOWN),
              HealthCheckResponse::SERVING)
        << "\"" << name << "\"";
  }
  EXPECT_EQ(CheckHealth(server.port(), "blockserve.v1.Router").status().code(),
            absl::StatusCode::kNotFound)
      << "only the names of the services served are known";

  ASSERT_EQ(kill(getpid(), SIGTERM), 0);
  for (const std::string& name : {std::string(), kDecoderName}) {
    EXPECT_EQ(AwaitHealth(server.port(), name, HealthCheckResponse::NOT_SERVING)
                  .value_or(HealthCheckResponse::UNKNOWN),
              HealthCheckResponse::NOT_SERVING)
        << "\"" << name << "\"";
  }
  ASSERT_EQ(kill(getpid(), SIGTERM), 0);
  EXPECT_TRUE(server.Join().ok());
}

TEST(RunServerTest, ReadinessDecidesUntilSigterm) {
  ASSERT_TRUE(kSignalsBlocked);
  std::atomic<bool> ready{false};
  std::atomic<int> polls{0};
  ServerOptions options;
  options.drain_delay = absl::Seconds(60);  // ended by a second SIGTERM below
  options.readiness_interval = absl::Milliseconds(10);
  options.readiness = [&] {
    polls.fetch_add(1);
    return ready ? absl::OkStatus() : absl::UnavailableError("the test says not ready");
  };
  RunningServer server(options);
  ASSERT_TRUE(server.AwaitListening());
  const int port = server.port();
  // Expects every name to reach `want` (polling: readiness is polled on a thread).
  auto expect_all = [port](HealthCheckResponse::ServingStatus want) {
    for (const std::string& name : {std::string(), kDecoderName}) {
      EXPECT_EQ(AwaitHealth(port, name, want).value_or(HealthCheckResponse::UNKNOWN), want)
          << "\"" << name << "\"";
    }
  };

  // The first answer is readiness's, already when the server listens.
  EXPECT_EQ(CheckHealth(port).value_or(HealthCheckResponse::UNKNOWN),
            HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(CheckHealth(port, kDecoderName).value_or(HealthCheckResponse::UNKNOWN),
            HealthCheckResponse::NOT_SERVING);
  ready = true;
  expect_all(HealthCheckResponse::SERVING);
  ready = false;
  expect_all(HealthCheckResponse::NOT_SERVING);
  ready = true;
  expect_all(HealthCheckResponse::SERVING);

  // SIGTERM wins over a readiness that still says yes: it is no longer polled.
  ASSERT_EQ(kill(getpid(), SIGTERM), 0);
  expect_all(HealthCheckResponse::NOT_SERVING);
  const int polls_after_sigterm = polls.load();
  absl::SleepFor(options.readiness_interval * 10);
  EXPECT_EQ(polls.load(), polls_after_sigterm);
  expect_all(HealthCheckResponse::NOT_SERVING);
  ASSERT_EQ(kill(getpid(), SIGTERM), 0);
  EXPECT_TRUE(server.Join().ok());
}

// gRPC with SO_REUSEPORT cloned the listening socket (one clone per extra polling
// completion queue; the health service adds one) and bound each clone to the requested
// address as given: with port 0, a second port that served the whole API and was never
// logged.
TEST(RunServerTest, ListensOnExactlyTheLoggedPorts) {
  ASSERT_TRUE(kSignalsBlocked);
  const std::vector<ListeningSocket> before = ListeningSockets();
  MetricsRegistry metrics;
  ServerOptions options;
  options.drain_delay = absl::Seconds(60);
  options.metrics_port = FreeLoopbackPort();
  ::testing::internal::CaptureStderr();
  RunningServer server(options, &metrics);
  const bool listening = server.AwaitListening();
  const std::string log = ::testing::internal::GetCapturedStderr();
  ASSERT_TRUE(listening) << log;

  EXPECT_EQ(NewListeningPorts(before, ListeningSockets()),
            (std::multiset<int>{server.port(), options.metrics_port}))
      << "gRPC port " << server.port() << ", metrics port " << options.metrics_port;
  EXPECT_TRUE(absl::StrContains(log, absl::StrCat("\"port\":\"", server.port(), "\""))) << log;
  bool metrics_logged = false;
  for (absl::string_view line : absl::StrSplit(log, '\n')) {
    metrics_logged = metrics_logged ||
                     (absl::StrContains(line, "\"event\":\"metrics_listening\"") &&
                      absl::StrContains(line, absl::StrCat("\"address\":\"127.0.0.1:",
                                                           options.metrics_port, "\"")));
  }
  EXPECT_TRUE(metrics_logged) << log;
  EXPECT_TRUE(server.Stop().ok());
}

// Loopback-only is loopback-only for the metrics too: the endpoint binds the server's
// host (127.0.0.1 here), where it used to bind 0.0.0.0 whatever --host said.
TEST(RunServerTest, MetricsEndpointBindsTheServersHostOnly) {
  ASSERT_TRUE(kSignalsBlocked);
  MetricsRegistry metrics;
  ServerOptions options;  // metrics_host empty: the host of listen_address
  options.drain_delay = absl::Seconds(60);
  options.metrics_port = FreeLoopbackPort();
  RunningServer server(options, &metrics);
  ASSERT_TRUE(server.AwaitListening());
  const int port = options.metrics_port;

  std::string bound = "not listed";
  for (const ListeningSocket& s : ListeningSockets()) {
    if (s.port == port) bound = s.local_hex;
  }
  EXPECT_EQ(bound, "0100007F") << "the metrics socket is not bound to 127.0.0.1 alone";
  const int fd = Connect("127.0.0.1", port);
  EXPECT_GE(fd, 0) << strerror(-fd);
  if (fd >= 0) close(fd);
  // All of 127/8 reaches this host, so a wildcard bind would accept on 127.0.0.2.
  EXPECT_EQ(Connect("127.0.0.2", port), -ECONNREFUSED);
  // So would this host's other addresses, where it has any.
  ifaddrs* addrs = nullptr;
  if (getifaddrs(&addrs) == 0) {
    for (ifaddrs* a = addrs; a != nullptr; a = a->ifa_next) {
      if (a->ifa_addr == nullptr || a->ifa_addr->sa_family != AF_INET) continue;
      char ip[INET_ADDRSTRLEN] = {};
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(a->ifa_addr)->sin_addr, ip, sizeof(ip));
      if (absl::StartsWith(ip, "127.")) continue;
      EXPECT_EQ(Connect(ip, port), -ECONNREFUSED) << "reachable on " << ip;
    }
    freeifaddrs(addrs);
  }
  EXPECT_TRUE(server.Stop().ok());
}

TEST(RunServerTest, MetricsHostChoosesTheEndpointsAddress) {
  ASSERT_TRUE(kSignalsBlocked);
  MetricsRegistry metrics;
  ServerOptions options;
  options.drain_delay = absl::Seconds(60);
  options.metrics_host = "127.0.0.2";
  options.metrics_port = FreeLoopbackPort();
  RunningServer server(options, &metrics);
  ASSERT_TRUE(server.AwaitListening());

  absl::StatusOr<HttpAnswer> answer =
      Http(options.metrics_port, "GET /metrics HTTP/1.0\r\n\r\n", "127.0.0.2");
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->code, 200);
  EXPECT_EQ(Connect("127.0.0.1", options.metrics_port), -ECONNREFUSED);
  EXPECT_TRUE(server.Stop().ok());
}

// The server does not start without its metrics: RunServer returns the error (main()
// exits non-zero) before the gRPC port is opened.
TEST(RunServerTest, AMetricsAddressThatCannotBeBoundFailsTheStart) {
  ASSERT_TRUE(kSignalsBlocked);
  const testing::HeldLoopbackPort taken;
  ASSERT_NE(taken.port(), 0);
  const int taken_port = taken.port();

  struct Case {
    std::string host;
    int port;
    std::string said;  // in the error
  };
  const std::vector<Case> cases = {
      {"", taken_port, absl::StrCat("127.0.0.1:", taken_port)},  // in use
      {"203.0.113.77", FreeLoopbackPort(), "203.0.113.77"},     // not an address of this host
      {"no-such-host.invalid", FreeLoopbackPort(), "no-such-host.invalid"},
  };
  for (const Case& c : cases) {
    ServerOptions options;
    options.metrics_host = c.host;
    options.metrics_port = c.port;
    MetricsRegistry metrics;
    RunningServer server(options, &metrics);
    const absl::Status result = server.Join();
    EXPECT_FALSE(result.ok()) << c.host << ":" << c.port;
    EXPECT_TRUE(absl::StrContains(result.message(), "metrics")) << result;
    EXPECT_TRUE(absl::StrContains(result.message(), c.said)) << result;
    EXPECT_EQ(server.port(), 0) << "the gRPC server started anyway";
  }
}

TEST(RunServerTest, HttpAnswersMetricsAndHealthzAndNothingElse) {
  ASSERT_TRUE(kSignalsBlocked);
  MetricsRegistry metrics;
  metrics.GetCounter("server_test_things_total", "things")->Add(3);
  ServerOptions options;
  options.drain_delay = absl::Seconds(60);
  options.metrics_port = FreeLoopbackPort();
  RunningServer server(options, &metrics);
  ASSERT_TRUE(server.AwaitListening());
  const int port = options.metrics_port;
  // {request, code, what the body must contain}
  const std::vector<std::tuple<std::string, int, std::string>> cases = {
      {"GET /metrics HTTP/1.1\r\nHost: x\r\nAccept: */*\r\n\r\n", 200,
       "server_test_things_total 3"},
      {"GET /metrics?name[]=x HTTP/1.0\r\n\r\n", 200, "server_test_things_total 3"},
      {"GET /healthz HTTP/1.0\r\n\r\n", 200, "SERVING"},
      {"GET / HTTP/1.0\r\n\r\n", 404, ""},
      {"GET /foo HTTP/1.0\r\n\r\n", 404, ""},
      {"GET /metricsfoo HTTP/1.0\r\n\r\n", 404, ""},
      {"GET /metrics/x HTTP/1.0\r\n\r\n", 404, ""},
      {"GET /healthz/../metrics HTTP/1.0\r\n\r\n", 404, ""},
      {"POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n", 405, ""},
      {"DELETE /healthz HTTP/1.0\r\n\r\n", 405, ""},
      {"hello\r\n\r\n", 400, ""},
  };
  for (const auto& [request, code, body] : cases) {
    absl::StatusOr<HttpAnswer> answer = Http(port, request);
    ASSERT_TRUE(answer.ok()) << request << ": " << answer.status();
    EXPECT_EQ(answer->code, code) << request;
    EXPECT_TRUE(absl::StrContains(answer->body, body)) << request << answer->body;
    if (code != 200) {
      EXPECT_FALSE(absl::StrContains(answer->body, "server_test_things_total")) << request;
    }
  }
  absl::StatusOr<HttpAnswer> head = Http(port, "HEAD /metrics HTTP/1.0\r\n\r\n");
  ASSERT_TRUE(head.ok()) << head.status();
  EXPECT_EQ(head->code, 200);
  EXPECT_EQ(head->body, "");
  EXPECT_TRUE(server.Stop().ok());
}

TEST(RunServerTest, HealthzFollowsReadinessAndSigterm) {
  ASSERT_TRUE(kSignalsBlocked);
  std::atomic<bool> ready{true};
  ServerOptions options;
  options.drain_delay = absl::Seconds(60);
  options.metrics_port = FreeLoopbackPort();
  options.readiness_interval = absl::Milliseconds(10);
  options.readiness = [&] {
    return ready ? absl::OkStatus() : absl::UnavailableError("the test says not ready");
  };
  RunningServer server(options);  // no registry: /healthz does not need one
  ASSERT_TRUE(server.AwaitListening());
  const int port = options.metrics_port;

  EXPECT_EQ(AwaitHealthz(port, 200), 200);
  ready = false;
  EXPECT_EQ(AwaitHealthz(port, 503), 503);
  absl::StatusOr<HttpAnswer> answer = Get(port, "/healthz");
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->body, "NOT_SERVING\n");
  // gRPC's health says the same.
  EXPECT_EQ(CheckHealth(server.port()).value_or(HealthCheckResponse::UNKNOWN),
            HealthCheckResponse::NOT_SERVING);
  ready = true;
  EXPECT_EQ(AwaitHealthz(port, 200), 200);

  // SIGTERM: NOT_SERVING during the drain delay, though readiness still says yes.
  ASSERT_EQ(kill(getpid(), SIGTERM), 0);
  EXPECT_EQ(AwaitHealthz(port, 503), 503);
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(AwaitHealthz(port, 503), 503);
  ASSERT_EQ(kill(getpid(), SIGTERM), 0);
  EXPECT_TRUE(server.Join().ok());
}

// The endpoint used to read each connection to the end, one at a time: a client that
// connected and sent nothing stopped every later scrape.
TEST(RunServerTest, ASilentClientDoesNotHoldUpAScrape) {
  ASSERT_TRUE(kSignalsBlocked);
  MetricsRegistry metrics;
  ServerOptions options;
  options.drain_delay = absl::Seconds(60);
  options.metrics_port = FreeLoopbackPort();
  RunningServer server(options, &metrics);
  ASSERT_TRUE(server.AwaitListening());
  const int port = options.metrics_port;

  const int silent = Connect("127.0.0.1", port);
  ASSERT_GE(silent, 0);
  const int dripping = Connect("127.0.0.1", port);  // half a request, never finished
  ASSERT_GE(dripping, 0);
  ASSERT_GT(send(dripping, "GET /metrics HTTP/1.0\r\n", 23, MSG_NOSIGNAL), 0);
  absl::SleepFor(absl::Milliseconds(50));  // both accepted before the scrape

  const absl::Time start = absl::Now();
  absl::StatusOr<HttpAnswer> scrape = Get(port, "/metrics");
  ASSERT_TRUE(scrape.ok()) << scrape.status();
  EXPECT_EQ(scrape->code, 200);
  // Well under the 2 s a silent connection may take: served alongside, not after it.
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));

  // The silent connections are closed after the request timeout, unanswered.
  for (const int fd : {silent, dripping}) {
    pollfd p{fd, POLLIN, 0};
    ASSERT_EQ(poll(&p, 1, 5000), 1) << "still open after 5 s";
    char c;
    EXPECT_LE(recv(fd, &c, 1, 0), 0);
    close(fd);
  }
  EXPECT_TRUE(server.Stop().ok());
}

}  // namespace
}  // namespace blockserve
