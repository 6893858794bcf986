// RunServer's health and shutdown as seen from outside: the whole server and every
// served service name answer alike, as the readiness callback says; after SIGTERM the
// health service answers NOT_SERVING while the server still accepts calls (the drain
// delay), then the server stops and RunServer returns OK.
#include "common/server.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "proto/blockserve.grpc.pb.h"
#include "router/health.grpc.pb.h"

namespace blockserve {
namespace {

using grpc::health::v1::HealthCheckResponse;

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

// RunServer serving a Decoder service (a sync server needs one besides health) on a
// free loopback port, on its own thread until it returns after SIGTERM.
class RunningServer {
 public:
  explicit RunningServer(ServerOptions options) {
    options.service_name = "server_test";
    options.listen_address = "127.0.0.1:0";
    options.on_listening = [this](int port) {
      port_ = port;
      listening_.Notify();
    };
    thread_ = std::thread([this, options = std::move(options)] {
      result_ = RunServer(options, {{&service_, kDecoderName}}, nullptr);
      returned_.Notify();
    });
  }
  // A test that failed half-way still ends: SIGTERMs until RunServer returns (the
  // second one ends the drain delay).
  ~RunningServer() {
    if (!thread_.joinable()) return;
    do {
      kill(getpid(), SIGTERM);
    } while (!returned_.WaitForNotificationWithTimeout(absl::Milliseconds(100)));
    thread_.join();
  }

  bool AwaitListening() { return listening_.WaitForNotificationWithTimeout(absl::Seconds(10)); }
  int port() const { return port_; }
  // Waits for RunServer to return (after SIGTERM) and returns what it returned.
  absl::Status Join() {
    thread_.join();
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

}  // namespace
}  // namespace blockserve
