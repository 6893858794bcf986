// RunServer's shutdown sequence as seen from outside: after SIGTERM the health service
// answers NOT_SERVING while the server still accepts calls (the drain delay), then the
// server stops and RunServer returns OK.
#include "common/server.h"

#include <signal.h>
#include <unistd.h>

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

// One health Check of the whole server: its answer, or the RPC's error.
absl::StatusOr<HealthCheckResponse::ServingStatus> CheckHealth(int port) {
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                     grpc::InsecureChannelCredentials());
  auto stub = grpc::health::v1::Health::NewStub(channel);
  grpc::ClientContext context;
  context.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(2)));
  grpc::health::v1::HealthCheckRequest request;
  HealthCheckResponse response;
  const grpc::Status status = stub->Check(&context, request, &response);
  if (!status.ok()) return absl::UnavailableError(status.error_message());
  return response.status();
}

TEST(RunServerTest, HealthTurnsNotServingOnSigtermBeforeTheServerStops) {
  ASSERT_TRUE(kSignalsBlocked);
  absl::Notification listening;
  absl::Notification on_shutdown_called;
  int port = 0;
  ServerOptions options;
  options.service_name = "server_test";
  options.listen_address = "127.0.0.1:0";
  options.drain_delay = absl::Seconds(3);
  options.on_listening = [&](int p) {
    port = p;
    listening.Notify();
  };
  options.on_shutdown = [&] { on_shutdown_called.Notify(); };
  v1::Decoder::Service any_service;  // a sync server needs one service besides health
  absl::Status result = absl::UnknownError("RunServer did not return");
  std::thread server([&] { result = RunServer(options, {&any_service}, nullptr); });
  ASSERT_TRUE(listening.WaitForNotificationWithTimeout(absl::Seconds(10)));

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

  server.join();
  EXPECT_TRUE(result.ok()) << result;
  EXPECT_TRUE(on_shutdown_called.HasBeenNotified());
  EXPECT_GE(absl::Now() - sigterm, options.drain_delay);
}

TEST(RunServerTest, SecondSigtermEndsTheDrainDelayAndLaterOnesAreIgnored) {
  ASSERT_TRUE(kSignalsBlocked);
  absl::Notification listening;
  absl::Notification on_shutdown_called;
  ServerOptions options;
  options.service_name = "server_test";
  options.listen_address = "127.0.0.1:0";
  options.drain_delay = absl::Seconds(60);
  options.on_listening = [&](int) { listening.Notify(); };
  options.on_shutdown = [&] { on_shutdown_called.Notify(); };
  v1::Decoder::Service any_service;
  absl::Status result = absl::UnknownError("RunServer did not return");
  std::thread server([&] { result = RunServer(options, {&any_service}, nullptr); });
  ASSERT_TRUE(listening.WaitForNotificationWithTimeout(absl::Seconds(10)));

  const absl::Time start = absl::Now();
  ASSERT_EQ(kill(getpid(), SIGTERM), 0);
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_FALSE(on_shutdown_called.HasBeenNotified());
  ASSERT_EQ(kill(getpid(), SIGTERM), 0);
  ASSERT_TRUE(on_shutdown_called.WaitForNotificationWithTimeout(absl::Seconds(10)));
  ASSERT_EQ(kill(getpid(), SIGINT), 0);  // consumed by RunServer, not by the test
  server.join();
  EXPECT_TRUE(result.ok()) << result;
  EXPECT_LT(absl::Now() - start, absl::Seconds(20));
}

}  // namespace
}  // namespace blockserve
